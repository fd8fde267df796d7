//! The process-level set-up the operator, bot-runner and the simulator share: logs through
//! `tracing`, and one [`CancellationToken`] that SIGTERM (the kubelet) or SIGINT (Ctrl-C)
//! cancels and every long-running task listens to through its `child_token()`.

use musicbot_api::env::LogFormat;
pub use tokio_util::sync::CancellationToken;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Libraries whose detailed levels carry secrets, and the most verbose level each may log at,
/// whatever `RUST_LOG` says. serenity's HTTP client wraps each request in a span whose fields
/// hold the route, and an interaction's webhook route holds the interaction token; its
/// gateway, tungstenite and h2 log whole payloads and frames (interaction tokens, the
/// Authorization header) at debug or trace; reqwest and hyper log URLs.
pub const LOG_CAPS: &[(&str, Level)] = &[
    ("serenity::http", Level::WARN),
    ("serenity::gateway", Level::INFO),
    ("tungstenite", Level::DEBUG),
    ("tokio_tungstenite", Level::DEBUG),
    ("reqwest", Level::INFO),
    ("hyper", Level::INFO),
    ("hyper_util", Level::INFO),
    ("h2", Level::INFO),
];

/// [`LOG_CAPS`] as a filter that lets everything else through.
fn caps() -> Targets {
    LOG_CAPS
        .iter()
        .fold(Targets::new().with_default(LevelFilter::TRACE), |t, (target, level)| t.with_target(*target, *level))
}

/// Installs the process's subscriber: text for people, JSON (one flat object per event) for
/// collectors. A filter that does not parse falls back to `info` rather than silence. The
/// caps apply on top of the filter: a filter naming those targets cannot lift them.
pub fn init_logs(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info")).and(caps());
    // stderr, so stdout stays for what a command prints; colours only for a terminal, as
    // log files and collectors want plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let registry = tracing_subscriber::registry();
    let _ = match format {
        LogFormat::Text => registry.with(tracing_subscriber::Layer::with_filter(layer, filter)).try_init(),
        LogFormat::Json => {
            registry.with(tracing_subscriber::Layer::with_filter(layer.json().flatten_event(true), filter)).try_init()
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_hold_for_submodules_and_leave_the_rest_alone() {
        let caps = caps();
        assert!(!caps.would_enable("serenity::http::client", &Level::INFO), "the request span");
        assert!(!caps.would_enable("tungstenite::protocol", &Level::TRACE), "gateway payloads");
        assert!(!caps.would_enable("reqwest::connect", &Level::DEBUG));
        assert!(caps.would_enable("serenity::http::client", &Level::WARN));
        assert!(caps.would_enable("bot_runner::music", &Level::TRACE));
        assert!(caps.would_enable("serenity::client", &Level::TRACE));
    }
}
