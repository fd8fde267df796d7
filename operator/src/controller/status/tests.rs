use super::pods::QUOTE_LIMIT;
use super::*;
use musicbot_api::conditions::{ConditionStatus, ConditionType, Reason};
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

fn cond(s: &MusicBotStatus, t: ConditionType) -> &Condition {
    s.condition(t).unwrap()
}

/// What a condition says, in the contract's terms.
fn says(c: &Condition) -> (ConditionStatus, Reason) {
    (ConditionStatus::parse(&c.status).unwrap(), Reason::parse(&c.reason).unwrap())
}

/// A point in time, `s` seconds after the epoch.
/// What reconcile saw, with the image allowed and identifies to spare.
fn observed<'a>(
    token: &'a Result<String, TokenProblem>,
    statefulset: Option<&'a StatefulSet>,
    pods: &'a [Pod],
    reports: &'a [PodReport],
    now: Time,
) -> Observed<'a> {
    Observed { token, image: None, statefulset, pods, reports, budget: &Budget::Fine, now }
}

fn t(s: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
}

#[test]
fn a_missing_secret_fails_the_bot_with_a_reason() {
    let token = Err(TokenProblem::SecretNotFound("t".into()));
    let s = compute(&bot(None, false), &observed(&token, None, &[], &[], t(1)));
    assert_eq!(s.phase, Some(Phase::Failed));
    let c = cond(&s, ConditionType::TokenResolved);
    assert_eq!(says(c), (ConditionStatus::False, Reason::SecretNotFound));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.pod_name, None);
    let n = notices(None, &s);
    assert!(n.iter().any(|n| n.warning && n.reason == Reason::TokenNotResolved), "{n:?}");
}

#[test]
fn phase_follows_ready_shards_and_counts_sum_reports() {
    let token = Ok("d".to_string());
    let pending = compute(&bot(None, false), &observed(&token, Some(&sts(0)), &[], &[], t(1)));
    assert_eq!(pending.phase, Some(Phase::Pending));
    assert_eq!(cond(&pending, ConditionType::GatewayConnected).status, ConditionStatus::Unknown);
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
    let running = compute(&bot(Some(pending.clone()), false), &observed(&token, Some(&sts(1)), &[], &reports, t(2)));
    assert_eq!(running.phase, Some(Phase::Running));
    assert_eq!((running.guilds, running.users, running.voice_connections), (Some(5), Some(1250), Some(2)));
    assert_eq!(running.pod_name.as_deref(), Some("radio-0"));
    assert_eq!(cond(&running, ConditionType::Ready).status, ConditionStatus::True);
    assert_eq!(cond(&running, ConditionType::Ready).last_transition_time, t(2));
    // TokenResolved stayed True: its transition time is kept.
    assert_eq!(cond(&running, ConditionType::TokenResolved).last_transition_time, t(1));
    assert!(notices(Some(&pending), &running).iter().any(|n| n.reason == Reason::Running));
    // A steady state publishes nothing.
    let again = compute(&bot(Some(running.clone()), false), &observed(&token, Some(&sts(1)), &[], &reports, t(3)));
    assert_eq!(again, running);
    assert!(notices(Some(&running), &again).is_empty());
}

#[test]
fn suspension_and_resumption_are_reported() {
    let token = Ok("d".to_string());
    let suspended = compute(&bot(None, true), &observed(&token, Some(&sts(0)), &[], &[], t(0)));
    assert_eq!(suspended.phase, Some(Phase::Suspended));
    assert_eq!(cond(&suspended, ConditionType::Ready).reason, Reason::Suspended);
    let resumed = compute(&bot(Some(suspended.clone()), false), &observed(&token, Some(&sts(0)), &[], &[], t(0)));
    let reasons: Vec<_> = notices(Some(&suspended), &resumed).into_iter().map(|n| n.reason).collect();
    assert_eq!(reasons, [Reason::Resumed]);
}

#[test]
fn a_fixed_token_is_announced() {
    let bad = Err(TokenProblem::Empty { secret: "t".into(), key: "token".into() });
    let failed = compute(&bot(None, false), &observed(&bad, None, &[], &[], t(0)));
    let good = Ok("d".to_string());
    let fixed = compute(&bot(Some(failed.clone()), false), &observed(&good, Some(&sts(0)), &[], &[], t(0)));
    assert!(notices(Some(&failed), &fixed).iter().any(|n| n.reason == Reason::TokenResolved && !n.warning));
}

