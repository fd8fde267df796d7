//! The Helm chart with the real `helm`: lint; render with the default values and with every
//! optional part on, each manifest validated against the Kubernetes schemas; install into
//! the test API server; and the operator, running with exactly the chart's RBAC
//! (impersonating its ServiceAccount), reconciles MusicBots and is refused anything more.

mod common;
#[path = "helm_chart/in_cluster.rs"]
mod in_cluster;

use clap::CommandFactory;
use common::chart::*;
use in_cluster::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role};
use kube::api::{Api, ListParams};
use musicbot_api::crd::MusicBot;
use musicbot_operator::config::Config;
use musicbot_operator::controller::BotDefaults;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use testkit::{Helm, KubeCluster};

const RELEASE: &str = "musicbot-operator";
const NS: &str = "musicbot-system";

/// What the operator does with the API (operator/src/controller, http.rs): `group/resource`
/// and the verbs it needs.
const OPERATOR_GRANTS: &[(&str, &[&str])] = &[
    ("musicbot.dev/musicbots", &["list", "watch", "patch"]),
    ("musicbot.dev/musicbots/status", &["patch"]),
    ("musicbot.dev/musicbots/finalizers", &["update"]),
    // delete: only to change a StatefulSet's (immutable) claim templates, its pods orphaned.
    ("apps/statefulsets", &["create", "patch", "delete", "list", "watch"]),
    // create: a fleet's key, the only Secret the admission policy lets it make.
    ("/secrets", &["get", "list", "watch", "create"]),
    ("/pods", &["list", "watch"]),
    ("events.k8s.io/events", &["create", "patch"]),
];
/// The MongoDB sync's Role, only while it is configured and only in the namespace it writes
/// to: it creates, updates and deletes token Secrets and MusicBots.
const SYNC_GRANTS: &[(&str, &[&str])] = &[
    ("/secrets", &["get", "list", "create", "patch", "delete"]),
    ("musicbot.dev/musicbots", &["get", "list", "create", "patch", "delete"]),
    ("events.k8s.io/events", &["create", "patch"]),
];

/// Leader election, on the release's own Lease only.
const LEADER_GRANTS: &[(&str, &[&str])] = &[
    ("coordination.k8s.io/leases", &["create"]),
    ("coordination.k8s.io/leases[musicbot-operator-leader]", &["get", "patch"]),
];

fn expected_grants(sets: &[&[(&str, &[&str])]]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (resource, verbs) in sets.iter().flat_map(|s| s.iter()) {
        out.entry(resource.to_string()).or_default().extend(verbs.iter().map(|v| v.to_string()));
    }
    out
}

/// `group/resource[names]` → verbs, over every rule of a (Cluster)Role.
fn grants(role: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let strings = |v: &Value| -> Option<Vec<String>> {
        Some(v.as_array()?.iter().map(|s| s.as_str().unwrap().to_string()).collect())
    };
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in role["rules"].as_array().unwrap() {
        let names = strings(&rule["resourceNames"]).map(|n| format!("[{}]", n.join(","))).unwrap_or_default();
        let verbs = strings(&rule["verbs"]).unwrap();
        for group in strings(&rule["apiGroups"]).unwrap_or_default() {
            for resource in strings(&rule["resources"]).unwrap_or_default() {
                out.entry(format!("{group}/{resource}{names}")).or_default().extend(verbs.iter().cloned());
            }
        }
    }
    out
}

fn objects(docs: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = docs.iter().map(kind_and_name).collect();
    names.sort();
    names
}

fn env_of(deployment: &Value) -> BTreeMap<String, Value> {
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    env.iter().map(|e| (e["name"].as_str().unwrap().to_string(), e.clone())).collect()
}

fn env_value<'a>(env: &'a BTreeMap<String, Value>, name: &str) -> Option<&'a str> {
    env.get(name)?.get("value")?.as_str()
}

/// Environment variables the operator reads: its flags' fallbacks.
fn operator_env_names() -> BTreeSet<String> {
    Config::command().get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into()).collect()
}

fn default_of(flag: &str) -> String {
    let cmd = Config::command();
    let arg = cmd.get_arguments().find(|a| a.get_id() == flag).unwrap_or_else(|| panic!("no flag {flag}"));
    arg.get_default_values()[0].to_string_lossy().into()
}

