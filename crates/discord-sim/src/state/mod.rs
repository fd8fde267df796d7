//! The simulator's state, shared by REST, gateway and voice tasks behind one mutex (never held
//! across an await). `sessions` keeps the gateway sessions: sequence numbers, resume backlog,
//! shard routing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

mod budget;
mod sessions;

pub(crate) use budget::IdentifyBudget;

use super::audio::AudioTrack;
use super::records::{GatewayFrame, InteractionRecord, RecordedRequest};
use super::rtcp::ReceiverReports;
use super::rtp::VoiceCipher;
use super::spec::{BotSpec, GuildSpec};

/// 2015-01-01, Discord's epoch for snowflakes.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// What a connection task is told to do.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Frame(Value),
    /// Close frame with a code and reason, then end the connection.
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
}

pub(crate) type Tx = mpsc::UnboundedSender<Outgoing>;

#[derive(Clone)]
pub(crate) struct Conn {
    pub id: u64,
    pub tx: Tx,
}

pub(crate) struct Session {
    pub id: String,
    pub shard: [u32; 2],
    /// Gateway intents from IDENTIFY: events outside them are not sent, as on Discord.
    pub intents: u64,
    pub seq: u64,
    pub backlog: VecDeque<Value>,
    /// The live connection bound to this session.
    pub conn: Option<Conn>,
}

pub(crate) struct BotState {
    pub spec: BotSpec,
    pub global_commands: Vec<Value>,
    pub guild_commands: BTreeMap<u64, Vec<Value>>,
    pub sessions: Vec<Session>,
    pub ack_heartbeats: bool,
    pub received: Vec<GatewayFrame>,
    pub messages: Vec<Value>,
    pub identifies: u32,
    pub resumes: u32,
    /// The session start limit of this token (`GET /gateway/bot`).
    pub budget: IdentifyBudget,
    /// Discord reset the token after an IDENTIFY over the budget: it is refused everywhere.
    pub token_reset: bool,
    /// IDENTIFYs refused because the budget was spent (the first one reset the token).
    pub identifies_refused: u32,
    /// Fault: every new session is closed with this code right after READY.
    pub close_after_ready: Option<u16>,
    /// Fault: guilds whose voice gateway refuses this bot's IDENTIFY.
    pub voice_refused: std::collections::BTreeSet<u64>,
    /// Voice IDENTIFYs refused because of `voice_refused`.
    pub voice_refusals: u32,
}

pub(crate) type VoiceKey = (u64, u64);

pub(crate) struct VoiceSession {
    pub channel: u64,
    pub session_id: String,
    pub token: String,
    pub ssrc: Option<u32>,
    pub cipher: Option<VoiceCipher>,
    pub mode: Option<String>,
    pub conn: Option<Conn>,
    pub udp_peer: Option<SocketAddr>,
    pub speaking: Option<u64>,
    pub resumes: u32,
    /// Fault: the server takes in none of this session's UDP (see `Bot::blackhole_voice`).
    pub blackholed: bool,
    /// What the RTCP receiver reports say of the bot's audio.
    pub reports: ReceiverReports,
}

pub(crate) struct Endpoints {
    pub api: SocketAddr,
    pub gateway: SocketAddr,
    pub voice: SocketAddr,
    pub udp: SocketAddr,
    pub heartbeat_interval: Duration,
    pub voice_heartbeat_interval: Duration,
}

impl Endpoints {
    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.gateway)
    }
}

pub(crate) struct State {
    pub guilds: BTreeMap<u64, GuildSpec>,
    pub bots: Vec<BotState>,
    pub requests: Vec<RecordedRequest>,
    pub interactions: Vec<InteractionRecord>,
    pub voice: HashMap<VoiceKey, VoiceSession>,
    pub ssrcs: HashMap<u32, VoiceKey>,
    pub audio: HashMap<VoiceKey, AudioTrack>,
    /// Voice session ids of human members, by (guild, user).
    pub member_sessions: HashMap<VoiceKey, String>,
    pub payload_errors: Vec<String>,
    /// When each interaction was dispatched, for the answer deadline.
    pub interaction_created: HashMap<u64, Instant>,
    pub interaction_deadline: Duration,
    pub started_at: String,
    next_id: u64,
    next_conn: u64,
    next_ssrc: u32,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    pub endpoints: Endpoints,
}

impl Shared {
    pub fn new(state: State, endpoints: Endpoints) -> Self {
        Self { state: Mutex::new(state), changed: watch::Sender::new(0), endpoints }
    }

    /// Runs `f` on the state and wakes every `wait_for`.
    pub fn update<R>(&self, f: impl FnOnce(&mut State, &Endpoints) -> R) -> R {
        let r = f(&mut self.lock(), &self.endpoints);
        self.changed.send_modify(|v| *v += 1);
        r
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a handler must not wedge every later test assertion.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `f` returns `Some`, re-checking after every state change.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&State) -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(v) = self.read(&mut f) {
                return Ok(v);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                anyhow::bail!("timed out after {timeout:?} waiting for {what}");
            }
        }
    }
}

