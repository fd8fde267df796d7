//! The operator as the chart runs it: two pods, Ready by their own probes, one leading.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use crate::bots::create_token;
use crate::product::{RELEASE, Slot, WAIT, product};
use crate::product::{host_pid_of, kill};
use crate::run;

#[test]
fn the_helm_installed_operator_runs_two_ready_pods_and_a_killed_leader_hands_over() {
    run(async {
        let p = product().await;
        let pods: Api<Pod> = Api::namespaced(p.client.clone(), &p.release_ns);
        let lp = ListParams::default()
            .labels(&format!("app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=musicbot-operator"));
        let list = pods.list(&lp).await.unwrap().items;
        assert_eq!(list.len(), 2, "two operator replicas");
        for pod in &list {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| c.iter().all(|c| c.ready));
            assert!(ready, "operator pod {} is not Ready: {:?}", pod.name_any(), pod.status);
        }
        let leases: Api<Lease> = Api::namespaced(p.client.clone(), &p.release_ns);
        let lease_name = format!("{}-leader", p.fullname);
        let holder = |l: &Lease| l.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
        let deadline = Instant::now() + WAIT;
        let leader = loop {
            if let Ok(l) = leases.get(&lease_name).await {
                let h = holder(&l);
                if list.iter().any(|p| p.name_any() == h) {
                    break h;
                }
            }
            assert!(Instant::now() < deadline, "no operator pod holds the Lease {lease_name}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };

        // Killed, not asked to stop (SIGKILL from the host): no chance to release the Lease.
        let leader_pod = list.iter().find(|p| p.name_any() == leader).unwrap();
        kill(host_pid_of(leader_pod, "musicbot-operat"), "KILL");
        // ...and its pod removed, so the restarted container cannot come back as the holder.
        p.node.kubectl_ok(&["delete", "pod", &leader, "-n", &p.release_ns, "--grace-period=0", "--force"]).unwrap();
        let killed = Instant::now();
        let deadline = Instant::now() + WAIT;
        let new_leader = loop {
            if let Ok(l) = leases.get(&lease_name).await {
                let h = holder(&l);
                if !h.is_empty() && h != leader {
                    break h;
                }
            }
            assert!(Instant::now() < deadline, "nobody took the Lease over from {leader}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        eprintln!("leader {leader} killed; {new_leader} leads after {:.1} s", killed.elapsed().as_secs_f64());

        // The new leader reconciles.
        let slot = Slot::new(3);
        let ns = p.namespace("node-handover").await;
        create_token(p, &ns, "after-handover", &slot.token(0));
        p.apply(&ns, &p.musicbot_yaml("after-handover", &slot, ""));
        let sts: Api<StatefulSet> = Api::namespaced(p.client.clone(), &ns);
        let deadline = Instant::now() + WAIT;
        while sts.get_opt("after-handover").await.unwrap().is_none() {
            assert!(Instant::now() < deadline, "the new leader did not reconcile a new MusicBot");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}
