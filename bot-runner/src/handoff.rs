//! The fleet's side of `/play`: a bot busy in another voice channel of the server hands the
//! request to a free bot of its fleet (`offer`), and a bot asked to take one does it
//! (`take`). Bots reach each other over their HTTP port with the fleet's key as a bearer
//! token; each bot is given the fleet's directory (`POST /fleet/directory`, by the
//! operator). Why this way: docs/architecture.md, "Fleets".
//!
//! Two bots never take one request: the asking bot offers it to one bot at a time, in the
//! directory's order, and stops at the first that takes it or that may have (a request that
//! got no answer is an error, never offered again). A bot takes hand-offs of one guild one
//! at a time, from its check that it is free to the track queued (the lookup runs before,
//! and the check is made again after it), so two requests for two channels cannot both
//! have it join; and it does not join a channel another bot of the fleet is in (that one
//! takes the request in its turn).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use musicbot_api::handoff::{
    FleetBot, FleetDirectory, HandoffAnswer, HandoffRequest, Invite, InviteRequest, PLAY_PATH,
};
use musicbot_db::invite::invite_url;
use serenity::all::{ChannelId, GuildId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use crate::bot::Bot;
use crate::i18n::Say;
use crate::music::Track;
use crate::music::source::classify;

/// Shortest key accepted: 16 bytes of randomness, base64 or hex.
const MIN_KEY_LEN: usize = 22;
/// How long the asking bot waits for a bot to take a request: a lookup and a voice join.
pub const TAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the operator may take to say whom to invite (a MongoDB round or three).
const INVITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Answers remembered, so a request sent twice is taken once.
const REMEMBERED: usize = 512;

/// What a bot knows of its fleet: the key, and the directory it was last given.
pub struct FleetLink {
    key: String,
    digest: [u8; 32],
    directory: RwLock<FleetDirectory>,
    answered: Mutex<VecDeque<(String, HandoffAnswer)>>,
    http: reqwest::Client,
}

impl FleetLink {
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let key = std::fs::read_to_string(path).with_context(|| format!("reading the fleet key {}", path.display()))?;
        let key = key.trim().to_string();
        if key.len() < MIN_KEY_LEN {
            bail!("the fleet key in {} is shorter than {MIN_KEY_LEN} characters", path.display());
        }
        // Peers are pods of the same cluster: never through a proxy from the environment.
        let http = reqwest::Client::builder().no_proxy().connect_timeout(Duration::from_secs(2)).build()?;
        Ok(Self {
            digest: Sha256::digest(key.as_bytes()).into(),
            key,
            directory: RwLock::default(),
            answered: Mutex::default(),
            http,
        })
    }

    /// Whether an `Authorization` header carries the fleet's key (compared in constant time).
    pub fn authorized(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else { return false };
        let given: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        given.ct_eq(&self.digest).into()
    }

    pub fn set_directory(&self, directory: FleetDirectory) {
        info!(fleet = %directory.fleet, bots = directory.bots.len(), "fleet directory updated");
        *self.directory.write().expect("directory lock") = directory;
    }

    pub fn fleet(&self) -> String {
        self.directory.read().expect("directory lock").fleet.clone()
    }

    /// The other bots of the fleet, in the directory's order by client id: every bot that
    /// hands off asks them in the same order, so requests for one channel meet at one bot.
    fn peers(&self, me: u64) -> Vec<FleetBot> {
        let mut bots = self.directory.read().expect("directory lock").bots.clone();
        bots.retain(|b| b.client_id != me.to_string());
        bots.sort_by_key(|b| b.client_id.parse::<u64>().unwrap_or(u64::MAX));
        bots
    }

    /// The name of the fleet's bot with user id `user`, if it is one (a bot's user id is
    /// its application's id).
    fn fleet_bot(&self, user: u64) -> Option<String> {
        let directory = self.directory.read().expect("directory lock");
        directory.bots.iter().find(|b| b.client_id == user.to_string()).map(|b| b.name.clone())
    }

    fn remembered(&self, id: &str) -> Option<HandoffAnswer> {
        let answered = self.answered.lock().expect("answers lock");
        answered.iter().find(|(i, _)| i == id).map(|(_, a)| a.clone())
    }

    fn remember(&self, id: &str, answer: &HandoffAnswer) {
        let mut answered = self.answered.lock().expect("answers lock");
        if answered.len() == REMEMBERED {
            answered.pop_front();
        }
        answered.push_back((id.to_string(), answer.clone()));
    }

    async fn ask(&self, url: &str, request: &HandoffRequest) -> Result<HandoffAnswer, Asked> {
        let sent = self
            .http
            .post(format!("{url}{PLAY_PATH}"))
            .bearer_auth(&self.key)
            .timeout(TAKE_TIMEOUT)
            .json(request)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            // Nothing reached it: no harm in asking the next bot.
            Err(e) if e.is_connect() => return Err(Asked::Unreachable),
            Err(e) => return Err(Asked::NoAnswer(e.without_url().to_string())),
        };
        if !response.status().is_success() {
            return Err(Asked::Unreachable);
        }
        response.json().await.map_err(|e| Asked::NoAnswer(e.without_url().to_string()))
    }

    /// Whom guild assignment says `guild` should invite, when the directory names the
    /// operator's invite endpoint (the MongoDB sync's fleet); None without one, when every
    /// active bot is in the server already, or when the operator does not answer in time.
    async fn assigned_invite(&self, guild: &str) -> Option<Invite> {
        let url = self.directory.read().expect("directory lock").invites.clone()?;
        let sent = self
            .http
            .post(url)
            .bearer_auth(&self.key)
            .timeout(INVITE_TIMEOUT)
            .json(&InviteRequest { guild_id: guild.to_string() })
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => match r.json::<Invite>().await {
                Ok(invite) => Some(invite),
                Err(e) => {
                    warn!(error = %e.without_url(), "the operator's invite answer did not parse");
                    None
                }
            },
            // No active bot left to invite: the directory may still know one.
            Ok(r) if matches!(r.status().as_u16(), 404 | 409) => None,
            Ok(r) => {
                warn!(status = %r.status(), "the operator gave no invite");
                None
            }
            Err(e) => {
                warn!(error = %e.without_url(), "the operator could not be asked whom to invite");
                None
            }
        }
    }
}

