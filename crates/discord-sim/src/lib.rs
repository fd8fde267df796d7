//! A Discord simulator that unmodified serenity and songbird talk to over loopback sockets:
//! REST over http, the gateway over ws, the voice gateway over wss (a CA made per run) and
//! voice over UDP, where the audio a bot sends is decrypted and decoded so tests can measure
//! it. See `docs/simulator.md`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use discord_sim::*;
//! let sim = DiscordSim::builder()
//!     .guild(GuildSpec::new(10, "Test guild").text_channel(11, "general").voice_channel(12, "Music")
//!         .member(UserSpec::new(20, "alice")).in_voice(20, 12))
//!     .bot(BotSpec::new("token-a").in_guild(10))
//!     .start().await?;
//! // serenity: HttpBuilder::new("token-a").proxy(sim.api_url()).ratelimiter_disabled(true)
//! let bot = sim.bot("token-a");
//! bot.wait_ready(std::time::Duration::from_secs(10)).await?;
//! let play = bot.inject_interaction(SlashCommand::new(10, 11, 20, "play").option("query", "tone"))?;
//! let reply = sim.wait_reply(play.id, std::time::Duration::from_secs(5)).await?;
//! let audio = bot.wait_for_audio(10, 1.0, std::time::Duration::from_secs(10)).await?;
//! assert!((audio.dominant_hz.unwrap() - 440.0).abs() < 5.0);
//! # Ok(()) }
//! ```

pub mod audio;
mod bot;
mod events;
pub mod gateway;
mod interaction;
mod payloads;
pub mod pki;
mod records;
pub mod rest;
pub mod rtcp;
pub mod rtp;
mod spec;
mod state;
mod tls;
pub mod tones;
mod validate;
pub mod voice_gateway;
mod voice_udp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use audio::AudioStats;
pub use bot::Bot;
pub use interaction::{OptionValue, Press, SlashCommand};
pub use records::{GatewayFrame, InteractionRecord, RecordedRequest, VoiceConnection};
pub use spec::{BotSpec, ChannelKind, ChannelSpec, GuildSpec, UserSpec};
pub use tls::SimTls;

use state::{Endpoints, Outgoing, Shared, State};

/// Fixed ports for running by hand; 0 lets the OS choose (what tests want).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ports {
    pub api: u16,
    pub gateway: u16,
    pub voice: u16,
    pub udp: u16,
}

pub struct DiscordSimBuilder {
    guilds: Vec<GuildSpec>,
    bots: Vec<BotSpec>,
    heartbeat_interval: Duration,
    voice_heartbeat_interval: Duration,
    interaction_deadline: Duration,
    tls: Option<SimTls>,
    ports: Ports,
    bind: IpAddr,
}

impl DiscordSimBuilder {
    pub fn guild(mut self, guild: GuildSpec) -> Self {
        self.guilds.push(guild);
        self
    }

    pub fn bot(mut self, bot: BotSpec) -> Self {
        self.bots.push(bot);
        self
    }

