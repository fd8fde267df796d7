//! The chart installed into the test API server, and the operator acting as the chart's
//! ServiceAccount: what it must be able to do, and what it must be refused.

use crate::common::chart::*;
use crate::common::{CLIENT_ID, create_bot, create_secret, eventually, mark_ready_at_loopback, token_for, within};
use axum::Json;
use axum::routing::get;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use musicbot_api::crd::{MusicBot, Phase};
use musicbot_api::report::{BotReport, ShardInfo, StatusReport};
use musicbot_operator::controller::BotDefaults;
use musicbot_operator::http::{self, AppState};
use musicbot_operator::leader;
use serde_json::{Value, json};
use std::sync::Arc;
use testkit::{Helm, KubeCluster};

/// Tests that run a controller take turns: one watching every namespace would also act on
/// the other test's bots and could hide a permission missing there.
static CONTROLLER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Installed {
    pub release: String,
    pub namespace: String,
    pub fullname: String,
    notes: String,
}

/// `helm install` into a fresh namespace that enforces the restricted Pod Security Standard.
pub async fn install(cluster: &KubeCluster, admin: &Client, release: &str, extra: &[&str]) -> Installed {
    let namespace = cluster.namespace(admin, release).await.unwrap();
    enforce_restricted(admin, &namespace).await;
    let chart = chart_dir().display().to_string();
    let mut args = vec!["install", release, chart.as_str(), "--namespace", namespace.as_str()];
    args.extend(extra);
    let helm = Helm::new().unwrap().with_kubeconfig(cluster.kubeconfig_path());
    let notes = helm.run(&args).unwrap_or_else(|e| panic!("{e:#}"));
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    within(
        "the chart's CRD established",
        await_condition(crds, "musicbots.musicbot.dev", conditions::is_crd_established()),
    )
    .await
    .unwrap();
    Installed { release: release.into(), namespace, fullname: format!("{release}-musicbot-operator"), notes }
}

/// Labels `ns` so the API server refuses pods that break the restricted Pod Security
/// Standard, and waits until it does (admission reads namespaces from a cache).
pub async fn enforce_restricted(admin: &Client, ns: &str) {
    let labels = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}});
    Api::<Namespace>::all(admin.clone()).patch(ns, &PatchParams::default(), &Patch::Merge(labels)).await.unwrap();
    let careless: Pod = serde_json::from_value(
        json!({"metadata": {"name": "careless"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    )
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    eventually("the restricted Pod Security Standard enforced", || async {
        match pods.create(&dry_run, &careless).await {
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("PodSecurity") => Some(()),
            _ => None,
        }
    })
    .await;
}

/// The chart's objects exist and its operator pods pass the restricted standard.
pub async fn check_installed(admin: &Client, inst: &Installed) {
    assert!(inst.notes.contains("Next step: run a bot"), "NOTES.txt should say what to do next:\n{}", inst.notes);
    let ns = &inst.namespace;
    Api::<ServiceAccount>::namespaced(admin.clone(), ns).get(&inst.fullname).await.unwrap();
    let leader_election = format!("{}-leader-election", inst.fullname);
    Api::<Role>::namespaced(admin.clone(), ns).get(&leader_election).await.unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), ns).get(&leader_election).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={}", inst.release));
    eventually("two operator pods admitted under the restricted standard", || async {
        (pods.list(&selector).await.unwrap().items.len() == 2).then_some(())
    })
    .await;
}

async fn event_reasons(admin: &Client, ns: &str, name: &str) -> Vec<String> {
    let events = Api::<Event>::namespaced(admin.clone(), ns).list(&ListParams::default()).await.unwrap();
    let about = |e: &Event| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name);
    events.items.into_iter().filter(about).filter_map(|e| e.reason).collect()
}