enum Asked {
    /// The request did not reach the bot (refused connection, or an answer other than 2xx
    /// before it read the request: a wrong key, a bot shutting down).
    Unreachable,
    /// It may have reached it: it is not offered to anyone else.
    NoAnswer(String),
}

/// What became of a request handed off by the bot that was asked.
pub enum Offered {
    Taken {
        bot: String,
        position: u64,
        title: String,
    },
    /// No bot of the fleet could take it: who is busy where, why others refused, and which
    /// bot the server could invite.
    NoneFree {
        busy: Vec<(String, String)>,
        refused: Vec<String>,
        invite: Option<Invite>,
    },
    /// The bot it was handed to did not answer (it died, or hangs).
    Failed {
        bot: String,
    },
}

/// Whether the asking bot has given up on `request` (or is about to) and told the user so:
/// taking it then would play what nobody waits for (a bot that hung, then woke up). The
/// margin covers what is left to do after the check, and clocks a little apart.
fn too_late(request: &HandoffRequest) -> bool {
    const MARGIN: Duration = Duration::from_secs(2);
    now_ms().saturating_sub(request.asked_at_ms) > (TAKE_TIMEOUT - MARGIN).as_millis() as u64
}

fn late(request: &HandoffRequest) -> HandoffAnswer {
    warn!(from = %request.from, "a hand-off came too late to take");
    refused(request, Say::new("handoff.too_late"))
}

/// The catalog the asking bot's caller reads.
fn language_of(request: &HandoffRequest) -> &'static str {
    crate::i18n::language(Some(&request.language), None, None)
}

