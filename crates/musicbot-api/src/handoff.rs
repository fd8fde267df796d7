//! Hand-off between the bots of one fleet: a bot asked to play where it cannot (busy in
//! another voice channel of the server) hands the request to a free bot of its fleet. Bots
//! talk to each other over their HTTP port, with the fleet's key as a bearer token; the
//! directory of the fleet's bots is given to each bot (by the operator, which knows their
//! pods). See docs/architecture.md, "Fleets".

use serde::{Deserialize, Serialize};

/// Where a bot takes hand-offs: `POST`, a [`HandoffRequest`] in, a [`HandoffAnswer`] out.
pub const PLAY_PATH: &str = "/fleet/play";
/// Where a bot is given its fleet's directory: `POST`, a [`FleetDirectory`] in, 204 out.
pub const DIRECTORY_PATH: &str = "/fleet/directory";
/// Where the operator hands a bot of its MongoDB sync's fleet an invite through guild
/// assignment: `POST` with the fleet's key as a bearer token, an [`InviteRequest`] in, an
/// [`Invite`] out (200); 404 or 409 when no active bot can be invited, 401 for a wrong key.
pub const INVITE_PATH: &str = "/fleet/invite";

/// The bots of a fleet, as one bot is told them (itself included: it skips itself).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FleetDirectory {
    pub fleet: String,
    pub bots: Vec<FleetBot>,
    /// The URL of the operator's [`INVITE_PATH`], for the fleet of the MongoDB sync: whom
    /// to invite is then guild assignment's choice. Without it (a fleet made with kubectl
    /// only, or no MongoDB), a bot offers the invite of a fleet bot not in the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invites: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FleetBot {
    pub name: String,
    pub client_id: String,
    /// The bot's HTTP base URL (`http://<pod IP>:<port>`) for each shard, "" for a shard
    /// with no pod running; a guild's shard is `(guild >> 22) % shards`, as Discord assigns
    /// them.
    pub shard_urls: Vec<String>,
}

impl FleetBot {
    /// The URL of the shard that has `guild`, unless that shard has no pod running.
    pub fn url_for(&self, guild: u64) -> Option<&str> {
        let shards = self.shard_urls.len() as u64;
        (shards > 0).then(|| self.shard_urls[((guild >> 22) % shards) as usize].as_str()).filter(|u| !u.is_empty())
    }
}

/// "Which bot should this server invite?", from a bot of the fleet none of whose bots was
/// free there.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InviteRequest {
    pub guild_id: String,
}

/// The bot guild assignment chose (it holds a pending invite for the guild until used or
/// timed out; asking again meanwhile gives the same one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    pub name: String,
    pub client_id: String,
    pub invite_url: String,
}

/// "Play this for that user in that channel", from the bot the user asked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HandoffRequest {
    /// Unique per interaction: a bot takes a request once, however often it is sent.
    pub id: String,
    /// The client id of the bot asked to take it (a fleet-mode process runs several).
    pub to: String,
    pub guild_id: String,
    pub voice_channel_id: String,
    pub text_channel_id: String,
    pub user_id: String,
    pub query: String,
    /// The name of the bot that was asked, for the log.
    pub from: String,
    /// Its client id: it may still sit in the channel it could not play in.
    pub from_client_id: String,
    /// When that bot got the interaction (milliseconds since the Unix epoch): the bot that
    /// takes it counts the time to its first audio from here.
    pub asked_at_ms: u64,
    /// The catalog language to say a refusal in (the caller's); empty: English.
    #[serde(default)]
    pub language: String,
}

/// What a bot asked to take a hand-off says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum HandoffAnswer {
    /// It joined (or was in) the channel and plays or queued the track.
    #[serde(rename_all = "camelCase")]
    Accepted { bot: String, position: u64, title: String },
    /// It is playing in another voice channel of the server.
    #[serde(rename_all = "camelCase")]
    Busy { bot: String, voice_channel_id: String },
    /// It is not in that server.
    NotInGuild,
    /// It could not take it: it cannot join, the track cannot be found, or it is shutting
    /// down. `why` is a sentence for the user.
    Refused { why: String },
}
