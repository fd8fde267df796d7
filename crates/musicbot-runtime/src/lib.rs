//! The process-level set-up the operator, bot-runner and the simulator share: logs through
//! `tracing`, and one [`CancellationToken`] that SIGTERM (the kubelet) or SIGINT (Ctrl-C)
//! cancels and every long-running task listens to through its `child_token()`.

use musicbot_api::env::LogFormat;
pub use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Installs the process's subscriber: text for people, JSON (one flat object per event) for
/// collectors. A filter that does not parse falls back to `info` rather than silence.
pub fn init_logs(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // stderr, so stdout stays for what a command prints; colours only for a terminal, as
    // log files and collectors want plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A token cancelled at the first SIGTERM or SIGINT; call it inside the runtime, early.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let cancel = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match term {
                Ok(mut s) => {
                    s.recv().await;
                }
                // No SIGTERM handler: Ctrl-C still stops the process.
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received"),
            _ = term => tracing::info!("SIGTERM received"),
        }
        cancel.cancel();
    });
    token
}
