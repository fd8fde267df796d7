//! A server process that cannot outlive its test binary.
//!
//! Test binaries share servers through statics, which are never dropped, and a panicking
//! test may abort. So each server runs under a tiny `sh` guard that holds the read end of
//! a pipe from us: when we close it (drop) or our process dies for any reason, the guard
//! sees EOF, stops the server and removes its data directory (or runs `GUARD_AFTER`, a
//! teardown command given in the environment).

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

const GUARD: &str = r#"
"$@" >>"$GUARD_LOG" 2>&1 &
pid=$!
echo "$pid"
while read -r _; do :; done
kill -TERM "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
if [ -n "$GUARD_CLEANUP" ]; then rm -rf "$GUARD_CLEANUP"; fi
if [ -n "$GUARD_AFTER" ]; then $GUARD_AFTER >>"$GUARD_LOG" 2>&1; fi
"#;

pub struct Guarded {
    name: String,
    guard: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    log: PathBuf,
}

impl Guarded {
    /// Starts `program args` with its output appended to `log`. `cleanup`, if given, is
    /// removed once the server has stopped.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        cwd: &Path,
        log: &Path,
        cleanup: Option<&Path>,
        envs: &[(&str, &str)],
    ) -> Result<Self> {
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg("guard")
            .arg(program)
            .args(args)
            .current_dir(cwd)
            .env("GUARD_LOG", log)
            .env("GUARD_CLEANUP", cleanup.map(|p| p.as_os_str()).unwrap_or_default())
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let mut line = String::new();
        BufReader::new(guard.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .with_context(|| format!("reading the pid of {name}"))?;
        let pid = line.trim().parse().with_context(|| format!("{name}: guard printed {line:?}"))?;
        Ok(Self { name: name.to_string(), stdin: guard.stdin.take(), guard, pid, log: log.to_path_buf() })
    }

    pub fn is_alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists() && !is_zombie(self.pid)
    }

    /// The last lines the server printed, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!("--- last lines of {} ({}) ---\n{}", self.name, self.log.display(), lines[from..].join("\n"))
    }

    /// Stops the server and waits until it has exited (and its cleanup ran).
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.guard.wait();
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}
