//! yt-dlp with nothing to steal. songbird runs `bot-runner ytdlp-sandbox -- <yt-dlp> …`
//! instead of yt-dlp itself; this process then
//! - clears the environment but for what yt-dlp needs (no `MUSICBOT_*`, no MongoDB URI,
//!   no token-file path);
//! - enters a Landlock domain whose filesystem view is the system's directories, yt-dlp's
//!   own installation, `/tmp` and `$HOME`, and nothing else: not the token's directory
//!   (`/var/run/secrets/musicbot`), not `/run`, not `/var`;
//! - kills yt-dlp when it runs past its time, and caps what it may print.
//!
//! yt-dlp always gets `--ignore-config`, so no configuration file can add options.
//! Landlock needs Linux 5.13 or later; on an older kernel the environment is still cleared
//! and the time and output limits still hold, and a warning says what is missing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use landlock::{ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, path_beneath_rules};

/// The sub-command songbird runs.
pub const SUBCOMMAND: &str = "ytdlp-sandbox";

/// Environment yt-dlp keeps; everything else is cleared.
const KEPT_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "TMPDIR"];

/// Directories yt-dlp may read and execute beneath (besides its own installation).
const SYSTEM_DIRS: &[&str] = &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys"];

/// Most bytes of yt-dlp's answer passed on: its JSON for one track is a few hundred KB.
const MAX_OUTPUT: u64 = 8 << 20;

#[derive(Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Seconds before yt-dlp is killed.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// yt-dlp, then its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The program and leading arguments songbird is given in place of yt-dlp.
/// `proxy` is where yt-dlp's own requests go (`crate::music::proxy`), so the page it
/// extracts from is held to the media policy too.
pub fn songbird_args(ytdlp: &str, timeout: Duration, proxy: &str) -> Vec<String> {
    let timeout = timeout.as_secs().max(1).to_string();
    [SUBCOMMAND, "--timeout", &timeout, "--", ytdlp, "--ignore-config", "--proxy", proxy]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Runs yt-dlp confined; the exit code to leave with.
pub fn run(args: &SandboxArgs) -> i32 {
    let (program, rest) = args.command.split_first().expect("clap requires the command");
    if let Err(why) = confine(Path::new(program)) {
        eprintln!("WARNING: yt-dlp runs without a filesystem sandbox: {why}");
    }
    let mut child = match Command::new(program)
        .args(rest)
        .env_clear()
        .envs(KEPT_ENV.iter().filter_map(|k| std::env::var_os(k).map(|v| (*k, v))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ERROR: cannot run {program}: {e}");
            return 127;
        }
    };
    let mut stdout = child.stdout.take().expect("piped");
    let copier = std::thread::spawn(move || {
        let mut limited = (&mut stdout).take(MAX_OUTPUT);
        let mut out = std::io::stdout().lock();
        let copied = std::io::copy(&mut limited, &mut out).unwrap_or(0);
        let _ = out.flush();
        // Whatever is beyond the cap is drained, so yt-dlp is not blocked writing it.
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        copied >= MAX_OUTPUT
    });
    let status = wait_or_kill(&mut child, Duration::from_secs(args.timeout));
    let too_much = copier.join().unwrap_or(false);
    match status {
        Some(s) if too_much => {
            eprintln!("ERROR: yt-dlp printed more than {} MB", MAX_OUTPUT >> 20);
            s.code().filter(|c| *c != 0).unwrap_or(1)
        }
        Some(s) => s.code().unwrap_or(1),
        None => {
            eprintln!("ERROR: yt-dlp took longer than {} s and was stopped", args.timeout);
            124
        }
    }
}

/// The child's status, or None once it had to be killed at `timeout`.
fn wait_or_kill(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Enters the Landlock domain described at the top of this file.
fn confine(program: &Path) -> Result<(), String> {
    let abi = ABI::V2;
    let mut readable: Vec<PathBuf> = SYSTEM_DIRS.iter().map(PathBuf::from).collect();
    readable.extend(installation_of(program));
    let mut writable: Vec<PathBuf> = vec!["/tmp".into(), "/dev".into()];
    writable.extend(std::env::var_os("HOME").map(PathBuf::from));
    writable.extend(std::env::var_os("TMPDIR").map(PathBuf::from));
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(&readable, AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(&writable, AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    match status.ruleset {
        RulesetStatus::NotEnforced => Err("this kernel does not support Landlock".into()),
        _ => Ok(()),
    }
}

/// Where yt-dlp is installed: the prefix of its program (a virtualenv's root, say) and,
/// for a virtualenv, the Python it was made from.
fn installation_of(program: &Path) -> Vec<PathBuf> {
    let found = if program.components().count() > 1 {
        Some(program.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(program)).find(|c| c.is_file()))
    };
    let Some(real) = found.and_then(|p| p.canonicalize().ok()) else { return Vec::new() };
    let Some(prefix) = real.parent().and_then(Path::parent).map(Path::to_path_buf) else { return Vec::new() };
    let mut dirs = vec![prefix.clone()];
    // A virtualenv names its base Python in pyvenv.cfg (`home = <base>/bin`), and its
    // `bin/python` links there.
    if let Ok(cfg) = std::fs::read_to_string(prefix.join("pyvenv.cfg")) {
        let home =
            cfg.lines().find_map(|l| l.split_once('=').filter(|(k, _)| k.trim() == "home").map(|(_, v)| v.trim()));
        if let Some(base) = home.map(Path::new).and_then(Path::parent).and_then(|b| b.canonicalize().ok()) {
            dirs.push(base);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn songbird_runs_yt_dlp_through_the_sandbox_with_its_config_ignored() {
        let args = songbird_args("/opt/yt-dlp/bin/yt-dlp", Duration::from_secs(30), "http://127.0.0.1:4000");
        assert_eq!(
            args,
            [
                "ytdlp-sandbox",
                "--timeout",
                "30",
                "--",
                "/opt/yt-dlp/bin/yt-dlp",
                "--ignore-config",
                "--proxy",
                "http://127.0.0.1:4000"
            ]
        );
    }

    #[test]
    fn a_virtualenvs_base_python_is_part_of_the_installation() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("python/bin");
        let venv = dir.path().join("venv");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("bin/yt-dlp"), "#!/bin/sh\n").unwrap();
        std::fs::write(venv.join("pyvenv.cfg"), format!("home = {}\nversion = 3.11\n", base.display())).unwrap();
        let dirs = installation_of(&venv.join("bin/yt-dlp"));
        let real = |p: &Path| p.canonicalize().unwrap();
        assert_eq!(dirs, [real(&venv), real(&dir.path().join("python"))]);
    }
}
