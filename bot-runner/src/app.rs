//! The three ways to run: one bot (`run`), several (`fleet`), and the command scripts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use musicbot_db::connect::load_key;
use musicbot_db::follow::{self, Mirror, ResumeStore};
use musicbot_db::{Collections, TokenCipher};
use musicbot_runtime::CancellationToken;
use tracing::{info, warn};

use crate::bot::{Bot, BotSpec, Runtime};
use crate::cli::{CommandsArgs, CommandsCommand, CommonArgs, FleetArgs, RunArgs};
use crate::fleet::records::FleetRecords;
use crate::fleet::{Fleet, Seat};
use crate::handoff::FleetLink;
use crate::metrics::Metrics;
use crate::music::services::PageBases;
use crate::music::{MusicSettings, Sources};
use crate::token;
use crate::{discord, http, registration};
use musicbot_api::Token;

async fn runtime(common: &CommonArgs) -> Result<Runtime> {
    let mongo = common.records.open("bot-runner").await?.map(|db| (db, common.records.collections()));
    Ok(Runtime {
        api_url: common.discord_api_url.clone(),
        music: MusicSettings {
            default_volume: common.music.default_volume,
            max_queue_length: common.music.max_queue_length,
            idle_leave: common.music.idle_leave(),
        },
        sources: Sources::new(
            &common.ytdlp,
            common.media.policy(),
            common.media.limits(),
            common.media.search.clone(),
            PageBases::parse(&common.media.link_page_bases).map_err(anyhow::Error::msg)?,
        ),
        session: common.session.clone(),
        metrics: Arc::new(Metrics::default()),
        mongo,
        identify_reserve: common.identify_reserve,
        menu_expiry: Duration::from_secs(common.menu_expiry_seconds.max(1)),
        fleet_link: match &common.fleet_key_file {
            // The operator mounts the key as optional: a fleet without one plays alone.
            Some(path) if !path.exists() => {
                warn!(path = %path.display(), "no fleet key: this bot neither hands off nor takes requests");
                None
            }
            Some(path) => Some(Arc::new(FleetLink::from_file(path)?)),
            None => None,
        },
    })
}

/// One bot, as in a pod: runs until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> Result<()> {
    let token = token::load(args.token_file.as_deref())?;
    let client_id = match &args.client_id {
        Some(id) => Some(id.parse::<u64>().with_context(|| format!("--client-id {id:?} is not a Discord id"))?),
        None => None,
    };
    let listener = listen(&args.common).await?;
    let rt = runtime(&args.common).await?;
    let name = args.bot_name.clone().unwrap_or_else(|| "music-bot".into());
    let spec = BotSpec {
        name,
        client_id,
        guild_ids: args.guild_ids.clone(),
        shard: (args.shard_id, args.shard_count.max(1)),
        presence: args.presence.clone(),
    };
    let bot = Bot::start(spec, token, &rt).await?;
    let fleet = Fleet::new(vec![Seat::fixed(bot.clone())], false, stuck_after(&args.common));
    serve(listener, fleet, &rt, &args.common, Exit::WhenTheBotStops(bot), None).await
}

/// Several bots in one process: one per token file, and every active record in MongoDB,
/// followed live (records added, deactivated, deleted or given a new token change the
/// running bots without a restart).
pub async fn fleet(args: FleetArgs) -> Result<()> {
    let listener = listen(&args.common).await?;
    let rt = runtime(&args.common).await?;
    let cipher = args.token_key_file.as_deref().map(load_key).transpose()?.map(Arc::new);
    let template = BotSpec {
        name: String::new(),
        client_id: None,
        guild_ids: args.guild_ids.clone(),
        shard: (0, 1),
        presence: args.presence.clone(),
    };
    let mut seats = Vec::new();
    let mut from_files = HashSet::new();
    for file in &args.token_files {
        let token = token::from_file(file)?;
        let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "bot".into());
        from_files.insert(token.client_id());
        let spec = BotSpec { name, client_id: Some(token.client_id()), ..template.clone() };
        seats.push(Seat::spawn(spec, token, rt.clone()));
    }
    if rt.mongo.is_none() && seats.is_empty() {
        bail!("no bots to run: give --mongodb-uri (every active record runs) or --token-file");
    }
    let fleet = Fleet::new(seats, rt.mongo.is_some(), stuck_after(&args.common));
    let following = rt.mongo.clone().map(|(db, cols)| {
        let records =
            FleetRecords::new(&db, &cols, cipher, fleet.clone(), rt.clone(), template, from_files, args.follow.guard());
        let resume = ResumeStore::new(&db, &args.follow.sync_state_collection, &cols.bots, RESUME_SCOPE);
        Following::start(records, resume, args.follow.settings())
    });
    info!(token_files = args.token_files.len(), mongodb = following.is_some(), "fleet started");
    serve(listener, fleet, &rt, &args.common, Exit::OnSignalOnly, following).await
}

/// The resume token's key beside the operator's (which use their namespace).
const RESUME_SCOPE: &str = "fleet";

fn stuck_after(common: &CommonArgs) -> Duration {
    Duration::from_secs(common.gateway_stuck_seconds)
}

/// The task following MongoDB, and how to stop it.
struct Following {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Following {
    fn start(mut records: FleetRecords, mut resume: ResumeStore, settings: follow::Settings) -> Self {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move { follow::run(&mut records, &mut resume, &settings, &token).await });
        Self { stop, task }
    }

    /// Stops following (no bot is started or stopped after this), within a few seconds.
    async fn stop(self) {
        self.stop.cancel();
        if tokio::time::timeout(Duration::from_secs(10), self.task).await.is_err() {
            warn!("following MongoDB did not stop in time");
        }
    }
}