    /// HELLO's heartbeat interval (Discord: 41.25 s). Shorter makes heartbeat faults quick.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    pub fn voice_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.voice_heartbeat_interval = interval;
        self
    }

    /// How long a bot may take to answer an interaction (Discord: 3 s) before the callback
    /// fails with 10062 "Unknown interaction".
    pub fn interaction_deadline(mut self, deadline: Duration) -> Self {
        self.interaction_deadline = deadline;
        self
    }

    /// Uses TLS material made beforehand, e.g. to set `SSL_CERT_FILE` before any thread starts.
    /// With `bind`, make it with [`SimTls::generate_for`] naming that address.
    pub fn tls(mut self, tls: SimTls) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn ports(mut self, ports: Ports) -> Self {
        self.ports = ports;
        self
    }

    /// The address every socket binds and every URL, endpoint and UDP address handed to a
    /// bot names (default 127.0.0.1). Pods of a test cluster reach the host only on its
    /// bridge address, so a simulator serving them binds that. It must be one address a
    /// client can dial: 0.0.0.0 cannot be handed out.
    pub fn bind(mut self, ip: IpAddr) -> Self {
        self.bind = ip;
        self
    }

    /// Binds every socket on the bind address and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<DiscordSim> {
        let ip = self.bind;
        if ip.is_unspecified() || ip.is_multicast() {
            bail!("the simulator hands its address to bots, so it must bind one they can dial, not {ip}");
        }
        for b in &self.bots {
            for g in &b.guilds {
                if !self.guilds.iter().any(|x| x.id == *g) {
                    bail!("bot {:?} is in guild {g}, which is not declared", b.token);
                }
            }
        }
        let mut tokens: Vec<&str> = self.bots.iter().map(|b| b.token.as_str()).collect();
        tokens.sort_unstable();
        if tokens.windows(2).any(|w| w[0] == w[1]) {
            bail!("two bots share a token");
        }
        let tls = match self.tls {
            Some(t) if !t.covers(ip) => {
                bail!("the TLS material given does not name {ip}; make it with SimTls::generate_for")
            }
            Some(t) => t,
            None => SimTls::generate_for(&[ip])?,
        };
        let bind = |port: u16| SocketAddr::new(ip, port);
        let api = TcpListener::bind(bind(self.ports.api)).await.context("binding the REST port")?;
        let gateway = TcpListener::bind(bind(self.ports.gateway)).await.context("binding the gateway port")?;
        let voice = TcpListener::bind(bind(self.ports.voice)).await.context("binding the voice gateway port")?;
        let udp = voice_udp::bind(bind(self.ports.udp)).context("binding the voice UDP port")?;
        let endpoints = Endpoints {
            api: api.local_addr()?,
            gateway: gateway.local_addr()?,
            voice: voice.local_addr()?,
            udp: udp.local_addr()?,
            heartbeat_interval: self.heartbeat_interval,
            voice_heartbeat_interval: self.voice_heartbeat_interval,
        };
        let mut state = State::new(self.guilds, self.bots);
        state.interaction_deadline = self.interaction_deadline;
        let shared = Arc::new(Shared::new(state, endpoints));
        let router = rest::router(shared.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
        let tasks = vec![
            tokio::spawn(async move {
                let _ = axum::serve(api, router).await;
            }),
            tokio::spawn(gateway::serve(gateway, shared.clone())),
            tokio::spawn(voice_gateway::serve(voice, acceptor, shared.clone())),
            tokio::spawn(voice_udp::serve(udp, shared.clone())),
        ];
        Ok(DiscordSim { shared, tls, tasks })
    }
}

/// A running simulator; dropping it stops the servers and closes every connection.
pub struct DiscordSim {
    shared: Arc<Shared>,
    tls: SimTls,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DiscordSim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.update(|s, _| {
            for b in 0..s.bots.len() {
                s.close_gateway(b, || Outgoing::Drop);
            }
            for v in s.voice.values_mut() {
                if let Some(c) = v.conn.take() {
                    let _ = c.tx.send(Outgoing::Drop);
                }
            }
        });
    }
}

