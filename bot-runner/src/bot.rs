//! One bot: a serenity client with songbird and poise, its music service, its guild
//! tracking, and what it reports. `Bot::start` returns once the client is running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serenity::all::{Client, ClientBuilder, ShardManager};
use serenity::cache::Settings as CacheSettings;
use serenity::gateway::ConnectionStage;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, info, warn};

use crate::cli::{PresenceArgs, SessionArgs};
use crate::guilds::{GuildIndex, VoiceHook};
use crate::handoff::FleetLink;
use crate::metrics::{BotMetrics, Metrics, Snapshot};
use crate::music::{MusicService, MusicSettings, SessionStore, Sources};
use crate::tracking::Tracking;
use crate::{commands, discord, identify};
use musicbot_api::{BotReport, Token};
use musicbot_runtime::CancellationToken;

/// What a process needs to know to run a bot, besides its token.
#[derive(Clone, Debug)]
pub struct BotSpec {
    pub name: String,
    pub client_id: Option<u64>,
    pub guild_ids: Vec<u64>,
    /// `(shard id, shard count)`.
    pub shard: (u32, u32),
    pub presence: PresenceArgs,
}

/// Settings every bot of a process shares.
#[derive(Clone)]
pub struct Runtime {
    pub api_url: Option<String>,
    pub music: MusicSettings,
    pub sources: Sources,
    pub session: SessionArgs,
    pub metrics: Arc<Metrics>,
    pub mongo: Option<(mongodb::Database, musicbot_db::Collections)>,
    /// Identifies kept back: at this many left the bot waits for Discord's reset.
    pub identify_reserve: u64,
    /// The fleet this process's bots hand requests to, with `--fleet-key-file`.
    pub fleet_link: Option<Arc<FleetLink>>,
    /// How long a `/search` menu or a playlist offer stays open.
    pub menu_expiry: Duration,
}

pub struct Bot {
    pub name: String,
    /// From `--client-id`, else the token's own.
    client_id: u64,
    pub guild_ids: Vec<u64>,
    pub shard: (u32, u32),
    pub music: Arc<MusicService>,
    pub metrics: Arc<BotMetrics>,
    pub guilds: Arc<GuildIndex>,
    pub commands_deployed: AtomicBool,
    /// A READY was handled, so the index lists every guild of this shard (unavailable ones
    /// too): before it, an empty list would read to the operator as every guild left.
    pub guilds_known: AtomicBool,
    pub tracking: Mutex<Option<Tracking>>,
    shard_manager: Arc<ShardManager>,
    /// Since when the gateway has not been connected (`None`: it is).
    down_since: Mutex<Option<Instant>>,
    client: Mutex<Option<JoinHandle<()>>>,
    /// Why the Discord client gave up (a refused token, disallowed intents): serenity
    /// retries everything else itself, so this only changes once.
    stopped: tokio::sync::watch::Sender<Option<String>>,
    pub identify_reserve: u64,
    /// The identify budget as last read, and whether the bot is waiting for its reset.
    identify: Mutex<identify::Seen>,
    /// Cancelled by `shutdown`: a bot waiting for identifies stops waiting.
    stopping: CancellationToken,
    pub fleet_link: Option<Arc<FleetLink>>,
    /// Menus and offers waiting for a pick.
    pub picks: crate::commands::picks::Picks,
    pub pick_expiry: Duration,
}

