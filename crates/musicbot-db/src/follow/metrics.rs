//! What following the records measures, alike for the operator's sync (registered under
//! `musicbot_operator_sync_`) and fleet mode (`musicbot_fleet_`), so a dashboard reads
//! both with the same names.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{ResyncReason, SkipReason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

pub struct FollowMetrics {
    stream_events: Counter,
    resyncs: Family<Reason, Counter>,
    errors: Family<Kind, Counter>,
    skipped_total: Family<Reason, Counter>,
    skipped: Family<Reason, Gauge>,
    records: Gauge,
    plaintext: Gauge,
    lag: Histogram,
    up: Gauge,
    deletions_held: Gauge,
}

impl FollowMetrics {
    /// Registers in `registry` (give it the prefix); `records_help` says what the records run.
    pub fn register(registry: &mut Registry, records_help: &str) -> Self {
        let m = Self {
            stream_events: Counter::default(),
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
        };
        let r = registry;
        r.register("stream_events", "Change-stream events handled", m.stream_events.clone());
        r.register("resyncs", "Full reads of the records collection by reason", m.resyncs.clone());
        r.register("errors", "Interruptions of following the records, by side (mongodb, kubernetes)", m.errors.clone());
        r.register("skipped_records", "Records skipped, counted when first seen, by reason", m.skipped_total.clone());
        r.register("skipped_records_current", "Records skipped right now, by reason", m.skipped.clone());
        r.register("records", records_help, m.records.clone());
        r.register("plaintext_tokens", "Records in use whose token is stored in plaintext", m.plaintext.clone());
        r.register("lag_seconds", "Time from a change in MongoDB to it being acted on", m.lag.clone());
        r.register("up", "1 while the records are followed (change stream open or polling)", m.up.clone());
        r.register(
            "deletions_held",
            "Bots whose record is gone or deactivated, held as a mass deletion",
            m.deletions_held.clone(),
        );
        for reason in SkipReason::ALL {
            m.skipped.get_or_create(&Reason { reason: reason.as_str().into() }).set(0);
        }
        m
    }

    pub fn stream_event(&self, lag: Option<Duration>) {
        self.stream_events.inc();
        if let Some(lag) = lag {
            self.lag.observe(lag.as_secs_f64());
        }
    }

    pub fn resync(&self, reason: ResyncReason) {
        self.resyncs.get_or_create(&Reason { reason: reason.as_str().into() }).inc();
    }

    /// `kind`: which side failed (`mongodb`, `kubernetes`).
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&Kind { kind: kind.into() }).inc();
    }

    pub fn skipped_first_seen(&self, reason: SkipReason) {
        self.skipped_total.get_or_create(&Reason { reason: reason.as_str().into() }).inc();
    }

    /// Replaces the current skipped counts (reasons absent from `counts` go to 0).
    pub fn set_skipped(&self, counts: &BTreeMap<SkipReason, usize>) {
        for reason in SkipReason::ALL {
            let n = counts.get(reason).copied().unwrap_or(0);
            self.skipped.get_or_create(&Reason { reason: reason.as_str().into() }).set(n as i64);
        }
    }

    pub fn set_records(&self, running: usize, plaintext: usize) {
        self.records.set(running as i64);
        self.plaintext.set(plaintext as i64);
    }

    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    pub fn set_deletions_held(&self, n: usize) {
        self.deletions_held.set(n as i64);
    }
}
