//! MusicBot status as a pure function of what reconcile observed, and the Events worth
//! telling a person about when it changes.

mod notices;
mod pods;

use super::identify::{self, Budget, Hold};
use super::token::TokenProblem;
use super::workload::ImageNotAllowed;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use musicbot_api::conditions::{Condition, ConditionStatus, ConditionType, Reason};
use musicbot_api::crd::{MusicBot, MusicBotStatus, Phase};
use musicbot_api::report::{ShardInfo, StatusReport};
pub(crate) use notices::notices;
use pods::{PodProblem, clip, pod_problems};

/// A pod's `/status` answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct PodReport {
    pub pod: String,
    pub report: StatusReport,
}

/// Everything reconcile learned from the cluster and the bot's pods.
pub(crate) struct Observed<'a> {
    pub token: &'a Result<String, TokenProblem>,
    /// Set when the bot's image may not run, so its StatefulSet was left as it was.
    pub image: Option<&'a ImageNotAllowed>,
    pub statefulset: Option<&'a StatefulSet>,
    /// The bot's pods (selected by the StatefulSet's selector labels).
    pub pods: &'a [Pod],
    /// Reports of the pods that answered `/status`.
    pub reports: &'a [PodReport],
    /// Whether the bot waits for identifies, and whether the operator holds it.
    pub budget: &'a Budget,
    pub now: Time,
}

/// What one condition says, before its transition time is settled.
struct Verdict {
    status: ConditionStatus,
    reason: Reason,
    message: String,
}

impl Verdict {
    fn new(known: Option<bool>, reason: Reason, message: impl Into<String>) -> Self {
        Self { status: known.into(), reason, message: message.into() }
    }
}

pub(crate) fn compute(bot: &MusicBot, seen: &Observed) -> MusicBotStatus {
    let old = bot.status.clone().unwrap_or_default();
    let shards = bot.spec.shards;
    let ready =
        seen.statefulset.and_then(|s| s.status.as_ref()).and_then(|s| s.ready_replicas).unwrap_or(0).max(0) as u32;
    let crash_looping = old.condition(ConditionType::Ready).is_some_and(|c| c.reason == Reason::CrashLoopBackOff);
    let problems = if bot.spec.suspended { Vec::new() } else { pod_problems(seen.pods, crash_looping) };
    let phase = phase(bot, seen, ready, &problems);

    let mut verdicts = vec![
        (ConditionType::TokenResolved, token_verdict(seen.token)),
        (ConditionType::Ready, ready_verdict(phase, seen, ready, shards, &problems)),
        (ConditionType::GatewayConnected, gateway_verdict(seen.reports, shards)),
        (ConditionType::CommandsDeployed, commands_verdict(seen.reports)),
        (ConditionType::IdentifiesAvailable, identify_verdict(seen.budget, seen.reports)),
    ];
    // Synced: only for MusicBots made by the MongoDB sync, from the annotations it writes.
    verdicts.extend(synced(bot).map(|v| (ConditionType::Synced, v)));
    let generation = bot.metadata.generation;
    let conditions = verdicts
        .into_iter()
        .map(|(type_, verdict)| carry_transition_time(&old.conditions, type_, verdict, &seen.now, generation))
        .collect();

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
        pod_name: (seen.statefulset.is_some()
            && phase != Phase::Suspended
            && seen.token.is_ok()
            && seen.image.is_none())
        .then(|| format!("{}-0", bot.metadata.name.clone().unwrap_or_default())),
        ready_shards: seen.statefulset.map(|_| ready),
        identify_held_until: seen.budget.held().map(|h| identify::format_time(h.until)),
        fleet: Some(bot.spec.fleet_name().to_string()),
    }
}

fn phase(bot: &MusicBot, seen: &Observed, ready: u32, problems: &[PodProblem]) -> Phase {
    if seen.token.is_err() || seen.image.is_some() {
        Phase::Failed
    } else if bot.spec.suspended {
        Phase::Suspended
    } else if matches!(seen.budget, Budget::Held(_)) {
        Phase::Held
    } else if ready >= bot.spec.shards {
        Phase::Running
    } else if ready > 0 {
        Phase::Degraded
    } else if matches!(seen.budget, Budget::Waiting(_)) {
        // Its pod is up and waits for the reset: not failed, and not pending either.
        Phase::Held
    } else if !problems.is_empty() {
        // Not a pod will run until the image, the node or the bot is fixed.
        Phase::Failed
    } else {
        Phase::Pending
    }
}

fn token_verdict(token: &Result<String, TokenProblem>) -> Verdict {
    match token {
        Err(problem) => Verdict::new(Some(false), problem.reason(), problem.to_string()),
        Ok(_) => {
            Verdict::new(Some(true), Reason::TokenResolved, "the token Secret holds a bot token for this clientId")
        }
    }
}

