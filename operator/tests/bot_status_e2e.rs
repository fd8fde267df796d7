//! Status counts come from the bots' own `/status`, and what goes wrong with the pods shows
//! in the MusicBot. No kubelet runs in the test cluster, so the test plays its part: it
//! writes the pod statuses a kubelet (or the scheduler) writes, at 127.0.0.1, and answers
//! `/status` there the way bot-runner does.

mod common;

use axum::Json;
use axum::routing::get;
use common::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use musicbot_api::crd::{MusicBot, Phase};
use musicbot_api::report::{BotReport, ShardInfo, StatusReport};
use musicbot_operator::controller::BotDefaults;
use serde_json::json;

#[tokio::test]
async fn guilds_users_and_voice_connections_come_from_the_bots_status_endpoint() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "status").await.unwrap();
    let report = StatusReport {
        guilds: 7,
        users: 420,
        voice_connections: 2,
        gateway_connected: true,
        commands_deployed: true,
        ..Default::default()
    };
    let port = status_server(report).await;
    let (_op, pods) = radio_with_a_pod(&client, &ns, port, "st").await;
    mark_ready_at_loopback(&pods, "radio-0").await;

    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    let status = eventually("status with counts", || async {
        let s = bots.get("radio").await.unwrap().status?;
        (s.phase == Some(Phase::Running) && s.guilds == Some(7)).then_some(s)
    })
    .await;
    assert_eq!((status.users, status.voice_connections), (Some(420), Some(2)));
    assert_eq!(status.pod_name.as_deref(), Some("radio-0"));
    let cond = |t: &str| status.conditions.iter().find(|c| c.type_ == t).unwrap().status.clone();
    assert_eq!(cond("Ready"), "True");
    assert_eq!(cond("GatewayConnected"), "True");
    assert_eq!(cond("CommandsDeployed"), "True");
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Serves `report` as `/status` on a loopback port; returns the port.
async fn status_server(report: StatusReport) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/status", get(move || async move { Json(report.clone()) }));
        axum::serve(listener, app).await.unwrap();
    });
    port
}

/// The operator on `ns`, asking pods' `/status` on `port`, and a MusicBot "radio" whose pod
/// radio-0 exists (not yet running: the tests play kubelet).
async fn radio_with_a_pod(client: &kube::Client, ns: &str, port: u16, secret: &str) -> (Operator, Api<Pod>) {
    let op = start_operator(client, ns, BotDefaults { http_port: port, ..BotDefaults::default() });
    create_secret(client, ns, "radio-token", "token", &token_for(CLIENT_ID, secret)).await;
    create_bot(client, ns, "radio", json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "radio-token"}})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually("pod radio-0", || async { pods.get_opt("radio-0").await.unwrap() }).await;
    (op, pods)
}

/// What bot-runner answers while its one bot is not connected to the gateway.
fn not_connected(error: &str) -> StatusReport {
    let bot = BotReport { name: "radio".into(), last_error: Some(error.into()), ..Default::default() };
    StatusReport::of(ShardInfo::default(), vec![bot])
}

fn condition(bot: &MusicBot, t: &str) -> Option<musicbot_api::crd::Condition> {
    bot.status.as_ref()?.conditions.iter().find(|c| c.type_ == t).cloned()
}

#[tokio::test]
async fn a_running_pod_that_is_not_ready_says_why_on_status_and_the_musicbot_shows_it() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "notready").await.unwrap();
    let port = status_server(not_connected("Gateway connection failed: connection refused")).await;
    let (_op, pods) = radio_with_a_pod(&client, &ns, port, "nr").await;
    // Running and answering, but its startup probe has not passed: not Ready.
    let kubelet = json!({"status": {
        "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now()}]
    }});
    pods.patch_status("radio-0", &PatchParams::default(), &Patch::Merge(kubelet)).await.unwrap();

    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    let gateway = eventually("GatewayConnected=False from the pod's /status", || async {
        condition(&bots.get("radio").await.unwrap(), "GatewayConnected").filter(|c| c.status == "False")
    })
    .await;
    assert_eq!(gateway.reason, "Disconnected");
    assert_eq!(
        gateway.message,
        "radio-0: not connected to the Discord gateway: Gateway connection failed: connection refused"
    );
    let bot = bots.get("radio").await.unwrap();
    assert_eq!(bot.status.as_ref().unwrap().phase, Some(Phase::Pending));
    let ready = condition(&bot, "Ready").unwrap();
    assert!(ready.message.contains("connection refused"), "{}", ready.message);
}

