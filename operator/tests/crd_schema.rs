//! The CRD: the committed YAML matches the Rust types, and the real API server enforces
//! its schema, defaults and CEL rules at apply time.

mod common;

use common::{CLIENT_ID, cluster};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use musicbot_api::crd::MusicBot;
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
    assert_rejected(try_create(spec).await, "DISCORD_TOKEN, RUST_LOG and MUSICBOT_* are reserved");
}

#[tokio::test]
async fn the_pod_environment_may_not_read_secrets_nor_set_the_log_level() {
    let with_env =
        |env: serde_json::Value| json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "t"}, "pod": {"env": env}});
    let other_secret =
        json!([{"name": "STOLEN", "valueFrom": {"secretKeyRef": {"name": "other-bot-token", "key": "token"}}}]);
    assert_rejected(try_create(with_env(other_secret)).await, "may not read Secrets");
    assert_rejected(try_create(with_env(json!([{"name": "RUST_LOG", "value": "trace"}]))).await, "RUST_LOG");
    // Plain values and ConfigMap references stay allowed.
    let fine = json!([{"name": "TZ", "value": "Asia/Bangkok"},
                      {"name": "PROXY", "valueFrom": {"configMapKeyRef": {"name": "net", "key": "proxy"}}}]);
    try_create(with_env(fine)).await.unwrap();
}

#[tokio::test]
async fn a_name_too_long_for_its_pods_is_refused_at_apply_time() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "names").await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ApiResource::erase::<MusicBot>(&()));
    let named = |name: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "musicbot.dev/v1alpha1", "kind": "MusicBot", "metadata": {"name": name},
            "spec": {"clientId": CLIENT_ID, "tokenSecretRef": {"name": "t"}}
        }))
        .unwrap()
    };
    api.create(&PostParams::default(), &named(&"a".repeat(52))).await.unwrap();
    let refused = api.create(&PostParams::default(), &named(&"b".repeat(53))).await;
    assert_rejected(
        refused.map(|o| serde_json::from_value(serde_json::to_value(o).unwrap()).unwrap()),
        "at most 52 characters",
    );
}

#[tokio::test]
async fn a_missing_token_secret_ref_is_rejected() {
    assert_rejected(try_create(json!({"clientId": CLIENT_ID})).await, "tokenSecretRef");
}

/// The API server warns `unrecognized format "uint32"` on every apply of a CRD that has
/// one; `minimum: 0` says the same and stays.
#[test]
fn the_schema_has_no_formats_the_api_server_does_not_know() {
    let crd = musicbot_operator::crd::crd_yaml().unwrap();
    for format in ["uint8", "uint16", "uint32", "uint64", "uint"] {
        assert!(!crd.contains(&format!("format: {format}\n")), "the CRD still has format {format}");
    }
    let schema = serde_json::to_value(<MusicBot as kube::CustomResourceExt>::crd()).unwrap();
    let spec = &schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["shards"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(spec["music"]["properties"]["idleLeaveSeconds"]["minimum"].as_f64(), Some(0.0));
    let status = &schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    assert_eq!(status["guilds"]["minimum"].as_f64(), Some(0.0));
    assert_eq!(status["guilds"]["type"], "integer");
}

#[tokio::test]
async fn a_ca_bundle_defaults_its_key_and_extra_volumes_are_accepted() {
    let bot = try_create(json!({
        "clientId": CLIENT_ID, "tokenSecretRef": {"name": "t"},
        "pod": {
            "caBundle": {"configMapName": "corp-ca"},
            "volumes": [{"name": "cookies", "secret": {"secretName": "yt-cookies"}}],
            "volumeMounts": [{"name": "cookies", "mountPath": "/etc/yt-dlp", "readOnly": true}]
        }
    }))
    .await
    .unwrap();
    let pod = bot.spec.pod.unwrap();
    let ca = pod.ca_bundle.unwrap();
    assert_eq!((ca.config_map_name.as_str(), ca.key.as_str()), ("corp-ca", "ca.crt"));
    assert_eq!(pod.volumes[0].name, "cookies");
    assert_eq!(pod.volume_mounts[0].mount_path, "/etc/yt-dlp");
}

#[tokio::test]
async fn volumes_and_mounts_that_collide_with_the_operators_are_refused_by_cel() {
    let with_pod = |pod: serde_json::Value| json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "t"}, "pod": pod});
    let volume = |name: &str| json!({"name": name, "emptyDir": {}});
    for name in ["token", "tmp", "ca-bundle", "session"] {
        assert_rejected(try_create(with_pod(json!({"volumes": [volume(name)]}))).await, "the operator's");
    }
    assert_rejected(try_create(with_pod(json!({"volumes": [volume("a"), volume("a")]}))).await, "spec.pod.volumes[1]");
    for path in [
        "/tmp",
        "/tmp/",
        "/tmp/cache",
        "/var/run/secrets/musicbot",
        "/var/run/secrets/musicbot/x",
        "/etc/musicbot/ca",
        "/var/lib/musicbot/session",
        "/var/lib/musicbot/session/x",
    ] {
        let pod = json!({"volumes": [volume("a")], "volumeMounts": [{"name": "a", "mountPath": path}]});
        assert_rejected(try_create(with_pod(pod)).await, "volumeMounts may not use the operator's volumes");
    }
    let pod = json!({"volumeMounts": [{"name": "token", "mountPath": "/elsewhere"}]});
    assert_rejected(try_create(with_pod(pod)).await, "volumeMounts may not use the operator's volumes");
    let too_many: Vec<_> = (0..33).map(|i| volume(&format!("v{i}"))).collect();
    assert_rejected(try_create(with_pod(json!({"volumes": too_many}))).await, "spec.pod.volumes");
}

/// The MusicBot manifests of a Markdown file: YAML documents of kind MusicBot in its code
/// blocks, heredocs (`<<'YAML'` … `YAML`) included.
fn musicbots_in(markdown: &str) -> Vec<serde_json::Value> {
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            match block.take() {
                Some(b) => blocks.push(b),
                None => block = Some(String::new()),
            }
        } else if let Some(b) = block.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    let mut out = Vec::new();
    for b in blocks {
        let yaml = match b.split_once("<<'YAML'\n") {
            Some((_, rest)) => rest.split("\nYAML\n").next().unwrap_or_default().to_string(),
            None => b,
        };
        for doc in serde_yaml::Deserializer::from_str(&yaml) {
            use serde::Deserialize;
            // Not YAML (a shell block): nothing here. serde_yaml repeats an error forever.
            let Ok(v) = serde_json::Value::deserialize(doc) else { break };
            if v["kind"] == "MusicBot" {
                out.push(v);
            }
        }
    }
    out
}

#[tokio::test]
async fn the_musicbots_in_the_docs_are_accepted_and_mean_what_they_show() {
    for file in ["README.md", "docs/quickstart.md", "docs/configuration.md"] {
        let text = std::fs::read_to_string(testkit::workspace_root().join(file)).unwrap();
        let bots = musicbots_in(&text);
        assert!(!bots.is_empty(), "no MusicBot found in {file}");
        for bot in bots {
            // An unquoted `Music Bot #1` is `Music Bot` and a YAML comment.
            let shown = bot["spec"]["displayName"].as_str();
            assert!(shown.is_none_or(|n| !n.starts_with("Music Bot") || n == "Music Bot #1"), "{file}: {shown:?}");
            let accepted = try_create(bot["spec"].clone()).await;
            assert!(accepted.is_ok(), "{file}: the API server refused {bot}: {accepted:?}");
        }
    }
}
