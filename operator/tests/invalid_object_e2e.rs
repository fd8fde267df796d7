//! One MusicBot the operator cannot deserialize (stored while the CRD's schema was looser
//! than the operator's types) must not stall the controller: it gets a Warning Event saying
//! why, and every other MusicBot is reconciled as usual.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSONSchemaProps};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use musicbot_api::conditions::Reason;
use musicbot_operator::controller::BotDefaults;
use serde_json::json;

/// Loosens `spec.shards` to accept strings, as an older or hand-edited CRD might.
async fn loosen_shards(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd = crds.get("musicbots.musicbot.dev").await.unwrap();
    let schema = crd.spec.versions[0].schema.as_mut().unwrap().open_api_v3_schema.as_mut().unwrap();
    let spec = schema.properties.as_mut().unwrap().get_mut("spec").unwrap();
    let shards = spec.properties.as_mut().unwrap().get_mut("shards").unwrap();
    *shards = JSONSchemaProps { x_kubernetes_int_or_string: Some(true), ..Default::default() };
    crds.replace("musicbots.musicbot.dev", &PostParams::default(), &crd).await.unwrap();
}

#[tokio::test]
async fn a_musicbot_that_does_not_deserialize_gets_an_event_and_the_others_still_reconcile() {
    let (cluster, client) = cluster().await;
    loosen_shards(&client).await;
    let ns = cluster.namespace(&client, "invalid").await.unwrap();
    let gvk = GroupVersionKind::gvk("musicbot.dev", "v1alpha1", "MusicBot");
    let raw: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&gvk));
    let broken: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "musicbot.dev/v1alpha1", "kind": "MusicBot",
        "metadata": {"name": "broken"},
        "spec": {"clientId": CLIENT_ID, "tokenSecretRef": {"name": "radio-token"}, "shards": "two"}
    }))
    .unwrap();
    // The API server takes a moment to serve the loosened schema.
    eventually("the loosened schema to accept a string", || async {
        raw.create(&PostParams::default(), &broken).await.ok()
    })
    .await;

    let _op = start_operator(&client, &ns, BotDefaults::default());
    create_secret(&client, &ns, "radio-token", "token", &token_for(CLIENT_ID, "good")).await;
    create_bot(&client, &ns, "radio", json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "radio-token"}})).await;

    let stsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    eventually("the good bot's StatefulSet", || async { stsets.get_opt("radio").await.unwrap() }).await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let event = eventually("a Warning Event for the broken bot", || async {
        events.list(&ListParams::default()).await.unwrap().items.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("broken")
                && e.reason.as_deref() == Some(Reason::InvalidObject.as_str())
        })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let note = event.note.unwrap_or_default();
    assert!(note.to_lowercase().contains("invalid type string \"two\""), "the Event says why: {note}");
    assert!(stsets.get_opt("broken").await.unwrap().is_none(), "nothing runs for the broken bot");

    // A bot that went bad after it got the operator's finalizer can still be deleted.
    let bad_shards = json!({"spec": {"shards": "three"}});
    raw.patch("radio", &PatchParams::default(), &Patch::Merge(&bad_shards)).await.unwrap();
    raw.delete("radio", &DeleteParams::default()).await.unwrap();
    eventually("the broken radio to be deleted", || async {
        raw.get_opt("radio").await.unwrap().is_none().then_some(())
    })
    .await;
}
