//! The shared world of the node tests: node, simulator, tones, SecantusDB and the operator
//! installed by `helm install` with the images built from this build.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use discord_sim::tones::ToneServer;
use discord_sim::{BotSpec, DiscordSim, GuildSpec, SlashCommand, UserSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use musicbot_api::crd::MusicBot;
use serde_json::json;
use testkit::kube_node::{IMAGE_TAG, NODE_IP};
use testkit::{Helm, KubeNode, MongoServer};
use tokio::sync::OnceCell;

/// Every test owns one slot: a guild (a text channel, a voice channel with a listener in it)
/// and a bot application with two tokens (the second for rotation).
pub const SLOTS: u64 = 16;
pub const RELEASE: &str = "musicbot";
pub const WAIT: Duration = Duration::from_secs(120);
/// The node's dynamic volumes (kube-controller-manager's hostPath provisioner).
pub const STORAGE_CLASS: &str = "node-hostpath";

pub struct Slot {
    pub guild: u64,
    pub text: u64,
    pub voice: u64,
    pub user: u64,
    pub app: u64,
}

impl Slot {
    pub fn new(i: u64) -> Self {
        let base = 940_000_000_000_000_000 + i * 1_000;
        Self { guild: base, text: base + 11, voice: base + 12, user: base + 101, app: 950_000_000_000_000_000 + i }
    }

    pub fn client_id(&self) -> String {
        self.app.to_string()
    }

    /// A token shaped like Discord's; `generation` tells rotated tokens apart.
    pub fn token(&self, generation: u32) -> String {
        let id = base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.app.to_string());
        format!("{id}.NodeE2e.g{generation}-s3cr3t-{}-do-not-leak", self.app)
    }

    pub fn play(&self, query: &str) -> SlashCommand {
        SlashCommand::new(self.guild, self.text, self.user, "play").option("query", query)
    }

    fn guild_spec(&self) -> GuildSpec {
        GuildSpec::new(self.guild, format!("Guild {}", self.guild))
            .text_channel(self.text, "general")
            .voice_channel(self.voice, "Music")
            .member(UserSpec::new(self.user, format!("listener-{}", self.user)))
            .in_voice(self.user, self.voice)
            .owner(self.user)
    }
}

/// Where the audio of a guild stood when the music stopped.
pub struct Cut {
    pub audible: f64,
    pub pauses: usize,
}

impl Cut {
    pub fn of(b: &discord_sim::Bot<'_>, guild: u64) -> Self {
        let stats = b.audio(guild);
        Self { audible: stats.audible_seconds, pauses: stats.pauses.len() }
    }
}

pub struct Product {
    pub node: &'static KubeNode,
    pub client: Client,
    pub sim: DiscordSim,
    pub tones: ToneServer,
    pub mongo: MongoServer,
    /// The namespace of the helm release (and of the bots the MongoDB sync makes).
    pub release_ns: String,
    pub fullname: String,
}

static PRODUCT: OnceCell<Product> = OnceCell::const_new();

pub async fn product() -> &'static Product {
    product_with_slots(SLOTS).await
}

/// The product with `slots` guild-and-bot slots in the simulator (the first call decides).
pub async fn product_with_slots(slots: u64) -> &'static Product {
    PRODUCT.get_or_try_init(|| start(slots)).await.unwrap_or_else(|e| panic!("could not set up the product: {e:#}"))
}