/// Runs the operator as the chart's ServiceAccount (`sa`): it wins the chart's Lease,
/// reconciles a MusicBot in `bots_ns` into a StatefulSet, reads its pod's `/status` into
/// the status, publishes Events, answers `/bots`, and completes deletion through the
/// finalizer; a bot without its Secret is reported. No reconcile may fail.
pub async fn operator_works_as(sa: &Client, admin: &Client, inst: &Installed, watch: Option<String>, bots_ns: &str) {
    let lease = format!("{}-leader", inst.fullname);
    let mut leadership = leader::campaign(sa.clone(), &inst.namespace, &lease, "chart-test", 15)
        .await
        .unwrap_or_else(|e| panic!("leader election with the chart's RBAC: {e}"));
    assert!(within("leading through the chart's Lease", leadership.acquired()).await);
    leadership.release().await;

    let status_server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = status_server.local_addr().unwrap().port();
    // What bot-runner answers, in the contract's type.
    let bot = BotReport {
        name: "Chart Radio".into(),
        client_id: CLIENT_ID.into(),
        guilds: 7,
        users: 70,
        voice_connections: 1,
        gateway_connected: true,
        commands_deployed: true,
        guild_ids: Vec::new(),
        ..Default::default()
    };
    let report = StatusReport::of(ShardInfo::default(), vec![bot]);
    tokio::spawn(async move {
        let app = axum::Router::new().route("/status", get(move || async move { Json(report.clone()) }));
        axum::serve(status_server, app).await.unwrap();
    });

    let _turn = CONTROLLER_TURN.lock().await;
    let defaults = BotDefaults { http_port: port, ..BotDefaults::default() };
    let controller = RunningController::start(sa, watch.clone(), defaults);
    create_secret(admin, bots_ns, "radio-token", "token", &token_for(CLIENT_ID, "chart")).await;
    let spec = json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "radio-token"}, "displayName": "Chart Radio"});
    create_bot(admin, bots_ns, "radio", spec).await;
    create_bot(admin, bots_ns, "orphan", json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "missing"}})).await;

    let stsets: Api<StatefulSet> = Api::namespaced(admin.clone(), bots_ns);
    let sts = eventually("StatefulSet radio", || async { stsets.get_opt("radio").await.unwrap() }).await;
    assert_eq!(sts.owner_references()[0].name, "radio");
    // The bot pod passes the restricted standard too; then the test plays kubelet.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), bots_ns);
    eventually("bot pod radio-0 admitted", || async { pods.get_opt("radio-0").await.unwrap() }).await;
    mark_ready_at_loopback(&pods, "radio-0").await;
    let bots: Api<MusicBot> = Api::namespaced(admin.clone(), bots_ns);
    eventually("radio Running with its pod's counts", || async {
        let s = bots.get("radio").await.unwrap().status?;
        (s.phase == Some(Phase::Running) && s.guilds == Some(7)).then_some(())
    })
    .await;
    assert!(bots.get("radio").await.unwrap().finalizers().iter().any(|f| f == "musicbot.dev/cleanup"));
    eventually("orphan reported SecretNotFound", || async {
        let s = bots.get("orphan").await.unwrap().status?;
        s.conditions.iter().any(|c| c.type_ == "TokenResolved" && c.reason == "SecretNotFound").then_some(())
    })
    .await;
    eventually("Events published", || async {
        let running = event_reasons(admin, bots_ns, "radio").await.contains(&"Running".to_string());
        let failed = event_reasons(admin, bots_ns, "orphan").await.contains(&"TokenNotResolved".to_string());
        (running && failed).then_some(())
    })
    .await;

    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http_listener.local_addr().unwrap();
    let state = Arc::new(AppState {
        client: sa.clone(),
        metrics: controller.metrics.clone(),
        namespace: watch,
        started: std::time::Instant::now(),
        ready: Default::default(),
    });
    tokio::spawn(http::serve_on(http_listener, state, std::future::pending()));
    let listing: Value = reqwest::get(format!("http://{addr}/bots")).await.unwrap().json().await.unwrap();
    let listed = listing["bots"].as_array().unwrap();
    assert!(listed.iter().any(|b| b["name"] == "Chart Radio" && b["guilds"] == 7), "{listing}");

    bots.delete("radio", &DeleteParams::default()).await.unwrap();
    eventually("radio deleted through its finalizer", || async {
        bots.get_opt("radio").await.unwrap().is_none().then_some(())
    })
    .await;
    let metrics = controller.metrics.encode();
    let errors: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("musicbot_operator_reconcile_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(errors, 0.0, "reconciles failed under the chart's RBAC:\n{metrics}");
    controller.stop().await;
}

#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("the chart's ServiceAccount was allowed {what}: {other:?}"),
    }
}