/// Events about `name` with `reason`.
async fn events(client: &kube::Client, ns: &str, name: &str, reason: &str) -> Vec<Event> {
    let all = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap();
    all.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

/// Waits until the MusicBot's Ready condition has `reason` (and phase `phase`) and one
/// Warning Event of that reason was published, exactly once; returns the condition's message.
async fn failed_with(client: &kube::Client, ns: &str, reason: &str, phase: Phase) -> String {
    let bots: Api<MusicBot> = Api::namespaced(client.clone(), ns);
    let ready = eventually(&format!("Ready=False reason {reason}"), || async {
        let bot = bots.get("radio").await.unwrap();
        let c = condition(&bot, "Ready").filter(|c| c.status == "False" && c.reason == reason)?;
        (bot.status?.phase == Some(phase)).then_some(c)
    })
    .await;
    let published = eventually(&format!("a {reason} Warning Event"), || async {
        let found = events(client, ns, "radio", reason).await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].type_.as_deref(), Some("Warning"));
    assert_eq!(published[0].note.as_deref(), Some(ready.message.as_str()));
    ready.message
}

#[tokio::test]
async fn image_pull_failures_crash_loops_and_unschedulable_pods_show_in_status_and_events() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "podproblems").await.unwrap();
    // Only a container that runs answers: at 127.0.0.1, not at the crashing pod's 127.0.0.9.
    let port = status_server(not_connected("starting again after a crash")).await;
    let (op, pods) = radio_with_a_pod(&client, &ns, port, "pp").await;
    let write = |status: serde_json::Value| {
        let pods = pods.clone();
        async move {
            pods.patch_status("radio-0", &PatchParams::default(), &Patch::Merge(json!({"status": status})))
                .await
                .unwrap();
        }
    };
    let container = |state: serde_json::Value, last: serde_json::Value| {
        json!([{"name": "bot-runner", "image": "registry.example/bot-runner:missing", "imageID": "",
                "ready": false, "restartCount": 3, "started": false, "state": state, "lastState": last}])
    };
    let scheduled = json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
                           {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now()}]);

    // What a kubelet writes when the image cannot be pulled.
    let pull_error = "failed to pull and unpack image \"registry.example/bot-runner:missing\": not found";
    write(json!({"phase": "Pending", "conditions": scheduled, "containerStatuses": container(
        json!({"waiting": {"reason": "ErrImagePull", "message": pull_error}}), json!({}))}))
    .await;
    let message = failed_with(&client, &ns, "ImagePullFailed", Phase::Failed).await;
    assert!(message.contains("radio-0") && message.contains(pull_error), "{message}");

    // It backs off and retries: the same problem, the status follows, no second Event.
    let backoff = "Back-off pulling image \"registry.example/bot-runner:missing\"";
    write(json!({"containerStatuses": container(
        json!({"waiting": {"reason": "ImagePullBackOff", "message": backoff}}), json!({}))}))
    .await;
    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    eventually("the back-off message in status", || async {
        condition(&bots.get("radio").await.unwrap(), "Ready").filter(|c| c.message.contains("Back-off"))
    })
    .await;
    assert_eq!(events(&client, &ns, "radio", "ImagePullFailed").await.len(), 1, "one Event per change");

    // The image is fixed but the bot crashes.
    write(json!({"phase": "Running", "podIP": "127.0.0.9", "containerStatuses": container(
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container=bot-runner"}}),
        json!({"terminated": {"exitCode": 2, "reason": "Error", "message": "{\"level\":\"ERROR\",\"message\":\"no token file\"}\n"}}))}))
    .await;
    let message = failed_with(&client, &ns, "CrashLoopBackOff", Phase::Failed).await;
    assert!(message.contains("last exit: Error, exit code 2"), "{message}");
    assert!(message.contains("no token file"), "{message}");

    // Between two back-offs the kubelet runs the container again: the same crash loop, not
    // `Pending` and a new Event each round. The running container's /status answer shows
    // when the operator has seen it.
    write(json!({"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "containerStatuses": container(
        json!({"running": {"startedAt": now()}}),
        json!({"terminated": {"exitCode": 2, "reason": "Error", "message": "{\"level\":\"ERROR\",\"message\":\"no token file\"}\n"}}))}))
    .await;
    let bot = eventually("the restarted container's /status in the MusicBot", || async {
        let bot = bots.get("radio").await.unwrap();
        let gateway = condition(&bot, "GatewayConnected")?;
        gateway.message.contains("starting again after a crash").then_some(bot)
    })
    .await;
    let ready = condition(&bot, "Ready").unwrap();
    assert_eq!((ready.reason.as_str(), ready.message.as_str()), ("CrashLoopBackOff", message.as_str()));
    assert_eq!(events(&client, &ns, "radio", "CrashLoopBackOff").await.len(), 1);

    // Replaced by a pod that no node can take.
    let why = "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";
    write(json!({"phase": "Pending", "podIP": null, "podIPs": null, "containerStatuses": null, "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why, "lastTransitionTime": now()}
    ]}))
    .await;
    let message = failed_with(&client, &ns, "Unschedulable", Phase::Failed).await;
    assert_eq!(message, format!("radio-0 cannot be scheduled: {why}"));

    // Scheduled and ready at last: Running, and the problem is gone from the status.
    write(json!({"phase": "Running", "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
        {"type": "Ready", "status": "True", "lastTransitionTime": now()}
    ]}))
    .await;
    eventually("Running once the pod is ready", || async {
        let bot = bots.get("radio").await.unwrap();
        (bot.status?.phase == Some(Phase::Running)).then_some(())
    })
    .await;
    // A Failed bot is requeued only after minutes: each step above was seen through the
    // pod watch. None of it was a reconcile error.
    let errors: f64 = op
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("musicbot_operator_reconcile_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(errors, 0.0);
}

