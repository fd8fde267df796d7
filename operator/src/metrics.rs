//! Prometheus metrics of the operator (prometheus-client, text exposition on `/metrics`).

use crate::sync::metrics::SyncMetrics;
use musicbot_api::crd::Phase;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

/// The `kind` labels of failed reconciles ([`crate::controller::Error::kind`]).
const ERROR_KINDS: [&str; 5] = ["api", "client", "finalizer", "spec", "discord"];

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    bots: Family<PhaseLabels, Gauge>,
    phases: Mutex<HashMap<(String, String), Phase>>,
    pub is_leader: Gauge,
    /// The MongoDB sync and guild assignment.
    pub sync: SyncMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("musicbot_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let bots = Family::<PhaseLabels, Gauge>::default();
        let is_leader = Gauge::default();
        registry.register("reconciles", "MusicBot reconciliations by result", reconciles.clone());
        registry.register("reconcile_errors", "Failed reconciliations by error kind", errors.clone());
        registry.register("reconcile_duration_seconds", "Time one reconciliation took", duration.clone());
        registry.register("bots", "MusicBots by phase", bots.clone());
        registry.register("leader", "1 while this replica holds the leader Lease", is_leader.clone());
        for phase in Phase::ALL {
            bots.get_or_create(&PhaseLabels { phase: phase.as_str().into() }).set(0);
        }
        // Every series from the start, at 0: a counter that first shows up at 1 hides that
        // first increase from rate() and increase(), and the chart's alerts read these.
        for result in ["ok", "error"] {
            let _ = reconciles.get_or_create(&ResultLabels { result: result.into() });
        }
        for kind in ERROR_KINDS {
            let _ = errors.get_or_create(&ErrorLabels { kind: kind.into() });
        }
        let sync = SyncMetrics::register(&mut registry);
        Self { registry, reconciles, errors, duration, bots, phases: Mutex::default(), is_leader, sync }
    }
}

impl Metrics {
    /// `error_kind`: None for a successful reconcile.
    pub fn observe_reconcile(&self, took: Duration, error_kind: Option<&'static str>) {
        self.duration.observe(took.as_secs_f64());
        let result = if error_kind.is_some() { "error" } else { "ok" };
        self.reconciles.get_or_create(&ResultLabels { result: result.into() }).inc();
        if let Some(kind) = error_kind {
            self.errors.get_or_create(&ErrorLabels { kind: kind.into() }).inc();
        }
    }

    pub fn set_phase(&self, namespace: &str, name: &str, phase: Option<Phase>) {
        let mut phases = self.phases.lock().expect("not poisoned");
        match phase {
            Some(p) => phases.insert((namespace.into(), name.into()), p),
            None => phases.remove(&(namespace.into(), name.into())),
        };
        self.recount(&phases);
    }

    pub fn forget(&self, namespace: &str, name: &str) {
        self.set_phase(namespace, name, None);
    }

    fn recount(&self, phases: &HashMap<(String, String), Phase>) {
        for phase in Phase::ALL {
            let n = phases.values().filter(|p| **p == phase).count();
            self.bots.get_or_create(&PhaseLabels { phase: phase.as_str().into() }).set(n as i64);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bots_by_phase_follow_set_phase_and_forget() {
        let m = Metrics::default();
        m.set_phase("a", "one", Some(Phase::Running));
        m.set_phase("a", "two", Some(Phase::Running));
        m.set_phase("b", "one", Some(Phase::Failed));
        let text = m.encode();
        assert!(text.contains(r#"musicbot_operator_bots{phase="Running"} 2"#), "{text}");
        assert!(text.contains(r#"musicbot_operator_bots{phase="Failed"} 1"#), "{text}");
        m.set_phase("a", "two", Some(Phase::Suspended));
        m.forget("b", "one");
        let text = m.encode();
        assert!(text.contains(r#"musicbot_operator_bots{phase="Running"} 1"#), "{text}");
        assert!(text.contains(r#"musicbot_operator_bots{phase="Suspended"} 1"#), "{text}");
        assert!(text.contains(r#"musicbot_operator_bots{phase="Failed"} 0"#), "{text}");
    }

    #[test]
    fn reconcile_counters_exist_at_zero_before_the_first_reconcile() {
        let text = Metrics::default().encode();
        for series in [
            r#"musicbot_operator_reconciles_total{result="ok"} 0"#,
            r#"musicbot_operator_reconciles_total{result="error"} 0"#,
        ]
        .into_iter()
        .map(String::from)
        .chain(ERROR_KINDS.iter().map(|k| format!("musicbot_operator_reconcile_errors_total{{kind=\"{k}\"}} 0")))
        {
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
    }
}