fn object<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// What no configuration of the chart allows its ServiceAccount.
pub async fn refused_beyond_the_chart(sa: &Client, inst: &Installed, bots_ns: &str) {
    let post = PostParams::default();
    let delete = DeleteParams::default();
    let everything =
        json!({"metadata": {"name": "escalate"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
    assert_refused(
        "to create a ClusterRole",
        Api::<ClusterRole>::all(sa.clone()).create(&post, &object(everything)).await,
    );
    let to_admin = json!({
        "metadata": {"name": "escalate"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": inst.fullname, "namespace": inst.namespace}]
    });
    assert_refused(
        "to bind cluster-admin",
        Api::<ClusterRoleBinding>::all(sa.clone()).create(&post, &object(to_admin)).await,
    );
    assert_refused("to delete a namespace", Api::<Namespace>::all(sa.clone()).delete(bots_ns, &delete).await);
    let crds: Api<CustomResourceDefinition> = Api::all(sa.clone());
    assert_refused("to delete the CRD", crds.delete("musicbots.musicbot.dev", &delete).await);
    let pod = json!({"metadata": {"name": "intruder"}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
    assert_refused("to create a Pod", Api::<Pod>::namespaced(sa.clone(), bots_ns).create(&post, &object(pod)).await);
    assert_refused(
        "to read ConfigMaps",
        Api::<ConfigMap>::namespaced(sa.clone(), bots_ns).get("kube-root-ca.crt").await,
    );
    // Without the MongoDB sync the operator writes no MusicBots, and no Secret but a
    // fleet's key (see refused_by_the_admission_policy).
    let bot = json!({"apiVersion": "musicbot.dev/v1alpha1", "kind": "MusicBot", "metadata": {"name": "planted"},
                     "spec": {"clientId": CLIENT_ID, "tokenSecretRef": {"name": "t"}}});
    assert_refused(
        "to create a MusicBot",
        Api::<MusicBot>::namespaced(sa.clone(), bots_ns).create(&post, &object(bot)).await,
    );
    let leases: Api<Lease> = Api::namespaced(sa.clone(), &inst.namespace);
    assert_refused("to read another Lease", leases.get("someone-elses-lease").await);
    assert_refused("to delete its Lease", leases.delete(&format!("{}-leader", inst.fullname), &delete).await);
    refused_by_the_admission_policy(sa, bots_ns).await;
    secrets_refused_but_fleet_keys(sa, bots_ns).await;
}

/// The chart's ValidatingAdmissionPolicy: the operator's identity may write the bot
/// workloads it builds, and nothing shaped otherwise, even where its RBAC allows
/// StatefulSets.
/// The one Secret the operator may create is a fleet's key; a planted token is refused by
/// the admission policy (RBAC cannot say which Secrets), and so is a key with another
/// name or something more in it.
pub async fn secrets_refused_but_fleet_keys(sa: &Client, ns: &str) {
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), ns);
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let planted = json!({"metadata": {"name": "planted"}, "stringData": {"token": "x"}});
    eventually("the fleet-key admission policy in force", || async {
        match secrets.create(&dry_run, &object(planted.clone())).await {
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("only create fleet keys") => Some(()),
            _ => None,
        }
    })
    .await;
    let key = |name: &str, fleet: &str, data: Value| {
        object(json!({"metadata": {"name": name, "labels": {"musicbot.dev/fleet": fleet,
            "app.kubernetes.io/managed-by": "musicbot-operator"}}, "type": "Opaque", "data": data}))
    };
    let fine = key("musicbot-fleet-night", "night", json!({"key": "a2V5"}));
    secrets.create(&dry_run, &fine).await.expect("the policy admits a fleet's key");
    for (what, secret) in [
        ("a key named for another fleet", key("musicbot-fleet-day", "night", json!({"key": "a2V5"}))),
        ("a token beside the key", key("musicbot-fleet-night", "night", json!({"key": "a2V5", "token": "eA=="}))),
    ] {
        assert_refused(what, secrets.create(&dry_run, &secret).await);
    }
}

async fn refused_by_the_admission_policy(sa: &Client, bots_ns: &str) {
    let mut bot = MusicBot::new(
        "radio",
        serde_json::from_value(json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "radio-token"}})).unwrap(),
    );
    bot.metadata.namespace = Some(bots_ns.into());
    bot.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
    let built = musicbot_operator::controller::statefulset(&bot, &BotDefaults::default(), "digest");
    let stsets: Api<StatefulSet> = Api::namespaced(sa.clone(), bots_ns);
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let variant = |name: &str, change: &dyn Fn(&mut k8s_openapi::api::core::v1::PodSpec)| {
        let mut sts = built.clone();
        sts.metadata.name = Some(name.into());
        change(sts.spec.as_mut().unwrap().template.spec.as_mut().unwrap());
        sts
    };
    let another_image = variant("miner", &|pod| pod.containers[0].image = Some("registry.example/miner:1".into()));
    // Admission reads policies from a cache: wait until this one is in force.
    eventually("the admission policy in force", || async {
        match stsets.create(&dry_run, &another_image).await {
            Err(kube::Error::Api(s)) if s.message.contains("bot images must come from") => Some(()),
            _ => None,
        }
    })
    .await;
    let admitted = variant("admitted", &|_| {});
    stsets.create(&dry_run, &admitted).await.expect("the policy admits the StatefulSet the operator builds");

    let token = variant("with-token", &|pod| pod.automount_service_account_token = Some(true));
    let projected = variant("projected-token", &|pod| {
        pod.volumes.get_or_insert_default().push(object(json!({"name": "sa", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token"}}
        ]}})))
    });
    let host = variant("host-path", &|pod| {
        pod.volumes.get_or_insert_default().push(object(json!({"name": "root", "hostPath": {"path": "/"}})))
    });
    let root = variant("as-root", &|pod| pod.security_context.as_mut().unwrap().run_as_non_root = Some(false));
    let mut unlabelled = variant("unlabelled", &|_| {});
    unlabelled.metadata.labels = None;
    for (what, sts, why) in [
        ("another image", &another_image, "bot images must come from ghcr.io/musicbot-operator/bot-runner"),
        ("a service-account token", &token, "no service-account token"),
        ("a projected service-account token", &projected, "no service-account token"),
        ("a host path", &host, "no host path"),
        ("a pod running as root", &root, "run as non-root"),
        ("a StatefulSet not labelled as a bot workload", &unlabelled, "labelled as bot-runner workloads"),
    ] {
        match stsets.create(&dry_run, sts).await {
            Err(kube::Error::Api(s)) if s.message.contains(why) => {}
            other => panic!("the admission policy let the operator write {what}: {other:?}"),
        }
    }
}

