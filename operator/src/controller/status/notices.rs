//! The Events worth telling a person about when a bot's status changes.

use musicbot_api::conditions::{ConditionStatus, ConditionType, Reason};
use musicbot_api::crd::{MusicBotStatus, Phase};

/// An Event to publish: (warning?, reason, note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub warning: bool,
    pub reason: Reason,
    pub note: String,
}

impl Notice {
    fn warning(reason: Reason, note: impl Into<String>) -> Self {
        Self { warning: true, reason, note: note.into() }
    }

    fn normal(reason: Reason, note: impl Into<String>) -> Self {
        Self { warning: false, reason, note: note.into() }
    }
}

/// Events for what changed between two statuses; nothing when nothing changed, so a
/// steady bot does not fill the event log.
pub(crate) fn notices(old: Option<&MusicBotStatus>, new: &MusicBotStatus) -> Vec<Notice> {
    let mut out = Vec::new();
    out.extend(token_notice(old, new));
    out.extend(image_notice(old, new));
    out.extend(phase_notice(old.and_then(|s| s.phase), new));
    out.extend(pod_problem_notice(old, new));
    out.extend(gateway_notice(old, new));
    out.extend(identify_notice(old, new));
    out
}

/// Once when the bot starts waiting for identifies (or the operator starts holding it),
/// saying until when; once when the operator's hold ends.
fn identify_notice(old: Option<&MusicBotStatus>, new: &MusicBotStatus) -> Option<Notice> {
    let o = cond(old, ConditionType::IdentifiesAvailable);
    let n = new.condition(ConditionType::IdentifiesAvailable)?;
    let was = o.filter(|o| o.status == ConditionStatus::False).and_then(|o| Reason::parse(&o.reason));
    if n.status == ConditionStatus::False {
        let reason = Reason::parse(&n.reason)?;
        return (was != Some(reason)).then(|| Notice::warning(reason, n.message.clone()));
    }
    (was == Some(Reason::IdentifyHeld)).then(|| {
        Notice::normal(Reason::IdentifyHoldEnded, "Discord's reset time has passed: starting the bot's pods again")
    })
}

fn cond(s: Option<&MusicBotStatus>, t: ConditionType) -> Option<&musicbot_api::conditions::Condition> {
    s?.condition(t)
}

fn token_notice(old: Option<&MusicBotStatus>, new: &MusicBotStatus) -> Option<Notice> {
    let (old, new) = (cond(old, ConditionType::TokenResolved), new.condition(ConditionType::TokenResolved)?);
    let changed = old.is_none_or(|o| o.status != new.status || o.reason != new.reason);
    if changed && new.status == ConditionStatus::False {
        Some(Notice::warning(Reason::TokenNotResolved, new.message.clone()))
    } else if changed && old.is_some_and(|o| o.status == ConditionStatus::False) {
        Some(Notice::normal(Reason::TokenResolved, "the token resolves again; starting the bot"))
    } else {
        None
    }
}

/// Once when the image is refused (the message names the allowed repositories), not on
/// every reconcile while it stays refused.
fn image_notice(old: Option<&MusicBotStatus>, new: &MusicBotStatus) -> Option<Notice> {
    let ready = new.condition(ConditionType::Ready).filter(|c| c.reason == Reason::ImageNotAllowed)?;
    cond(old, ConditionType::Ready)
        .is_none_or(|o| o.reason != ready.reason || o.message != ready.message)
        .then(|| Notice::warning(Reason::ImageNotAllowed, ready.message.clone()))
}

fn phase_notice(old_phase: Option<Phase>, new: &MusicBotStatus) -> Option<Notice> {
    if old_phase == new.phase {
        return None;
    }
    match new.phase? {
        Phase::Running => Some(Notice::normal(Reason::Running, "every shard is ready")),
        Phase::Suspended => {
            Some(Notice::normal(Reason::Suspended, "spec.suspended is true: pods scaled to zero, objects kept"))
        }
        // A pod problem has an Event of its own.
        Phase::Degraded if ready_pod_problem(new).is_none() => {
            Some(Notice::warning(Reason::Degraded, "some shards are not ready"))
        }
        Phase::Pending if old_phase == Some(Phase::Suspended) => {
            Some(Notice::normal(Reason::Resumed, "spec.suspended is false: starting the bot"))
        }
        _ => None,
    }
}

/// Pod problems: once when the reason appears or changes, not on every reconcile (the
/// kubelet's own message keeps changing as it backs off).
fn pod_problem_notice(old: Option<&MusicBotStatus>, new: &MusicBotStatus) -> Option<Notice> {
    let problem = ready_pod_problem(new)?;
    let ready = new.condition(ConditionType::Ready)?;
    cond(old, ConditionType::Ready)
        .is_none_or(|o| o.reason != ready.reason)
        .then(|| Notice::warning(problem, ready.message.clone()))
}

fn gateway_notice(old: Option<&MusicBotStatus>, new: &MusicBotStatus) -> Option<Notice> {
    let (o, n) = (cond(old, ConditionType::GatewayConnected)?, new.condition(ConditionType::GatewayConnected)?);
    (o.status == ConditionStatus::True && n.status == ConditionStatus::False)
        .then(|| Notice::warning(Reason::GatewayDisconnected, n.message.clone()))
}

/// The pod problem the Ready condition names, if it names one.
fn ready_pod_problem(status: &MusicBotStatus) -> Option<Reason> {
    let reason = Reason::parse(&status.condition(ConditionType::Ready)?.reason)?;
    reason.is_pod_problem().then_some(reason)
}