/// *Hostile*: a pod answering `/status` with a redirect (say, to an address only the
/// operator reaches) or with a huge answer: the redirect is not followed, the huge answer is
/// cut and ignored; neither makes it into the status. A normal answer then does.
#[tokio::test]
async fn a_status_answer_that_redirects_or_is_huge_is_ignored() {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "status-hostile").await.unwrap();
    // Where the redirect points: it would report 99 guilds.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_url = format!("http://{}/status", target.local_addr().unwrap());
    let target_hits = Arc::new(AtomicUsize::new(0));
    let hits = target_hits.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/status",
            get(move || async move {
                hits.fetch_add(1, SeqCst);
                Json(StatusReport { guilds: 99, ..Default::default() })
            }),
        );
        axum::serve(target, app).await.unwrap();
    });
    // The pod's own endpoint: mode 0 redirects, 1 answers 2 MiB, 2 answers normally.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (mode, pod_hits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (m, hits) = (mode.clone(), pod_hits.clone());
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/status",
            get(move || {
                let (m, hits, target_url) = (m.clone(), hits.clone(), target_url.clone());
                async move {
                    hits.fetch_add(1, SeqCst);
                    match m.load(SeqCst) {
                        0 => (StatusCode::FOUND, [(header::LOCATION, target_url)]).into_response(),
                        1 => {
                            let mut big =
                                serde_json::to_value(StatusReport { guilds: 55, ..Default::default() }).unwrap();
                            big["padding"] = json!("x".repeat(2 << 20));
                            Json(big).into_response()
                        }
                        _ => Json(StatusReport { guilds: 7, ..Default::default() }).into_response(),
                    }
                }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    let (_op, pods) = radio_with_a_pod(&client, &ns, port, "st").await;
    mark_ready_at_loopback(&pods, "radio-0").await;
    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    let guilds = || async { bots.get("radio").await.unwrap().status.and_then(|s| s.guilds) };
    let asked = |n: usize| {
        let hits = pod_hits.clone();
        move || {
            let hits = hits.clone();
            async move { (hits.load(SeqCst) >= n).then_some(()) }
        }
    };

    eventually("the operator asks (redirect)", asked(3)).await;
    assert_eq!(target_hits.load(SeqCst), 0, "the operator followed the redirect");
    assert_eq!(guilds().await, None);

    mode.store(1, SeqCst);
    let seen = pod_hits.load(SeqCst);
    eventually("the operator asks (huge)", asked(seen + 3)).await;
    assert_eq!(guilds().await, None, "a 2 MiB answer was read");

    mode.store(2, SeqCst);
    eventually("a normal answer counts", || async { (guilds().await == Some(7)).then_some(()) }).await;
}