#[test]
fn synced_follows_the_sync_annotations_and_is_absent_without_them() {
    use musicbot_api::labels::{SYNC_ERROR, SYNCED_AT, SYNCED_FROM};
    let token = Ok("d".to_string());
    let seen = |now: Time| Observed {
        token: &token,
        image: None,
        statefulset: None,
        pods: &[],
        reports: &[],
        budget: &Budget::Fine,
        now,
    };
    let hand_made = compute(&bot(None, false), &seen(t(0)));
    assert!(hand_made.conditions.iter().all(|c| c.type_ != ConditionType::Synced));

    let mut synced_bot = bot(None, false);
    synced_bot.metadata.annotations = Some(std::collections::BTreeMap::from([
        (SYNCED_FROM.to_string(), "MusicBotDB/650000000000000000000001".to_string()),
        (SYNCED_AT.to_string(), "2026-11-26T10:00:00Z".to_string()),
    ]));
    let first = compute(&synced_bot, &seen(t(1)));
    let c = cond(&first, ConditionType::Synced);
    assert_eq!(says(c), (ConditionStatus::True, Reason::Synced));
    assert_eq!(c.message, "from MusicBotDB/650000000000000000000001 at 2026-11-26T10:00:00Z");

    // A later sync keeps the transition time and updates the message.
    synced_bot.status = Some(first);
    synced_bot.metadata.annotations.as_mut().unwrap().insert(SYNCED_AT.into(), "2026-11-26T11:00:00Z".into());
    let second = compute(&synced_bot, &seen(t(2)));
    assert_eq!(cond(&second, ConditionType::Synced).last_transition_time, t(1));
    assert!(cond(&second, ConditionType::Synced).message.ends_with("11:00:00Z"));

    synced_bot.metadata.annotations.as_mut().unwrap().insert(SYNC_ERROR.into(), "field `isActive` ...".into());
    let invalid = compute(&synced_bot, &seen(t(3)));
    let c = cond(&invalid, ConditionType::Synced);
    assert_eq!((says(c), &c.last_transition_time), ((ConditionStatus::False, Reason::RecordInvalid), &t(3)));
    assert!(c.message.contains("isActive"), "{}", c.message);

    // Its record gone with most others: the sync holds the deletion, and says so here.
    synced_bot.status = Some(invalid);
    let note = "its record is gone from MusicBotDB ...: its deletion or suspension is held";
    synced_bot.metadata.annotations.as_mut().unwrap().insert(musicbot_api::labels::SYNC_HELD.into(), note.into());
    let held = compute(&synced_bot, &seen(t(4)));
    let c = cond(&held, ConditionType::Synced);
    assert_eq!(says(c), (ConditionStatus::False, Reason::MassDeletionHeld));
    assert_eq!(c.message, note);
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

fn observe(b: &MusicBot, pods: &[Pod], reports: &[PodReport], now: Time) -> MusicBotStatus {
    let token = Ok("d".to_string());
    compute(b, &observed(&token, Some(&sts(0)), pods, reports, now))
}

#[test]
fn an_image_that_cannot_be_pulled_fails_the_bot_once_with_the_kubelets_message() {
    let pull = "failed to pull and unpack image \"registry.example/bot-runner:9\": not found";
    let first = observe(&bot(None, false), &[pod("radio-0", waiting("ErrImagePull", pull, None))], &[], t(1));
    assert_eq!(first.phase, Some(Phase::Failed));
    let ready = cond(&first, ConditionType::Ready);
    assert_eq!(says(ready), (ConditionStatus::False, Reason::ImagePullFailed));
    assert!(ready.message.contains("radio-0") && ready.message.contains(pull), "{}", ready.message);
    assert_eq!(first.pod_name.as_deref(), Some("radio-0"));
    let events = notices(None, &first);
    assert_eq!(events.iter().filter(|n| n.warning && n.reason == Reason::ImagePullFailed).count(), 1);

    // The kubelet alternates with ImagePullBackOff: the same problem, no new Event.
    let backoff = "Back-off pulling image \"registry.example/bot-runner:9\"";
    let second = observe(
        &bot(Some(first.clone()), false),
        &[pod("radio-0", waiting("ImagePullBackOff", backoff, None))],
        &[],
        t(2),
    );
    assert_eq!(cond(&second, ConditionType::Ready).reason, Reason::ImagePullFailed);
    assert_eq!(cond(&second, ConditionType::Ready).last_transition_time, t(1));
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
        t(1),
    );
    assert_eq!(s.phase, Some(Phase::Failed));
    let ready = cond(&s, ConditionType::Ready);
    assert_eq!(ready.reason, Reason::CrashLoopBackOff);
    assert!(ready.message.contains("exit code 1"), "{}", ready.message);
    assert!(ready.message.contains("Error, exit code 1: Error: the token was refused by Discord"), "{}", ready.message);
    assert!(notices(None, &s).iter().any(|n| n.warning && n.reason == Reason::CrashLoopBackOff));

    let oom = json!({"exitCode": 137, "reason": "OOMKilled"});
    let s = observe(&bot(None, false), &[pod("radio-0", waiting("CrashLoopBackOff", "", Some(oom)))], &[], t(1));
    assert!(cond(&s, ConditionType::Ready).message.ends_with("last exit: OOMKilled, exit code 137"));
}

