//! Error paths of reconcile against kube's tower-test mock: the API server answering 404,
//! 409, 422 or 500 at each step. (The happy paths run against the real API server in the
//! other tests; these answers are hard to provoke from a real one on cue.)

use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use musicbot_api::crd::MusicBot;
use musicbot_operator::controller::{BotDefaults, Context, Error, error_policy, reconcile::reconcile};
use musicbot_operator::metrics::Metrics;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower_test::mock::{self, Handle};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn context() -> (Arc<Context>, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let ctx = Context::new(
        client,
        BotDefaults::default(),
        Arc::new(Metrics::default()),
        "http://127.0.0.1:9".into(),
        Duration::from_secs(60),
        None,
    );
    (Arc::new(ctx), handle)
}

fn bot() -> Arc<MusicBot> {
    let mut bot: MusicBot = serde_json::from_value(json!({
        "apiVersion": "musicbot.dev/v1alpha1", "kind": "MusicBot",
        "metadata": {"name": "radio", "namespace": "music", "uid": "u-1", "generation": 1,
                     "finalizers": ["musicbot.dev/cleanup"]},
        "spec": {"clientId": "123456789012345678", "tokenSecretRef": {"name": "radio-token"}}
    }))
    .unwrap();
    bot.status = None;
    Arc::new(bot)
}

fn status(code: u16, reason: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("mock says {reason}"), "reason": reason, "code": code});
    Response::builder().status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap()
}

fn ok(body: Value) -> Response<Body> {
    Response::builder().status(StatusCode::OK).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap()
}

async fn body_of(req: Request<Body>) -> Value {
    use http_body_util::BodyExt;
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() }
}

/// Answers the next request, checking its method and path.
async fn expect(handle: &mut ApiHandle, method: &str, path_contains: &str, answer: Response<Body>) -> Value {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("reconcile made no {method} {path_contains} request"))
        .expect("service dropped");
    assert_eq!(req.method().as_str(), method, "{}", req.uri());
    assert!(req.uri().path().contains(path_contains), "expected {path_contains}, got {}", req.uri());
    let body = body_of(req).await;
    send.send_response(answer);
    body
}

#[tokio::test]
async fn a_500_reading_the_secret_fails_the_reconcile_and_backs_off() {
    let (ctx, mut handle) = context();
    let task = tokio::spawn(reconcile(bot(), ctx.clone()));
    expect(&mut handle, "GET", "/api/v1/namespaces/music/secrets/radio-token", status(500, "InternalError")).await;
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), "api");
    assert!(err.to_string().contains("mock says InternalError"), "{err}");
    // Backoff doubles from 5 s for the same bot.
    let guarded = || Arc::new(kube::core::DeserializeGuard(Ok((*bot()).clone())));
    let delays: Vec<Action> = (0..3).map(|_| error_policy(guarded(), &err, ctx.clone())).collect();
    assert_eq!(
        delays,
        [
            Action::requeue(Duration::from_secs(5)),
            Action::requeue(Duration::from_secs(10)),
            Action::requeue(Duration::from_secs(20))
        ]
    );
    assert!(ctx.metrics.encode().contains(r#"musicbot_operator_reconcile_errors_total{kind="api"} 1"#));
}

#[tokio::test]
async fn a_404_for_the_secret_is_reported_in_status_not_as_an_error() {
    let (ctx, mut handle) = context();
    let task = tokio::spawn(reconcile(bot(), ctx));
    expect(&mut handle, "GET", "/secrets/radio-token", status(404, "NotFound")).await;
    // No StatefulSet is applied; the next write is an Event or the status.
    let mut status_patch = Value::Null;
    for _ in 0..2 {
        let (req, send) = handle.next_request().await.unwrap();
        let path = req.uri().path().to_string();
        assert!(!path.contains("statefulsets"), "applied a StatefulSet without a token: {path}");
        let body = body_of(req).await;
        if path.ends_with("/musicbots/radio/status") {
            status_patch = body;
            send.send_response(ok(json!({"apiVersion": "musicbot.dev/v1alpha1", "kind": "MusicBot", "metadata": {"name": "radio"}, "spec": {"clientId": "123456789012345678", "tokenSecretRef": {"name": "radio-token"}}})));
        } else {
            assert!(path.contains("/events"), "{path}");
            send.send_response(
                Response::builder().status(201).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
            );
        }
    }
    let action = task.await.unwrap().expect("a missing Secret is not a reconcile error");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let conditions = status_patch["status"]["conditions"].as_array().unwrap();
    let token = conditions.iter().find(|c| c["type"] == "TokenResolved").unwrap();
    assert_eq!((token["status"].as_str(), token["reason"].as_str()), (Some("False"), Some("SecretNotFound")));
    assert_eq!(status_patch["status"]["phase"], "Failed");
}

fn token_secret() -> Response<Body> {
    use base64::Engine;
    let token = format!("{}.a.b", base64::engine::general_purpose::STANDARD_NO_PAD.encode("123456789012345678"));
    ok(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "radio-token"},
              "data": {"token": base64::engine::general_purpose::STANDARD.encode(token)}}))
}

/// The fleet's key, which the pods mount: read (here: found) before the StatefulSet.
fn fleet_key() -> Response<Body> {
    ok(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "musicbot-fleet-default"},
              "data": {"key": "a2V5LWtleS1rZXkta2V5LWtleS1rZXk="}}))
}

#[tokio::test]
async fn a_409_conflict_applying_the_statefulset_is_an_error_to_retry() {
    let (ctx, mut handle) = context();
    let task = tokio::spawn(reconcile(bot(), ctx));
    expect(&mut handle, "GET", "/secrets/radio-token", token_secret()).await;
    expect(&mut handle, "GET", "/secrets/musicbot-fleet-default", fleet_key()).await;
    let applied =
        expect(&mut handle, "PATCH", "/apis/apps/v1/namespaces/music/statefulsets/radio", status(409, "Conflict"))
            .await;
    assert_eq!(applied["kind"], "StatefulSet");
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(&err, Error::Finalizer(_)) && err.to_string().contains("Conflict"), "{err}");
}

#[tokio::test]
async fn a_422_from_the_server_is_surfaced_with_its_message() {
    let (ctx, mut handle) = context();
    let task = tokio::spawn(reconcile(bot(), ctx));
    expect(&mut handle, "GET", "/secrets/radio-token", token_secret()).await;
    expect(&mut handle, "GET", "/secrets/musicbot-fleet-default", fleet_key()).await;
    expect(&mut handle, "PATCH", "/statefulsets/radio", status(422, "Invalid")).await;
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), "api");
    assert!(err.to_string().contains("mock says Invalid"), "{err}");
}
