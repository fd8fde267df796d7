//! The seed's stack for the side-by-side figures: discord.js 14 and @discordjs/voice 0.19
//! (with opusscript, sodium-native and its DAVE library), pinned in `package.json`,
//! installed by the bench itself with npm into a cache directory and run with node. An
//! install is reused while the pinned versions stay the same.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PACKAGE: &str = include_str!("package.json");
const SCRIPTS: [(&str, &str); 2] = [("bots.js", include_str!("bots.js")), ("voice.js", include_str!("voice.js"))];

pub struct Seed {
    dir: PathBuf,
}

impl Seed {
    /// Installs the pinned packages unless the cache already holds them.
    pub fn install() -> Result<Self> {
        let home = std::env::var_os("HOME").context("HOME is not set")?;
        let dir = PathBuf::from(home).join(".cache/musicbot-operator/bench-seed");
        std::fs::create_dir_all(&dir)?;
        for (name, text) in SCRIPTS {
            std::fs::write(dir.join(name), text)?;
        }
        // What was installed, written after npm succeeded: the same manifest means done.
        let installed = dir.join("node_modules/.bench-installed.json");
        if std::fs::read_to_string(&installed).is_ok_and(|m| m == PACKAGE) {
            return Ok(Self { dir });
        }
        std::fs::write(dir.join("package.json"), PACKAGE)?;
        eprintln!("installing the seed's stack (discord.js, @discordjs/voice) with npm into {}", dir.display());
        let status = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .status()
            .context("running npm (the seed's stack needs node and npm)")?;
        if !status.success() {
            bail!("npm install failed: {status}");
        }
        std::fs::write(installed, PACKAGE)?;
        Ok(Self { dir })
    }

    /// Runs one of the scripts; its stdout is read by [`wait_line`].
    pub fn spawn(&self, script: &str, env: &[(&str, String)]) -> Result<Child> {
        let mut cmd = Command::new("node");
        cmd.arg(self.dir.join(script))
            .current_dir(&self.dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().context("starting node")
    }
}

/// Waits for the child to print `line`, for at most `wait`.
pub async fn wait_line(child: &mut Child, line: &str, wait: Duration) -> Result<()> {
    let out = child.stdout.take().context("stdout already taken")?;
    let mut lines = BufReader::new(out).lines();
    let found = tokio::time::timeout(wait, async {
        while let Some(l) = lines.next_line().await? {
            if l.trim() == line {
                return Ok(true);
            }
        }
        anyhow::Ok(false)
    })
    .await;
    match found {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => bail!("node exited before printing {line:?}"),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("node did not print {line:?} within {wait:?}"),
    }
}
