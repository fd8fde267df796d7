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

/// Directory holding the workspace (for tests that read committed files).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("testkit lives in crates/, below the workspace root")
        .to_path_buf()
}
