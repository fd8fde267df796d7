//! What the simulator saw, as tests read it.

use serde_json::Value;

use super::spec::UserSpec;

/// One REST request, as received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Full path, e.g. `/api/v10/applications/1/commands`.
    pub path: String,
    pub query: Option<String>,
    /// The JSON body (`payload_json` for multipart bodies); `None` when empty or not JSON.
    pub body: Option<Value>,
    pub status: u16,
    /// Token of the bot that sent it (from a valid `Authorization` header or interaction token).
    pub bot: Option<String>,
    /// False when no simulator route matched (answered 404).
    pub known_route: bool,
}

impl RecordedRequest {
    /// The path without the `/api/v10` prefix.
    pub fn route(&self) -> &str {
        self.path.strip_prefix(super::rest::API_PREFIX).unwrap_or(&self.path)
    }
}

/// One payload a bot sent over the main gateway.
#[derive(Clone, Debug)]
pub struct GatewayFrame {
    pub op: u64,
    pub d: Value,
}

/// A slash command the simulator injected, and what the bot answered.
#[derive(Clone, Debug)]
pub struct InteractionRecord {
    /// 2 a slash command, 3 a component press, 4 an autocomplete question.
    pub kind: u8,
    /// For a press: the message whose component was pressed.
    pub message_id: Option<u64>,
    pub id: u64,
    pub token: String,
    /// Token of the bot the interaction went to.
    pub bot: String,
    pub application_id: u64,
    pub guild_id: u64,
    pub channel_id: u64,
    pub user: UserSpec,
    pub command: String,
    /// The body of `POST /interactions/{id}/{token}/callback` (`{"type": .., "data": ..}`).
    pub callback: Option<Value>,
    /// The original response message, after any edits; `None` before a callback or once deleted.
    pub original: Option<Value>,
    pub followups: Vec<Value>,
}

impl InteractionRecord {
    /// Callback type: 4 message, 5 deferred message, 6 deferred update, 7 update, 9 modal.
    pub fn response_type(&self) -> Option<u64> {
        self.callback.as_ref().and_then(|c| c["type"].as_u64())
    }

    /// Content of the original response as it stands now (after edits).
    /// The choices an autocomplete answer offered (callback type 8).
    pub fn choices(&self) -> Vec<Value> {
        let choices = self.callback.as_ref().filter(|c| c["type"] == 8).map(|c| c["data"]["choices"].clone());
        choices.and_then(|c| c.as_array().cloned()).unwrap_or_default()
    }

    pub fn content(&self) -> Option<&str> {
        self.original.as_ref().and_then(|m| m["content"].as_str())
    }

    /// Whether the original response carries the EPHEMERAL flag (64).
    pub fn ephemeral(&self) -> bool {
        self.original.as_ref().and_then(|m| m["flags"].as_u64()).is_some_and(|f| f & 64 != 0)
    }

    /// Original response and follow-ups, in order: every message the user would see.
    pub fn messages(&self) -> Vec<&Value> {
        self.original.iter().chain(self.followups.iter()).collect()
    }

    /// All text the user would read: contents plus embed titles and descriptions.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        for m in self.messages() {
            if let Some(c) = m["content"].as_str().filter(|c| !c.is_empty()) {
                out.push(c.to_string());
            }
            for e in m["embeds"].as_array().into_iter().flatten() {
                for key in ["title", "description"] {
                    if let Some(t) = e[key].as_str() {
                        out.push(t.to_string());
                    }
                }
                for f in e["fields"].as_array().into_iter().flatten() {
                    out.push(format!("{}: {}", f["name"].as_str().unwrap_or(""), f["value"].as_str().unwrap_or("")));
                }
            }
        }
        out.join("\n")
    }
}

/// A bot's voice connection as the simulator's voice server sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceConnection {
    pub guild_id: u64,
    pub user_id: u64,
    pub channel_id: u64,
    /// Voice websocket identified (or resumed) and currently open.
    pub ws_open: bool,
    pub ssrc: Option<u32>,
    /// SELECT_PROTOCOL answered: the bot holds a key and may send audio.
    pub encrypted: bool,
    pub mode: Option<String>,
    /// Last SPEAKING flags the bot sent.
    pub speaking: Option<u64>,
    pub resumes: u32,
    /// RTCP receiver reports sent to the bot on this session.
    pub reports_sent: u32,
    /// [`crate::Bot::blackhole_voice`] is dropping this session's UDP.
    pub blackholed: bool,
}
