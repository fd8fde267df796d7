//! Shared fixtures of the simulator's tests: one guild world and a raw gateway client.
#![allow(dead_code)]

pub mod voice;

use std::time::Duration;

use discord_sim::{BotSpec, DiscordSimBuilder, GuildSpec, UserSpec};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const GUILD: u64 = 810_000_000_000_000_001;
pub const TEXT: u64 = 810_000_000_000_000_011;
pub const VOICE: u64 = 810_000_000_000_000_012;
pub const VOICE2: u64 = 810_000_000_000_000_013;
pub const OTHER_GUILD: u64 = 820_000_000_000_000_001;
pub const OTHER_TEXT: u64 = 820_000_000_000_000_011;
pub const ALICE: u64 = 810_000_000_000_000_101;
pub const BOB: u64 = 810_000_000_000_000_102;
pub const TOKEN: &str = "token-alpha.simulated";
pub const TOKEN2: &str = "token-beta.simulated";
pub const BOT_ID: u64 = 830_000_000_000_000_001;
pub const BOT2_ID: u64 = 830_000_000_000_000_002;
pub const WAIT: Duration = Duration::from_secs(10);

pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn guild() -> GuildSpec {
    GuildSpec::new(GUILD, "Simulated guild")
        .text_channel(TEXT, "general")
        .voice_channel(VOICE, "Music")
        .voice_channel(VOICE2, "Lounge")
        .member(UserSpec::new(ALICE, "alice"))
        .member(UserSpec::new(BOB, "bob"))
        .in_voice(ALICE, VOICE)
        .owner(ALICE)
}

pub fn other_guild() -> GuildSpec {
    GuildSpec::new(OTHER_GUILD, "Other guild").text_channel(OTHER_TEXT, "lobby").member(UserSpec::new(BOB, "bob"))
}

/// One guild; bot 1 is in it, bot 2 only in the other guild.
pub fn world() -> DiscordSimBuilder {
    crypto();
    discord_sim::DiscordSim::builder()
        .guild(guild())
        .guild(other_guild())
        .bot(BotSpec::new(TOKEN).user_id(BOT_ID).name("alpha").in_guild(GUILD))
        .bot(BotSpec::new(TOKEN2).user_id(BOT2_ID).name("beta").in_guild(OTHER_GUILD))
}

/// A bare gateway client speaking Discord's JSON protocol.
pub struct RawGateway {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub seq: u64,
    pub hello: Value,
}

impl RawGateway {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("{url}/?v=10&encoding=json"))
            .await
            .expect("gateway accepts websockets");
        let mut gw = Self { ws, seq: 0, hello: Value::Null };
        gw.hello = gw.next().await;
        assert_eq!(gw.hello["op"], 10, "the first payload is HELLO: {}", gw.hello);
        gw
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.expect("send to the gateway");
    }

    /// The next payload (panics after 5 s or on close).
    pub async fn next(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("a payload within 5 s")
                .expect("the gateway is open")
                .expect("a websocket message");
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).expect("payloads are JSON");
                if let Some(s) = v["s"].as_u64() {
                    self.seq = s;
                }
                return v;
            }
            assert!(!matches!(msg, Message::Close(_)), "unexpected close: {msg:?}");
        }
    }

    /// The next dispatch named `t`, skipping anything else.
    pub async fn dispatch(&mut self, t: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["op"] == 0 && v["t"] == t {
                return v["d"].clone();
            }
        }
    }

    /// The next payload with opcode `op`, skipping others.
    pub async fn op(&mut self, op: u64) -> Value {
        loop {
            let v = self.next().await;
            if v["op"] == op {
                return v;
            }
        }
    }

    /// IDENTIFY as serenity does (token with "Bot "); returns READY's `d`.
    pub async fn identify(&mut self, token: &str) -> Value {
        self.identify_shard(token, [0, 1]).await
    }

    /// GUILDS | GUILD_VOICE_STATES | GUILD_MESSAGES.
    pub async fn identify_shard(&mut self, token: &str, shard: [u32; 2]) -> Value {
        self.identify_with(token, shard, 641).await
    }

    pub async fn identify_with(&mut self, token: &str, shard: [u32; 2], intents: u64) -> Value {
        self.send(json!({"op": 2, "d": {
            "token": format!("Bot {token}"), "intents": intents, "compress": true, "large_threshold": 250,
            "shard": shard, "properties": {"os": "linux", "browser": "test", "device": "test"},
        }}))
        .await;
        let ready = self.next().await;
        assert_eq!((ready["op"].as_u64(), ready["t"].as_str()), (Some(0), Some("READY")), "{ready}");
        ready["d"].clone()
    }

    /// Waits for the server to close; the close frame if it sent one.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.ws.next()).await.expect("closed within 5 s") {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Nothing arrives for `d` (skipping nothing).
    pub async fn silent_for(&mut self, d: Duration) -> bool {
        tokio::time::timeout(d, self.ws.next()).await.is_err()
    }
}