#[test]
fn a_crash_loop_stays_one_problem_while_the_kubelet_restarts_the_container() {
    let exit = |code: i32| json!({"exitCode": code, "reason": "Error", "message": "Error: the token was refused\n"});
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

    let first = observe(&bot(None, false), std::slice::from_ref(&backoff), &[], t(1));
    assert_eq!(cond(&first, ConditionType::Ready).reason, Reason::CrashLoopBackOff);
    let mut last = first.clone();
    for p in [running.clone(), exited, backoff, running.clone()] {
        let next = observe(&bot(Some(last.clone()), false), &[p], &[], t(2));
        assert_eq!(next.phase, Some(Phase::Failed));
        assert_eq!(
            cond(&next, ConditionType::Ready),
            cond(&first, ConditionType::Ready),
            "the condition stays as it was"
        );
        assert!(notices(Some(&last), &next).is_empty(), "{:?}", notices(Some(&last), &next));
        last = next;
    }
    // A first start that is merely slow is no crash loop, and a ready pod ends one.
    assert_eq!(observe(&bot(None, false), std::slice::from_ref(&running), &[], t(0)).phase, Some(Phase::Pending));
    let ready = with_state(json!({"running": {"startedAt": "2026-12-01T10:00:00Z"}}), exit(1), true);
    let token = Ok("d".to_string());
    let s = compute(&bot(Some(last), false), &observed(&token, Some(&sts(1)), &[ready], &[], t(3)));
    assert_eq!(s.phase, Some(Phase::Running));
}

#[test]
fn an_unschedulable_pod_carries_the_schedulers_message() {
    let why = "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available.";
    let status = json!({"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why
    }]});
    let s = observe(&bot(None, false), &[pod("radio-0", status)], &[], t(1));
    assert_eq!(s.phase, Some(Phase::Failed));
    let ready = cond(&s, ConditionType::Ready);
    assert_eq!(ready.reason, Reason::Unschedulable);
    assert_eq!(ready.message, format!("radio-0 cannot be scheduled: {why}"));
    assert!(notices(None, &s).iter().any(|n| n.warning && n.reason == Reason::Unschedulable));
}

#[test]
fn pods_merely_starting_or_without_status_stay_pending() {
    let creating = waiting("ContainerCreating", "", None);
    let no_status: Pod = serde_json::from_value(json!({"metadata": {"name": "radio-0"}})).unwrap();
    for p in [pod("radio-0", creating), no_status, pod("radio-0", json!({"phase": "Pending"}))] {
        let s = observe(&bot(None, false), &[p], &[], t(1));
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(cond(&s, ConditionType::Ready).reason, Reason::ShardsNotReady);
        assert!(notices(None, &s).iter().all(|n| !n.warning), "{:?}", notices(None, &s));
    }
    // A pod on its way out does not count; a suspended bot has no pod problems.
    let mut leaving = pod("radio-0", waiting("CrashLoopBackOff", "", None));
    leaving.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
    assert_eq!(observe(&bot(None, false), &[leaving], &[], t(0)).phase, Some(Phase::Pending));
    let crashing = pod("radio-0", waiting("CrashLoopBackOff", "", None));
    assert_eq!(observe(&bot(None, true), &[crashing], &[], t(0)).phase, Some(Phase::Suspended));
}