/// True when every label `selector` asks for is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

#[test]
fn the_chart_carries_exactly_the_generated_crd() {
    let dir = chart_dir().join("crds");
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["musicbot.yaml"], "{} must hold the generated CRD and nothing else", dir.display());
    let in_chart = std::fs::read_to_string(dir.join("musicbot.yaml")).unwrap();
    let committed = std::fs::read_to_string(testkit::workspace_root().join("crds/musicbot.yaml")).unwrap();
    let fix = "run `cargo run -p musicbot-operator --bin crdgen | tee crds/musicbot.yaml \
               charts/musicbot-operator/crds/musicbot.yaml`";
    assert!(
        in_chart == committed,
        "charts/musicbot-operator/crds/musicbot.yaml differs from crds/musicbot.yaml: {fix}"
    );
    assert!(in_chart == musicbot_operator::crd::crd_yaml().unwrap(), "the chart's CRD is stale: {fix}");
}

#[test]
fn helm_lint_passes_with_the_default_and_all_optional_values() {
    let helm = Helm::new().unwrap();
    let (chart, values) = (chart_dir().display().to_string(), all_optional_values());
    for extra in [&[][..], &["--values", values.as_str()][..]] {
        let mut args = vec!["lint", "--strict", chart.as_str(), "--kube-version", KUBE_VERSION];
        args.extend(extra);
        let out = helm.run(&args).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(out.contains("1 chart(s) linted, 0 chart(s) failed"), "{out}");
    }
}

#[test]
fn the_default_values_render_valid_manifests_with_least_privilege() {
    let docs = render(RELEASE, NS, &[]);
    assert!(validate(&docs).is_empty(), "no custom resources by default");
    assert_eq!(
        objects(&docs),
        [
            "ClusterRole/musicbot-operator",
            "ClusterRole/musicbot-operator-musicbots-edit",
            "ClusterRole/musicbot-operator-musicbots-view",
            "ClusterRoleBinding/musicbot-operator",
            "CustomResourceDefinition/musicbots.musicbot.dev",
            "Deployment/musicbot-operator",
            "PodDisruptionBudget/musicbot-operator",
            "Role/musicbot-operator-leader-election",
            "RoleBinding/musicbot-operator-leader-election",
            "Service/musicbot-operator",
            "ServiceAccount/musicbot-operator",
            "ValidatingAdmissionPolicy/musicbot-operator-bot-workloads",
            "ValidatingAdmissionPolicy/musicbot-operator-fleet-keys",
            "ValidatingAdmissionPolicyBinding/musicbot-operator-bot-workloads",
            "ValidatingAdmissionPolicyBinding/musicbot-operator-fleet-keys",
        ]
    );
    let policy = find(&docs, "ValidatingAdmissionPolicy", "musicbot-operator-bot-workloads");
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        "request.userInfo.username == 'system:serviceaccount:musicbot-system:musicbot-operator'",
        "the policy binds the operator's own ServiceAccount only"
    );
    let binding = find(&docs, "ValidatingAdmissionPolicyBinding", "musicbot-operator-bot-workloads");
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));

    let deployment = find(&docs, "Deployment", RELEASE);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "privileged": false,
               "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(container["ports"], json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(container["livenessProbe"]["httpGet"], json!({"path": "/health", "port": "http"}));
    assert_eq!(container["readinessProbe"]["httpGet"], json!({"path": "/ready", "port": "http"}));
    assert_eq!(container["startupProbe"]["httpGet"], json!({"path": "/health", "port": "http"}));
    assert!(container["resources"]["requests"]["cpu"].is_string(), "{container}");
    assert!(container["resources"]["limits"]["memory"].is_string(), "{container}");

    let env = env_of(deployment);
    let known = operator_env_names();
    for name in env.keys() {
        assert!(known.contains(name), "the chart sets {name}, which the operator does not read");
    }
    assert_eq!(env_value(&env, "MUSICBOT_LEADER_ELECTION"), Some("true"));
    assert_eq!(env_value(&env, "MUSICBOT_LEADER_ELECTION_LEASE"), Some("musicbot-operator-leader"));
    assert_eq!(env["MUSICBOT_LEADER_ELECTION_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
    assert_eq!(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    assert!(!env.contains_key("POD_IP"), "without MongoDB no bot asks the operator whom to invite");
    assert_eq!(env_value(&env, "MUSICBOT_BOT_IMAGE"), Some(default_of("bot_image").as_str()), "chart and flag agree");
    assert_eq!(env_value(&env, "MUSICBOT_HTTP_ADDR"), Some("0.0.0.0:8080"));
    assert_eq!(env_value(&env, "MUSICBOT_BOT_IMAGE_REPOSITORIES"), Some("ghcr.io/musicbot-operator/bot-runner"));
    for off in ["MUSICBOT_WATCH_NAMESPACE", "MUSICBOT_MONGODB_URI", "MUSICBOT_BOT_MONGODB_URI_SECRET"] {
        assert!(!env.contains_key(off), "{off} is set by default");
    }
    assert!(!env.contains_key("MUSICBOT_TOKEN_KEY_FILE") && pod.get("volumes").is_none());

    // Least privilege: exactly what the code uses, nowhere a wildcard.
    assert_eq!(grants(find(&docs, "ClusterRole", RELEASE)), expected_grants(&[OPERATOR_GRANTS]));
    assert_eq!(grants(find(&docs, "Role", "musicbot-operator-leader-election")), expected_grants(&[LEADER_GRANTS]));
    let subject = json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NS}]);
    assert_eq!(find(&docs, "ClusterRoleBinding", RELEASE)["subjects"], subject);
    assert_eq!(find(&docs, "ClusterRoleBinding", RELEASE)["roleRef"]["name"], RELEASE);
    assert_eq!(find(&docs, "RoleBinding", "musicbot-operator-leader-election")["subjects"], subject);
    let view = grants(find(&docs, "ClusterRole", "musicbot-operator-musicbots-view"));
    assert!(view.values().flatten().all(|v| ["get", "list", "watch"].contains(&v.as_str())), "{view:?}");

    let service = find(&docs, "Service", RELEASE);
    assert!(selects(&service["spec"]["selector"], pod_labels));
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let pdb = find(&docs, "PodDisruptionBudget", RELEASE);
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}

