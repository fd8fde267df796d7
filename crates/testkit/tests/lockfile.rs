//! The project is rustls-only: OpenSSL must never enter the dependency graph.

#[test]
fn no_openssl_or_native_tls_in_cargo_lock() {
    let lock = std::fs::read_to_string(testkit::workspace_root().join("Cargo.lock")).expect("Cargo.lock is committed");
    let forbidden: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"'))
        .filter(|name| matches!(*name, "openssl-sys" | "openssl" | "native-tls"))
        .collect();
    assert!(forbidden.is_empty(), "Cargo.lock pulls in {forbidden:?}; enable the rustls features instead");
}
