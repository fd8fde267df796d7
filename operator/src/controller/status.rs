//! MusicBot status as a pure function of what reconcile observed, and the Events worth
//! telling a person about when it changes.

use super::token::TokenProblem;
use crate::crd::{Condition, MusicBot, MusicBotStatus, Phase, condition};
use k8s_openapi::api::apps::v1::StatefulSet;
use serde::Deserialize;

/// What one bot-runner pod reports on `/status`.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct BotReport {
    pub guilds: u64,
    pub users: u64,
    pub voice_connections: u64,
    pub gateway_connected: bool,
    pub commands_deployed: bool,
}

/// Everything reconcile learned from the cluster and the bot's pods.
pub struct Observed<'a> {
    pub token: &'a Result<String, TokenProblem>,
    pub statefulset: Option<&'a StatefulSet>,
    /// Reports of the pods that answered `/status`.
    pub reports: &'a [BotReport],
    pub now: String,
}

pub fn compute(bot: &MusicBot, seen: &Observed) -> MusicBotStatus {
    let old = bot.status.clone().unwrap_or_default();
    let generation = bot.metadata.generation;
    let shards = bot.spec.shards;
    let ready =
        seen.statefulset.and_then(|s| s.status.as_ref()).and_then(|s| s.ready_replicas).unwrap_or(0).max(0) as u32;
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
            } else {
                Phase::Pending
            }
        }
    };
    let (ready_ok, ready_reason, ready_msg) = match phase {
        Phase::Running => (true, "AllShardsReady", format!("{ready}/{shards} shards ready")),
        Phase::Suspended => (false, "Suspended", "spec.suspended is true".to_string()),
        Phase::Failed => (false, "TokenNotResolved", "the bot cannot start until its token resolves".to_string()),
        _ => (false, "ShardsNotReady", format!("{ready}/{shards} shards ready")),
    };
    set(condition::READY, Some(ready_ok), ready_reason, ready_msg);

    let answered = seen.reports.len() as u32;
    let (gw, cmds) = if answered == 0 {
        (None, None)
    } else {
        let connected = seen.reports.iter().filter(|r| r.gateway_connected).count() as u32;
        (
            Some(connected >= shards.min(answered).max(1) && connected == answered),
            Some(seen.reports.iter().any(|r| r.commands_deployed)),
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
        Some(false) => set(
            condition::GATEWAY_CONNECTED,
            Some(false),
            "Disconnected",
            "a shard is not connected to the Discord gateway".into(),
        ),
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

    let sum = |f: fn(&BotReport) -> u64| (!seen.reports.is_empty()).then(|| seen.reports.iter().map(f).sum());
    MusicBotStatus {
        phase: Some(phase),
        conditions,
        observed_generation: generation,
        guilds: sum(|r| r.guilds),
        users: sum(|r| r.users),
        voice_connections: sum(|r| r.voice_connections),
        pod_name: (seen.statefulset.is_some() && phase != Phase::Suspended && phase != Phase::Failed)
            .then(|| format!("{}-0", bot.metadata.name.clone().unwrap_or_default())),
        ready_shards: seen.statefulset.map(|_| ready),
    }
}

/// The `Synced` condition from the sync's annotations: which record, when, and whether the
/// record is currently invalid (its last good version keeps running). None when the
/// MusicBot was not made by the sync.
fn synced(bot: &MusicBot) -> Option<(bool, &'static str, String)> {
    use crate::sync::desired::{SYNC_ERROR, SYNCED_AT, SYNCED_FROM};
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
            Some(Phase::Degraded) => {
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
    if let (Some(o), Some(n)) = (cond(old, condition::GATEWAY_CONNECTED), cond(Some(new), condition::GATEWAY_CONNECTED))
        && o.status == "True"
        && n.status == "False"
    {
        out.push(Notice { warning: true, reason: "GatewayDisconnected", note: n.message });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MusicBotSpec;
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
        let s =
            compute(&bot(None, false), &Observed { token: &token, statefulset: None, reports: &[], now: "T1".into() });
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
            &Observed { token: &token, statefulset: Some(&sts(0)), reports: &[], now: "T1".into() },
        );
        assert_eq!(pending.phase, Some(Phase::Pending));
        assert_eq!(cond(&pending, condition::GATEWAY_CONNECTED).status, "Unknown");
        let reports = [BotReport {
            guilds: 5,
            users: 1250,
            voice_connections: 2,
            gateway_connected: true,
            commands_deployed: true,
        }];
        let running = compute(
            &bot(Some(pending.clone()), false),
            &Observed { token: &token, statefulset: Some(&sts(1)), reports: &reports, now: "T2".into() },
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
            &Observed { token: &token, statefulset: Some(&sts(1)), reports: &reports, now: "T3".into() },
        );
        assert_eq!(again, running);
        assert!(notices(Some(&running), &again).is_empty());
    }

    #[test]
    fn suspension_and_resumption_are_reported() {
        let token = Ok("d".to_string());
        let suspended = compute(
            &bot(None, true),
            &Observed { token: &token, statefulset: Some(&sts(0)), reports: &[], now: "T".into() },
        );
        assert_eq!(suspended.phase, Some(Phase::Suspended));
        assert_eq!(cond(&suspended, condition::READY).reason, "Suspended");
        let resumed = compute(
            &bot(Some(suspended.clone()), false),
            &Observed { token: &token, statefulset: Some(&sts(0)), reports: &[], now: "T".into() },
        );
        let reasons: Vec<_> = notices(Some(&suspended), &resumed).into_iter().map(|n| n.reason).collect();
        assert_eq!(reasons, ["Resumed"]);
    }

    #[test]
    fn a_fixed_token_is_announced() {
        let bad = Err(TokenProblem::Empty { secret: "t".into(), key: "token".into() });
        let failed =
            compute(&bot(None, false), &Observed { token: &bad, statefulset: None, reports: &[], now: "T".into() });
        let good = Ok("d".to_string());
        let fixed = compute(
            &bot(Some(failed.clone()), false),
            &Observed { token: &good, statefulset: Some(&sts(0)), reports: &[], now: "T".into() },
        );
        assert!(notices(Some(&failed), &fixed).iter().any(|n| n.reason == "TokenResolved" && !n.warning));
    }

    #[test]
    fn synced_follows_the_sync_annotations_and_is_absent_without_them() {
        use crate::sync::desired::{SYNC_ERROR, SYNCED_AT, SYNCED_FROM};
        let token = Ok("d".to_string());
        let seen = |now: &str| Observed { token: &token, statefulset: None, reports: &[], now: now.into() };
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
}
