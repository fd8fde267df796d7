use anyhow::Context as _;
use clap::Parser;
use kube::Client;
use musicbot_operator::config::Config;
use musicbot_operator::controller::{self, BotDefaults, Context};
use musicbot_operator::http::{self, AppState};
use musicbot_operator::metrics::Metrics;
use musicbot_operator::{leader, telemetry};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::watch;
use tracing::{error, info};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format, &config.log_filter);
    // Two rustls providers in one process make rustls refuse to pick one: name ours.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let client = Client::try_default().await.context("connecting to Kubernetes")?;
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown signal received");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let state = Arc::new(AppState {
        client: client.clone(),
        metrics: metrics.clone(),
        namespace: config.watch_namespace.clone(),
        started: Instant::now(),
        ready: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(&config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    info!(addr = %listener.local_addr()?, "serving /health /ready /metrics /bots");
    let server = tokio::spawn(http::serve_on(listener, state.clone(), stopped()));

    let mut ctx = Context::new(
        client.clone(),
        bot_defaults(&config)?,
        metrics.clone(),
        config.discord_api_url.clone(),
        config.status_interval(),
        Some(config.identity()),
    );
    ctx.concurrency = config.concurrency.max(1);
    let ctx = Arc::new(ctx);

    if config.leader_election {
        let ns = config
            .leader_election_namespace
            .clone()
            .or_else(|| std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok())
            .unwrap_or_else(|| "default".into());
        let identity = config.identity();
        let mut leadership =
            leader::campaign(client, ns.trim(), &config.leader_election_lease, &identity, config.lease_seconds)
                .await
                .context("starting leader election")?;
        // A standby replica is healthy and ready: it serves /bots and takes over on failure.
        state.ready.store(true, Ordering::Relaxed);
        info!(%identity, "waiting to become the leader");
        tokio::select! {
            acquired = leadership.acquired() => {
                if !acquired { anyhow::bail!("leader election stopped"); }
            }
            _ = stopped() => { leadership.release().await; return finish(server).await; }
        }
        info!(%identity, "became the leader");
        metrics.is_leader.set(1);
        let lost = leadership.lost();
        let stop = stopped();
        let lost_lease = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = lost_lease.clone();
        controller::run(ctx, config.watch_namespace.clone(), async move {
            tokio::select! {
                _ = lost => flag.store(true, Ordering::Relaxed),
                _ = stop => {}
            }
        })
        .await;
        metrics.is_leader.set(0);
        leadership.release().await;
        if lost_lease.load(Ordering::Relaxed) {
            // Another replica leads now; restart clean rather than race it.
            error!("lost the leader Lease; exiting");
            std::process::exit(1);
        }
    } else {
        state.ready.store(true, Ordering::Relaxed);
        controller::run(ctx, config.watch_namespace.clone(), stopped()).await;
    }
    finish(server).await
}

async fn finish(server: tokio::task::JoinHandle<std::io::Result<()>>) -> anyhow::Result<()> {
    server.await??;
    info!("stopped");
    Ok(())
}

fn bot_defaults(config: &Config) -> anyhow::Result<BotDefaults> {
    let mut d = BotDefaults {
        image: config.bot_image.clone(),
        image_pull_policy: config.bot_image_pull_policy.clone(),
        http_port: config.bot_http_port,
        discord_api_url: (config.discord_api_url != "https://discord.com/api/v10")
            .then(|| config.discord_api_url.clone()),
        log_format_json: true,
        ..BotDefaults::default()
    };
    if let Some(json) = &config.bot_resources {
        d.resources = serde_json::from_str(json).context("--bot-resources is not a ResourceRequirements JSON")?;
    }
    if let Some(s) = &config.bot_mongodb_uri_secret {
        let (name, key) = s.split_once('/').context("--bot-mongodb-uri-secret must be NAME/KEY")?;
        d.mongodb_uri_secret = Some((name.into(), key.into()));
    }
    Ok(d)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
