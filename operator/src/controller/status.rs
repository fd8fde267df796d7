//! MusicBot status as a pure function of what reconcile observed, and the Events worth
//! telling a person about when it changes.

use super::token::TokenProblem;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use musicbot_api::crd::{Condition, MusicBot, MusicBotStatus, Phase, condition};
use musicbot_api::report::{ShardInfo, StatusReport};

/// A pod's `/status` answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodReport {
    pub pod: String,
    pub report: StatusReport,
}

/// Everything reconcile learned from the cluster and the bot's pods.
pub struct Observed<'a> {
    pub token: &'a Result<String, TokenProblem>,
    pub statefulset: Option<&'a StatefulSet>,
    /// The bot's pods (selected by the StatefulSet's selector labels).
    pub pods: &'a [Pod],
    /// Reports of the pods that answered `/status`.
    pub reports: &'a [PodReport],
    pub now: String,
}

/// Ready-condition reasons for pods that cannot run until something is fixed; each is
/// announced once by a Warning Event of the same reason.
pub mod reason {
    pub const IMAGE_PULL_FAILED: &str = "ImagePullFailed";
    pub const CRASH_LOOP: &str = "CrashLoopBackOff";
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    pub const CONTAINER_CONFIG: &str = "ContainerConfigError";
    pub const CONTAINER_START: &str = "ContainerStartFailed";
    pub const ALL: [&str; 5] = [IMAGE_PULL_FAILED, CRASH_LOOP, UNSCHEDULABLE, CONTAINER_CONFIG, CONTAINER_START];
}

/// Something that keeps a bot pod from running, as the kubelet or scheduler wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    pub pod: String,
    pub reason: &'static str,
    pub message: String,
}

/// Longest piece of a kubelet or bot message quoted in a condition.
const QUOTE_LIMIT: usize = 300;

fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The problems of `pods`, at most one per pod, in pod-name order. Pods being deleted are
/// left out: their replacement is what counts.
///
/// `crash_looping` says the bot was last seen in `CrashLoopBackOff`: between two back-offs
/// the kubelet runs the container again (and then reports it terminated), so a restarted
/// container that is not ready yet still counts as crash-looping instead of the bot
/// flapping to `Pending` and back, with a new Event each round.
pub fn pod_problems(pods: &[Pod], crash_looping: bool) -> Vec<PodProblem> {
    let mut out: Vec<PodProblem> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let status = p.status.as_ref()?;
            let problem = |reason, message: String| Some(PodProblem { pod: name.clone(), reason, message });
            let containers =
                status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
            for c in containers {
                if let Some((reason, message)) = container_problem(c, crash_looping) {
                    return problem(reason, format!("{name}: {message}"));
                }
            }
            let unschedulable = status.conditions.iter().flatten().find(|c| {
                c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
            })?;
            let why = unschedulable.message.as_deref().map(clip).unwrap_or_else(|| "no node fits it".into());
            problem(reason::UNSCHEDULABLE, format!("{name} cannot be scheduled: {why}"))
        })
        .collect();
    out.sort_by(|a, b| a.pod.cmp(&b.pod));
    out
}

fn container_problem(c: &ContainerStatus, crash_looping: bool) -> Option<(&'static str, String)> {
    let state = c.state.as_ref()?;
    let Some(waiting) = state.waiting.as_ref() else {
        // Running again (not ready) or just exited again, between two back-offs.
        let still = crash_looping && !c.ready && c.restart_count > 0;
        let last_exit = state.terminated.as_ref().or(c.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
        return last_exit.filter(|_| still).map(|t| (reason::CRASH_LOOP, crash_message(&c.name, t)));
    };
    let kubelet_says = waiting.message.as_deref().map(clip).filter(|m| !m.is_empty());
    let with_message = |what: String| match &kubelet_says {
        Some(m) => format!("{what}: {m}"),
        None => what,
    };
    let name = &c.name;
    Some(match waiting.reason.as_deref()? {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
            (reason::IMAGE_PULL_FAILED, with_message(format!("container {name} cannot pull its image {}", c.image)))
        }
        "CrashLoopBackOff" => match c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
            Some(t) => (reason::CRASH_LOOP, crash_message(name, t)),
            None => (reason::CRASH_LOOP, format!("container {name} keeps crashing")),
        },
        "CreateContainerConfigError" => {
            (reason::CONTAINER_CONFIG, with_message(format!("container {name} cannot be configured")))
        }
        "CreateContainerError" | "RunContainerError" | "StartError" => {
            (reason::CONTAINER_START, with_message(format!("container {name} cannot start")))
        }
        _ => return None,
    })
}