impl State {
    pub fn new(guilds: Vec<GuildSpec>, bots: Vec<BotSpec>) -> Self {
        let mut s = Self {
            guilds: guilds.into_iter().map(|g| (g.id, g)).collect(),
            bots: Vec::new(),
            requests: Vec::new(),
            interactions: Vec::new(),
            voice: HashMap::new(),
            ssrcs: HashMap::new(),
            audio: HashMap::new(),
            member_sessions: HashMap::new(),
            payload_errors: Vec::new(),
            interaction_created: HashMap::new(),
            interaction_deadline: Duration::from_secs(3),
            started_at: super::payloads::now(),
            next_id: 0,
            next_conn: 0,
            next_ssrc: 1000,
        };
        for mut spec in bots {
            if spec.user_id == 0 {
                // A Discord-shaped token names its bot, and clients (the operator clearing
                // commands by client id) rely on that; two bots never share an id.
                spec.user_id = token_user_id(&spec.token)
                    .filter(|id| !s.bots.iter().any(|b| b.spec.user_id == *id))
                    .unwrap_or_else(|| s.snowflake());
            }
            if spec.application_id == 0 {
                spec.application_id = spec.user_id;
            }
            if spec.name.is_empty() {
                spec.name = format!("musicbot-{}", s.bots.len() + 1);
            }
            let budget = match spec.identify_budget {
                Some((remaining, reset_after)) => IdentifyBudget::new(remaining, reset_after),
                None => IdentifyBudget::default(),
            };
            s.bots.push(BotState {
                spec,
                budget,
                token_reset: false,
                identifies_refused: 0,
                close_after_ready: None,
                global_commands: Vec::new(),
                guild_commands: BTreeMap::new(),
                sessions: Vec::new(),
                ack_heartbeats: true,
                received: Vec::new(),
                messages: Vec::new(),
                identifies: 0,
                resumes: 0,
                voice_refused: Default::default(),
                voice_refusals: 0,
            });
        }
        s
    }

    /// A fresh, increasing snowflake carrying the current time.
    pub fn snowflake(&mut self) -> u64 {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(DISCORD_EPOCH_MS);
        self.next_id += 1;
        ((ms.saturating_sub(DISCORD_EPOCH_MS)) << 22) | (self.next_id & 0x3F_FFFF)
    }

    pub fn conn_id(&mut self) -> u64 {
        self.next_conn += 1;
        self.next_conn
    }

    pub fn ssrc(&mut self) -> u32 {
        self.next_ssrc += 1;
        self.next_ssrc
    }

    pub fn bot_index(&self, token: &str) -> Option<usize> {
        self.bots.iter().position(|b| b.spec.token == token)
    }

    /// The bot a token authenticates: none once Discord has reset that token.
    pub fn authenticated(&self, token: &str) -> Option<usize> {
        self.bot_index(token).filter(|b| !self.bots[*b].token_reset)
    }

    /// GUILD_CREATE for a guild as `bot` sees it now.
    pub fn guild_create(&mut self, bot: usize, guild: u64) -> Option<Value> {
        let g = self.guilds.get(&guild)?.clone();
        let spec = self.bots[bot].spec.clone();
        let sessions: HashMap<u64, String> =
            g.voice_states.iter().map(|(u, _)| (*u, self.voice_session_id(guild, *u))).collect();
        Some(super::payloads::guild_create(&g, &spec, &self.started_at, |u| {
            sessions.get(&u).cloned().unwrap_or_default()
        }))
    }

    /// The voice session id of a user in a guild: a bot's comes from its voice session,
    /// a human's is made up once and kept.
    pub fn voice_session_id(&mut self, guild: u64, user: u64) -> String {
        if let Some(v) = self.voice.get(&(guild, user)) {
            return v.session_id.clone();
        }
        self.member_sessions.entry((guild, user)).or_insert_with(|| random_string(32)).clone()
    }

    pub fn record_frame(&mut self, bot: usize, frame: GatewayFrame) {
        self.bots[bot].received.push(frame);
    }
}

/// The bot user id a Discord token carries: its first segment is the id in base64 (Discord
/// writes it without padding; either alphabet is accepted). `None` unless that decodes to a
/// snowflake with a timestamp, so made-up test tokens keep getting fresh ids.
pub(crate) fn token_user_id(token: &str) -> Option<u64> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let first = token.split('.').next()?;
    let first = first.trim_end_matches('=');
    let bytes = STANDARD_NO_PAD.decode(first).or_else(|_| URL_SAFE_NO_PAD.decode(first)).ok()?;
    let digits = std::str::from_utf8(&bytes).ok()?;
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0')
    {
        return None;
    }
    digits.parse::<u64>().ok().filter(|id| *id >> 22 > 0)
}

pub(crate) fn random_string(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::token_user_id;

    #[test]
    fn a_discord_token_names_its_bot() {
        // base64("930000000000000001") without padding, as Discord writes it.
        assert_eq!(token_user_id("OTMwMDAwMDAwMDAwMDAwMDAx.GhIjKl.hmac"), Some(930_000_000_000_000_001));
        // Padded, and the URL-safe alphabet, are read too.
        assert_eq!(token_user_id("MTIzNDU2Nzg5MDEyMzQ1Njc4.x.y"), Some(123_456_789_012_345_678));
        assert_eq!(token_user_id("MTIzNDU2Nzg5MDEyMzQ1Njc4==.x.y"), Some(123_456_789_012_345_678));
    }

    #[test]
    fn other_tokens_name_no_one() {
        for t in [
            "token-a",
            "sim-token",
            "",
            ".x.y",
            "bm90IGFuIGlk.x.y",                 // "not an id"
            "MDAwMTIzNDU2Nzg5MDEy.x.y",         // leading zeros
            "MTIz.x.y",                         // 123: no timestamp, not a snowflake
            "OTk5OTk5OTk5OTk5OTk5OTk5OTk5.x.y", // too big for u64
        ] {
            assert_eq!(token_user_id(t), None, "{t:?}");
        }
    }
}