async fn start(slots: u64) -> Result<Product> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let node = KubeNode::shared().await;
    let ip = std::net::IpAddr::V4(NODE_IP);
    let mut sim = DiscordSim::builder().bind(ip);
    for i in 0..slots {
        let slot = Slot::new(i);
        sim = sim.guild(slot.guild_spec());
        for generation in [0, 1] {
            sim = sim.bot(
                BotSpec::new(slot.token(generation))
                    .application_id(slot.app)
                    .user_id(slot.app)
                    .name(format!("bot-{i}"))
                    .in_guild(slot.guild),
            );
        }
    }
    let sim = sim.start().await?;
    // This fixture lives in a static, never dropped, so the simulator's temporary directory
    // (its CA file) would outlive the run; pods get the CA from a ConfigMap instead.
    if let Some(dir) = sim
        .ca_file()
        .parent()
        .filter(|d| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("discord-sim-")))
    {
        std::fs::remove_dir_all(dir)?;
    }
    let tones = ToneServer::start_on(ip).await?;
    let mongo = MongoServer::start_for_pods(ip).await?;
    let client = node.cluster().client().await?;

    let release_ns = node.cluster().namespace(&client, "musicbot-system").await?;
    restrict(&client, &release_ns).await?;
    secret(&client, &release_ns, "mongodb", "uri", &mongo.uri()).await?;
    ca_config_map(&client, &release_ns, sim.ca_pem()).await?;
    let helm = Helm::new()?.with_kubeconfig(node.cluster().kubeconfig_path());
    let chart = testkit::workspace_root().join("charts/musicbot-operator").display().to_string();
    let api = sim.api_base();
    let sets = [
        "image.repository=localhost/musicbot-operator".to_string(),
        format!("image.tag={IMAGE_TAG}"),
        "bot.image.repository=localhost/bot-runner".to_string(),
        format!("bot.image.tag={IMAGE_TAG}"),
        format!("discordApiUrl={api}"),
        // The test tones are served at the node's bridge address, a private one.
        format!("bot.mediaAllow={{{NODE_IP}/32}}"),
        "statusIntervalSeconds=5".to_string(),
        "mongodb.existingSecret=mongodb".to_string(),
        "mongodb.passToBots=false".to_string(),
        // Bots made from MongoDB records trust the simulator's CA too (a ConfigMap of this
        // name in their namespace, the release's).
        "bot.caBundle.configMapName=discord-ca".to_string(),
        "logLevel=info\\,kube=warn".to_string(),
    ];
    let mut args =
        vec!["install", RELEASE, chart.as_str(), "--namespace", release_ns.as_str(), "--wait", "--timeout", "180s"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    helm.run(&args).with_context(|| node.log_tails())?;
    Ok(Product { node, client, sim, tones, mongo, release_ns, fullname: format!("{RELEASE}-musicbot-operator") })
}

/// The restricted Pod Security Standard, enforced: every pod we run must pass it.
pub async fn restrict(client: &Client, ns: &str) -> Result<()> {
    let labels = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}});
    Api::<Namespace>::all(client.clone()).patch(ns, &PatchParams::default(), &Patch::Merge(labels)).await?;
    Ok(())
}

pub async fn secret(client: &Client, ns: &str, name: &str, key: &str, value: &str) -> Result<()> {
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {key: value}}))?;
    Api::<Secret>::namespaced(client.clone(), ns).create(&PostParams::default(), &s).await?;
    Ok(())
}

/// The simulator's CA as a user hands a private CA to bots: a ConfigMap.
pub async fn ca_config_map(client: &Client, ns: &str, pem: &str) -> Result<()> {
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "discord-ca"}, "data": {"ca.crt": pem}}))?;
    Api::<ConfigMap>::namespaced(client.clone(), ns).create(&PostParams::default(), &cm).await?;
    Ok(())
}

impl Product {
    /// A namespace for one test, with the restricted standard enforced and the simulator's CA.
    pub async fn namespace(&self, prefix: &str) -> String {
        let ns = self.node.cluster().namespace(&self.client, prefix).await.expect("a namespace");
        restrict(&self.client, &ns).await.expect("labelling the namespace");
        ca_config_map(&self.client, &ns, self.sim.ca_pem()).await.expect("the CA ConfigMap");
        ns
    }