fn crash_message(container: &str, t: &ContainerStateTerminated) -> String {
    let why = t.reason.as_deref().unwrap_or("terminated");
    let mut message = format!("container {container} keeps crashing; last exit: {why}, exit code {}", t.exit_code);
    // With FallbackToLogsOnError this is the tail of the log: its last line is usually
    // the error.
    if let Some(last) = t.message.as_deref().and_then(|m| m.lines().rev().find(|l| !l.trim().is_empty())) {
        message.push_str(&format!(": {}", clip(last)));
    }
    message
}

/// Why the pods that answered `/status` without a gateway are not connected.
fn gateway_detail(reports: &[PodReport]) -> String {
    let parts: Vec<String> = reports
        .iter()
        .filter(|r| !r.report.gateway_connected)
        .map(|PodReport { pod, report }| {
            let ShardInfo { id, count } = report.shard;
            let who = if count > 1 { format!("shard {id} ({pod})") } else { pod.clone() };
            match report.error().map(clip) {
                Some(e) => format!("{who}: not connected to the Discord gateway: {e}"),
                None => format!("{who}: not connected to the Discord gateway yet"),
            }
        })
        .collect();
    parts.join("; ")
}

pub fn compute(bot: &MusicBot, seen: &Observed) -> MusicBotStatus {
    let old = bot.status.clone().unwrap_or_default();
    let generation = bot.metadata.generation;
    let shards = bot.spec.shards;
    let ready =
        seen.statefulset.and_then(|s| s.status.as_ref()).and_then(|s| s.ready_replicas).unwrap_or(0).max(0) as u32;
    let crash_looping = old.conditions.iter().any(|c| c.type_ == condition::READY && c.reason == reason::CRASH_LOOP);
    let problems = if bot.spec.suspended { Vec::new() } else { pod_problems(seen.pods, crash_looping) };
    let mut conditions = Vec::new();
    let mut set = |type_: &str, ok: Option<bool>, reason: &str, message: String| {
        let status = match ok {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        };
        conditions.push(carry_transition_time(&old.conditions, type_, status, reason, message, &seen.now, generation));
    };

    let phase = match seen.token {
        Err(problem) => {
            set(condition::TOKEN_RESOLVED, Some(false), problem.reason(), problem.to_string());
            Phase::Failed
        }
        Ok(_) => {
            set(
                condition::TOKEN_RESOLVED,
                Some(true),
                "TokenResolved",
                "the token Secret holds a bot token for this clientId".into(),
            );
            if bot.spec.suspended {
                Phase::Suspended
            } else if ready >= shards {
                Phase::Running
            } else if ready > 0 {
                Phase::Degraded
            } else if !problems.is_empty() {
                // Not a pod will run until the image, the node or the bot is fixed.
                Phase::Failed
            } else {
                Phase::Pending
            }
        }
    };
    let not_ready = || {
        let mut msg = format!("{ready}/{shards} shards ready");
        let gateway = gateway_detail(seen.reports);
        if !gateway.is_empty() {
            msg.push_str(&format!("; {gateway}"));
        }
        msg
    };
    let (ready_ok, ready_reason, ready_msg) = match (phase, problems.first()) {
        (Phase::Running, _) => (true, "AllShardsReady", format!("{ready}/{shards} shards ready")),
        (Phase::Suspended, _) => (false, "Suspended", "spec.suspended is true".to_string()),
        (Phase::Failed, _) if seen.token.is_err() => {
            (false, "TokenNotResolved", "the bot cannot start until its token resolves".to_string())
        }
        (_, Some(first)) => {
            let mut msg = first.message.clone();
            if problems.len() > 1 {
                msg.push_str(&format!(" (and {} more pod(s) with problems)", problems.len() - 1));
            }
            (false, first.reason, msg)
        }
        _ => (false, "ShardsNotReady", not_ready()),
    };
    set(condition::READY, Some(ready_ok), ready_reason, ready_msg);

    let answered = seen.reports.len() as u32;
    let (gw, cmds) = if answered == 0 {
        (None, None)
    } else {
        let connected = seen.reports.iter().filter(|r| r.report.gateway_connected).count() as u32;
        (
            Some(connected >= shards.min(answered).max(1) && connected == answered),
            Some(seen.reports.iter().any(|r| r.report.commands_deployed)),
        )
    };
    match gw {
        None => set(condition::GATEWAY_CONNECTED, None, "NoReport", "no bot pod has reported yet".into()),
        Some(true) => set(
            condition::GATEWAY_CONNECTED,
            Some(true),
            "Connected",
            format!("{answered} shard(s) connected to the Discord gateway"),
        ),
        Some(false) => {
            let detail = gateway_detail(seen.reports);
            let message =
                if detail.is_empty() { "a shard is not connected to the Discord gateway".into() } else { detail };
            set(condition::GATEWAY_CONNECTED, Some(false), "Disconnected", message)
        }
    }
    match cmds {
        None => set(condition::COMMANDS_DEPLOYED, None, "NoReport", "no bot pod has reported yet".into()),
        Some(true) => set(condition::COMMANDS_DEPLOYED, Some(true), "Deployed", "slash commands are registered".into()),
        Some(false) => set(
            condition::COMMANDS_DEPLOYED,
            Some(false),
            "NotDeployed",
            "slash commands are not registered yet".into(),
        ),
    }
    // Synced: only for MusicBots made by the MongoDB sync, from the annotations it writes.
    if let Some((ok, reason, message)) = synced(bot) {
        set(condition::SYNCED, Some(ok), reason, message);
    }

    let sum = |f: fn(&StatusReport) -> u64| {
        (!seen.reports.is_empty()).then(|| seen.reports.iter().map(|r| f(&r.report)).sum())
    };
    MusicBotStatus {
        phase: Some(phase),
        conditions,
        observed_generation: generation,
        guilds: sum(|r| r.guilds),
        users: sum(|r| r.users),
        voice_connections: sum(|r| r.voice_connections),
        pod_name: (seen.statefulset.is_some() && phase != Phase::Suspended && seen.token.is_ok())
            .then(|| format!("{}-0", bot.metadata.name.clone().unwrap_or_default())),
        ready_shards: seen.statefulset.map(|_| ready),
    }
}

