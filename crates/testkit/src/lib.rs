//! Test support for musicbot-operator: real servers, started fresh for each test binary.
//! The Discord simulator is a crate of its own, `discord-sim`.
//!
//! Every launcher finds its binary through the environment `scripts/setup` prints (or the
//! cache it builds into) and fails with a message naming `scripts/test` when it is missing:
//! no test ever skips itself because a server is absent.

pub mod bins;
pub mod helm;
pub mod kube_cluster;
pub mod kube_node;
pub mod mongo;
pub mod net;
mod process;

pub use helm::Helm;
pub use kube_cluster::KubeCluster;
pub use kube_node::KubeNode;
pub use mongo::MongoServer;

/// Directory holding the workspace (for tests that read committed files): found from the
/// running test's package directory (cargo sets `CARGO_MANIFEST_DIR` for it), not from the
/// one this crate was compiled in, which a target directory shared by two checkouts of the
/// workspace (CI's cache) can make another checkout's.
pub fn workspace_root() -> std::path::PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    std::path::Path::new(&package)
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .expect("the tests run inside the workspace")
        .to_path_buf()
}
