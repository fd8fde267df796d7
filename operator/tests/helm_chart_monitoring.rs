//! The chart's monitoring parts with the real `helm` and the real `promtool`: the Grafana
//! dashboard (a ConfigMap for the dashboard sidecar), the bot pods' PodMonitor and the
//! PrometheusRule render behind their switches; `promtool check rules` passes and
//! `promtool test rules` (helm_chart/alerts_test.yaml) fires each alert when it should and
//! not before; and every metric a panel or an alert reads is served by a running operator
//! process or a running bot-runner (against the Discord simulator).

mod common;

use common::chart::*;
use discord_sim::{BotSpec, DiscordSim, GuildSpec, SlashCommand, UserSpec};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const RELEASE: &str = "musicbot-operator";
const NS: &str = "musicbot-system";
const DASHBOARD: &str = "musicbot-operator-dashboard";

/// Every monitoring switch on, and MongoDB configured (the sync's alerts need it).
const MONITORING: &[&str] = &[
    "--set",
    "grafanaDashboard.enabled=true",
    "--set",
    "botPodMonitor.enabled=true",
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "mongodb.existingSecret=musicbot-mongodb",
];

fn run_promtool(args: &[&str], dir: &Path) -> String {
    let promtool = testkit::bins::promtool().unwrap_or_else(|e| panic!("{e:#}"));
    let out = Command::new(promtool).args(args).current_dir(dir).output().expect("running promtool");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{report}");
    report
}

fn docs_of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(chart_dir().join("dashboards/fleet.json")).unwrap();
    serde_json::from_str(&text).expect("dashboards/fleet.json is JSON")
}

/// Every PromQL expression of the dashboard's panels.
fn panel_queries(dashboard: &Value) -> Vec<String> {
    let panels = dashboard["panels"].as_array().expect("panels");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("every target has an expr").to_string())
        .collect()
}

/// The alerting rules of a rendered PrometheusRule: (alert, expr).
fn alerts(rule: &Value) -> Vec<(String, String)> {
    let groups = rule["spec"]["groups"].as_array().expect("groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| (r["alert"].as_str().unwrap().to_string(), r["expr"].as_str().unwrap().to_string()))
        .collect()
}

/// The metric names a query reads: our metrics all start with `musicbot_`, and nothing
/// else in these queries does (label values here hold no underscore names).
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = query;
    while let Some(at) = rest.find("musicbot_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The series names an exposition offers: sample names, and what each `# TYPE` declares
/// (a family with no series yet still exists: `_total` of a counter, `_bucket`, `_sum`
/// and `_count` of a histogram).
fn served_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let mut parts = decl.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{}{s}", name.trim_end_matches("_total"))));
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

#[test]
fn monitoring_is_off_by_default() {
    let docs = render(RELEASE, NS, &[]);
    for kind in ["PrometheusRule", "PodMonitor", "ConfigMap"] {
        assert!(docs_of_kind(&docs, kind).is_empty(), "{kind} rendered with the default values");
    }
}

#[test]
fn the_dashboard_is_a_configmap_the_grafana_sidecar_loads() {
    let docs = render(RELEASE, NS, MONITORING);
    let (custom, builtin): (Vec<Value>, Vec<Value>) =
        docs.into_iter().partition(|d| ["PrometheusRule", "PodMonitor"].contains(&d["kind"].as_str().unwrap_or("")));
    assert_eq!(custom.len(), 2, "{custom:?}");
    validate(&builtin);
    let map = find(&builtin, "ConfigMap", DASHBOARD);
    assert_eq!(map["metadata"]["namespace"], NS);
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let data = map["data"].as_object().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["musicbot-fleet.json"]);
    let shipped: Value = serde_json::from_str(data["musicbot-fleet.json"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, dashboard(), "the ConfigMap carries dashboards/fleet.json as it is");

    // A dashboard Grafana imports anywhere: its own uid, the data source as a variable,
    // panel ids unique, and every panel of the fleet's subjects there.
    assert_eq!(shipped["uid"], "musicbot-fleet");
    assert_eq!(shipped["templating"]["list"][0]["type"], "datasource");
    let panels = shipped["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len());
    for p in panels {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
    }
    let titles: BTreeSet<&str> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
    for want in [
        "Bots by phase",
        "Guilds and users",
        "Voice connections",
        "Tracks started and failed",
        "Command latency",
        "Sync lag",
    ] {
        assert!(titles.contains(want), "no panel {want:?} in {titles:?}");
    }

    // Elsewhere and with extra labels, as a sidecar searching one namespace wants it.
    let mut args = MONITORING.to_vec();
    args.extend(["--set", "grafanaDashboard.namespace=grafana", "--set", "grafanaDashboard.labels.team=music"]);
    let docs = render(RELEASE, NS, &args);
    let map = find(&docs, "ConfigMap", DASHBOARD);
    assert_eq!(map["metadata"]["namespace"], "grafana");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["metadata"]["labels"]["team"], "music");
}

#[test]
fn the_bot_pod_monitor_selects_the_pods_the_operator_builds() {
    let bot: musicbot_api::crd::MusicBot = serde_json::from_value(serde_json::json!({
        "apiVersion": "musicbot.dev/v1alpha1", "kind": "MusicBot",
        "metadata": {"name": "radio", "namespace": "music", "uid": "0000"},
        "spec": {"clientId": "123456789012345678", "tokenSecretRef": {"name": "radio-token"}},
    }))
    .unwrap();
    let sts = musicbot_operator::controller::statefulset(&bot, &Default::default(), "digest");
    let template = sts.spec.unwrap().template;
    let pod_labels = serde_json::to_value(template.metadata.unwrap().labels.unwrap()).unwrap();
    let port = template.spec.unwrap().containers[0].ports.clone().unwrap()[0].name.clone().unwrap();

    for (extra, namespaces) in [
        (vec![], serde_json::json!({"any": true})),
        (vec!["--set", "watchNamespace=music"], serde_json::json!({"matchNames": ["music"]})),
    ] {
        let mut args = MONITORING.to_vec();
        args.extend(extra);
        let docs = render(RELEASE, NS, &args);
        let monitor = find(&docs, "PodMonitor", "musicbot-operator-bots");
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        let labels = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
        for (k, v) in labels {
            assert_eq!(&pod_labels[k], v, "the PodMonitor wants {k}={v}; bot pods carry {pod_labels}");
        }
        assert_eq!(monitor["spec"]["namespaceSelector"], namespaces);
        assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], port.as_str());
        assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["path"], "/metrics");
    }
}

