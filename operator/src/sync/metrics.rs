//! Metrics of the MongoDB side of the operator: the sync and guild assignment.

use super::ResyncReason;
use super::plan::SkipReason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: String,
}

pub struct SyncMetrics {
    stream_events: Counter,
    writes: Family<Op, Counter>,
    resyncs: Family<Reason, Counter>,
    errors: Family<Kind, Counter>,
    skipped_total: Family<Reason, Counter>,
    skipped: Family<Reason, Gauge>,
    records: Gauge,
    plaintext: Gauge,
    lag: Histogram,
    up: Gauge,
    deletions_held: Gauge,
    assignments: Family<Outcome, Counter>,
    expired: Counter,
}

impl SyncMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self {
            stream_events: Counter::default(),
            writes: Family::default(),
            resyncs: Family::default(),
            errors: Family::default(),
            skipped_total: Family::default(),
            skipped: Family::default(),
            records: Gauge::default(),
            plaintext: Gauge::default(),
            // 10 ms … 5.5 min: a lag alert at tens of seconds needs buckets beyond it.
            lag: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            up: Gauge::default(),
            deletions_held: Gauge::default(),
            assignments: Family::default(),
            expired: Counter::default(),
        };
        registry.register("sync_stream_events", "Change-stream events handled", m.stream_events.clone());
        registry.register("sync_writes", "Writes of synced objects to Kubernetes by operation", m.writes.clone());
        registry.register("sync_resyncs", "Full resyncs from MongoDB by reason", m.resyncs.clone());
        registry.register("sync_errors", "Sync failures by side (mongodb, kubernetes)", m.errors.clone());
        registry.register(
            "sync_skipped_records",
            "Records skipped, counted when first seen, by reason",
            m.skipped_total.clone(),
        );
        registry.register("sync_skipped_records_current", "Records skipped right now, by reason", m.skipped.clone());
        registry.register("sync_records", "MusicBots the sync manages", m.records.clone());
        registry.register(
            "sync_plaintext_tokens",
            "Synced records whose token is stored in plaintext",
            m.plaintext.clone(),
        );
        registry.register(
            "sync_lag_seconds",
            "Time from a change in MongoDB to its objects applied in Kubernetes",
            m.lag.clone(),
        );
        registry.register("sync_up", "1 while the sync follows MongoDB (change stream open or polling)", m.up.clone());
        registry.register(
            "sync_deletions_held",
            "Synced MusicBots whose record is gone or deactivated, held as a mass deletion",
            m.deletions_held.clone(),
        );
        registry.register("assignments", "Guild assignment requests by result", m.assignments.clone());
        registry.register("assignments_expired", "Pending invites that timed out and became FAILED", m.expired.clone());
        for reason in SkipReason::ALL {
            m.skipped.get_or_create(&Reason { reason: reason.as_str().into() }).set(0);
        }
        m
    }

    pub(crate) fn stream_event(&self, lag: Option<Duration>) {
        self.stream_events.inc();
        if let Some(lag) = lag {
            self.lag.observe(lag.as_secs_f64());
        }
    }

    pub(crate) fn write(&self, op: &str) {
        self.writes.get_or_create(&Op { op: op.into() }).inc();
    }

    pub(crate) fn resync(&self, reason: ResyncReason) {
        self.resyncs.get_or_create(&Reason { reason: reason.as_str().into() }).inc();
    }

    pub(crate) fn error(&self, kind: &str) {
        self.errors.get_or_create(&Kind { kind: kind.into() }).inc();
    }

    pub(crate) fn skipped_first_seen(&self, reason: SkipReason) {
        self.skipped_total.get_or_create(&Reason { reason: reason.as_str().into() }).inc();
    }

    /// Replaces the current skipped counts (reasons absent from `counts` go to 0).
    pub(crate) fn set_skipped(&self, counts: &BTreeMap<SkipReason, usize>) {
        for reason in SkipReason::ALL {
            let n = counts.get(reason).copied().unwrap_or(0);
            self.skipped.get_or_create(&Reason { reason: reason.as_str().into() }).set(n as i64);
        }
    }

    pub(crate) fn set_records(&self, synced: usize, plaintext: usize) {
        self.records.set(synced as i64);
        self.plaintext.set(plaintext as i64);
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    pub(crate) fn set_deletions_held(&self, n: usize) {
        self.deletions_held.set(n as i64);
    }

    pub(crate) fn assignment(&self, result: &str) {
        self.assignments.get_or_create(&Outcome { result: result.into() }).inc();
    }

    pub(crate) fn expired(&self, n: u64) {
        self.expired.inc_by(n);
    }
}