#[test]
fn one_broken_shard_of_two_degrades_the_bot_and_names_the_pod() {
    let mut b = bot(None, false);
    b.spec.shards = 2;
    let token = Ok("d".to_string());
    let broken = pod("radio-1", waiting("CreateContainerConfigError", "configmap \"corp-ca\" not found", None));
    let s = compute(&b, &observed(&token, Some(&sts(1)), &[broken], &[], t(0)));
    assert_eq!(s.phase, Some(Phase::Degraded));
    let ready = cond(&s, ConditionType::Ready);
    assert_eq!(ready.reason, Reason::ContainerConfigError);
    assert!(ready.message.starts_with("radio-1: ") && ready.message.contains("corp-ca"), "{}", ready.message);
    let events = notices(None, &s);
    assert!(events.iter().any(|n| n.reason == Reason::ContainerConfigError), "{events:?}");
    assert!(!events.iter().any(|n| n.reason == Reason::Degraded), "one Event per problem: {events:?}");
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
    let s = observe(&bot(None, false), &[], &[report(failing.clone())], t(1));
    assert_eq!(s.phase, Some(Phase::Pending));
    let gw = cond(&s, ConditionType::GatewayConnected);
    assert_eq!(gw.status, ConditionStatus::False);
    assert_eq!(
        gw.message,
        "radio-0: not connected to the Discord gateway: Gateway connection failed: IO error: connection refused"
    );
    assert!(cond(&s, ConditionType::Ready).message.contains("connection refused"));
    // Without an error in the report it still says that the pod answered.
    let quiet = report(musicbot_api::BotReport { last_error: None, ..failing });
    let s = observe(&bot(None, false), &[], &[quiet], t(1));
    assert_eq!(cond(&s, ConditionType::GatewayConnected).message, "radio-0: not connected to the Discord gateway yet");
    // A shard of several is named as one.
    let mut second = report(musicbot_api::BotReport::default());
    second.report.shard = ShardInfo { id: 1, count: 2 };
    second.pod = "radio-1".into();
    let s = observe(&bot(None, false), &[], &[second], t(1));
    assert_eq!(
        cond(&s, ConditionType::GatewayConnected).message,
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

#[test]
fn a_refused_image_fails_the_bot_once_with_the_allowed_repositories() {
    let token = Ok("d".to_string());
    let refused =
        ImageNotAllowed { image: "registry.example/miner:1".into(), allowed: vec!["ghcr.io/acme/bot-runner".into()] };
    let seen = |now| Observed {
        token: &token,
        image: Some(&refused),
        statefulset: None,
        pods: &[],
        reports: &[],
        budget: &Budget::Fine,
        now,
    };
    let failed = compute(&bot(None, false), &seen(t(1)));
    assert_eq!(failed.phase, Some(Phase::Failed));
    let ready = cond(&failed, ConditionType::Ready);
    assert_eq!(says(ready), (ConditionStatus::False, Reason::ImageNotAllowed));
    assert!(ready.message.contains("allowed: ghcr.io/acme/bot-runner"), "{}", ready.message);
    assert_eq!(failed.pod_name, None);
    let n = notices(None, &failed);
    assert!(n.iter().any(|n| n.warning && n.reason == Reason::ImageNotAllowed && n.note == ready.message), "{n:?}");
    // Still refused on the next reconcile: no second Event.
    let again = compute(&bot(Some(failed.clone()), false), &seen(t(2)));
    assert!(notices(Some(&failed), &again).is_empty());
}

#[test]
fn a_bot_held_for_its_identify_budget_says_until_when_once_and_when_it_ends() {
    use crate::controller::identify::{Hold, parse_time};
    let token = Ok("d".to_string());
    let until = parse_time("2026-12-01T21:00:00Z").unwrap();
    let hold = Hold { until, pod: Some("radio-0".into()), remaining: Some(3) };
    let see = |b: &MusicBot, budget: &Budget, now| {
        compute(
            b,
            &Observed { token: &token, image: None, statefulset: Some(&sts(0)), pods: &[], reports: &[], budget, now },
        )
    };

    // The pod waits by itself: Held, and why.
    let waiting = see(&bot(None, false), &Budget::Waiting(hold.clone()), t(1));
    assert_eq!(waiting.phase, Some(Phase::Held));
    let c = cond(&waiting, ConditionType::IdentifiesAvailable);
    assert_eq!(says(c), (ConditionStatus::False, Reason::IdentifyReserveReached));
    assert!(
        c.message.contains("radio-0 has 3 identifies left") && c.message.contains("2026-12-01T21:00:00Z"),
        "{}",
        c.message
    );
    assert_eq!(waiting.identify_held_until, None, "the operator holds nothing");

    // It crash-looped that low: the operator holds it, records until when, says so once.
    let held = see(&bot(Some(waiting.clone()), false), &Budget::Held(hold), t(2));
    assert_eq!((held.phase, held.identify_held_until.as_deref()), (Some(Phase::Held), Some("2026-12-01T21:00:00Z")));
    let c = cond(&held, ConditionType::IdentifiesAvailable);
    assert_eq!(says(c), (ConditionStatus::False, Reason::IdentifyHeld));
    assert!(c.message.contains("crash-looped") && c.message.contains("2026-12-01T21:00:00Z"), "{}", c.message);
    assert_eq!(says(cond(&held, ConditionType::Ready)), (ConditionStatus::False, Reason::IdentifyHeld));
    let events = notices(Some(&waiting), &held);
    assert_eq!(events.iter().filter(|n| n.warning && n.reason == Reason::IdentifyHeld).count(), 1, "{events:?}");
    let again = see(&bot(Some(held.clone()), false), &Budget::Held(Hold { pod: None, remaining: None, until }), t(3));
    assert!(notices(Some(&held), &again).is_empty(), "no Event while it stays held");

    // The reset time came: the hold ends, with an Event.
    let after = see(&bot(Some(again.clone()), false), &Budget::Fine, t(4));
    assert_eq!((after.phase, after.identify_held_until.as_deref()), (Some(Phase::Pending), None));
    let events = notices(Some(&again), &after);
    assert!(events.iter().any(|n| !n.warning && n.reason == Reason::IdentifyHoldEnded), "{events:?}");
}
