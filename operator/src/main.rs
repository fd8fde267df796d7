use anyhow::Context as _;
use backon::{ExponentialBuilder, Retryable as _};
use clap::Parser;
use kube::Client;
use musicbot_api::env::LogFormat;
use musicbot_db::Assigner;
use musicbot_operator::cli::{Action, Cli};
use musicbot_operator::config::Config;
use musicbot_operator::controller::{self, BotDefaults, Context};
use musicbot_operator::http::{self, AppState};
use musicbot_operator::metrics::Metrics;
use musicbot_operator::mongo::Records;
use musicbot_operator::{assign, leader, sync};
use musicbot_runtime::CancellationToken;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Two rustls providers in one process make rustls refuse to pick one: name ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().action() {
        Action::Run(config) => run(*config).await,
        Action::Bots(command) => {
            musicbot_runtime::init_logs(LogFormat::Text, "warn");
            musicbot_operator::cli::bots::run(command).await
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    musicbot_runtime::init_logs(log_format(config.log_format), &config.log_filter);
    let records = open_records(&config).await?;
    let assigner = records.as_ref().map(|r| {
        Assigner::new(&r.db, &r.collections, Duration::from_secs(config.sync.invite_timeout_seconds.max(1)))
            .with_failed_retention(Duration::from_secs(config.sync.failed_invite_retention_seconds))
    });
    if let Some(assigner) = &assigner {
        // Without the unique index two replicas could record one guild twice; the operator
        // still runs (a seed database may hold duplicates that refuse the index), and says so.
        if let Err(e) = assigner.ensure_indexes().await {
            warn!("could not create the indexes of the guild entries (duplicate entries?): {e}");
        }
    }
    let assignments_token = match &config.sync.assignments_token_file {
        Some(path) => Some(http::AssignmentsToken::from_file(path)?),
        None => None,
    };

    // Reads the configuration only; nothing is dialled yet.
    let client = Client::try_default().await.context("reading the Kubernetes client configuration")?;
    let metrics = Arc::new(Metrics::default());
    let shutdown = musicbot_runtime::shutdown_on_signal();
    let state = Arc::new(AppState {
        client: client.clone(),
        metrics: metrics.clone(),
        namespace: config.watch_namespace.clone(),
        started: Instant::now(),
        ready: Default::default(),
    });
    let assignments = http::Assignments::new(
        assigner.clone(),
        assignments_token,
        http::RateLimit { per_second: config.sync.assignments_per_second, burst: config.sync.assignments_burst },
    )
    .with_fleet(config.sync_namespace());
    let server = serve(&config, state.clone(), assignments, &shutdown).await?;

    // /health answers from here on, /ready only once connected: a pod waiting for its API
    // server is alive, and is neither killed by its liveness probe nor crash-looping.
    tokio::select! {
        version = connect(&client) => {
            info!(version = %version?.git_version, "connected to the Kubernetes API server");
        }
        _ = shutdown.cancelled() => return finish(server).await,
    }

    let leader = Leader {
        ctx: controller_context(&config, client, metrics.clone(), records.as_ref()),
        config: &config,
        records,
        assigner,
        metrics,
    };
    if config.leader_election {
        lead_once_elected(leader, &state, &shutdown).await?;
    } else {
        state.ready.store(true, Ordering::Relaxed);
        leader.lead(shutdown.child_token()).await;
    }
    finish(server).await
}

/// MongoDB is optional: without it the operator runs hand-applied MusicBots only.
async fn open_records(config: &Config) -> anyhow::Result<Option<Records>> {
    if config.mongo.configured() {
        return Ok(Some(config.mongo.open().await?));
    }
    if config.mongo.token_key_file.is_some() {
        warn!("--token-key-file is set but --mongodb-uri is not: no sync, the key is unused");
    }
    Ok(None)
}

/// Binds the HTTP port and serves it until `shutdown`.
async fn serve(
    config: &Config,
    state: Arc<AppState>,
    assignments: http::Assignments,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(&config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    info!(addr = %listener.local_addr()?, "serving /health /ready /metrics /bots");
    let routes = http::router_with(state, assignments);
    Ok(tokio::spawn(http::serve_router(listener, routes, shutdown.clone().cancelled_owned())))
}

fn controller_context(
    config: &Config,
    client: Client,
    metrics: Arc<Metrics>,
    records: Option<&Records>,
) -> Arc<Context> {
    let mut ctx = Context::new(
        client,
        bot_defaults(config),
        metrics,
        config.discord_api_url.clone(),
        config.status_interval(),
        Some(config.identity()),
    );
    ctx.concurrency = config.concurrency.max(1);
    if let Some(r) = records {
        ctx = ctx.with_guild_tracking(r.db.clone(), r.collections.clone());
        if let Some(url) = fleet_invites_url(config) {
            ctx = ctx.with_fleet_invites(config.sync_namespace(), url);
        }
    }
    Arc::new(ctx)
}

/// Where bots reach this replica's `/fleet/invite`: its pod IP and HTTP port.
fn fleet_invites_url(config: &Config) -> Option<String> {
    let port = config.http_addr.parse::<std::net::SocketAddr>().ok()?.port();
    let ip = config.pod_ip?;
    Some(format!("http://{}{}", std::net::SocketAddr::new(ip, port), musicbot_api::handoff::INVITE_PATH))
}

/// A standby replica until this one holds the Lease, then the leader until shutdown. A
/// lost Lease ends the process: another replica leads now, and a clean restart does not
/// race it.
async fn lead_once_elected(leader: Leader<'_>, state: &AppState, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let config = leader.config;
    let client = leader.ctx.client.clone();
    let ns =
        config.leader_election_namespace.clone().or_else(Config::own_namespace).unwrap_or_else(|| "default".into());
    let identity = config.identity();
    let campaign =
        || leader::campaign(client.clone(), ns.trim(), &config.leader_election_lease, &identity, config.lease_seconds);
    let mut leadership = tokio::select! {
        leadership = campaign.retry(startup_backoff()).notify(|e, delay| {
            warn!(error = %e, retry_in = ?delay, "could not start leader election; retrying");
        }) => leadership.context("starting leader election")?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    // A standby replica is healthy and ready: it serves /bots and takes over on failure.
    state.ready.store(true, Ordering::Relaxed);
    info!(%identity, "waiting to become the leader");
    tokio::select! {
        acquired = leadership.acquired() => {
            if !acquired { anyhow::bail!("leader election stopped"); }
        }
        _ = shutdown.cancelled() => { leadership.release().await; return Ok(()); }
    }
    info!(%identity, "became the leader");
    let metrics = leader.metrics.clone();
    metrics.is_leader.set(1);
    let leading = shutdown.child_token();
    let lost = leadership.lost();
    let watch_lease = async {
        tokio::select! {
            _ = lost => { leading.cancel(); true }
            _ = leading.cancelled() => false,
        }
    };
    let (lost_lease, ()) = tokio::join!(watch_lease, leader.lead(leading.clone()));
    metrics.is_leader.set(0);
    leadership.release().await;
    if lost_lease {
        error!("lost the leader Lease; exiting");
        std::process::exit(1);
    }
    Ok(())
}

/// What only the leader does: the controller, the MongoDB sync and the sweeper of unused
/// invites.
struct Leader<'a> {
    ctx: Arc<Context>,
    config: &'a Config,
    records: Option<Records>,
    assigner: Option<Assigner>,
    metrics: Arc<Metrics>,
}

impl Leader<'_> {
    /// Runs all three until `shutdown` is cancelled.
    async fn lead(self, shutdown: CancellationToken) {
        let Self { ctx, config, records, assigner, metrics } = self;
        let controller = controller::run(ctx.clone(), config.watch_namespace.clone(), shutdown.child_token());
        let sync = async {
            let Some(records) = records else { return };
            let settings = sync_settings(config, records.collections.clone());
            if config.watch_namespace.as_ref().is_some_and(|w| *w != settings.namespace) {
                warn!(
                    sync_namespace = %settings.namespace,
                    "--sync-namespace is outside --watch-namespace: synced MusicBots will not be reconciled by this operator"
                );
            }
            sync::run(
                ctx.client.clone(),
                records.db,
                records.cipher,
                settings,
                metrics.clone(),
                shutdown.child_token(),
            )
            .await;
        };
        let expiry = async {
            if let Some(assigner) = assigner {
                assign::expire_invites(assigner, metrics.clone(), shutdown.child_token()).await;
            }
        };
        tokio::join!(controller, sync, expiry);
    }
}

fn sync_settings(config: &Config, collections: musicbot_db::Collections) -> sync::Settings {
    sync::Settings {
        namespace: config.sync_namespace(),
        collections,
        state_collection: config.sync.follow.sync_state_collection.clone(),
        mode: config.sync.follow.sync_mode,
        poll_interval: Duration::from_secs(config.sync.follow.sync_poll_interval_seconds.max(1)),
        resync_interval: Duration::from_secs(config.sync.follow.sync_resync_interval_seconds.max(10)),
        instance: Some(config.identity()),
        max_delete_percent: config.sync.follow.sync_max_delete_percent,
        allow_mass_delete: config.sync.follow.sync_allow_mass_delete,
    }
}

/// Retries for what start-up needs from the API server: 0.5 s doubling to 10 s, each delay
/// plus up to its own length of jitter so replicas restarted together do not retry in step.
fn startup_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
}

