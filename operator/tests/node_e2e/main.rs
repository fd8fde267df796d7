//! The whole product on a real node: the images built from this build, `helm install` of the
//! chart, the real `kubectl`, bot pods run by kubelet + containerd, the Discord simulator,
//! the tone server and SecantusDB listening where pods reach the host (the node's bridge
//! address). Nothing here marks a pod Ready by hand.
//!
//! Every test shares one node, one simulator and one operator installation (one Tokio
//! runtime holds the simulator's tasks, so tests run their bodies on it with [`run`]); each
//! test has its own namespace, guild and bot.

mod bots;
mod failures;
mod fleet;
mod identify;
mod operator_pods;
mod product;
mod records;
mod sessions;

use std::future::Future;
use std::sync::LazyLock;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("a Tokio runtime")
});

/// Runs a test body on the shared runtime (a multi-thread runtime takes `block_on` from
/// several test threads at once).
pub fn run<F: Future<Output = ()>>(body: F) {
    RUNTIME.block_on(body)
}
