//! Where the test servers' binaries are. `scripts/setup` builds them into a cache by version
//! and prints `MUSICBOT_*` variables naming them; without those we look in the cache.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

const HOW_TO_FIX: &str = "run `scripts/test` once (it installs the test servers), or \
     `eval \"$(scripts/setup)\"` before `cargo test`";

fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MUSICBOT_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    Path::new(&home).join(".cache/musicbot-operator")
}

/// The newest `<prefix><version>/<rel>` in the cache, by version order of the folder names.
fn newest_in_cache(prefix: &str, rel: &str) -> Option<PathBuf> {
    let mut found: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(cache_dir())
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix(prefix)?;
            let key = version.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok()).collect();
            let path = e.path().join(rel);
            path.is_file().then_some((key, path))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

fn locate(what: &str, env: &str, prefix: &str, rel: &str) -> Result<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        let path = PathBuf::from(path);
        if path.exists() {
            return Ok(path);
        }
        bail!("{what}: {env} names {} which does not exist; {HOW_TO_FIX}", path.display());
    }
    newest_in_cache(prefix, rel)
        .with_context(|| format!("{what} not found ({env} unset, nothing in {}); {HOW_TO_FIX}", cache_dir().display()))
}

pub fn etcd() -> Result<PathBuf> {
    locate("etcd", "MUSICBOT_ETCD_BIN", "etcd-v", "etcd")
}

pub fn kube_apiserver() -> Result<PathBuf> {
    kube_bin_dir().map(|d| d.join("kube-apiserver"))
}

pub fn kube_controller_manager() -> Result<PathBuf> {
    kube_bin_dir().map(|d| d.join("kube-controller-manager"))
}

/// kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl.
pub fn kube_bin_dir() -> Result<PathBuf> {
    let apiserver = locate("kube-apiserver", "MUSICBOT_KUBE_BIN_DIR", "kube-v", "kube-apiserver")?;
    // The env var names the directory; the cache lookup names the file.
    Ok(if apiserver.is_dir() { apiserver } else { apiserver.parent().unwrap().to_path_buf() })
}

pub fn helm() -> Result<PathBuf> {
    locate("helm", "MUSICBOT_HELM_BIN", "helm-v", "helm")
}

/// promtool (Prometheus' rule checker), for the chart's alerting rules.
pub fn promtool() -> Result<PathBuf> {
    locate("promtool", "MUSICBOT_PROMTOOL_BIN", "promtool-v", "promtool")
}

pub fn secantusd() -> Result<PathBuf> {
    locate("secantusd-py (SecantusDB)", "MUSICBOT_SECANTUSD_BIN", "venv-secantusdb-", "bin/secantusd-py")
}

/// The Python venv that holds SecantusDB, yt-dlp and kubernetes-validate.
pub fn python_venv() -> Result<PathBuf> {
    secantusd().map(|p| p.parent().and_then(Path::parent).unwrap().to_path_buf())
}

/// yt-dlp from the same venv (`scripts/setup` pins it).
pub fn yt_dlp() -> Result<PathBuf> {
    let p = python_venv()?.join("bin/yt-dlp");
    if !p.exists() {
        anyhow::bail!("{} is missing: run scripts/setup (or scripts/test), which installs it", p.display());
    }
    Ok(p)
}