/// docs/security.md's RBAC table, row for row, is what the chart grants.
#[test]
fn the_security_docs_list_exactly_the_charts_rbac() {
    let docs = render(RELEASE, NS, &["--set", "mongodb.existingSecret=musicbot-mongodb"]);
    let chart = BTreeMap::from([
        ("operator".to_string(), grants(find(&docs, "ClusterRole", RELEASE))),
        ("leader election".to_string(), grants(find(&docs, "Role", "musicbot-operator-leader-election"))),
        ("sync".to_string(), grants(find(&docs, "Role", "musicbot-operator-sync"))),
    ]);
    let text = std::fs::read_to_string(testkit::workspace_root().join("docs/security.md")).unwrap();
    let section = text.split("## The operator's RBAC").nth(1).unwrap().split("\n## ").next().unwrap();
    let mut documented: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (rules, resource, verbs) = (cells[1], cells[2], cells[3]);
        if !chart.contains_key(rules) {
            continue; // the header
        }
        // `group/resource` (a core resource has no group), optionally "named `<fullname>-…`".
        let mut quoted = resource.split('`').skip(1).step_by(2);
        let api = quoted.next().unwrap();
        let key = if api.contains('/') { api.to_string() } else { format!("/{api}") };
        let key = match quoted.next() {
            Some(name) => format!("{key}[{}]", name.replace("<fullname>", RELEASE)),
            None => key,
        };
        documented.entry(rules.into()).or_default().entry(key).or_default().extend(verbs.split(", ").map(String::from));
    }
    assert_eq!(documented, chart, "docs/security.md's RBAC table differs from the chart's rules");
}

