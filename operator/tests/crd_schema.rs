//! The CRD: the committed YAML matches the Rust types, and the real API server enforces
//! its schema, defaults and CEL rules at apply time.

mod common;

use common::{CLIENT_ID, cluster};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use musicbot_operator::crd::MusicBot;
use serde_json::json;

#[test]
fn committed_crd_matches_the_rust_types() {
    let committed = std::fs::read_to_string(testkit::workspace_root().join("crds/musicbot.yaml")).unwrap();
    let generated = musicbot_operator::crd::crd_yaml().unwrap();
    if committed != generated {
        std::fs::write(std::env::temp_dir().join("musicbot-crd-generated.yaml"), &generated).unwrap();
    }
    assert!(
        committed == generated,
        "crds/musicbot.yaml is stale: run `cargo run -p musicbot-operator --bin crdgen > crds/musicbot.yaml`"
    );
}

/// Sends `spec` as raw JSON, so specs our own types could not even express reach the server.
async fn try_create(spec: serde_json::Value) -> Result<MusicBot, kube::Error> {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "schema").await.unwrap();
    let bot: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "musicbot.dev/v1alpha1", "kind": "MusicBot",
        "metadata": {"name": "bot"}, "spec": spec
    }))
    .unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ApiResource::erase::<MusicBot>(&()));
    let created = api.create(&PostParams::default(), &bot).await?;
    Ok(serde_json::from_value(serde_json::to_value(created).unwrap()).unwrap())
}

fn assert_rejected(result: Result<MusicBot, kube::Error>, field: &str) {
    match result {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert!(s.message.contains(field), "the rejection should name {field}: {}", s.message);
        }
        other => panic!("the API server accepted an invalid MusicBot ({field}): {other:?}"),
    }
}

#[tokio::test]
async fn defaults_are_filled_in_by_the_server() {
    let bot = try_create(json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "t"}})).await.unwrap();
    assert_eq!(bot.spec.shards, 1);
    assert_eq!(bot.spec.token_secret_ref.key, "token");
    assert_eq!(bot.spec.music.default_volume, 100);
    assert_eq!(bot.spec.music.max_queue_length, 500);
    assert!(!bot.spec.suspended);
}

#[tokio::test]
async fn a_client_id_that_is_not_a_snowflake_is_rejected() {
    assert_rejected(try_create(json!({"clientId": "my-bot", "tokenSecretRef": {"name": "t"}})).await, "spec.clientId");
}

#[tokio::test]
async fn zero_shards_and_a_loud_default_volume_are_rejected() {
    let base = |extra: serde_json::Value| {
        let mut spec = json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "t"}});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        spec
    };
    assert_rejected(try_create(base(json!({"shards": 0}))).await, "spec.shards");
    assert_rejected(try_create(base(json!({"music": {"defaultVolume": 500}}))).await, "spec.music.defaultVolume");
    assert_rejected(try_create(base(json!({"guildIds": ["not-a-guild"]}))).await, "spec.guildIds");
    assert_rejected(try_create(base(json!({"guildIds": [CLIENT_ID, CLIENT_ID]}))).await, "spec.guildIds");
}

#[tokio::test]
async fn a_token_in_the_pod_environment_is_refused_by_cel() {
    let spec = json!({
        "clientId": CLIENT_ID, "tokenSecretRef": {"name": "t"},
        "pod": {"env": [{"name": "DISCORD_TOKEN", "value": "leaked"}]}
    });
    assert_rejected(try_create(spec).await, "DISCORD_TOKEN and MUSICBOT_* are reserved");
}

#[tokio::test]
async fn a_missing_token_secret_ref_is_rejected() {
    assert_rejected(try_create(json!({"clientId": CLIENT_ID})).await, "tokenSecretRef");
}
