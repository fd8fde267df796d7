//! The identify budget, as the operator sees it: whether a bot's pods report waiting for
//! Discord to refill their token's IDENTIFYs, and whether the operator should stop
//! restarting a crash-looping pod until then. A pure function of the MusicBot's last
//! status, its pods and their `/status` answers, unit-tested without an API server.
//!
//! bot-runner itself never spends its last identifies (`--identify-reserve`): it waits,
//! up and not ready. The operator adds what a single pod cannot: a pod that crash-loops
//! while low is scaled to zero until the reset (its StatefulSet's replicas), so no
//! restart, of whatever cause, spends the reserve, and the MusicBot says why and until
//! when; at that time the StatefulSet is scaled back.

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::Pod;
use musicbot_api::crd::MusicBot;

use super::status::PodReport;

/// A restart this recent makes a pod that reports a hold a crash-looping one: the kubelet's
/// own measure (it forgets a container's back-off after 10 minutes of running).
pub(crate) const CRASH_WINDOW: Duration = Duration::minutes(10);

/// What the bot's identify budget asks of the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Budget {
    /// No pod reports a hold (or none reported at all).
    Fine,
    /// A pod waits for the reset by itself, and is not crash-looping: left to start on its own.
    Waiting(Hold),
    /// The operator keeps the bot's pods stopped (StatefulSet at 0 replicas) until `until`.
    Held(Hold),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hold {
    pub until: DateTime<Utc>,
    /// The pod that reported it (none once the pods are gone).
    pub pod: Option<String>,
    pub remaining: Option<u64>,
}

impl Budget {
    pub fn held(&self) -> Option<&Hold> {
        match self {
            Budget::Held(h) => Some(h),
            _ => None,
        }
    }
}

/// Parses an RFC 3339 time as bot-runner and the status write it.
pub(crate) fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc))
}

pub(crate) fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The operator's hold the bot's status carries, while it lasts.
pub(crate) fn current_hold(bot: &MusicBot, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let until = parse_time(bot.status.as_ref()?.identify_held_until.as_deref()?)?;
    (until > now).then_some(until)
}

/// The budget now: a hold already in the status lasts until its time; otherwise a pod
/// reporting a hold is held by the operator if it restarted within [`CRASH_WINDOW`], and
/// left waiting on its own if not. The latest of several reported times wins.
pub(crate) fn budget(bot: &MusicBot, pods: &[Pod], reports: &[PodReport], now: DateTime<Utc>) -> Budget {
    if bot.spec.suspended {
        return Budget::Fine;
    }
    if let Some(until) = current_hold(bot, now) {
        let pod = reports.iter().find(|r| held_until(r).is_some()).map(|r| r.pod.clone());
        return Budget::Held(Hold { until, pod, remaining: None });
    }
    let Some((report, until)) =
        reports.iter().filter_map(|r| Some((r, held_until(r)?))).filter(|(_, t)| *t > now).max_by_key(|(_, t)| *t)
    else {
        return Budget::Fine;
    };
    let remaining = report.report.bots.iter().filter_map(|b| b.identifies_remaining).min();
    let hold = Hold { until, pod: Some(report.pod.clone()), remaining };
    if restarted_within(pods, &report.pod, now, CRASH_WINDOW) { Budget::Held(hold) } else { Budget::Waiting(hold) }
}

fn held_until(r: &PodReport) -> Option<DateTime<Utc>> {
    r.report.bots.iter().filter_map(|b| parse_time(b.identify_held_until.as_deref()?)).max()
}

