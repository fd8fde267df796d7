//! Proves the test Kubernetes API server and controller manager are real: schema validation
//! is done by the server, StatefulSets get Pods, and orphans are garbage-collected.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use testkit::KubeCluster;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(group = "smoke.musicbot.dev", version = "v1", kind = "Widget", namespaced)]
struct WidgetSpec {
    #[schemars(range(min = 1, max = 10))]
    size: u32,
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn crd_is_established_stores_resources_and_the_server_rejects_schema_violations() {
    let cluster = KubeCluster::shared().await;
    let client = cluster.client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Widget::crd();
    let name = crd.name_any();
    crds.patch(&name, &PatchParams::apply("testkit").force(), &Patch::Apply(&crd)).await.unwrap();
    within("CRD established", await_condition(crds, &name, conditions::is_crd_established())).await.unwrap();

    let ns = cluster.namespace(&client, "crd").await.unwrap();
    let widgets: Api<Widget> = Api::namespaced(client.clone(), &ns);
    let ok = Widget::new("ok", WidgetSpec { size: 3 });
    widgets.create(&PostParams::default(), &ok).await.unwrap();
    assert_eq!(widgets.get("ok").await.unwrap().spec.size, 3);

    let bad = Widget::new("too-big", WidgetSpec { size: 99 });
    match widgets.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(status.message.contains("size"), "{}", status.message);
        }
        other => panic!("the API server accepted a widget its schema forbids: {other:?}"),
    }
}

#[tokio::test]
async fn controller_manager_creates_pods_for_a_statefulset() {
    let cluster = KubeCluster::shared().await;
    let client = cluster.client().await.unwrap();
    let ns = cluster.namespace(&client, "sts").await.unwrap();
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/none:1"}]}
            }
        }
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), &ns).create(&PostParams::default(), &sts).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = within("pod web-0", await_condition(pods, "web-0", conditions::is_created()))
        .await
        .unwrap()
        .expect("pod exists");
    let owner = &pod.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("StatefulSet", "web"));
}

#[tokio::test]
async fn garbage_collector_deletes_objects_whose_owner_is_gone() {
    let cluster = KubeCluster::shared().await;
    let client = cluster.client().await.unwrap();
    let ns = cluster.namespace(&client, "gc").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owner = cms
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap())
        .await
        .unwrap();
    let child: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "child", "ownerReferences": [owner.controller_owner_ref(&()).unwrap()]}
    }))
    .unwrap();
    let child = cms.create(&PostParams::default(), &child).await.unwrap();

    cms.delete("owner", &DeleteParams::background()).await.unwrap();
    within("child collected", await_condition(cms, "child", conditions::is_deleted(&child.uid().unwrap())))
        .await
        .unwrap();
}
