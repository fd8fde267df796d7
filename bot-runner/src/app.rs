//! The three ways to run: one bot (`run`), several (`fleet`), and the command scripts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use musicbot_db::cipher::{Stored, reveal};
use musicbot_db::connect::load_key;
use musicbot_db::{Collections, TokenCipher};
use musicbot_runtime::CancellationToken;
use tracing::{info, warn};

use crate::bot::{Bot, BotSpec, Runtime};
use crate::cli::{CommandsArgs, CommandsCommand, CommonArgs, FleetArgs, RunArgs};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
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
        sources: Sources::new(&common.ytdlp, common.media.policy(), common.media.limits()),
        metrics: Arc::new(Metrics::default()),
        mongo,
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
    serve(listener, vec![bot], &rt, &args.common, Exit::WhenTheBotStops).await
}

/// Several bots in one process: every active bot in MongoDB and/or one per token file.
pub async fn fleet(args: FleetArgs) -> Result<()> {
    let listener = listen(&args.common).await?;
    let rt = runtime(&args.common).await?;
    let cipher = args.token_key_file.as_deref().map(load_key).transpose()?;
    let mut wanted: Vec<(BotSpec, Token)> = Vec::new();
    let spec = |name: String, client_id: Option<u64>| BotSpec {
        name,
        client_id,
        guild_ids: args.guild_ids.clone(),
        shard: (0, 1),
        presence: args.presence.clone(),
    };
    if let Some((db, cols)) = &rt.mongo {
        for (record, token) in active_bots(db, cols, cipher.as_ref()).await? {
            wanted.push((spec(record.name.clone(), record.client_id.parse().ok()), token));
        }
    }
    for file in &args.token_files {
        let token = token::from_file(file)?;
        let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "bot".into());
        wanted.push((spec(name, Some(token.client_id())), token));
    }
    if wanted.is_empty() {
        bail!("no bots to run: no active bot in MongoDB and no --token-file");
    }
    let mut bots = Vec::new();
    for (spec, token) in wanted {
        let name = spec.name.clone();
        match Bot::start(spec, token, &rt).await {
            Ok(b) => bots.push(b),
            // One bad bot must not keep the others from running.
            Err(e) => warn!(bot = %name, error = %format!("{e:#}"), "bot not started"),
        }
    }
    info!(bots = bots.len(), "fleet started");
    serve(listener, bots, &rt, &args.common, Exit::OnSignalOnly).await
}

/// Active, well-formed bots with usable tokens; the rest are skipped with a warning.
async fn active_bots(
    db: &mongodb::Database,
    cols: &Collections,
    cipher: Option<&TokenCipher>,
) -> Result<Vec<(musicbot_db::BotRecord, Token)>> {
    let mut out = Vec::new();
    for (id, parsed) in musicbot_db::guilds::all_bots(db, cols).await.context("reading the bots from MongoDB")? {
        let record = match parsed {
            Ok(r) if r.is_active => r,
            Ok(_) => continue,
            Err(e) => {
                warn!(record = ?id, error = %e, "skipping a malformed bot record");
                continue;
            }
        };
        match reveal(cipher, &record.client_id, &record.token) {
            Ok((token, stored)) => {
                if stored == Stored::Plaintext {
                    warn!(bot = %record.name, "this bot's token is stored in plaintext; encrypt it with `musicbot-operator bots encrypt`");
                }
                // The sync's rule, so fleet mode runs exactly the records the operator would.
                match Token::parse_for(&token, &record.client_id) {
                    Ok(t) => out.push((record, t)),
                    Err(e) => warn!(bot = %record.name, error = %e, "skipping a bot with an unusable token"),
                }
            }
            Err(e) => warn!(bot = %record.name, error = %e, "skipping a bot whose token cannot be read"),
        }
    }
    Ok(out)
}

/// When a process serving bots ends besides SIGTERM/Ctrl-C.
enum Exit {
    /// One bot per process (`run`): a bot whose Discord client gave up (a refused token)
    /// exits non-zero, so its pod shows the crash and why instead of idling unready.
    WhenTheBotStops,
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
    bots: Vec<Arc<Bot>>,
    rt: &Runtime,
    common: &CommonArgs,
    exit: Exit,
) -> Result<()> {
    let first = bots.first().cloned();
    let fleet = Fleet::new(bots, Duration::from_secs(common.gateway_stuck_seconds));
    info!(addr = %listener.local_addr()?, "serving /health /ready /metrics /status /bots");
    let shutdown = musicbot_runtime::shutdown_on_signal();
    // Not the signal's token: /health and /status answer until the bots have stopped.
    let stop_serving = CancellationToken::new();
    let server =
        tokio::spawn(http::serve(listener, fleet.clone(), rt.metrics.clone(), stop_serving.clone().cancelled_owned()));
    let gave_up = async {
        match (&exit, first) {
            (Exit::WhenTheBotStops, Some(bot)) => format!("{}: {}", bot.name, bot.stopped().await),
            _ => std::future::pending().await,
        }
    };
    let failure = tokio::select! {
        () = shutdown.cancelled() => None,
        why = gave_up => Some(why),
    };
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