#[test]
fn every_optional_part_renders_valid_manifests() {
    let docs = render(RELEASE, NS, &["--values", all_optional_values().as_str()]);
    let custom = validate(&docs);
    // The monitoring parts are checked in helm_chart_monitoring.rs.
    assert_eq!(
        custom.iter().map(|d| kind_and_name(d)).collect::<Vec<_>>(),
        ["PodMonitor/musicbot-operator-bots", "PrometheusRule/musicbot-operator", "ServiceMonitor/musicbot-operator"]
    );
    assert_eq!(
        objects(&docs),
        [
            "ClusterRole/musicbot-operator-musicbots-edit",
            "ClusterRole/musicbot-operator-musicbots-view",
            "ConfigMap/musicbot-operator-dashboard",
            "CustomResourceDefinition/musicbots.musicbot.dev",
            "Deployment/musicbot-operator",
            "NetworkPolicy/musicbot-operator",
            "NetworkPolicy/musicbot-operator-bots",
            "NetworkPolicy/musicbot-operator-bots",
            "PodDisruptionBudget/musicbot-operator",
            "PodMonitor/musicbot-operator-bots",
            "PrometheusRule/musicbot-operator",
            "Role/musicbot-operator",
            "Role/musicbot-operator-leader-election",
            "Role/musicbot-operator-sync",
            "RoleBinding/musicbot-operator",
            "RoleBinding/musicbot-operator-leader-election",
            "RoleBinding/musicbot-operator-sync",
            "Service/musicbot-operator",
            "ServiceAccount/musicbot-operator",
            "ServiceMonitor/musicbot-operator",
            "ValidatingAdmissionPolicy/musicbot-operator-bot-workloads",
            "ValidatingAdmissionPolicy/musicbot-operator-fleet-keys",
            "ValidatingAdmissionPolicyBinding/musicbot-operator-bot-workloads",
            "ValidatingAdmissionPolicyBinding/musicbot-operator-fleet-keys",
        ]
    );
    // Confined to one namespace, the admission policy looks only there.
    let policy = find(&docs, "ValidatingAdmissionPolicy", "musicbot-operator-bot-workloads");
    assert_eq!(
        policy["spec"]["matchConstraints"]["namespaceSelector"]["matchLabels"],
        json!({"kubernetes.io/metadata.name": "music"})
    );

    // One watched namespace: the operator's grants are a Role there, nothing cluster-wide;
    // the MongoDB sync gets its own Role in the namespace it writes to, the same one.
    let subject = json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NS}]);
    for (name, expected) in [(RELEASE, OPERATOR_GRANTS), ("musicbot-operator-sync", SYNC_GRANTS)] {
        let role = find(&docs, "Role", name);
        assert_eq!(role["metadata"]["namespace"], "music", "{name}");
        assert_eq!(grants(role), expected_grants(&[expected]), "{name}");
        let binding = find(&docs, "RoleBinding", name);
        assert_eq!(binding["metadata"]["namespace"], "music", "{name}");
        assert_eq!(binding["subjects"], subject, "{name}");
        assert_eq!(binding["roleRef"]["name"], name);
    }

    // The ServiceMonitor (no schema offline): it must find the Service and its port.
    let monitor = find(&docs, "ServiceMonitor", RELEASE);
    let service = find(&docs, "Service", RELEASE);
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], NS);
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let spec = monitor["spec"].as_object().unwrap();
    let mut keys: Vec<&str> = spec.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["endpoints", "namespaceSelector", "selector"], "{monitor}");
    assert!(selects(&spec["selector"]["matchLabels"], &service["metadata"]["labels"]));
    assert_eq!(spec["namespaceSelector"], json!({"matchNames": [NS]}));
    assert_eq!(
        spec["endpoints"],
        json!([{"port": service["spec"]["ports"][0]["name"], "path": "/metrics", "interval": "30s",
                "scrapeTimeout": "10s"}])
    );

    let deployment = find(&docs, "Deployment", RELEASE);
    let pod = &deployment["spec"]["template"]["spec"];
    let env = env_of(deployment);
    let known = operator_env_names();
    let extra = ["EXTRA_SETTING", "SSL_CERT_FILE"];
    for name in env.keys().filter(|n| !extra.contains(&n.as_str())) {
        assert!(known.contains(name), "the chart sets {name}, which the operator does not read");
    }
    assert_eq!(env_value(&env, "EXTRA_SETTING"), Some("1"));
    assert_eq!(env_value(&env, "SSL_CERT_FILE"), Some("/etc/musicbot/mongodb-ca/ca.crt"));
    assert_eq!(env_value(&env, "MUSICBOT_WATCH_NAMESPACE"), Some("music"));
    assert_eq!(
        env["MUSICBOT_MONGODB_URI"]["valueFrom"],
        json!({"secretKeyRef": {"name": "musicbot-mongodb", "key": "uri"}})
    );
    // Hostile: with passToBots set (now a no-op), bot pods still get no MongoDB URI.
    assert!(!env.contains_key("MUSICBOT_BOT_MONGODB_URI_SECRET"), "mongodb.passToBots hands bot pods the URI");
    assert_eq!(env_value(&env, "MUSICBOT_SYNC_NAMESPACE"), Some("music"));
    assert_eq!(env_value(&env, "MUSICBOT_TOKEN_KEY_FILE"), Some("/var/run/secrets/musicbot/token-key/key"));
    // The chart's own volume first, then extraVolumes / extraVolumeMounts as given.
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "token-key", "mountPath": "/var/run/secrets/musicbot/token-key", "readOnly": true},
               {"name": "mongodb-ca", "mountPath": "/etc/musicbot/mongodb-ca", "readOnly": true}])
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "token-key", "secret": {"secretName": "musicbot-token-key",
                "items": [{"key": "key", "path": "key"}], "defaultMode": 0o440}},
               {"name": "mongodb-ca", "configMap": {"name": "mongodb-ca"}}])
    );
    // The operator parses this flag as a ResourceRequirements.
    let resources = env_value(&env, "MUSICBOT_BOT_RESOURCES").unwrap();
    let parsed: k8s_openapi::api::core::v1::ResourceRequirements = serde_json::from_str(resources).unwrap();
    assert_eq!(parsed.limits.unwrap()["memory"].0, "384Mi");
    assert_eq!(env_value(&env, "MUSICBOT_BOT_IMAGE_PULL_POLICY"), Some("IfNotPresent"));
    // The operator parses this as --bot-ca-bundle CONFIGMAP/KEY.
    assert_eq!(env_value(&env, "MUSICBOT_BOT_CA_BUNDLE"), Some("corp-ca/bundle.pem"));
    assert_eq!(env_value(&env, "MUSICBOT_DISCORD_API_URL"), Some("http://discord-sim.test.svc:8080/api/v10"));

    let policy = &find(&docs, "NetworkPolicy", RELEASE)["spec"];
    assert!(selects(&policy["podSelector"]["matchLabels"], &deployment["spec"]["template"]["metadata"]["labels"]));
    assert_eq!(policy["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(policy["ingress"][0]["ports"], json!([{"port": "http", "protocol": "TCP"}]));
    // Beside ingressFrom, the sync fleet's bots (asking whom to invite), nothing else.
    let ingress = policy["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 2, "{policy}");
    assert_eq!(ingress[1]["ports"], json!([{"port": "http", "protocol": "TCP"}]));
    assert_eq!(
        ingress[1]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "music"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "bot-runner"}}}])
    );
    assert_eq!(
        env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP",
        "the address the sync fleet's bots are given"
    );
    let egress_ports: BTreeSet<i64> = policy["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap().iter().filter_map(|p| p["port"].as_i64()))
        .collect();
    assert_eq!(egress_ports, BTreeSet::from([53, 443, 6443, 8080, 27017]), "DNS, API, bot pods, extraTo");

    assert_eq!(
        env_value(&env, "MUSICBOT_BOT_IMAGE_REPOSITORIES"),
        Some("ghcr.io/musicbot-operator/bot-runner,registry.example/team/bot-runner"),
        "the admission policy's list"
    );
    bot_network_policies(&docs, deployment);
}