/// The `Synced` condition from the sync's annotations: which record, when, and whether the
/// record is currently invalid (its last good version keeps running). None when the
/// MusicBot was not made by the sync.
fn synced(bot: &MusicBot) -> Option<(bool, &'static str, String)> {
    use musicbot_api::labels::{SYNC_ERROR, SYNCED_AT, SYNCED_FROM};
    let annotations = bot.metadata.annotations.as_ref()?;
    let from = annotations.get(SYNCED_FROM)?;
    let at = annotations.get(SYNCED_AT).map(String::as_str).unwrap_or("an unknown time");
    Some(match annotations.get(SYNC_ERROR) {
        Some(why) => (false, "RecordInvalid", format!("{from} is invalid ({why}); running its version synced at {at}")),
        None => (true, "Synced", format!("from {from} at {at}")),
    })
}

/// A condition keeps its `lastTransitionTime` while its status stays the same.
fn carry_transition_time(
    old: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: &str,
    generation: Option<i64>,
) -> Condition {
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: generation,
    }
}

/// An Event to publish: (warning?, reason, note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// Events for what changed between two statuses; nothing when nothing changed, so a
/// steady bot does not fill the event log.
pub fn notices(old: Option<&MusicBotStatus>, new: &MusicBotStatus) -> Vec<Notice> {
    let cond =
        |s: Option<&MusicBotStatus>, t: &str| s.and_then(|s| s.conditions.iter().find(|c| c.type_ == t).cloned());
    let mut out = Vec::new();
    let (old_tok, new_tok) = (cond(old, condition::TOKEN_RESOLVED), cond(Some(new), condition::TOKEN_RESOLVED));
    if let Some(n) = &new_tok {
        let changed = old_tok.as_ref().is_none_or(|o| o.status != n.status || o.reason != n.reason);
        if changed && n.status == "False" {
            out.push(Notice { warning: true, reason: "TokenNotResolved", note: n.message.clone() });
        } else if changed && old_tok.is_some_and(|o| o.status == "False") {
            out.push(Notice {
                warning: false,
                reason: "TokenResolved",
                note: "the token resolves again; starting the bot".into(),
            });
        }
    }
    let old_phase = old.and_then(|s| s.phase);
    if old_phase != new.phase {
        match new.phase {
            Some(Phase::Running) => {
                out.push(Notice { warning: false, reason: "Running", note: "every shard is ready".into() })
            }
            Some(Phase::Suspended) => out.push(Notice {
                warning: false,
                reason: "Suspended",
                note: "spec.suspended is true: pods scaled to zero, objects kept".into(),
            }),
            // A pod problem has an Event of its own, below.
            Some(Phase::Degraded) if !ready_reason_is_problem(new) => {
                out.push(Notice { warning: true, reason: "Degraded", note: "some shards are not ready".into() })
            }
            Some(Phase::Pending) if old_phase == Some(Phase::Suspended) => out.push(Notice {
                warning: false,
                reason: "Resumed",
                note: "spec.suspended is false: starting the bot".into(),
            }),
            _ => {}
        }
    }
    // Pod problems: once when the reason appears or changes, not on every reconcile (the
    // kubelet's own message keeps changing as it backs off).
    if let Some(n) = cond(Some(new), condition::READY)
        && let Some(problem) = reason::ALL.iter().find(|r| **r == n.reason)
        && cond(old, condition::READY).is_none_or(|o| o.reason != n.reason)
    {
        out.push(Notice { warning: true, reason: problem, note: n.message });
    }
    if let (Some(o), Some(n)) = (cond(old, condition::GATEWAY_CONNECTED), cond(Some(new), condition::GATEWAY_CONNECTED))
        && o.status == "True"
        && n.status == "False"
    {
        out.push(Notice { warning: true, reason: "GatewayDisconnected", note: n.message });
    }
    out
}

