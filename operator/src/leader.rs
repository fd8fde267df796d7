//! Leader election through a coordination.k8s.io Lease (kube-lease-manager), so the chart
//! can run two replicas: one reconciles, the other waits to take over.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, Result};
use tokio::sync::watch;

/// Holds the Lease. `changes` yields `true` when this replica becomes the leader and
/// `false` when it loses the Lease; dropping it releases the Lease.
pub struct Leadership {
    changes: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<Result<kube_lease_manager::LeaseManager>>,
}

pub async fn campaign(
    client: Client,
    namespace: &str,
    lease: &str,
    identity: &str,
    lease_seconds: u64,
) -> Result<Leadership> {
    let manager = LeaseManagerBuilder::new(client, lease)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(lease_seconds)
        // Renew a third of the way before expiry so a slow API server does not cost the Lease.
        .with_grace((lease_seconds / 3).max(1))
        .with_field_manager("musicbot-operator-leader")
        .build()
        .await?;
    let (changes, task) = manager.watch().await;
    Ok(Leadership { changes, task })
}

impl Leadership {
    /// Waits until this replica leads.
    pub async fn acquired(&mut self) -> bool {
        self.changes.wait_for(|leading| *leading).await.is_ok()
    }

    /// Resolves when the Lease is lost.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut changes = self.changes.clone();
        async move {
            let _ = changes.wait_for(|leading| !*leading).await;
        }
    }

    /// Releases the Lease so another replica takes over at once instead of after expiry.
    pub async fn release(self) {
        drop(self.changes);
        let _ = self.task.await;
    }
}