/// Hostile (by rendering: the test node's CNI does not enforce NetworkPolicies): the bot
/// pods the operator builds are selected, their HTTP port admits the operator's pods, the
/// bots of their namespace (fleet hand-offs) and the listed peers only, and their egress
/// reaches no private range but those bots' HTTP port and allowTo.
fn bot_network_policies(docs: &[Value], deployment: &Value) {
    let policies: Vec<&Value> =
        docs.iter().filter(|d| kind_and_name(d) == "NetworkPolicy/musicbot-operator-bots").collect();
    let namespaces: BTreeSet<&str> = policies.iter().map(|p| p["metadata"]["namespace"].as_str().unwrap()).collect();
    assert_eq!(namespaces, BTreeSet::from(["music", "radio"]), "watchNamespace, the sync namespace and the list");

    let spec: musicbot_api::crd::MusicBotSpec =
        serde_json::from_value(json!({"clientId": "123456789012345678", "tokenSecretRef": {"name": "t"}})).unwrap();
    let mut bot = MusicBot::new("radio", spec);
    bot.metadata.namespace = Some("music".into());
    bot.metadata.uid = Some("uid".into());
    let sts = musicbot_operator::controller::statefulset(&bot, &BotDefaults::default(), "digest");
    let sts = serde_json::to_value(sts).unwrap();
    let bot_labels = &sts["spec"]["template"]["metadata"]["labels"];
    let bot_port = &sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"];
    let operator_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for policy in policies {
        let spec = &policy["spec"];
        assert!(selects(&spec["podSelector"]["matchLabels"], bot_labels), "{spec}");
        assert!(!selects(&spec["podSelector"]["matchLabels"], operator_labels));
        assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
        let ingress = spec["ingress"].as_array().unwrap();
        assert_eq!(ingress.len(), 1, "one rule: {spec}");
        assert_eq!(ingress[0]["ports"], json!([{"port": bot_port, "protocol": "TCP"}]));
        let from = ingress[0]["from"].as_array().unwrap();
        assert_eq!(from[0]["namespaceSelector"]["matchLabels"], json!({"kubernetes.io/metadata.name": NS}));
        assert!(selects(&from[0]["podSelector"]["matchLabels"], operator_labels), "{from:?}");
        assert!(!selects(&from[0]["podSelector"]["matchLabels"], bot_labels), "not through the operator's rule");
        // The bots of the namespace, for their fleet's hand-offs: a pod selector alone is
        // the policy's own namespace.
        assert!(from[1].get("namespaceSelector").is_none(), "{from:?}");
        assert!(selects(&from[1]["podSelector"]["matchLabels"], bot_labels), "{from:?}");
        assert!(!selects(&from[1]["podSelector"]["matchLabels"], operator_labels));
        assert_eq!(
            from[2],
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}})
        );
        assert_eq!(from.len(), 3);

        let egress = spec["egress"].as_array().unwrap();
        assert_eq!(egress[0]["ports"], json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]));
        assert!(selects(&egress[1]["to"][0]["podSelector"]["matchLabels"], bot_labels), "{spec}");
        assert_eq!(egress[1]["to"].as_array().map(Vec::len), Some(1));
        assert_eq!(egress[1]["ports"], json!([{"port": bot_port, "protocol": "TCP"}]), "their HTTP port only");
        // The sync fleet's bots (in the sync namespace only) reach the operator's HTTP port.
        let sync_fleet = policy["metadata"]["namespace"] == "music";
        assert_eq!(egress.len(), if sync_fleet { 4 } else { 3 }, "{spec}");
        if sync_fleet {
            let to = egress[2]["to"].as_array().unwrap();
            assert_eq!(to.len(), 1);
            assert_eq!(to[0]["namespaceSelector"]["matchLabels"], json!({"kubernetes.io/metadata.name": NS}));
            assert!(selects(&to[0]["podSelector"]["matchLabels"], operator_labels), "{spec}");
            let operator_port = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"];
            assert_eq!(egress[2]["ports"], json!([{"port": operator_port, "protocol": "TCP"}]));
        }
        let egress = &egress[egress.len() - 2..];
        let blocks: Vec<&Value> = egress[1]["to"].as_array().unwrap().iter().map(|t| &t["ipBlock"]).collect();
        assert_eq!(blocks[0]["cidr"], "0.0.0.0/0");
        assert_eq!(
            blocks[0]["except"],
            json!(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"])
        );
        assert_eq!(blocks[1], &json!({"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]}));
        assert_eq!(blocks[2], &json!({"cidr": "10.20.0.5/32"}), "allowTo");
        assert!(egress[1].get("ports").is_none(), "any port of a public address (voice is UDP)");
    }
}

/// Only extraVolumes / extraVolumeMounts, without the chart's own volume: the lists stand
/// alone, under their keys.
#[test]
fn extra_volumes_and_mounts_render_on_their_own() {
    let docs = render(
        RELEASE,
        NS,
        &[
            "--set",
            "extraVolumes[0].name=mongodb-ca,extraVolumes[0].configMap.name=mongodb-ca",
            "--set",
            "extraVolumeMounts[0].name=mongodb-ca,extraVolumeMounts[0].mountPath=/etc/mongodb-ca",
            "--set",
            "extraVolumeMounts[0].readOnly=true",
        ],
    );
    validate(&docs);
    let pod = &find(&docs, "Deployment", RELEASE)["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"], json!([{"name": "mongodb-ca", "configMap": {"name": "mongodb-ca"}}]));
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "mongodb-ca", "mountPath": "/etc/mongodb-ca", "readOnly": true}])
    );
}