/// With the MongoDB sync configured, the ServiceAccount may write token Secrets and
/// MusicBots in the sync's namespace, and still nowhere else.
pub async fn sync_writes_only_in_its_namespace(sa: &Client, sync_ns: &str, other_ns: &str) {
    // A MusicBot appearing here must not meet another test's controller halfway.
    let _turn = CONTROLLER_TURN.lock().await;
    let post = PostParams::default();
    let secret = json!({"metadata": {"name": "synced-token", "labels": {
        "app.kubernetes.io/managed-by": "musicbot-operator-sync"}}, "stringData": {"token": "x"}});
    let bot = json!({"apiVersion": "musicbot.dev/v1alpha1", "kind": "MusicBot", "metadata": {"name": "synced"},
                     "spec": {"clientId": CLIENT_ID, "tokenSecretRef": {"name": "synced-token"}}});
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), sync_ns);
    let bots: Api<MusicBot> = Api::namespaced(sa.clone(), sync_ns);
    secrets.create(&post, &object(secret.clone())).await.expect("the sync creates token Secrets");
    bots.create(&post, &object(bot.clone())).await.expect("the sync creates MusicBots");
    let merge = Patch::Merge(json!({"metadata": {"labels": {"musicbot.dev/synced": "true"}}}));
    secrets.patch("synced-token", &PatchParams::default(), &merge).await.expect("the sync updates token Secrets");
    bots.patch("synced", &PatchParams::default(), &merge).await.expect("the sync updates MusicBots");
    bots.delete("synced", &DeleteParams::default()).await.expect("the sync deletes MusicBots");
    secrets.delete("synced-token", &DeleteParams::default()).await.expect("the sync deletes token Secrets");

    // Refused by the admission policy: RBAC lets the operator create fleet keys anywhere.
    secrets_refused_but_fleet_keys(sa, other_ns).await;
    let elsewhere_secrets: Api<Secret> = Api::namespaced(sa.clone(), other_ns);
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    assert_refused(
        "to create a sync's Secret outside the sync namespace",
        elsewhere_secrets.create(&dry_run, &object(secret)).await,
    );
    let elsewhere_bots: Api<MusicBot> = Api::namespaced(sa.clone(), other_ns);
    assert_refused("to create a MusicBot outside the sync namespace", elsewhere_bots.create(&post, &object(bot)).await);
}