#[test]
fn promtool_checks_the_rules_and_fires_each_alert_in_its_unit_tests() {
    let docs = render(RELEASE, NS, MONITORING);
    let rule = find(&docs, "PrometheusRule", RELEASE);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], NS);
    let dir = tempfile::tempdir().unwrap();
    // What Prometheus loads from a PrometheusRule is its spec, as a rule file.
    std::fs::write(dir.path().join("rules.yaml"), serde_yaml::to_string(&rule["spec"]).unwrap()).unwrap();
    let tests = testkit::workspace_root().join("operator/tests/helm_chart/alerts_test.yaml");
    std::fs::copy(&tests, dir.path().join("alerts_test.yaml")).unwrap();

    let checked = run_promtool(&["check", "rules", "rules.yaml"], dir.path());
    let names: Vec<String> = alerts(rule).into_iter().map(|(name, _)| name).collect();
    assert!(checked.contains(&format!("SUCCESS: {} rules found", names.len())), "{checked}");
    run_promtool(&["test", "rules", "alerts_test.yaml"], dir.path());

    // Each alert has a unit test that expects it to fire.
    let unit: Value = serde_yaml::from_str(&std::fs::read_to_string(&tests).unwrap()).unwrap();
    let fired: BTreeSet<&str> = unit["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .filter(|a| !a["exp_alerts"].as_array().unwrap().is_empty())
        .map(|a| a["alertname"].as_str().unwrap())
        .collect();
    for name in &names {
        assert!(fired.contains(name.as_str()), "no unit test in {} fires {name}", tests.display());
    }

    // Without MongoDB the sync's alerts are left out: its gauges would read "down" for ever.
    let docs = render(RELEASE, NS, &MONITORING[..6]);
    let without: Vec<String> = alerts(find(&docs, "PrometheusRule", RELEASE)).into_iter().map(|(n, _)| n).collect();
    assert!(without.iter().all(|n| !n.starts_with("MusicBotSync")), "{without:?}");
    assert!(without.contains(&"MusicBotDown".to_string()), "{without:?}");

    // Without leader election the leader gauge stays 0: no alert on it.
    let mut args = MONITORING.to_vec();
    args.extend(["--set", "leaderElection.enabled=false"]);
    let docs = render(RELEASE, NS, &args);
    let single: Vec<String> = alerts(find(&docs, "PrometheusRule", RELEASE)).into_iter().map(|(n, _)| n).collect();
    assert!(!single.contains(&"MusicBotOperatorNoLeader".to_string()), "{single:?}");
    assert!(names.contains(&"MusicBotOperatorNoLeader".to_string()), "{names:?}");
}

