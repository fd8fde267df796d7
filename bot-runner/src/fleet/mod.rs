//! The bots of one process (one, in a pod; several in the multi-bot mode) and what the
//! HTTP endpoints say about them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::{info, warn};

use musicbot_api::{BotReport, ShardInfo, StatusReport};

use crate::bot::Bot;

pub struct Fleet {
    pub bots: Vec<Arc<Bot>>,
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
    pub fn new(bots: Vec<Arc<Bot>>, stuck_after: Duration) -> Arc<Self> {
        let fleet = Arc::new(Self { bots, started: Instant::now(), tick: Arc::new(AtomicU64::new(0)), stuck_after });
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

    pub async fn reports(&self) -> Vec<BotReport> {
        let mut out = Vec::with_capacity(self.bots.len());
        for b in &self.bots {
            out.push(b.report().await);
        }
        out
    }

    /// The seed's answer (`status`, `uptime`, `activeBots`), failing when the runtime has
    /// stalled or a gateway has been down longer than `stuck_after`.
    pub async fn health(&self) -> Health {
        let uptime = self.started.elapsed();
        let since_tick = uptime.saturating_sub(Duration::from_millis(self.tick.load(Ordering::Relaxed)));
        let mut problems = Vec::new();
        if since_tick > Duration::from_secs(10) {
            problems.push(format!("the runtime has not ticked for {}s", since_tick.as_secs()));
        }
        let mut active = 0;
        for b in &self.bots {
            let (connected, _) = b.gateway().await;
            active += usize::from(connected);
            if let Some(down) = b.down_for().filter(|d| *d > self.stuck_after) {
                problems.push(format!("{}: gateway down for {}s", b.name, down.as_secs()));
            }
        }
        let ok = problems.is_empty();
        let mut body = json!({"status": if ok { "ok" } else { "unhealthy" }, "uptime": uptime.as_secs_f64(), "activeBots": active});
        if !ok {
            body["problems"] = json!(problems);
        }
        Health { ok, body }
    }

    /// Readiness: every bot's gateway is READY.
    pub async fn ready(&self) -> bool {
        let mut all = !self.bots.is_empty();
        for b in &self.bots {
            all &= b.gateway().await.0;
        }
        all
    }

    /// For the operator: totals at the top level, one entry per bot below.
    pub async fn status(&self) -> StatusReport {
        let (id, count) = self.bots.first().map(|b| b.shard).unwrap_or((0, 1));
        StatusReport::of(ShardInfo { id, count }, self.reports().await)
    }

    /// The seed's `/bots`.
    pub async fn bots(&self) -> Value {
        let bots: Vec<Value> = self
            .reports()
            .await
            .into_iter()
            .map(|r| json!({"name": r.name, "clientId": r.client_id, "guilds": r.guilds, "users": r.users}))
            .collect();
        json!({ "bots": bots })
    }

    /// Stops every bot, in parallel, within `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        info!(bots = self.bots.len(), "shutting down");
        let all = futures::future::join_all(self.bots.iter().map(|b| b.shutdown()));
        if tokio::time::timeout(grace, all).await.is_err() {
            warn!(grace_seconds = grace.as_secs(), "shutdown did not finish within the grace period");
        }
    }
}
