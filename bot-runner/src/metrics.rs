//! Prometheus metrics (prometheus-client), one series per bot (`bot` = client id) so the
//! multi-bot mode reports each bot. Gauges are refreshed from live state at scrape time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use musicbot_db::follow::FollowMetrics;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BotLabels {
    bot: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    bot: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    bot: String,
    command: String,
    outcome: String,
}

fn command_histogram() -> Histogram {
    // 1 ms … 16 s: an acknowledgement should take milliseconds; /play waits for yt-dlp.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    gateway_latency: Family<BotLabels, Gauge<f64, AtomicU64>>,
    gateway_connected: Family<BotLabels, Gauge>,
    guilds: Family<BotLabels, Gauge>,
    users: Family<BotLabels, Gauge>,
    voice_connections: Family<BotLabels, Gauge>,
    queued_tracks: Family<BotLabels, Gauge>,
    tracks_started: Family<BotLabels, Counter>,
    tracks_failed: Family<BotLabels, Counter>,
    identifies_remaining: Family<BotLabels, Gauge>,
    identify_holds: Family<BotLabels, Counter>,
    tracks_preloaded: Family<BotLabels, Counter>,
    sessions_restored: Family<BotLabels, Counter>,
    voice_stalls: Family<BotLabels, Counter>,
    commands: Family<CommandLabels, Histogram, fn() -> Histogram>,
    handoffs: Family<OutcomeLabels, Counter>,
    handoff_latency: Family<BotLabels, Histogram, fn() -> Histogram>,
    fleet: FleetMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// Fleet mode: its bots, and following MongoDB (the operator sync's measures, under
/// `musicbot_fleet_`).
pub struct FleetMetrics {
    bots: Family<StateLabels, Gauge>,
    restarts: Counter,
    pub follow: FollowMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("musicbot");
        let fleet = FleetMetrics::register(registry.sub_registry_with_prefix("fleet"));
        let m = Self {
            gateway_latency: Family::default(),
            gateway_connected: Family::default(),
            guilds: Family::default(),
            users: Family::default(),
            voice_connections: Family::default(),
            queued_tracks: Family::default(),
            tracks_started: Family::default(),
            tracks_failed: Family::default(),
            identifies_remaining: Family::default(),
            identify_holds: Family::default(),
            tracks_preloaded: Family::default(),
            sessions_restored: Family::default(),
            voice_stalls: Family::default(),
            commands: Family::new_with_constructor(command_histogram),
            handoffs: Family::default(),
            handoff_latency: Family::new_with_constructor(command_histogram),
            fleet,
            registry: Registry::default(),
        };
        registry.register(
            "gateway_latency_seconds",
            "Heartbeat round trip to the Discord gateway",
            m.gateway_latency.clone(),
        );
        registry.register(
            "gateway_connected",
            "1 while every shard of the bot is connected",
            m.gateway_connected.clone(),
        );
        registry.register("guilds", "Guilds the bot is in", m.guilds.clone());
        registry.register("users", "Members of the bot's guilds", m.users.clone());
        registry.register("voice_connections", "Voice channels the bot is connected to", m.voice_connections.clone());
        registry.register("queued_tracks", "Tracks waiting in the bot's guild queues", m.queued_tracks.clone());
        registry.register("tracks_started", "Tracks that started playing", m.tracks_started.clone());
        registry.register("tracks_failed", "Tracks whose source failed", m.tracks_failed.clone());
        registry.register(
            "identifies_remaining",
            "IDENTIFYs left of the token's daily session start limit, as the bot last read it",
            m.identifies_remaining.clone(),
        );
        registry.register(
            "identify_holds",
            "Times the bot waited for Discord's reset instead of spending its reserve of IDENTIFYs",
            m.identify_holds.clone(),
        );
        registry.register(
            "tracks_preloaded",
            "Next tracks readied while the one before them played, so they start without a gap",
            m.tracks_preloaded.clone(),
        );
        registry.register(
            "sessions_restored",
            "Guilds whose music a new process brought back from the saved session",
            m.sessions_restored.clone(),
        );
        registry.register(
            "voice_stalls",
            "Times a playing track stopped moving and the bot rejoined to play on",
            m.voice_stalls.clone(),
        );
        registry.register("command_duration_seconds", "Time to answer a slash command", m.commands.clone());
        registry.register(
            "handoffs",
            "Requests this bot handed to another bot of its fleet, by outcome (requested, accepted, refused: no bot free, failed: no answer)",
            m.handoffs.clone(),
        );
        registry.register(
            "handoff_taken_seconds",
            "From the interaction another bot of the fleet got to this bot starting or queueing its track",
            m.handoff_latency.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    pub fn bot(self: &Arc<Self>, client_id: &str) -> Arc<BotMetrics> {
        let label = BotLabels { bot: client_id.to_string() };
        Arc::new(BotMetrics {
            tracks_started: self.tracks_started.get_or_create(&label).clone(),
            tracks_failed: self.tracks_failed.get_or_create(&label).clone(),
            identify_holds: self.identify_holds.get_or_create(&label).clone(),
            tracks_preloaded: self.tracks_preloaded.get_or_create(&label).clone(),
            sessions_restored: self.sessions_restored.get_or_create(&label).clone(),
            voice_stalls: self.voice_stalls.get_or_create(&label).clone(),
            metrics: self.clone(),
            label,
        })
    }

    /// Drops a stopped bot's series, so a fleet that lost a bot stops reporting it.
    pub fn forget_bot(&self, client_id: &str) {
        let label = BotLabels { bot: client_id.to_string() };
        for gauge in [&self.gateway_connected, &self.guilds, &self.users, &self.voice_connections, &self.queued_tracks]
        {
            gauge.remove(&label);
        }
        self.gateway_latency.remove(&label);
        self.tracks_started.remove(&label);
        self.tracks_failed.remove(&label);
        self.identifies_remaining.remove(&label);
        self.identify_holds.remove(&label);
        self.tracks_preloaded.remove(&label);
        self.sessions_restored.remove(&label);
        self.voice_stalls.remove(&label);
        self.handoff_latency.remove(&label);
        // Its command and hand-off series by outcome stay: prometheus-client cannot drop series by one label.
    }

    pub fn fleet(&self) -> &FleetMetrics {
        &self.fleet
    }

    /// A fleet bot failed and will be started again.
    pub fn fleet_restart(&self) {
        self.fleet.restarts.inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl FleetMetrics {
    fn register(r: &mut Registry) -> Self {
        let (bots, restarts) = (Family::default(), Counter::default());
        r.register("bots", "Bots of the fleet by state (starting, running, failed)", bots.clone());
        r.register("bot_restarts", "Bots that failed and are started again after a backoff", restarts.clone());
        Self { bots, restarts, follow: FollowMetrics::register(r, "Bots started from MongoDB records") }
    }

    pub fn set_bots(&self, by_state: &BTreeMap<&'static str, usize>) {
        for (state, n) in by_state {
            self.bots.get_or_create(&StateLabels { state: (*state).into() }).set(*n as i64);
        }
    }
}

/// One bot's handles on the shared registry.
pub struct BotMetrics {
    pub tracks_started: Counter,
    pub tracks_failed: Counter,
    pub identify_holds: Counter,
    pub tracks_preloaded: Counter,
    pub sessions_restored: Counter,
    pub voice_stalls: Counter,
    metrics: Arc<Metrics>,
    label: BotLabels,
}

/// A bot's live numbers, set at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub gateway_connected: bool,
    pub latency: Option<Duration>,
    pub guilds: usize,
    pub users: u64,
    pub voice_connections: usize,
    pub queued_tracks: usize,
}

impl BotMetrics {
    pub fn observe_command(&self, command: &str, ok: bool, took: Duration) {
        let labels = CommandLabels {
            bot: self.label.bot.clone(),
            command: command.to_string(),
            outcome: if ok { "ok" } else { "error" }.to_string(),
        };
        self.metrics.commands.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// A request this bot handed off: asked for, or how it ended.
    pub fn handoff(&self, outcome: &str) {
        let labels = OutcomeLabels { bot: self.label.bot.clone(), outcome: outcome.to_string() };
        self.metrics.handoffs.get_or_create(&labels).inc();
    }

    /// This bot took another's request, `waited` after that bot got it.
    pub fn handoff_taken(&self, waited: Duration) {
        self.metrics.handoff_latency.get_or_create(&self.label).observe(waited.as_secs_f64());
    }

    pub fn set_identifies_remaining(&self, n: u64) {
        self.metrics.identifies_remaining.get_or_create(&self.label).set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set(&self, s: &Snapshot) {
        let m = &self.metrics;
        let l = &self.label;
        m.gateway_connected.get_or_create(l).set(i64::from(s.gateway_connected));
        m.gateway_latency.get_or_create(l).set(s.latency.map_or(0.0, |d| d.as_secs_f64()));
        m.guilds.get_or_create(l).set(s.guilds as i64);
        m.users.get_or_create(l).set(s.users as i64);
        m.voice_connections.get_or_create(l).set(s.voice_connections as i64);
        m.queued_tracks.get_or_create(l).set(s.queued_tracks as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_the_bot_label() {
        let m = Arc::new(Metrics::default());
        let bot = m.bot("123456789012345678");
        bot.tracks_started.inc();
        bot.observe_command("play", true, Duration::from_millis(3));
        bot.set(&Snapshot { gateway_connected: true, guilds: 2, ..Default::default() });
        let text = m.encode();
        assert!(text.contains(r#"musicbot_tracks_started_total{bot="123456789012345678"} 1"#), "{text}");
        assert!(text.contains(r#"musicbot_guilds{bot="123456789012345678"} 2"#), "{text}");
        assert!(
            text.contains(
                r#"musicbot_command_duration_seconds_count{bot="123456789012345678",command="play",outcome="ok"} 1"#
            ),
            "{text}"
        );
    }
}