impl DiscordSim {
    pub fn builder() -> DiscordSimBuilder {
        DiscordSimBuilder {
            guilds: Vec::new(),
            bots: Vec::new(),
            heartbeat_interval: Duration::from_millis(41_250),
            voice_heartbeat_interval: Duration::from_millis(13_750),
            interaction_deadline: Duration::from_secs(3),
            tls: None,
            ports: Ports::default(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// What to pass to serenity's `HttpBuilder::proxy` (with the rate limiter disabled).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.shared.endpoints.api)
    }

    /// The REST base as Discord documents it (`.../api/v10`), for plain HTTP clients.
    pub fn api_base(&self) -> String {
        format!("{}{}", self.api_url(), rest::API_PREFIX)
    }

    /// What `GET /gateway` answers.
    pub fn gateway_url(&self) -> String {
        self.shared.endpoints.gateway_url()
    }

    /// `host:port` of the voice gateway, as VOICE_SERVER_UPDATE gives it (songbird adds wss://).
    pub fn voice_endpoint(&self) -> String {
        self.shared.endpoints.voice.to_string()
    }

    pub fn voice_udp_addr(&self) -> SocketAddr {
        self.shared.endpoints.udp
    }

    /// The address every socket is bound to and every handed-out address names.
    pub fn bind_ip(&self) -> IpAddr {
        self.shared.endpoints.api.ip()
    }

    /// The CA that signed the voice gateway's certificate; put it in `SSL_CERT_FILE` (which
    /// replaces the system's roots) or bot-runner's `MUSICBOT_CA_FILE` (which adds to them).
    /// The file lives in the simulator's temporary directory, removed when it stops.
    pub fn ca_file(&self) -> &Path {
        self.tls.ca_file()
    }

    /// The same CA as PEM text, e.g. for a ConfigMap that pods mount.
    pub fn ca_pem(&self) -> &str {
        self.tls.ca_pem()
    }

    /// The bots with the ids the simulator assigned.
    pub fn bots(&self) -> Vec<BotSpec> {
        self.shared.read(|s| s.bots.iter().map(|b| b.spec.clone()).collect())
    }

    /// A handle on one bot. Panics for a token the simulator was not given.
    pub fn bot(&self, token: &str) -> Bot<'_> {
        self.try_bot(token).unwrap_or_else(|| panic!("no bot with token {token:?} was configured"))
    }

    pub fn try_bot(&self, token: &str) -> Option<Bot<'_>> {
        let idx = self.shared.read(|s| s.bot_index(token))?;
        Some(Bot { sim: self, idx })
    }

    pub fn guild(&self, id: u64) -> Option<GuildSpec> {
        self.shared.read(|s| s.guilds.get(&id).cloned())
    }

    /// Every REST request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.read(|s| s.requests.clone())
    }

    /// Requests no simulator route matched (answered 404): a test asserts this is empty.
    pub fn unknown_requests(&self) -> Vec<RecordedRequest> {
        self.shared.read(|s| s.requests.iter().filter(|r| !r.known_route).cloned().collect())
    }

    /// Payloads the simulator sent that serenity or songbird would not parse as intended.
    pub fn payload_errors(&self) -> Vec<String> {
        self.shared.read(|s| s.payload_errors.clone())
    }

    pub fn interactions(&self) -> Vec<InteractionRecord> {
        self.shared.read(|s| s.interactions.clone())
    }

    pub fn interaction(&self, id: u64) -> Option<InteractionRecord> {
        self.shared.read(|s| s.interactions.iter().find(|i| i.id == id).cloned())
    }

    /// A member joins (Some) or leaves (None) a voice channel; every bot in the guild sees it.
    pub fn move_member(&self, guild: u64, user: u64, channel: Option<u64>) -> Result<()> {
        self.shared.update(|s, _| s.move_member(guild, user, channel))
    }

    /// Waits for the first request `f` accepts.
    pub async fn wait_for_request(
        &self,
        timeout: Duration,
        what: &str,
        f: impl Fn(&RecordedRequest) -> bool,
    ) -> Result<RecordedRequest> {
        self.shared.wait_for(timeout, what, |s| s.requests.iter().find(|r| f(r)).cloned()).await
    }

    /// Waits until the interaction's record satisfies `f`.
    pub async fn wait_interaction(
        &self,
        id: u64,
        timeout: Duration,
        f: impl Fn(&InteractionRecord) -> bool,
    ) -> Result<InteractionRecord> {
        self.shared
            .wait_for(timeout, &format!("interaction {id}"), |s| {
                s.interactions.iter().find(|i| i.id == id && f(i)).cloned()
            })
            .await
    }

    /// Waits for an answer the user can read: a message callback, or a deferred one followed by
    /// an edit or a follow-up.
    pub async fn wait_reply(&self, id: u64, timeout: Duration) -> Result<InteractionRecord> {
        self.wait_interaction(id, timeout, |i| match i.response_type() {
            // A message, a pressed message changed in place, autocomplete choices.
            Some(4 | 7 | 8) => true,
            Some(5) => !i.followups.is_empty() || i.original.as_ref().is_some_and(|m| !m["edited_timestamp"].is_null()),
            _ => false,
        })
        .await
    }
}
