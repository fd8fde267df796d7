//! One bot of a fleet and what keeps it running: a seat starts its bot, restarts it with
//! backoff when its Discord client gives up (a refused token, a 4004), and stops it on
//! request, leaving voice first. A failing bot only ever takes its own seat down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use musicbot_api::Token;
use musicbot_runtime::CancellationToken;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, info, warn};

use crate::bot::{Bot, BotSpec, Runtime};
use crate::cli::PresenceArgs;

/// A bot that ran this long before giving up starts its next failure from the shortest wait.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long stopping a bot (leaving voice, closing the gateway) may take.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// Waits between attempts to start a failing bot: 2 s doubling to 5 min, jittered, for
/// ever. Long enough that a refused token does not spend the day's identifies.
fn restart_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(2))
        .with_max_delay(Duration::from_secs(300))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Where a seat is in its bot's life.
#[derive(Clone)]
pub enum SeatState {
    Starting,
    Running(Arc<Bot>),
    /// The last attempt failed with `why`; the next is at `retry_at`.
    Failed {
        why: String,
        retry_at: Instant,
    },
    Stopped,
}

impl SeatState {
    /// The `state` of `/bots` and of the fleet's bots gauge.
    pub fn label(&self) -> &'static str {
        match self {
            SeatState::Starting => "starting",
            SeatState::Running(_) => "running",
            SeatState::Failed { .. } => "failed",
            SeatState::Stopped => "stopped",
        }
    }
}

pub struct Seat {
    pub client_id: u64,
    /// The record's name (changes without a restart), else the token file's.
    name: Mutex<String>,
    /// The record's presence, else the fleet's flags (changes without a restart too).
    presence: Mutex<PresenceArgs>,
    state: Mutex<SeatState>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Seat {
    /// Starts supervising a bot: returns at once, the bot connects in the background.
    pub fn spawn(spec: BotSpec, token: Token, rt: Runtime) -> Arc<Self> {
        let seat = Arc::new(Self::new(token.client_id(), &spec.name, &spec.presence, SeatState::Starting));
        // Its own root: a bot outlives the resync or change that started it.
        let span = tracing::info_span!(parent: None, "seat", bot = %spec.name);
        let task = tokio::spawn(supervise(seat.clone(), spec, token, rt).instrument(span));
        *seat.task.lock().expect("seat lock") = Some(task);
        seat
    }

    /// A bot started by someone else and not restarted (`run`: the pod restarts instead).
    pub fn fixed(bot: Arc<Bot>) -> Arc<Self> {
        let (client_id, name) = (bot.client_id(), bot.name.clone());
        Arc::new(Self::new(client_id, &name, &PresenceArgs::default(), SeatState::Running(bot)))
    }

    fn new(client_id: u64, name: &str, presence: &PresenceArgs, state: SeatState) -> Self {
        Self {
            client_id,
            name: Mutex::new(name.to_string()),
            presence: Mutex::new(presence.clone()),
            state: Mutex::new(state),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        }
    }

    pub fn name(&self) -> String {
        self.name.lock().expect("seat lock").clone()
    }

    pub fn rename(&self, name: &str) {
        *self.name.lock().expect("seat lock") = name.to_string();
    }

    /// Sets the presence of the running bot now, and of any later start.
    pub async fn set_presence(&self, presence: &PresenceArgs) {
        *self.presence.lock().expect("seat lock") = presence.clone();
        if let SeatState::Running(bot) = self.state() {
            bot.set_presence(presence).await;
        }
    }

    pub fn state(&self) -> SeatState {
        self.state.lock().expect("seat lock").clone()
    }

    fn set(&self, state: SeatState) {
        *self.state.lock().expect("seat lock") = state;
    }

    /// Stops the bot (leaving voice, closing its gateway) and its supervision.
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().expect("seat lock").take();
        match task {
            Some(task) => {
                if tokio::time::timeout(STOP_WITHIN, task).await.is_err() {
                    warn!(bot = %self.name(), "the bot did not stop in time");
                }
            }
            None => {
                if let SeatState::Running(bot) = self.state() {
                    bot.shutdown().await;
                }
            }
        }
        self.set(SeatState::Stopped);
    }
}

async fn supervise(seat: Arc<Seat>, spec: BotSpec, token: Token, rt: Runtime) {
    let mut backoff = restart_backoff();
    loop {
        seat.set(SeatState::Starting);
        let mut spec = spec.clone();
        spec.name = seat.name();
        spec.presence = seat.presence.lock().expect("seat lock").clone();
        let why = match Bot::start(spec, token.clone(), &rt).await {
            Ok(bot) => {
                seat.set(SeatState::Running(bot.clone()));
                let since = Instant::now();
                let why = tokio::select! {
                    why = bot.stopped() => why,
                    () = seat.stop.cancelled() => {
                        bot.shutdown().await;
                        rt.metrics.forget_bot(&bot.client_id().to_string());
                        return;
                    }
                };
                // Its voice connections and tracking go with it; the next attempt is a new bot.
                bot.shutdown().await;
                if since.elapsed() >= STABLE_AFTER {
                    backoff = restart_backoff();
                }
                why
            }
            Err(e) => format!("{e:#}"),
        };
        let delay = backoff.next().unwrap_or(Duration::from_secs(300));
        warn!(retry_in = ?delay, "the bot failed; starting it again later: {why}");
        rt.metrics.fleet_restart();
        seat.set(SeatState::Failed { why, retry_at: Instant::now() + delay });
        tokio::select! {
            () = tokio::time::sleep(delay) => info!("starting the bot again"),
            () = seat.stop.cancelled() => return,
        }
    }
}