#[test]
fn the_chart_declares_the_kubernetes_versions_it_supports() {
    let chart: Value = serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap()).unwrap();
    assert_eq!(chart["kubeVersion"], ">=1.33.0-0");
    // Helm refuses to render for an older cluster, and accepts the tests' version (above).
    let helm = Helm::new().unwrap();
    let chart = chart_dir().display().to_string();
    let err = helm.run(&["template", "x", chart.as_str(), "--kube-version", "1.32.4"]).expect_err("1.32 accepted");
    assert!(format!("{err:#}").contains("kubeVersion"), "{err:#}");
}

#[test]
fn the_values_schema_rejects_mistakes() {
    let helm = Helm::new().unwrap();
    let chart = chart_dir().display().to_string();
    for (set, complaint) in [
        ("replicaCount=two", "/replicaCount"),
        ("logFormat=xml", "/logFormat"),
        ("watchNamespace=Music Bots", "/watchNamespace"),
        ("mongodb.existingSecret=Mongo_URI", "/mongodb/existingSecret"),
        ("networkPolicy.egress.kubernetesApi.ports={0}", "/networkPolicy/egress/kubernetesApi/ports"),
        ("serviceMonitr.enabled=true", "serviceMonitr"),
        ("botNetworkPolicy.egress.allowTo={media}", "/botNetworkPolicy/egress/allowTo/0"),
        ("extraVolumes[0].name=token-key", "/extraVolumes/0/name"),
        ("extraVolumeMounts[0].name=ca", "/extraVolumeMounts/0"),
    ] {
        let args = ["template", "x", chart.as_str(), "--kube-version", KUBE_VERSION, "--set", set];
        let err = format!("{:#}", helm.run(&args).expect_err(&format!("--set {set} was accepted")));
        assert!(err.contains("don't meet the specifications of the schema") && err.contains(complaint), "{set}: {err}");
    }
    // Synced MusicBots outside the watched namespace would never run.
    let set = "watchNamespace=music,mongodb.existingSecret=mongo,mongodb.syncNamespace=elsewhere";
    let args = ["template", "x", chart.as_str(), "--kube-version", KUBE_VERSION, "--set", set];
    let err = format!("{:#}", helm.run(&args).expect_err("a sync namespace outside watchNamespace was accepted"));
    assert!(err.contains("mongodb.syncNamespace (elsewhere) must be watchNamespace (music)"), "{err}");
    // A bot NetworkPolicy needs to know where bots run.
    let args =
        ["template", "x", chart.as_str(), "--kube-version", KUBE_VERSION, "--set", "botNetworkPolicy.enabled=true"];
    let err = format!("{:#}", helm.run(&args).expect_err("a bot NetworkPolicy without namespaces was accepted"));
    assert!(err.contains("botNetworkPolicy.enabled needs the bots' namespaces"), "{err}");
}