/// The bots the fleet would run now: active, well-formed records with usable tokens, the
/// oldest of each client id (the record rules of `follow`); the rest are skipped with a
/// warning.
async fn active_bots(
    db: &mongodb::Database,
    cols: &Collections,
    cipher: Option<&TokenCipher>,
) -> Result<Vec<(musicbot_db::BotRecord, Token)>> {
    let mirror = Mirror::read(&db.collection(&cols.bots), cipher).await.context("reading the bots from MongoDB")?;
    for (key, client, problem) in mirror.problems() {
        warn!(record = %key, client_id = client.unwrap_or("-"), "skipping a bot record: {problem}");
    }
    Ok(mirror
        .winners()
        .filter(|(_, good)| good.record.is_active)
        .map(|(_, good)| (good.record.clone(), good.token.clone()))
        .collect())
}

/// When a process serving bots ends besides SIGTERM/Ctrl-C.
enum Exit {
    /// One bot per process (`run`): a bot whose Discord client gave up (a refused token)
    /// exits non-zero, so its pod shows the crash and why instead of idling unready.
    WhenTheBotStops(Arc<Bot>),
    /// Fleet mode: one bot's failure must not take the others down; `/status` reports it.
    OnSignalOnly,
}

/// The HTTP port, bound before anything slow (MongoDB, starting the bots): a probe that
/// connects meanwhile waits in the backlog for its answer instead of being refused, which
/// the kubelet would count as a failure and report as a Warning.
async fn listen(common: &CommonArgs) -> Result<tokio::net::TcpListener> {
    let addr = format!("{}:{}", common.http_host, common.http_port);
    tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))
}

async fn serve(
    listener: tokio::net::TcpListener,
    fleet: Arc<Fleet>,
    rt: &Runtime,
    common: &CommonArgs,
    exit: Exit,
    following: Option<Following>,
) -> Result<()> {
    info!(addr = %listener.local_addr()?, "serving /health /ready /metrics /status /bots");
    let shutdown = musicbot_runtime::shutdown_on_signal();
    // Not the signal's token: /health and /status answer until the bots have stopped.
    let stop_serving = CancellationToken::new();
    let server =
        tokio::spawn(http::serve(listener, http::App::new(fleet.clone(), rt), stop_serving.clone().cancelled_owned()));
    let gave_up = async {
        match &exit {
            Exit::WhenTheBotStops(bot) => format!("{}: {}", bot.name, bot.stopped().await),
            Exit::OnSignalOnly => std::future::pending().await,
        }
    };
    let failure = tokio::select! {
        () = shutdown.cancelled() => None,
        why = gave_up => Some(why),
    };
    if let Some(following) = following {
        following.stop().await;
    }
    fleet.shutdown(Duration::from_secs(common.shutdown_grace_seconds)).await;
    stop_serving.cancel();
    let _ = server.await;
    match failure {
        None => {
            info!("bye");
            Ok(())
        }
        Some(why) => anyhow::bail!("{why}"),
    }
}

/// `commands deploy|clear`: for one bot (a token file, $DISCORD_TOKEN, or --client-id in
/// MongoDB), or for every active bot in MongoDB.
pub async fn commands(cmd: CommandsCommand) -> Result<()> {
    let (deploy, args) = match cmd {
        CommandsCommand::Deploy(a) => (true, a),
        CommandsCommand::Clear(a) => (false, a),
    };
    let targets = command_targets(&args).await?;
    let mut failed = 0;
    for (name, client_id, token) in targets {
        let http = discord::http(&token, args.discord_api_url.as_deref(), client_id);
        let result = if deploy {
            let guilds: Vec<u64> = args.guild.into_iter().collect();
            registration::deploy(&http, &guilds).await
        } else {
            registration::clear(&http, args.guild).await
        };
        match result {
            Ok(outcome) => println!("{name} ({client_id}): {}", describe(deploy, &outcome)),
            Err(e) => {
                failed += 1;
                eprintln!("{name} ({client_id}): failed: {e}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} bot(s) failed");
    }
    Ok(())
}

fn describe(deploy: bool, o: &registration::Outcome) -> String {
    match (deploy, o) {
        (_, registration::Outcome::Unchanged) => "already up to date".into(),
        (true, registration::Outcome::Overwritten(n)) => format!("{n} commands deployed"),
        (false, registration::Outcome::Overwritten(_)) => "commands cleared".into(),
    }
}

async fn command_targets(args: &CommandsArgs) -> Result<Vec<(String, u64, Token)>> {
    if args.token_file.is_some() || (args.records.uri().is_none() && std::env::var_os("DISCORD_TOKEN").is_some()) {
        let token = token::load(args.token_file.as_deref())?;
        let id = match &args.client_id {
            Some(id) => id.parse().with_context(|| format!("--client-id {id:?} is not a Discord id"))?,
            None => token.client_id(),
        };
        return Ok(vec![("bot".into(), id, token)]);
    }
    let Some(db) = args.records.open("bot-runner").await? else {
        bail!("no bots: give --token-file (or DISCORD_TOKEN) for one bot, or --mongodb-uri for the fleet");
    };
    let cipher = args.token_key_file.as_deref().map(load_key).transpose()?;
    let mut out = Vec::new();
    for (record, token) in active_bots(&db, &args.records.collections(), cipher.as_ref()).await? {
        if args.client_id.as_ref().is_some_and(|c| *c != record.client_id) {
            continue;
        }
        let Ok(id) = record.client_id.parse() else { continue };
        out.push((record.name, id, token));
    }
    if out.is_empty() {
        bail!("no matching active bot in MongoDB");
    }
    Ok(out)
}