/// Whether a container of pod `name` last ended (and was restarted) within `window`.
fn restarted_within(pods: &[Pod], name: &str, now: DateTime<Utc>, window: Duration) -> bool {
    let Some(status) = pods.iter().find(|p| p.metadata.name.as_deref() == Some(name)).and_then(|p| p.status.as_ref())
    else {
        return false;
    };
    status.container_statuses.iter().flatten().any(|c| {
        let ended = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()).and_then(|t| t.finished_at.as_ref());
        c.restart_count > 0
            && ended.and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0)).is_some_and(|t| now - t <= window)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use musicbot_api::crd::{MusicBotSpec, MusicBotStatus};
    use musicbot_api::report::{BotReport, StatusReport};
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    fn bot(held_until: Option<&str>) -> MusicBot {
        let spec: MusicBotSpec =
            serde_json::from_value(json!({"clientId": "123456789012345678", "tokenSecretRef": {"name": "t"}})).unwrap();
        let mut b = MusicBot::new("radio", spec);
        b.status = Some(MusicBotStatus { identify_held_until: held_until.map(str::to_string), ..Default::default() });
        b
    }

    fn report(held_until: Option<&str>, remaining: u64) -> PodReport {
        let bot = BotReport {
            identifies_remaining: Some(remaining),
            identify_held_until: held_until.map(str::to_string),
            ..Default::default()
        };
        PodReport { pod: "radio-0".into(), report: StatusReport { bots: vec![bot], ..Default::default() } }
    }

    fn pod(restarts: i32, last_exit: Option<&str>) -> Pod {
        let last = last_exit.map(|t| json!({"terminated": {"exitCode": 1, "finishedAt": t}}));
        serde_json::from_value(json!({
            "metadata": {"name": "radio-0"},
            "status": {"containerStatuses": [{
                "name": "bot-runner", "image": "i", "imageID": "", "ready": false, "restartCount": restarts,
                "lastState": last.unwrap_or(json!({})),
            }]}
        }))
        .unwrap()
    }

    const NOW: &str = "2026-12-01T20:00:00Z";
    const RESET: &str = "2026-12-01T21:00:00Z";

    #[test]
    fn a_pod_that_holds_after_crashing_is_held_by_the_operator_until_the_reset() {
        let b = budget(&bot(None), &[pod(2, Some("2026-12-01T19:59:30Z"))], &[report(Some(RESET), 3)], at(NOW));
        assert_eq!(b, Budget::Held(Hold { until: at(RESET), pod: Some("radio-0".into()), remaining: Some(3) }));
    }

    #[test]
    fn a_pod_that_holds_without_crashing_is_left_to_wait_on_its_own() {
        let reports = [report(Some(RESET), 3)];
        assert!(matches!(budget(&bot(None), &[pod(0, None)], &reports, at(NOW)), Budget::Waiting(_)));
        // A restart long ago is no crash loop.
        let old = [pod(1, Some("2026-12-01T19:30:00Z"))];
        assert!(matches!(budget(&bot(None), &old, &reports, at(NOW)), Budget::Waiting(_)));
    }

    #[test]
    fn a_crash_loop_with_identifies_to_spare_is_no_concern_of_the_budget() {
        let crashing = [pod(5, Some("2026-12-01T19:59:50Z"))];
        assert_eq!(budget(&bot(None), &crashing, &[report(None, 900)], at(NOW)), Budget::Fine);
        assert_eq!(budget(&bot(None), &crashing, &[], at(NOW)), Budget::Fine);
        // A reported time already past is no hold either.
        assert_eq!(budget(&bot(None), &crashing, &[report(Some("2026-12-01T19:00:00Z"), 3)], at(NOW)), Budget::Fine);
    }

    #[test]
    fn the_operators_hold_lasts_until_its_time_with_no_pods_then_ends() {
        let held = bot(Some(RESET));
        assert_eq!(current_hold(&held, at(NOW)), Some(at(RESET)));
        assert_eq!(
            budget(&held, &[], &[], at(NOW)),
            Budget::Held(Hold { until: at(RESET), pod: None, remaining: None })
        );
        let after = at("2026-12-01T21:00:01Z");
        assert_eq!(current_hold(&held, after), None);
        assert_eq!(budget(&held, &[], &[], after), Budget::Fine);
    }

    #[test]
    fn a_suspended_bot_is_never_held() {
        let mut b = bot(Some(RESET));
        b.spec.suspended = true;
        assert_eq!(budget(&b, &[], &[], at(NOW)), Budget::Fine);
    }
}