/// The test API server's version. Built from Go modules without version stamps, it reports
/// v0.0.0-master; then the directory scripts/setup built it into (`kube-v<version>`) says.
async fn test_server_version(admin: &kube::Client) -> String {
    let reported = admin.apiserver_version().await.unwrap().git_version;
    if let Some(v) = reported.strip_prefix('v').filter(|v| !v.starts_with("0.0.0")) {
        return v.to_string();
    }
    let bin = testkit::bins::kube_apiserver().unwrap();
    let dir = bin.parent().and_then(|d| d.file_name()).unwrap().to_string_lossy().into_owned();
    dir.strip_prefix("kube-v").unwrap_or_else(|| panic!("cannot tell the API server's version from {dir}")).into()
}

#[tokio::test]
async fn installed_cluster_wide_the_operator_runs_bots_with_only_the_charts_rbac() {
    let cluster = KubeCluster::shared().await;
    let admin = cluster.client().await.unwrap();
    let version = test_server_version(&admin).await;
    let minor = kube_minor();
    assert!(
        version.starts_with(&format!("{minor}.")),
        "the test API server is {version}: update KUBE_VERSION in operator/tests/common/chart.rs"
    );

    let inst = install(cluster, &admin, "mbot-all", &[]).await;
    check_installed(&admin, &inst).await;
    Api::<ClusterRole>::all(admin.clone()).get(&inst.fullname).await.unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone()).get(&inst.fullname).await.unwrap();

    let sa = client_as_service_account(cluster, &inst.namespace, &inst.fullname).await;
    let bots_ns = cluster.namespace(&admin, "chart-bots").await.unwrap();
    enforce_restricted(&admin, &bots_ns).await;
    operator_works_as(&sa, &admin, &inst, None, &bots_ns).await;
    refused_beyond_the_chart(&sa, &inst, &bots_ns).await;
}

