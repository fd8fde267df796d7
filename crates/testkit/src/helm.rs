//! The real `helm` CLI, built from Go modules by `scripts/setup`.

use crate::bins;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Helm {
    bin: PathBuf,
    kubeconfig: Option<PathBuf>,
    // Helm keeps caches and repository config under these; keep them out of $HOME.
    home: tempfile::TempDir,
}

impl Helm {
    pub fn new() -> Result<Self> {
        Ok(Self { bin: bins::helm()?, kubeconfig: None, home: tempfile::tempdir()? })
    }

    pub fn with_kubeconfig(mut self, path: &Path) -> Self {
        self.kubeconfig = Some(path.to_path_buf());
        self
    }

    /// Runs helm and returns its standard output; a non-zero exit is an error carrying
    /// standard error.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let h = self.home.path();
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("HELM_CACHE_HOME", h.join("cache"))
            .env("HELM_CONFIG_HOME", h.join("config"))
            .env("HELM_DATA_HOME", h.join("data"));
        if let Some(k) = &self.kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        let out = cmd.output().with_context(|| format!("running {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "helm {} failed ({}):\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}
