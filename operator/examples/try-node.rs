//! The whole product on this machine, to try by hand: a one-node Kubernetes (kubelet,
//! containerd, runc) with the images of this build, the operator installed by `helm
//! install`, a simulated Discord with a listener in a voice channel, and one MusicBot that
//! plays a tone there. Runs as root until Ctrl-C, then tears everything down.
//!
//!     eval "$(scripts/setup)"; cargo build --workspace --bins
//!     cargo run -p musicbot-operator --example try-node
//!
//! It prints the kubeconfig to use with `kubectl` meanwhile.

#[path = "../tests/node_e2e/product.rs"]
#[allow(dead_code)]
mod product;

use std::time::Duration;

use product::{Slot, product_with_slots};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        println!("starting the node, building the images, installing the chart (about a minute)...");
        let p = product_with_slots(1).await;
        let slot = Slot::new(0);
        let ns = p.namespace("demo").await;
        product::secret(&p.client, &ns, "radio-token", "token", &slot.token(0)).await?;
        p.apply(&ns, &p.musicbot_yaml("radio", &slot, "  pod:\n    caBundle: {configMapName: discord-ca}\n"));
        p.wait_pod_ready(&ns, "radio", None).await;
        p.play_and_hear(&slot, &slot.token(0), 440).await?;
        let kube_bin = testkit::bins::kube_bin_dir()?;
        println!(
            "\nMusicBot {ns}/radio is playing 440 Hz to the simulated Discord. In another shell:\n\n  \
             export KUBECONFIG={} PATH={}:$PATH\n  kubectl get mbot -A\n  kubectl get pods -A\n  \
             kubectl logs -n {ns} radio-0\n\nCtrl-C tears the node down.",
            p.node.cluster().kubeconfig_path().display(),
            kube_bin.display()
        );
        let mut ticker = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = ticker.tick() => {
                    let audio = p.sim.bot(&slot.token(0)).audio(slot.guild);
                    println!("heard: {:.0} Hz, {:.1} s audible", audio.dominant_hz.unwrap_or(0.0), audio.audible_seconds);
                }
            }
        }
        anyhow::Ok(())
    })?;
    // The statics (node, servers) are never dropped: their guards tear them down at exit.
    Ok(())
}