#[tokio::test]
async fn installed_for_one_namespace_the_operator_is_confined_to_it() {
    let cluster = KubeCluster::shared().await;
    let admin = cluster.client().await.unwrap();
    let bots_ns = cluster.namespace(&admin, "chart-music").await.unwrap();
    enforce_restricted(&admin, &bots_ns).await;
    let inst = install(cluster, &admin, "mbot-one", &["--set", format!("watchNamespace={bots_ns}").as_str()]).await;
    check_installed(&admin, &inst).await;
    assert!(Api::<ClusterRole>::all(admin.clone()).get_opt(&inst.fullname).await.unwrap().is_none());
    Api::<Role>::namespaced(admin.clone(), &bots_ns).get(&inst.fullname).await.unwrap();

    let sa = client_as_service_account(cluster, &inst.namespace, &inst.fullname).await;
    operator_works_as(&sa, &admin, &inst, Some(bots_ns.clone()), &bots_ns).await;
    refused_beyond_the_chart(&sa, &inst, &bots_ns).await;

    // Confined: nothing outside the watched namespace, not even reads.
    let everywhere = ListParams::default();
    assert_refused(
        "to list pods elsewhere",
        Api::<Pod>::namespaced(sa.clone(), &inst.namespace).list(&everywhere).await,
    );
    let helm_release = format!("sh.helm.release.v1.{}.v1", inst.release);
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), &inst.namespace);
    assert_refused("to read Helm's release Secret", secrets.get(&helm_release).await);
    assert_refused("to list Secrets cluster-wide", Api::<Secret>::all(sa.clone()).list(&everywhere).await);
    assert_refused("to list MusicBots cluster-wide", Api::<MusicBot>::all(sa.clone()).list(&everywhere).await);
    let elsewhere: Api<StatefulSet> = Api::namespaced(sa.clone(), "default");
    assert_refused("to list StatefulSets elsewhere", elsewhere.list(&everywhere).await);
}

#[tokio::test]
async fn with_the_mongodb_sync_it_may_write_secrets_and_musicbots_in_one_namespace() {
    let cluster = KubeCluster::shared().await;
    let admin = cluster.client().await.unwrap();
    let inst = install(cluster, &admin, "mbot-sync", &["--set", "mongodb.existingSecret=musicbot-mongodb"]).await;
    // Cluster-wide, the sync writes to the release namespace by default.
    Api::<Role>::namespaced(admin.clone(), &inst.namespace).get(&format!("{}-sync", inst.fullname)).await.unwrap();
    let sa = client_as_service_account(cluster, &inst.namespace, &inst.fullname).await;
    let other = cluster.namespace(&admin, "chart-other").await.unwrap();
    sync_writes_only_in_its_namespace(&sa, &inst.namespace, &other).await;
}
