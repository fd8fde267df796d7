//! The bots of one process (one, in a pod; several in fleet mode) and what the HTTP
//! endpoints say about them. In fleet mode the set changes while the process runs: `records`
//! follows MongoDB and seats bots in and out; each `seat` keeps its bot running.

pub mod records;
pub mod seat;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::{info, warn};

use musicbot_api::{BotReport, ShardInfo, StatusReport};

pub use seat::{Seat, SeatState};

pub struct Fleet {
    /// By client id.
    seats: RwLock<BTreeMap<u64, Arc<Seat>>>,
    /// Bots come and go (fleet mode): an empty fleet is waiting for records, not broken.
    live: bool,
    started: Instant,
    /// Milliseconds since `started` at the runtime's last heartbeat tick.
    tick: Arc<AtomicU64>,
    stuck_after: Duration,
}

/// Liveness: what `/health` found.
pub struct Health {
    pub ok: bool,
    pub body: Value,
}

impl Fleet {
    /// `live`: the set follows MongoDB, so it may be empty for a while.
    pub fn new(seats: Vec<Arc<Seat>>, live: bool, stuck_after: Duration) -> Arc<Self> {
        let seats = seats.into_iter().map(|s| (s.client_id, s)).collect();
        let fleet = Arc::new(Self {
            seats: RwLock::new(seats),
            live,
            started: Instant::now(),
            tick: Arc::new(AtomicU64::new(0)),
            stuck_after,
        });
        // A runtime too busy to run this task for seconds is stuck; /health reports it.
        let (tick, started) = (fleet.tick.clone(), fleet.started);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                tick.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
        });
        fleet
    }

    /// Every seat, by client id.
    pub fn seats(&self) -> Vec<Arc<Seat>> {
        self.seats.read().expect("fleet lock").values().cloned().collect()
    }

    pub fn seat(&self, client_id: u64) -> Option<Arc<Seat>> {
        self.seats.read().expect("fleet lock").get(&client_id).cloned()
    }

    /// Seats `seat`, returning the one it replaces (which the caller stops).
    pub fn insert(&self, seat: Arc<Seat>) -> Option<Arc<Seat>> {
        self.seats.write().expect("fleet lock").insert(seat.client_id, seat)
    }

    pub fn remove(&self, client_id: u64) -> Option<Arc<Seat>> {
        self.seats.write().expect("fleet lock").remove(&client_id)
    }

    /// The running bots, with the names their seats have now.
    fn running(&self) -> Vec<(Arc<Seat>, Arc<crate::bot::Bot>)> {
        self.seats()
            .into_iter()
            .filter_map(|s| match s.state() {
                SeatState::Running(bot) => Some((s, bot)),
                _ => None,
            })
            .collect()
    }

    pub async fn reports(&self) -> Vec<BotReport> {
        let mut out = Vec::new();
        for (seat, bot) in self.running() {
            let mut report = bot.report().await;
            report.name = seat.name();
            out.push(report);
        }
        out
    }

    /// The seed's answer (`status`, `uptime`, `activeBots`), failing when the runtime has
    /// stalled or a running bot's gateway has been down longer than `stuck_after`. Bots that
    /// failed are listed (`failedBots`) but do not fail it: their seats retry them, and a
    /// restart of the process would stop the others.
    pub async fn health(&self) -> Health {
        let uptime = self.started.elapsed();
        let since_tick = uptime.saturating_sub(Duration::from_millis(self.tick.load(Ordering::Relaxed)));
        let mut problems = Vec::new();
        if since_tick > Duration::from_secs(10) {
            problems.push(format!("the runtime has not ticked for {}s", since_tick.as_secs()));
        }
        let mut active = 0;
        let mut held = Vec::new();
        for (seat, bot) in self.running() {
            let (connected, _) = bot.gateway().await;
            active += usize::from(connected);
            if let Some(until) = bot.identify_held_until() {
                held.push(json!({"name": seat.name(), "clientId": seat.client_id.to_string(), "until": until}));
            }
            if let Some(down) = bot.down_for().filter(|d| *d > self.stuck_after) {
                problems.push(format!("{}: gateway down for {}s", seat.name(), down.as_secs()));
            }
            if let Some(why) = bot.music.watchdog.unhealthy() {
                problems.push(format!("{}: {why}", seat.name()));
            }
        }
        let failed: Vec<Value> = self
            .seats()
            .iter()
            .filter_map(|s| match s.state() {
                SeatState::Failed { why, retry_at } => Some(json!({
                    "name": s.name(),
                    "clientId": s.client_id.to_string(),
                    "error": why,
                    "retryInSeconds": retry_at.saturating_duration_since(Instant::now()).as_secs(),
                })),
                _ => None,
            })
            .collect();
        let ok = problems.is_empty();
        let mut body = json!({"status": if ok { "ok" } else { "unhealthy" }, "uptime": uptime.as_secs_f64(), "activeBots": active});
        if !ok {
            body["problems"] = json!(problems);
        }
        if !failed.is_empty() {
            body["failedBots"] = json!(failed);
        }
        // Waiting for identifies is healthy: restarting would not bring them sooner.
        if !held.is_empty() {
            body["heldBots"] = json!(held);
        }
        Health { ok, body }
    }

    /// Readiness: every bot that is not failing has its gateway READY (and there is a bot,
    /// unless the set follows MongoDB). `or_held` (the startup probe's question) also
    /// counts a bot waiting for Discord to refill its identify budget.
    pub async fn ready(&self, or_held: bool) -> bool {
        let seats = self.seats();
        let mut all = self.live || !seats.is_empty();
        for seat in seats {
            all &= match seat.state() {
                SeatState::Running(bot) => (or_held && bot.identify_held()) || bot.gateway().await.0,
                SeatState::Failed { .. } | SeatState::Stopped => true,
                SeatState::Starting => false,
            };
        }
        all
    }

    /// For the operator: totals at the top level, one entry per bot below.
    pub async fn status(&self) -> StatusReport {
        let (id, count) = self.running().first().map(|(_, b)| b.shard).unwrap_or((0, 1));
        StatusReport::of(ShardInfo { id, count }, self.reports().await)
    }

    /// The seed's `/bots`, with each bot's state (and error, once it failed) and, in a
    /// fleet, the fleet's name as its directory gives it.
    pub async fn bots(&self) -> Value {
        let mut bots = Vec::new();
        for seat in self.seats() {
            let state = seat.state();
            let mut entry = json!({"name": seat.name(), "clientId": seat.client_id.to_string(), "state": state.label(),
                "guilds": 0, "users": 0});
            match state {
                SeatState::Running(bot) => {
                    let r = bot.report().await;
                    entry["guilds"] = json!(r.guilds);
                    entry["users"] = json!(r.users);
                    if let Some(link) = &bot.fleet_link {
                        entry["fleet"] = json!(link.fleet());
                    }
                }
                SeatState::Failed { why, .. } => entry["error"] = json!(why),
                SeatState::Starting | SeatState::Stopped => {}
            }
            bots.push(entry);
        }
        json!({ "bots": bots })
    }

    /// Counts of seats by state, for the fleet's gauge.
    pub fn by_state(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::from([("starting", 0), ("running", 0), ("failed", 0)]);
        for seat in self.seats() {
            *out.entry(seat.state().label()).or_default() += 1;
        }
        out
    }

    /// Stops every bot, in parallel, within `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        let seats = self.seats();
        info!(bots = seats.len(), "shutting down");
        let all = futures::future::join_all(seats.iter().map(|s| s.stop()));
        if tokio::time::timeout(grace, all).await.is_err() {
            warn!(grace_seconds = grace.as_secs(), "shutdown did not finish within the grace period");
        }
    }
}