fn ready_reason_is_problem(status: &MusicBotStatus) -> bool {
    status.conditions.iter().any(|c| c.type_ == condition::READY && reason::ALL.contains(&c.reason.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use musicbot_api::crd::MusicBotSpec;
    use serde_json::json;

    fn bot(status: Option<MusicBotStatus>, suspended: bool) -> MusicBot {
        let spec: MusicBotSpec = serde_json::from_value(json!({
            "clientId": "123456789012345678", "tokenSecretRef": {"name": "t"}, "suspended": suspended
        }))
        .unwrap();
        let mut b = MusicBot::new("radio", spec);
        b.metadata.generation = Some(3);
        b.status = status;
        b
    }

    fn sts(ready: i32) -> StatefulSet {
        serde_json::from_value(json!({"status": {"replicas": 1, "readyReplicas": ready}})).unwrap()
    }

    fn cond<'a>(s: &'a MusicBotStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn a_missing_secret_fails_the_bot_with_a_reason() {
        let token = Err(TokenProblem::SecretNotFound("t".into()));
        let s = compute(
            &bot(None, false),
            &Observed { token: &token, statefulset: None, pods: &[], reports: &[], now: "T1".into() },
        );
        assert_eq!(s.phase, Some(Phase::Failed));
        let c = cond(&s, condition::TOKEN_RESOLVED);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "SecretNotFound"));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.pod_name, None);
        let n = notices(None, &s);
        assert!(n.iter().any(|n| n.warning && n.reason == "TokenNotResolved"), "{n:?}");
    }

    #[test]
    fn phase_follows_ready_shards_and_counts_sum_reports() {
        let token = Ok("d".to_string());
        let pending = compute(
            &bot(None, false),
            &Observed { token: &token, statefulset: Some(&sts(0)), pods: &[], reports: &[], now: "T1".into() },
        );
        assert_eq!(pending.phase, Some(Phase::Pending));
        assert_eq!(cond(&pending, condition::GATEWAY_CONNECTED).status, "Unknown");
        let reports = [PodReport {
            pod: "radio-0".into(),
            report: StatusReport {
                guilds: 5,
                users: 1250,
                voice_connections: 2,
                gateway_connected: true,
                commands_deployed: true,
                ..Default::default()
            },
        }];
        let running = compute(
            &bot(Some(pending.clone()), false),
            &Observed { token: &token, statefulset: Some(&sts(1)), pods: &[], reports: &reports, now: "T2".into() },
        );
        assert_eq!(running.phase, Some(Phase::Running));
        assert_eq!((running.guilds, running.users, running.voice_connections), (Some(5), Some(1250), Some(2)));
        assert_eq!(running.pod_name.as_deref(), Some("radio-0"));
        assert_eq!(cond(&running, condition::READY).status, "True");
        assert_eq!(cond(&running, condition::READY).last_transition_time, "T2");
        // TokenResolved stayed True: its transition time is kept.
        assert_eq!(cond(&running, condition::TOKEN_RESOLVED).last_transition_time, "T1");
        assert!(notices(Some(&pending), &running).iter().any(|n| n.reason == "Running"));
        // A steady state publishes nothing.
        let again = compute(
            &bot(Some(running.clone()), false),
            &Observed { token: &token, statefulset: Some(&sts(1)), pods: &[], reports: &reports, now: "T3".into() },
        );
        assert_eq!(again, running);
        assert!(notices(Some(&running), &again).is_empty());
    }

    #[test]
    fn suspension_and_resumption_are_reported() {
        let token = Ok("d".to_string());
        let suspended = compute(
            &bot(None, true),
            &Observed { token: &token, statefulset: Some(&sts(0)), pods: &[], reports: &[], now: "T".into() },
        );
        assert_eq!(suspended.phase, Some(Phase::Suspended));
        assert_eq!(cond(&suspended, condition::READY).reason, "Suspended");
        let resumed = compute(
            &bot(Some(suspended.clone()), false),
            &Observed { token: &token, statefulset: Some(&sts(0)), pods: &[], reports: &[], now: "T".into() },
        );
        let reasons: Vec<_> = notices(Some(&suspended), &resumed).into_iter().map(|n| n.reason).collect();
        assert_eq!(reasons, ["Resumed"]);
    }

    #[test]
    fn a_fixed_token_is_announced() {
        let bad = Err(TokenProblem::Empty { secret: "t".into(), key: "token".into() });
        let failed = compute(
            &bot(None, false),
            &Observed { token: &bad, statefulset: None, pods: &[], reports: &[], now: "T".into() },
        );
        let good = Ok("d".to_string());
        let fixed = compute(
            &bot(Some(failed.clone()), false),
            &Observed { token: &good, statefulset: Some(&sts(0)), pods: &[], reports: &[], now: "T".into() },
        );
        assert!(notices(Some(&failed), &fixed).iter().any(|n| n.reason == "TokenResolved" && !n.warning));
    }

    #[test]
    fn synced_follows_the_sync_annotations_and_is_absent_without_them() {
        use musicbot_api::labels::{SYNC_ERROR, SYNCED_AT, SYNCED_FROM};
        let token = Ok("d".to_string());
        let seen = |now: &str| Observed { token: &token, statefulset: None, pods: &[], reports: &[], now: now.into() };
        let hand_made = compute(&bot(None, false), &seen("T0"));
        assert!(hand_made.conditions.iter().all(|c| c.type_ != condition::SYNCED));

        let mut synced_bot = bot(None, false);
        synced_bot.metadata.annotations = Some(std::collections::BTreeMap::from([
            (SYNCED_FROM.to_string(), "MusicBotDB/650000000000000000000001".to_string()),
            (SYNCED_AT.to_string(), "2026-11-26T10:00:00Z".to_string()),
        ]));
        let first = compute(&synced_bot, &seen("T1"));
        let c = cond(&first, condition::SYNCED);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Synced"));
        assert_eq!(c.message, "from MusicBotDB/650000000000000000000001 at 2026-11-26T10:00:00Z");

        // A later sync keeps the transition time and updates the message.
        synced_bot.status = Some(first);
        synced_bot.metadata.annotations.as_mut().unwrap().insert(SYNCED_AT.into(), "2026-11-26T11:00:00Z".into());
        let second = compute(&synced_bot, &seen("T2"));
        assert_eq!(cond(&second, condition::SYNCED).last_transition_time, "T1");
        assert!(cond(&second, condition::SYNCED).message.ends_with("11:00:00Z"));

        synced_bot.metadata.annotations.as_mut().unwrap().insert(SYNC_ERROR.into(), "field `isActive` ...".into());
        let invalid = compute(&synced_bot, &seen("T3"));
        let c = cond(&invalid, condition::SYNCED);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.last_transition_time.as_str()),
            ("False", "RecordInvalid", "T3")
        );
        assert!(c.message.contains("isActive"), "{}", c.message);
    }

    fn pod(name: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).unwrap()
    }

    /// What a kubelet writes for a container that is waiting, with an optional last exit.
    fn waiting(reason: &str, message: &str, last: Option<serde_json::Value>) -> serde_json::Value {
        let mut c = json!({
            "name": "bot-runner", "image": "registry.example/bot-runner:9", "imageID": "", "ready": false,
            "restartCount": 4, "started": false,
            "state": {"waiting": {"reason": reason, "message": message}}
        });
        if let Some(last) = last {
            c["lastState"] = json!({"terminated": last});
        }
        json!({"phase": "Pending", "containerStatuses": [c], "conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}
        ]})
    }

    fn observe(b: &MusicBot, pods: &[Pod], reports: &[PodReport], now: &str) -> MusicBotStatus {
        let token = Ok("d".to_string());
        compute(b, &Observed { token: &token, statefulset: Some(&sts(0)), pods, reports, now: now.into() })
    }

    #[test]
    fn an_image_that_cannot_be_pulled_fails_the_bot_once_with_the_kubelets_message() {
        let pull = "failed to pull and unpack image \"registry.example/bot-runner:9\": not found";
        let first = observe(&bot(None, false), &[pod("radio-0", waiting("ErrImagePull", pull, None))], &[], "T1");
        assert_eq!(first.phase, Some(Phase::Failed));
        let ready = cond(&first, condition::READY);
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", reason::IMAGE_PULL_FAILED));
        assert!(ready.message.contains("radio-0") && ready.message.contains(pull), "{}", ready.message);
        assert_eq!(first.pod_name.as_deref(), Some("radio-0"));
        let events = notices(None, &first);
        assert_eq!(events.iter().filter(|n| n.warning && n.reason == reason::IMAGE_PULL_FAILED).count(), 1);

        // The kubelet alternates with ImagePullBackOff: the same problem, no new Event.
        let backoff = "Back-off pulling image \"registry.example/bot-runner:9\"";
        let second = observe(
            &bot(Some(first.clone()), false),
            &[pod("radio-0", waiting("ImagePullBackOff", backoff, None))],
            &[],
            "T2",
        );
        assert_eq!(cond(&second, condition::READY).reason, reason::IMAGE_PULL_FAILED);
        assert_eq!(cond(&second, condition::READY).last_transition_time, "T1");
        assert!(notices(Some(&first), &second).is_empty());
    }

    #[test]
    fn a_crash_loop_shows_the_last_exit_and_the_tail_of_the_log() {
        let last =
            json!({"exitCode": 1, "reason": "Error", "message": "starting\nError: the token was refused by Discord\n"});
        let s = observe(
            &bot(None, false),
            &[pod("radio-0", waiting("CrashLoopBackOff", "back-off 40s restarting failed container", Some(last)))],
            &[],
            "T1",
        );
        assert_eq!(s.phase, Some(Phase::Failed));
        let ready = cond(&s, condition::READY);
        assert_eq!(ready.reason, reason::CRASH_LOOP);
        assert!(ready.message.contains("exit code 1"), "{}", ready.message);
        assert!(
            ready.message.contains("Error, exit code 1: Error: the token was refused by Discord"),
            "{}",
            ready.message
        );
        assert!(notices(None, &s).iter().any(|n| n.warning && n.reason == reason::CRASH_LOOP));

        let oom = json!({"exitCode": 137, "reason": "OOMKilled"});
        let s = observe(&bot(None, false), &[pod("radio-0", waiting("CrashLoopBackOff", "", Some(oom)))], &[], "T1");
        assert!(cond(&s, condition::READY).message.ends_with("last exit: OOMKilled, exit code 137"));
    }

    #[test]
    fn a_crash_loop_stays_one_problem_while_the_kubelet_restarts_the_container() {
        let exit =
            |code: i32| json!({"exitCode": code, "reason": "Error", "message": "Error: the token was refused\n"});
        let with_state = |state: serde_json::Value, last: serde_json::Value, ready: bool| {
            pod(
                "radio-0",
                json!({"phase": "Running", "containerStatuses": [{
                    "name": "bot-runner", "image": "bot-runner:1", "imageID": "", "ready": ready, "restartCount": 3,
                    "state": state, "lastState": {"terminated": last}
                }]}),
            )
        };
        let backoff = with_state(json!({"waiting": {"reason": "CrashLoopBackOff"}}), exit(1), false);
        let running = with_state(json!({"running": {"startedAt": "2026-12-01T10:00:00Z"}}), exit(1), false);
        let exited = with_state(json!({"terminated": exit(1)}), exit(1), false);

        let first = observe(&bot(None, false), std::slice::from_ref(&backoff), &[], "T1");
        assert_eq!(cond(&first, condition::READY).reason, reason::CRASH_LOOP);
        let mut last = first.clone();
        for p in [running.clone(), exited, backoff, running.clone()] {
            let next = observe(&bot(Some(last.clone()), false), &[p], &[], "T2");
            assert_eq!(next.phase, Some(Phase::Failed));
            assert_eq!(cond(&next, condition::READY), cond(&first, condition::READY), "the condition stays as it was");
            assert!(notices(Some(&last), &next).is_empty(), "{:?}", notices(Some(&last), &next));
            last = next;
        }
        // A first start that is merely slow is no crash loop, and a ready pod ends one.
        assert_eq!(observe(&bot(None, false), std::slice::from_ref(&running), &[], "T").phase, Some(Phase::Pending));
        let ready = with_state(json!({"running": {"startedAt": "2026-12-01T10:00:00Z"}}), exit(1), true);
        let token = Ok("d".to_string());
        let s = compute(
            &bot(Some(last), false),
            &Observed { token: &token, statefulset: Some(&sts(1)), pods: &[ready], reports: &[], now: "T3".into() },
        );
        assert_eq!(s.phase, Some(Phase::Running));
    }

    #[test]
    fn an_unschedulable_pod_carries_the_schedulers_message() {
        let why = "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available.";
        let status = json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why
        }]});
        let s = observe(&bot(None, false), &[pod("radio-0", status)], &[], "T1");
        assert_eq!(s.phase, Some(Phase::Failed));
        let ready = cond(&s, condition::READY);
        assert_eq!(ready.reason, reason::UNSCHEDULABLE);
        assert_eq!(ready.message, format!("radio-0 cannot be scheduled: {why}"));
        assert!(notices(None, &s).iter().any(|n| n.warning && n.reason == reason::UNSCHEDULABLE));
    }

    #[test]
    fn pods_merely_starting_or_without_status_stay_pending() {
        let creating = waiting("ContainerCreating", "", None);
        let no_status: Pod = serde_json::from_value(json!({"metadata": {"name": "radio-0"}})).unwrap();
        for p in [pod("radio-0", creating), no_status, pod("radio-0", json!({"phase": "Pending"}))] {
            let s = observe(&bot(None, false), &[p], &[], "T1");
            assert_eq!(s.phase, Some(Phase::Pending));
            assert_eq!(cond(&s, condition::READY).reason, "ShardsNotReady");
            assert!(notices(None, &s).iter().all(|n| !n.warning), "{:?}", notices(None, &s));
        }
        // A pod on its way out does not count; a suspended bot has no pod problems.
        let mut leaving = pod("radio-0", waiting("CrashLoopBackOff", "", None));
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
        assert_eq!(observe(&bot(None, false), &[leaving], &[], "T").phase, Some(Phase::Pending));
        let crashing = pod("radio-0", waiting("CrashLoopBackOff", "", None));
        assert_eq!(observe(&bot(None, true), &[crashing], &[], "T").phase, Some(Phase::Suspended));
    }

    #[test]
    fn one_broken_shard_of_two_degrades_the_bot_and_names_the_pod() {
        let mut b = bot(None, false);
        b.spec.shards = 2;
        let token = Ok("d".to_string());
        let broken = pod("radio-1", waiting("CreateContainerConfigError", "configmap \"corp-ca\" not found", None));
        let s = compute(
            &b,
            &Observed { token: &token, statefulset: Some(&sts(1)), pods: &[broken], reports: &[], now: "T".into() },
        );
        assert_eq!(s.phase, Some(Phase::Degraded));
        let ready = cond(&s, condition::READY);
        assert_eq!(ready.reason, reason::CONTAINER_CONFIG);
        assert!(ready.message.starts_with("radio-1: ") && ready.message.contains("corp-ca"), "{}", ready.message);
        let events = notices(None, &s);
        assert!(events.iter().any(|n| n.reason == reason::CONTAINER_CONFIG), "{events:?}");
        assert!(!events.iter().any(|n| n.reason == "Degraded"), "one Event per problem: {events:?}");
    }

    #[test]
    fn a_pod_that_is_not_ready_says_why_its_gateway_is_not_connected() {
        let failing = musicbot_api::BotReport {
            name: "radio".into(),
            last_error: Some("Gateway connection failed: IO error: connection refused".into()),
            ..Default::default()
        };
        let report = |bot: musicbot_api::BotReport| PodReport {
            pod: "radio-0".into(),
            report: StatusReport::of(ShardInfo { id: 0, count: 1 }, vec![bot]),
        };
        let s = observe(&bot(None, false), &[], &[report(failing.clone())], "T1");
        assert_eq!(s.phase, Some(Phase::Pending));
        let gw = cond(&s, condition::GATEWAY_CONNECTED);
        assert_eq!(gw.status, "False");
        assert_eq!(
            gw.message,
            "radio-0: not connected to the Discord gateway: Gateway connection failed: IO error: connection refused"
        );
        assert!(cond(&s, condition::READY).message.contains("connection refused"));
        // Without an error in the report it still says that the pod answered.
        let quiet = report(musicbot_api::BotReport { last_error: None, ..failing });
        let s = observe(&bot(None, false), &[], &[quiet], "T1");
        assert_eq!(cond(&s, condition::GATEWAY_CONNECTED).message, "radio-0: not connected to the Discord gateway yet");
        // A shard of several is named as one.
        let mut second = report(musicbot_api::BotReport::default());
        second.report.shard = ShardInfo { id: 1, count: 2 };
        second.pod = "radio-1".into();
        let s = observe(&bot(None, false), &[], &[second], "T1");
        assert_eq!(
            cond(&s, condition::GATEWAY_CONNECTED).message,
            "shard 1 (radio-1): not connected to the Discord gateway yet"
        );
    }

    #[test]
    fn quotes_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(QUOTE_LIMIT + 10);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), QUOTE_LIMIT + 1);
        assert!(clipped.ends_with('…'));
    }
}