impl Bot {
    #[tracing::instrument(name = "bot", skip_all, fields(bot = %spec.name))]
    pub async fn start(spec: BotSpec, token: Token, rt: &Runtime) -> Result<Arc<Bot>> {
        let client_id = spec.client_id.unwrap_or_else(|| token.client_id());
        // poise hands the bot to every command, but the bot needs the client built first.
        let cell: Arc<OnceLock<Arc<Bot>>> = Arc::new(OnceLock::new());
        // Decrypted, not decoded: the watchdog reads the voice server's RTCP reports, and
        // what listeners say is never needed.
        let songbird = songbird::Songbird::serenity_from_config(
            songbird::Config::default().decode_mode(songbird::driver::DecodeMode::Decrypt),
        );
        let guilds = Arc::new(GuildIndex::default());
        let hook = VoiceHook { songbird: songbird.clone(), guilds: guilds.clone() };
        let client = build_client(&spec, &token, client_id, rt, hook, cell.clone()).await?;
        let metrics = rt.metrics.bot(&client_id.to_string());
        let session = rt
            .session
            .session_dir
            .as_deref()
            .map(|dir| SessionStore::new(dir, client_id, Duration::from_secs(rt.session.session_max_age_seconds)));
        let saved = session.as_ref().and_then(SessionStore::load);
        let music = MusicService::new(
            songbird,
            client.http.clone(),
            guilds.clone(),
            rt.sources.clone(),
            rt.music.clone(),
            metrics.clone(),
            session,
        );
        if let Some(saved) = saved {
            info!(guilds = saved.guilds.len(), "a saved session will be played on as its guilds come back");
            music.expect_restore(saved);
        }
        let bot = Arc::new(Bot {
            name: spec.name.clone(),
            client_id,
            guild_ids: spec.guild_ids.clone(),
            shard: spec.shard,
            music: music.clone(),
            metrics,
            guilds,
            commands_deployed: AtomicBool::new(false),
            guilds_known: AtomicBool::new(false),
            tracking: Mutex::new(track_guilds(rt, &spec.name, client_id).await),
            shard_manager: client.shard_manager.clone(),
            down_since: Mutex::new(Some(Instant::now())),
            client: Mutex::new(None),
            stopped: tokio::sync::watch::Sender::new(None),
            identify_reserve: rt.identify_reserve,
            identify: Mutex::new(identify::Seen::default()),
            stopping: CancellationToken::new(),
            fleet_link: rt.fleet_link.clone(),
            picks: Default::default(),
            pick_expiry: rt.menu_expiry,
        });
        let _ = cell.set(bot.clone());
        tokio::spawn(crate::music::idle::sweep(Arc::downgrade(&music)));
        tokio::spawn(crate::music::session::keep(Arc::downgrade(&music)).in_current_span());
        let task = tokio::spawn(run_client(client, bot.clone()).in_current_span());
        *bot.client.lock().expect("client lock") = Some(task);
        info!(client_id, shard = spec.shard.0, shards = spec.shard.1, "bot starting");
        Ok(bot)
    }

    /// Resolves once the Discord client has given up, with why.
    pub async fn stopped(&self) -> String {
        let mut rx = self.stopped.subscribe();
        let why = rx.wait_for(Option::is_some).await.map(|v| v.clone().unwrap_or_default());
        why.unwrap_or_default()
    }

    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// Whether every shard this process runs is connected, and their worst latency.
    pub async fn gateway(&self) -> (bool, Option<Duration>) {
        let runners = self.shard_manager.runners.lock().await;
        let connected = !runners.is_empty() && runners.values().all(|r| r.stage == ConnectionStage::Connected);
        let latency = runners.values().filter_map(|r| r.latency).max();
        drop(runners);
        let mut down = self.down_since.lock().expect("down lock");
        match (connected, *down) {
            (true, _) => *down = None,
            (false, None) => *down = Some(Instant::now()),
            (false, Some(_)) => {}
        }
        (connected, latency)
    }

    /// Changes the presence on every shard's open session, without reconnecting.
    pub async fn set_presence(&self, presence: &PresenceArgs) {
        let runners = self.shard_manager.runners.lock().await;
        for runner in runners.values() {
            runner.runner_tx.set_presence(discord::activity(presence), discord::status(presence));
        }
    }

    /// How long the gateway has been down, if it is. Not while the bot waits for
    /// identifies on purpose: that is no stuck gateway, and a restart would not help.
    pub fn down_for(&self) -> Option<Duration> {
        if self.identify_held() {
            return None;
        }
        self.down_since.lock().expect("down lock").map(|t| t.elapsed())
    }

    /// Whether the bot is waiting for Discord to refill its identify budget.
    pub fn identify_held(&self) -> bool {
        self.identify.lock().expect("identify lock").held_until.is_some()
    }

    /// Until when the bot waits for identifies (RFC 3339), while it does.
    pub fn identify_held_until(&self) -> Option<String> {
        self.identify.lock().expect("identify lock").held_until()
    }