/// Waits until the API server answers `GET /version`, however long that takes.
async fn connect(client: &Client) -> kube::Result<k8s_openapi::apimachinery::pkg::version::Info> {
    (|| client.apiserver_version())
        .retry(startup_backoff())
        .notify(|e, delay| warn!(error = %e, retry_in = ?delay, "the Kubernetes API server is not answering; retrying"))
        .await
}

async fn finish(server: JoinHandle<std::io::Result<()>>) -> anyhow::Result<()> {
    server.await??;
    info!("stopped");
    Ok(())
}

fn bot_defaults(config: &Config) -> BotDefaults {
    let mut d = BotDefaults {
        image: config.bot_image.clone(),
        image_repositories: config.bot_image_repositories.clone(),
        image_pull_policy: config.bot_image_pull_policy,
        http_port: config.bot_http_port,
        discord_api_url: (config.discord_api_url != "https://discord.com/api/v10")
            .then(|| config.discord_api_url.clone()),
        log_format: LogFormat::Json,
        ca_bundle: config.bot_ca_bundle.clone(),
        media_allow: config.bot_media_allow.clone(),
        ..BotDefaults::default()
    };
    if let Some(resources) = &config.bot_resources {
        d.resources = resources.clone();
    }
    d
}

fn log_format(format: musicbot_operator::config::LogFormat) -> LogFormat {
    match format {
        musicbot_operator::config::LogFormat::Text => LogFormat::Text,
        musicbot_operator::config::LogFormat::Json => LogFormat::Json,
    }
}
