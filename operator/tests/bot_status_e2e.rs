//! Status counts come from the bots' own `/status`. No kubelet runs in the test cluster, so
//! the test plays its part: it marks the pod Running and Ready at 127.0.0.1 and answers
//! `/status` there the way bot-runner does.

mod common;

use axum::Json;
use axum::routing::get;
use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use musicbot_operator::controller::BotDefaults;
use musicbot_operator::crd::{MusicBot, Phase};
use serde_json::json;

#[tokio::test]
async fn guilds_users_and_voice_connections_come_from_the_bots_status_endpoint() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "status").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let report =
        json!({"guilds": 7, "users": 420, "voiceConnections": 2, "gatewayConnected": true, "commandsDeployed": true});
    tokio::spawn(async move {
        let app = axum::Router::new().route("/status", get(move || async move { Json(report.clone()) }));
        axum::serve(listener, app).await.unwrap();
    });
    let _op = start_operator(&client, &ns, BotDefaults { http_port: port, ..BotDefaults::default() });
    create_secret(&client, &ns, "radio-token", "token", &token_for(CLIENT_ID, "st")).await;
    create_bot(&client, &ns, "radio", json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "radio-token"}})).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("pod radio-0", || async { pods.get_opt("radio-0").await.unwrap() }).await;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let kubelet = json!({"status": {
        "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]
    }});
    pods.patch_status("radio-0", &PatchParams::default(), &Patch::Merge(kubelet)).await.unwrap();

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