    pub(crate) fn set_identify(&self, seen: identify::Seen) {
        let held = seen.held_until.is_some();
        let was_held = std::mem::replace(&mut *self.identify.lock().expect("identify lock"), seen).held_until.is_some();
        if was_held && !held {
            // The gateway's time to connect starts now, not when the wait began.
            *self.down_since.lock().expect("down lock") = Some(Instant::now());
        }
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Sleeps for `d`; false if the bot is stopped meanwhile.
    pub(crate) async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.stopping.cancelled() => false,
        }
    }

    pub async fn report(&self) -> BotReport {
        let (connected, latency) = self.gateway().await;
        let gateway_connected = connected && self.guilds_known.load(Ordering::Relaxed);
        // Cloned first: the watch's borrow must not live across the awaits below.
        let last_error = self.stopped.borrow().clone();
        let guilds = self.guilds.ids();
        let users = self.guilds.members();
        let budget = self.identify.lock().expect("identify lock").clone();
        let report = BotReport {
            name: self.name.clone(),
            client_id: self.client_id().to_string(),
            guilds: guilds.len() as u64,
            users,
            voice_connections: self.music.voice_connections() as u64,
            gateway_connected,
            commands_deployed: self.commands_deployed.load(Ordering::Relaxed),
            guild_ids: if gateway_connected { guilds.iter().map(|g| g.to_string()).collect() } else { Vec::new() },
            last_error,
            identifies_remaining: budget.remaining(),
            identifies_reset_at: budget.reset_at(),
            identify_held_until: budget.held_until(),
            voice_stalls: self.metrics.voice_stalls.get(),
        };
        self.metrics.set(&Snapshot {
            gateway_connected,
            latency,
            guilds: report.guilds as usize,
            users,
            voice_connections: report.voice_connections as usize,
            queued_tracks: self.music.queued_tracks().await,
        });
        report
    }

    /// Leaves voice (so listeners see the bot go, not hang), closes the gateway, and writes
    /// what guild tracking still holds.
    #[tracing::instrument(name = "bot", skip_all, fields(bot = %self.name))]
    pub async fn shutdown(&self) {
        self.stopping.cancel();
        // Saved while still playing: the next start plays on from here.
        self.music.save_for_restart().await;
        self.music.leave_all().await;
        self.shard_manager.shutdown_all().await;
        let task = self.client.lock().expect("client lock").take();
        if let Some(task) = task
            && tokio::time::timeout(Duration::from_secs(5), task).await.is_err()
        {
            warn!("the gateway did not close in time");
        }
        let tracking = self.tracking.lock().expect("tracking lock").take();
        if let Some(t) = tracking {
            t.finish().await;
        }
        info!("bot stopped");
    }
}

/// The serenity client with songbird and the poise commands; `bot` is filled in before the
/// client starts, and poise hands it to every command.
async fn build_client(
    spec: &BotSpec,
    token: &Token,
    client_id: u64,
    rt: &Runtime,
    voice: VoiceHook,
    bot: Arc<OnceLock<Arc<Bot>>>,
) -> Result<Client> {
    let http = discord::http(token, rt.api_url.as_deref(), client_id);
    let framework = poise::Framework::builder()
        .options(commands::options())
        .setup(move |_, _, _| {
            Box::pin(async move { Ok(bot.get().expect("the bot exists before its client starts").clone()) })
        })
        .initialize_owners(false)
        .build();
    // serenity's cache would keep every guild whole; the bot keeps its own index (src/guilds.rs)
    // and serenity only the bot's own user.
    let mut cache = CacheSettings::default();
    (cache.cache_guilds, cache.cache_channels, cache.cache_users) = (false, false, false);
    let mut builder = ClientBuilder::new_with_http(http, discord::intents())
        .cache_settings(cache)
        .framework(framework)
        .voice_manager_arc(Arc::new(voice))
        .status(discord::status(&spec.presence));
    if let Some(activity) = discord::activity(&spec.presence) {
        builder = builder.activity(activity);
    }
    builder.await.context("building the Discord client")
}

/// The bot's guild tracker, if MongoDB holds a record for it. Without one the bot still
/// plays: tracking is bookkeeping for the operator's assignments, not the music.
async fn track_guilds(rt: &Runtime, name: &str, client_id: u64) -> Option<Tracking> {
    let (db, cols) = rt.mongo.as_ref()?;
    match musicbot_db::GuildTracker::for_client(db, cols, &client_id.to_string()).await {
        Ok(Some(t)) => Some(Tracking::start(t, name.to_string())),
        Ok(None) => {
            warn!(client_id, "no MusicBotDB record for this bot: guilds are not tracked");
            None
        }
        Err(e) => {
            warn!(error = %e, "MongoDB unavailable: guilds are not tracked");
            None
        }
    }
}

/// Runs the gateway until it closes, once the identify budget allows; why it gave up, if
/// it did, goes to `stopped`.
async fn run_client(mut client: Client, bot: Arc<Bot>) {
    let ((shard, count), stopped) = (bot.shard, bot.stopped.clone());
    if !identify::wait_for_budget(&bot, &client.http).await {
        info!("stopped while waiting for identifies");
        return;
    }
    drop(bot);
    let result = if count > 1 { client.start_shard(shard, count).await } else { client.start().await };
    match result {
        Ok(()) => info!("gateway closed"),
        Err(e) => {
            warn!(error = %e, "the Discord client stopped");
            stopped.send_replace(Some(format!("the Discord client stopped: {e}")));
        }
    }
}
