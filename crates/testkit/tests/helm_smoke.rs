//! Proves the real helm CLI is there and works on a chart.

use testkit::Helm;

fn chart() -> String {
    testkit::workspace_root().join("crates/testkit/tests/fixtures/minimal-chart").display().to_string()
}

#[test]
fn helm_lints_a_minimal_chart() {
    let out = Helm::new().unwrap().run(&["lint", &chart()]).unwrap();
    assert!(out.contains("1 chart(s) linted, 0 chart(s) failed"), "{out}");
}

#[test]
fn helm_templates_a_minimal_chart_with_values() {
    let helm = Helm::new().unwrap();
    let out = helm.run(&["template", "demo", &chart(), "--set", "greeting=bonjour"]).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(out.trim_start_matches("---\n").split("\n---").next().unwrap())
        .unwrap_or_else(|e| panic!("helm printed no YAML ({e}):\n{out}"));
    assert_eq!(doc["kind"].as_str(), Some("ConfigMap"), "{out}");
    assert_eq!(doc["metadata"]["name"].as_str(), Some("demo-greeting"));
    assert_eq!(doc["data"]["greeting"].as_str(), Some("bonjour"));

    let err = helm.run(&["template", "demo", &chart(), "--set", "greeting="]).unwrap_err();
    assert!(err.to_string().contains("greeting is required"), "{err:#}");
}