fn ready_verdict(phase: Phase, seen: &Observed, ready: u32, shards: u32, problems: &[PodProblem]) -> Verdict {
    match (phase, problems.first()) {
        (Phase::Running, _) => {
            Verdict::new(Some(true), Reason::AllShardsReady, format!("{ready}/{shards} shards ready"))
        }
        (Phase::Suspended, _) => Verdict::new(Some(false), Reason::Suspended, "spec.suspended is true"),
        (Phase::Held, _) => identify_verdict(seen.budget, seen.reports),
        (Phase::Failed, _) if let Some(image) = seen.image => {
            Verdict::new(Some(false), Reason::ImageNotAllowed, image.to_string())
        }
        (Phase::Failed, _) if seen.token.is_err() => {
            Verdict::new(Some(false), Reason::TokenNotResolved, "the bot cannot start until its token resolves")
        }
        (_, Some(first)) => {
            let mut msg = first.message.clone();
            if problems.len() > 1 {
                msg.push_str(&format!(" (and {} more pod(s) with problems)", problems.len() - 1));
            }
            Verdict::new(Some(false), first.reason, msg)
        }
        _ => {
            let mut msg = format!("{ready}/{shards} shards ready");
            let gateway = gateway_detail(seen.reports);
            if !gateway.is_empty() {
                msg.push_str(&format!("; {gateway}"));
            }
            Verdict::new(Some(false), Reason::ShardsNotReady, msg)
        }
    }
}

fn gateway_verdict(reports: &[PodReport], shards: u32) -> Verdict {
    let answered = reports.len() as u32;
    if answered == 0 {
        return Verdict::new(None, Reason::NoReport, "no bot pod has reported yet");
    }
    let connected = reports.iter().filter(|r| r.report.gateway_connected).count() as u32;
    if connected >= shards.min(answered).max(1) && connected == answered {
        return Verdict::new(
            Some(true),
            Reason::Connected,
            format!("{answered} shard(s) connected to the Discord gateway"),
        );
    }
    let detail = gateway_detail(reports);
    let message = if detail.is_empty() { "a shard is not connected to the Discord gateway".into() } else { detail };
    Verdict::new(Some(false), Reason::Disconnected, message)
}

fn commands_verdict(reports: &[PodReport]) -> Verdict {
    if reports.is_empty() {
        Verdict::new(None, Reason::NoReport, "no bot pod has reported yet")
    } else if reports.iter().any(|r| r.report.commands_deployed) {
        Verdict::new(Some(true), Reason::Deployed, "slash commands are registered")
    } else {
        Verdict::new(Some(false), Reason::NotDeployed, "slash commands are not registered yet")
    }
}

fn identify_verdict(budget: &Budget, reports: &[PodReport]) -> Verdict {
    let left = |h: &Hold| match h.remaining {
        Some(n) => format!("{n} identifies left"),
        None => "its reserve of identifies left".into(),
    };
    let until = |h: &Hold| identify::format_time(h.until);
    match budget {
        Budget::Held(h) => {
            let who = match &h.pod {
                Some(pod) => format!("{pod} crash-looped with {}", left(h)),
                None => "a pod crash-looped with its reserve of identifies left".into(),
            };
            Verdict::new(
                Some(false),
                Reason::IdentifyHeld,
                format!(
                    "{who} of the token's daily 1,000: the bot's pods are stopped until {}, when Discord refills                      them, and start again then",
                    until(h)
                ),
            )
        }
        Budget::Waiting(h) => Verdict::new(
            Some(false),
            Reason::IdentifyReserveReached,
            format!(
                "{} has {} of the token's daily 1,000 and waits until {} (Discord's reset) before it connects",
                h.pod.as_deref().unwrap_or("a pod"),
                left(h),
                until(h)
            ),
        ),
        Budget::Fine => {
            let remaining = reports.iter().flat_map(|r| &r.report.bots).filter_map(|b| b.identifies_remaining).min();
            match remaining {
                Some(n) => Verdict::new(
                    Some(true),
                    Reason::IdentifiesLeft,
                    format!("{n} identifies left until Discord's reset"),
                ),
                None => Verdict::new(None, Reason::NoReport, "no bot pod has reported its identify budget yet"),
            }
        }
    }
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

/// The `Synced` condition from the sync's annotations: which record, when, and whether the
/// record is currently invalid (its last good version keeps running). None when the
/// MusicBot was not made by the sync.
fn synced(bot: &MusicBot) -> Option<Verdict> {
    use musicbot_api::labels::{SYNC_ERROR, SYNC_HELD, SYNCED_AT, SYNCED_FROM};
    let annotations = bot.metadata.annotations.as_ref()?;
    let from = annotations.get(SYNCED_FROM)?;
    let at = annotations.get(SYNCED_AT).map(String::as_str).unwrap_or("an unknown time");
    if let Some(why) = annotations.get(SYNC_HELD) {
        return Some(Verdict::new(Some(false), Reason::MassDeletionHeld, why.clone()));
    }
    Some(match annotations.get(SYNC_ERROR) {
        Some(why) => Verdict::new(
            Some(false),
            Reason::RecordInvalid,
            format!("{from} is invalid ({why}); running its version synced at {at}"),
        ),
        None => Verdict::new(Some(true), Reason::Synced, format!("from {from} at {at}")),
    })
}

/// A condition keeps its `lastTransitionTime` while its status stays the same.
fn carry_transition_time(
    old: &[Condition],
    type_: ConditionType,
    verdict: Verdict,
    now: &Time,
    generation: Option<i64>,
) -> Condition {
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == verdict.status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.as_str().into(),
        status: verdict.status.as_str().into(),
        reason: verdict.reason.as_str().into(),
        message: verdict.message,
        last_transition_time: since,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests;
