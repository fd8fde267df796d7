//! The `discord-sim` binary as a developer runs it: it stops promptly on SIGTERM and on
//! SIGINT (Ctrl-C) even while its stdin stays open, and removes its temporary directory.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the simulator with stdin held open (as a terminal would), and returns it once it
/// printed its URLs, with the temporary directory it named and everything it printed.
async fn start(extra: &[&str]) -> (Child, PathBuf, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_discord-sim"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("discord-sim starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut dir = None;
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // The CA file lives in the simulator's temporary directory.
            if let Some(rest) = line.trim().strip_prefix("CA file (SSL_CERT_FILE):") {
                dir = PathBuf::from(rest.trim()).parent().map(PathBuf::from);
            }
            let done = line.contains("Ctrl-C");
            seen.push(line);
            if done {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("the URLs are printed within 30 s");
    // Keep reading so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let dir = dir.unwrap_or_else(|| panic!("no temporary directory printed:\n{}", seen.join("\n")));
    assert!(dir.is_dir(), "{} exists while running", dir.display());
    (child, dir, seen)
}

async fn stops_on(signal: &str) {
    let (mut child, dir, _) = start(&[]).await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .unwrap_or_else(|_| panic!("discord-sim still running 5 s after SIG{signal} (stdin open)"))
        .unwrap();
    assert!(status.success(), "exit after SIG{signal}: {status}");
    assert!(!dir.exists(), "{} left behind after SIG{signal}", dir.display());
    // Held until here: stdin open all along, as in a terminal.
    drop(child.stdin.take());
}

#[tokio::test]
async fn sigterm_stops_it_and_removes_its_temporary_directory() {
    stops_on("TERM").await;
}

#[tokio::test]
async fn sigint_stops_it_and_removes_its_temporary_directory() {
    stops_on("INT").await;
}

#[tokio::test]
async fn bind_names_the_address_in_every_url_it_prints() {
    let (mut child, _, seen) = start(&["--bind", "127.0.0.2"]).await;
    let urls: Vec<&String> = seen.iter().filter(|l| l.contains("://")).collect();
    assert!(urls.len() >= 4, "URLs printed: {seen:#?}");
    assert!(urls.iter().all(|l| l.contains("127.0.0.2") && !l.contains("127.0.0.1")), "{seen:#?}");
    let voice = seen.iter().find(|l| l.contains("voice gateway")).unwrap();
    assert!(voice.contains("127.0.0.2:"), "{voice}");
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