/// A refusal, said in the language of the caller of the bot that asked.
fn refused(request: &HandoffRequest, why: Say) -> HandoffAnswer {
    HandoffAnswer::Refused { why: why.in_language(language_of(request)) }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Offers `request` to the fleet's other bots, one at a time, until one takes it.
pub async fn offer(bot: &Bot, link: &FleetLink, request: HandoffRequest) -> Offered {
    let guild: u64 = request.guild_id.parse().unwrap_or_default();
    let (mut busy, mut absent, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    // The fleet's bots known to be in the server: never the ones to invite.
    let mut present = vec![bot.client_id().to_string()];
    for peer in link.peers(bot.client_id()) {
        let Some(url) = peer.url_for(guild) else { continue };
        let request = HandoffRequest { to: peer.client_id.clone(), ..request.clone() };
        match link.ask(url, &request).await {
            Ok(HandoffAnswer::Accepted { bot: taker, position, title }) => {
                bot.metrics.handoff("accepted");
                info!(to = %taker, guild, "handed off");
                return Offered::Taken { bot: taker, position, title };
            }
            Ok(HandoffAnswer::Busy { bot: other, voice_channel_id }) => {
                busy.push((other, voice_channel_id));
                present.push(peer.client_id);
            }
            Ok(HandoffAnswer::NotInGuild) => absent.push(peer),
            Ok(HandoffAnswer::Refused { why }) => {
                refused.push(why);
                present.push(peer.client_id);
            }
            Err(Asked::Unreachable) => warn!(to = %peer.name, "a fleet bot could not be reached"),
            Err(Asked::NoAnswer(e)) => {
                bot.metrics.handoff("failed");
                warn!(to = %peer.name, error = %e, "a fleet bot took no answer back");
                return Offered::Failed { bot: peer.name };
            }
        }
    }
    bot.metrics.handoff("refused");
    // Guild assignment's choice when there is one (it spreads servers over the fleet by
    // load; its records of who is in the server may lag by a status interval), else the
    // first fleet bot that said it is not in the server.
    let assigned = link.assigned_invite(&request.guild_id).await;
    let invite = match assigned.filter(|i| !present.contains(&i.client_id)) {
        Some(invite) => Some(invite),
        None => absent.into_iter().next().map(|b| Invite {
            invite_url: invite_url(&b.client_id, Some(&request.guild_id)),
            name: b.name,
            client_id: b.client_id,
        }),
    };
    Offered::NoneFree { busy, refused, invite }
}

/// Takes a request handed off by another bot of the fleet, if this bot can.
pub async fn take(bot: &Arc<Bot>, link: &FleetLink, request: &HandoffRequest) -> HandoffAnswer {
    if let Some(answer) = link.remembered(&request.id) {
        return answer;
    }
    if too_late(request) {
        return late(request);
    }
    let ids = (request.guild_id.parse(), request.voice_channel_id.parse(), request.text_channel_id.parse());
    let (Ok(guild), Ok(channel), Ok(text)) = ids else {
        return refused(request, Say::new("handoff.no_channel"));
    };
    let (guild, channel) = (GuildId::new(guild), ChannelId::new(channel));
    if guild.get() == 0 || !bot.guilds.ids().contains(&guild) {
        return HandoffAnswer::NotInGuild;
    }
    // Nothing is looked up for a request this bot would refuse anyway.
    if let Some(no) = refusal(bot, link, request, guild, channel).await {
        return no;
    }
    let music = &bot.music;
    let source = match classify(&request.query) {
        Ok(s) => s,
        Err(why) => return refused(request, why),
    };
    // The lookup (seconds, for a page) runs outside the guild's turn: it holds no one up.
    let (source, found) = match music.sources.resolve(guild.get(), source).await {
        Ok(r) => r,
        Err(why) => return refused(request, why),
    };
    // One hand-off of a guild at a time, from the check that the bot is free to its queue.
    let turn = music.handoff_turn(guild);
    let _turn = turn.lock().await;
    if let Some(answer) = link.remembered(&request.id) {
        return answer;
    }
    let answer = match refusal(bot, link, request, guild, channel).await {
        Some(no) => no,
        None => {
            let track = Track {
                id: music.next_track_id(),
                title: found.title.clone(),
                source,
                duration: found.duration,
                requested_by: request.user_id.parse().unwrap_or_default(),
                text_channel: text,
            };
            join_and_queue(bot, request, guild, channel, track).await
        }
    };
    link.remember(&request.id, &answer);
    answer
}

/// Why this bot does not take a request for `channel` now, if it does not: it plays in
/// another channel, or another bot of the fleet is in that one.
async fn refusal(
    bot: &Bot,
    link: &FleetLink,
    request: &HandoffRequest,
    guild: GuildId,
    channel: ChannelId,
) -> Option<HandoffAnswer> {
    let music = &bot.music;
    let current = music.current_channel(guild).await;
    if let Some(other) = current.filter(|c| *c != channel)
        && music.is_busy(guild).await
    {
        return Some(HandoffAnswer::Busy { bot: bot.name.clone(), voice_channel_id: other.get().to_string() });
    }
    // A bot of the fleet sits in that channel already: it is the one to take it (it is
    // asked in its turn), not a second bot joining it. Not the asking bot: it may sit
    // there after failing to join.
    let other_fleet_bot =
        |u: serenity::all::UserId| (u.to_string() != request.from_client_id).then(|| link.fleet_bot(u.get())).flatten();
    if current != Some(channel)
        && let Some(there) = bot.guilds.bots_in(guild, channel).into_iter().find_map(other_fleet_bot)
    {
        return Some(refused(request, Say::new("handoff.already_there").with("bot", there).with("channel", channel)));
    }
    None
}

/// Joins `channel` unless the bot is in it, and queues `track` there.
async fn join_and_queue(
    bot: &Bot,
    request: &HandoffRequest,
    guild: GuildId,
    channel: ChannelId,
    track: Track,
) -> HandoffAnswer {
    let music = &bot.music;
    let joined = music.current_channel(guild).await != Some(channel);
    if joined && let Err(why) = music.join(guild, channel).await {
        return refused(request, why);
    }
    if too_late(request) {
        if joined {
            music.leave(guild, "a hand-off came too late").await;
        }
        return late(request);
    }
    let title = track.title.clone();
    match music.enqueue(guild, track).await {
        Ok(position) => {
            info!(from = %request.from, %guild, %channel, position, "took a hand-off");
            let waited = Duration::from_millis(now_ms().saturating_sub(request.asked_at_ms));
            bot.metrics.handoff_taken(waited);
            HandoffAnswer::Accepted { bot: bot.name.clone(), position: position as u64, title }
        }
        Err(e) => {
            let error = Say::from(&e).in_language(language_of(request));
            refused(request, Say::new("play.cannot_queue").with("title", title).with("error", error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(key: &str) -> FleetLink {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{key}\n")).unwrap();
        FleetLink::from_file(&path).unwrap()
    }

    #[test]
    fn only_the_fleet_key_is_authorized() {
        let l = link("k2Vx4u1cYtq3mB0sWf9hZrPL");
        assert!(l.authorized(Some("Bearer k2Vx4u1cYtq3mB0sWf9hZrPL")));
        assert!(!l.authorized(Some("Bearer k2Vx4u1cYtq3mB0sWf9hZrPM")));
        assert!(!l.authorized(Some("k2Vx4u1cYtq3mB0sWf9hZrPL")), "no scheme");
        assert!(!l.authorized(None));
    }

    #[test]
    fn a_short_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "short").unwrap();
        let err = FleetLink::from_file(&path).err().expect("refused").to_string();
        assert!(err.contains("shorter than"), "{err}");
        assert!(!err.contains("short\""), "the key is not echoed: {err}");
    }

    #[test]
    fn peers_are_the_others_in_client_id_order_and_answers_are_remembered() {
        let l = link("k2Vx4u1cYtq3mB0sWf9hZrPL");
        let bot = |id: &str| FleetBot { name: format!("b{id}"), client_id: id.into(), shard_urls: vec![] };
        l.set_directory(FleetDirectory {
            fleet: "f".into(),
            bots: vec![bot("30"), bot("100"), bot("20")],
            invites: None,
        });
        let order: Vec<String> = l.peers(20).into_iter().map(|b| b.client_id).collect();
        assert_eq!(order, ["30", "100"]);
        assert_eq!(l.remembered("i"), None);
        l.remember("i", &HandoffAnswer::NotInGuild);
        assert_eq!(l.remembered("i"), Some(HandoffAnswer::NotInGuild));
        for n in 0..REMEMBERED {
            l.remember(&n.to_string(), &HandoffAnswer::NotInGuild);
        }
        assert_eq!(l.remembered("i"), None, "the oldest goes first");
    }

    #[test]
    fn a_request_the_asking_bot_is_about_to_give_up_on_is_too_late() {
        let asked = |ago: Duration| HandoffRequest {
            id: "1".into(),
            to: "2".into(),
            guild_id: "3".into(),
            voice_channel_id: "4".into(),
            text_channel_id: "5".into(),
            user_id: "6".into(),
            query: "q".into(),
            from: "a".into(),
            from_client_id: "7".into(),
            asked_at_ms: now_ms() - ago.as_millis() as u64,
            language: String::new(),
        };
        assert!(!too_late(&asked(Duration::from_secs(1))));
        assert!(too_late(&asked(TAKE_TIMEOUT - Duration::from_secs(1))), "the asking bot gives up in a second");
        assert!(too_late(&asked(TAKE_TIMEOUT * 3)));
    }

    #[test]
    fn a_guild_goes_to_its_shard() {
        let b = FleetBot { name: "b".into(), client_id: "1".into(), shard_urls: vec!["a".into(), "b".into()] };
        assert_eq!(b.url_for(1 << 22), Some("b"));
        assert_eq!(b.url_for(2 << 22), Some("a"));
        assert_eq!(FleetBot { shard_urls: vec![], ..b }.url_for(1), None);
    }
}