/// The operator binary against the test API server, serving /metrics on a port of its own.
struct OperatorProcess(Child);

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bot-runner binary of this build (cargo builds every binary of the workspace for
/// `cargo test --workspace`; run alone, build it first).
fn bot_runner_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary> → target/<profile>/bot-runner
    let bin = exe.parent().and_then(Path::parent).unwrap().join("bot-runner");
    assert!(bin.is_file(), "{} is missing: build it first (cargo build -p bot-runner)", bin.display());
    bin
}

async fn get_text(url: &str) -> Option<String> {
    let resp = reqwest::get(url).await.ok()?;
    resp.status().is_success().then_some(())?;
    resp.text().await.ok()
}

#[tokio::test]
async fn every_metric_a_panel_or_an_alert_reads_is_served() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let docs = render(RELEASE, NS, MONITORING);
    let mut queries = panel_queries(&dashboard());
    queries.extend(alerts(find(&docs, "PrometheusRule", RELEASE)).into_iter().map(|(_, expr)| expr));
    let wanted: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    assert!(wanted.iter().any(|n| n.starts_with("musicbot_operator_")), "{wanted:?}");
    assert!(wanted.iter().any(|n| !n.starts_with("musicbot_operator_")), "{wanted:?}");

    // A running operator.
    let (cluster, client) = common::cluster().await;
    let ns = cluster.namespace(&client, "monitoring").await.unwrap();
    let port = testkit::net::free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("operator.log")).unwrap();
    let _operator = OperatorProcess(
        Command::new(env!("CARGO_BIN_EXE_musicbot-operator"))
            .args(["--watch-namespace", &ns, "--http-addr", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", cluster.kubeconfig_path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let operator = common::eventually("the operator's /metrics", || async {
        get_text(&format!("http://127.0.0.1:{port}/metrics")).await
    })
    .await;

    // A running bot-runner, connected to the simulator's gateway.
    const APP: u64 = 940_000_000_000_000_001;
    const GUILD: u64 = 940_000_000_000_000_010;
    let token = common::token_for(&APP.to_string(), "monitoring");
    let (text, voice, alice) = (GUILD + 1, GUILD + 2, GUILD + 3);
    let sim = DiscordSim::builder()
        .guild(
            GuildSpec::new(GUILD, "Guild")
                .text_channel(text, "general")
                .voice_channel(voice, "Music")
                .member(UserSpec::new(alice, "alice")),
        )
        .bot(BotSpec::new(token.clone()).application_id(APP).user_id(APP).in_guild(GUILD))
        .start()
        .await
        .unwrap();
    std::fs::write(dir.path().join("token"), &token).unwrap();
    let bot_port = testkit::net::free_port();
    let bot_log = std::fs::File::create(dir.path().join("bot-runner.log")).unwrap();
    let mut bot = Command::new(bot_runner_bin())
        .arg("run")
        .env_remove("DISCORD_TOKEN")
        .env_remove("MUSICBOT_MONGODB_URI")
        .env("MUSICBOT_TOKEN_FILE", dir.path().join("token"))
        .env("MUSICBOT_DISCORD_API_URL", sim.api_url())
        .env("MUSICBOT_HTTP_HOST", "127.0.0.1")
        .env("MUSICBOT_HTTP_PORT", bot_port.to_string())
        .env("SSL_CERT_FILE", sim.ca_file())
        .env("HOME", dir.path())
        .stdout(bot_log.try_clone().unwrap())
        .stderr(bot_log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let bot_base = format!("http://127.0.0.1:{bot_port}");
    common::eventually("bot-runner ready", || async { get_text(&format!("{bot_base}/ready")).await }).await;
    // A command answered: the latency histogram has its series only from the first one.
    let asked = sim.bot(&token).inject_interaction(SlashCommand::new(GUILD, text, alice, "queue")).unwrap();
    sim.wait_reply(asked.id, Duration::from_secs(30)).await.unwrap();
    let runner = get_text(&format!("{bot_base}/metrics")).await.expect("bot-runner's /metrics");
    let _ = bot.kill();
    let _ = bot.wait();

    let served: BTreeSet<String> = served_names(&operator).into_iter().chain(served_names(&runner)).collect();
    let missing: Vec<&String> = wanted.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "the dashboard or the alerts read {missing:?}, which neither the operator nor bot-runner serves:\n\
         operator:\n{operator}\nbot-runner:\n{runner}"
    );
}