    /// `kubectl apply` of a MusicBot (YAML text) with the real kubectl.
    pub fn apply(&self, ns: &str, yaml: &str) -> String {
        let path = std::env::temp_dir().join(format!("musicbot-node-e2e-{ns}-{}.yaml", std::process::id()));
        std::fs::write(&path, yaml).unwrap();
        let out = self.node.kubectl_ok(&["apply", "-n", ns, "-f", &path.display().to_string()]);
        std::fs::remove_file(&path).ok();
        out.unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn musicbot_yaml(&self, name: &str, slot: &Slot, extra_spec: &str) -> String {
        format!(
            "apiVersion: musicbot.dev/v1alpha1\nkind: MusicBot\nmetadata: {{name: {name}}}\nspec:\n  clientId: \"{}\"\n  \
             tokenSecretRef: {{name: {name}-token}}\n  displayName: \"Music Bot #1\"\n{extra_spec}",
            slot.client_id()
        )
    }

    pub async fn musicbot(&self, ns: &str, name: &str) -> MusicBot {
        Api::<MusicBot>::namespaced(self.client.clone(), ns).get(name).await.expect("the MusicBot")
    }

    /// The bot's pods (the StatefulSet's), by the operator's label.
    pub async fn pods(&self, ns: &str, bot: &str) -> Vec<Pod> {
        let lp = ListParams::default().labels(&format!("musicbot.dev/bot={bot}"));
        Api::<Pod>::namespaced(self.client.clone(), ns).list(&lp).await.map(|l| l.items).unwrap_or_default()
    }

    /// Waits until pod `<bot>-0` is Ready by the kubelet's probes; returns it.
    pub async fn wait_pod_ready(&self, ns: &str, bot: &str, not_uid: Option<&str>) -> Pod {
        let name = format!("{bot}-0");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(pod) = pods.get(&name).await {
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if ready && not_uid.is_none_or(|u| pod.uid().as_deref() != Some(u)) {
                    return pod;
                }
            }
            if Instant::now() > deadline {
                let describe = self.node.kubectl_ok(&["describe", "pod", &name, "-n", ns]).unwrap_or_default();
                let logs = self.node.kubectl_ok(&["logs", &name, "-n", ns, "--tail=40"]).unwrap_or_default();
                panic!("pod {ns}/{name} not Ready within {WAIT:?}\n{describe}\n{logs}\n{}", self.node.log_tails());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `/play` of a tone in `slot`'s guild, answered, and the simulator hearing `hz`.
    pub async fn play_and_hear(&self, slot: &Slot, token: &str, hz: u32) -> Result<()> {
        let bot = self.sim.bot(token);
        bot.wait_ready(WAIT).await.context("the bot never connected to the simulator's gateway")?;
        let play = bot.inject_interaction(slot.play(&self.tones.wav(hz, 30)))?;
        let reply = self.sim.wait_reply(play.id, Duration::from_secs(30)).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let audio = bot.audio(slot.guild);
            if audio.dominant_hz.is_some_and(|f| (f - f64::from(hz)).abs() < 5.0) && audio.audible_seconds >= 1.0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no {hz} Hz heard in guild {} (reply {:?}; heard {audio:?})", slot.guild, reply.text());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The StorageClass of the node's dynamic volumes, as a cluster offers its own.
    pub fn storage_class(&self) {
        let yaml = format!(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: {STORAGE_CLASS}}}\n\
             provisioner: kubernetes.io/host-path\nreclaimPolicy: Delete\nvolumeBindingMode: Immediate\n"
        );
        let path = std::env::temp_dir().join(format!("storageclass-{}.yaml", std::process::id()));
        std::fs::write(&path, yaml).unwrap();
        let out = self.node.kubectl_ok(&["apply", "-f", &path.display().to_string()]);
        std::fs::remove_file(&path).ok();
        out.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// The node's provisioner makes a hostPath directory only root may write to, and the
    /// kubelet applies no `fsGroup` to hostPath volumes (the storage drivers of real
    /// clusters do): this opens the claim's directory to the bot's user, as such a driver
    /// would. Until then the bot's saves fail and are retried each second.
    pub async fn open_claim_to_pods(&self, claim: &PersistentVolumeClaim) {
        use std::os::unix::fs::PermissionsExt;
        let volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).expect("a bound claim names its volume");
        let pv = Api::<PersistentVolume>::all(self.client.clone()).get(&volume).await.unwrap();
        let dir = pv.spec.and_then(|s| s.host_path).map(|h| h.path).expect("a hostPath volume");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }

    /// Waits until `more` audible seconds were heard after `cut`; returns the longest
    /// silence heard since: the time without music.
    pub async fn heard_again(&self, b: &discord_sim::Bot<'_>, guild: u64, cut: &Cut, more: f64) -> f64 {
        let deadline = Instant::now() + WAIT;
        while b.audio(guild).audible_seconds < cut.audible + more {
            assert!(Instant::now() < deadline, "no audio came back: {:?}", b.audio(guild));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        b.audio(guild).pauses.get(cut.pauses..).unwrap_or_default().iter().copied().fold(0.0, f64::max)
    }

    /// The Events about `object` with `reason` in `ns`, as `kubectl get events` lists them.
    pub fn events(&self, ns: &str, object: &str, reason: &str) -> String {
        let selector = format!("involvedObject.name={object},reason={reason}");
        self.node
            .kubectl_ok(&["get", "events", "-n", ns, "--field-selector", &selector])
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Polls the MusicBot until `check` accepts it, or panics with what it last was.
    pub async fn wait_musicbot(&self, ns: &str, name: &str, what: &str, check: impl Fn(&MusicBot) -> bool) -> MusicBot {
        let deadline = Instant::now() + WAIT;
        loop {
            let bot = self.musicbot(ns, name).await;
            if check(&bot) {
                return bot;
            }
            if Instant::now() > deadline {
                panic!("MusicBot {ns}/{name}: {what} not seen within {WAIT:?}; status: {:#?}", bot.status);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The process `comm` (as /proc shows it, at most 15 characters) of a pod, as the host sees
/// it: its cgroup names the pod's uid.
pub fn host_pid_of(pod: &Pod, comm_name: &str) -> u32 {
    let uid = pod.uid().unwrap();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if comm.trim() == comm_name && cgroup.contains(&uid) {
            return pid;
        }
    }
    panic!("no {comm_name} process of pod {} on the host", pod.name_any())
}

pub fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}
