//! Metrics of the MongoDB side of the operator: the sync (what following the records
//! measures is musicbot-db's `FollowMetrics`, as in fleet mode) and guild assignment.

use musicbot_db::follow::FollowMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: String,
}

pub struct SyncMetrics {
    /// `musicbot_operator_sync_*`: the change stream, resyncs, skipped records, holds.
    pub(crate) follow: FollowMetrics,
    writes: Family<Op, Counter>,
    assignments: Family<Outcome, Counter>,
    fleet_invites: Family<Outcome, Counter>,
    expired: Counter,
}

impl SyncMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let follow = FollowMetrics::register(registry.sub_registry_with_prefix("sync"), "MusicBots the sync manages");
        let m = Self {
            follow,
            writes: Family::default(),
            assignments: Family::default(),
            fleet_invites: Family::default(),
            expired: Counter::default(),
        };
        registry.register("sync_writes", "Writes of synced objects to Kubernetes by operation", m.writes.clone());
        registry.register("assignments", "Guild assignment requests by result", m.assignments.clone());
        registry.register(
            "fleet_invites",
            "Invites asked for by bots of the sync's fleet none of whose bots was free, by result",
            m.fleet_invites.clone(),
        );
        registry.register("assignments_expired", "Pending invites that timed out and became FAILED", m.expired.clone());
        m
    }

    pub(crate) fn write(&self, op: &str) {
        self.writes.get_or_create(&Op { op: op.into() }).inc();
    }

    pub(crate) fn assignment(&self, result: &str) {
        self.assignments.get_or_create(&Outcome { result: result.into() }).inc();
    }

    pub(crate) fn fleet_invite(&self, result: &str) {
        self.fleet_invites.get_or_create(&Outcome { result: result.into() }).inc();
    }

    pub(crate) fn expired(&self, n: u64) {
        self.expired.inc_by(n);
    }
}
