//! Where audio comes from: a direct HTTP file (songbird's `HttpRequest`, decoded by
//! symphonia), or anything yt-dlp understands (YouTube, SoundCloud, searches, other pages).
//! Tracks keep their source, not a stream, so a looped track or queue can play again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Client;
use songbird::input::{HttpRequest, Input, YoutubeDl};
use tokio::sync::Semaphore;

use super::guard::{self, FetchLimits, MediaPolicy};
use super::listing::{Entry, SearchSite};
use super::services::PageBases;
use crate::i18n::Say;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "query", rename_all = "camelCase")]
pub enum Source {
    /// An audio file served over HTTP(S).
    Http(String),
    /// A page yt-dlp extracts audio from.
    Ytdl(String),
    /// Search words, the first yt-dlp search result.
    Search(String),
}

/// What `/play` was given, read as a source. URLs of audio files are fetched directly;
/// other URLs go through yt-dlp; anything else is a search.
pub fn classify(query: &str) -> Result<Source, Say> {
    let query = query.trim();
    if query.is_empty() {
        return Err(Say::new("source.empty"));
    }
    if query.len() > 500 {
        return Err(Say::new("source.too_long_query"));
    }
    if !(query.starts_with("http://") || query.starts_with("https://")) {
        return Ok(Source::Search(query.to_string()));
    }
    let url = reqwest::Url::parse(query).map_err(|_| Say::new("source.bad_url"))?;
    if url.host_str().is_none() {
        return Err(Say::new("source.no_host"));
    }
    let ext = url.path().rsplit('.').next().unwrap_or_default().to_ascii_lowercase();
    let direct = matches!(
        ext.as_str(),
        "mp3" | "wav" | "flac" | "ogg" | "oga" | "opus" | "m4a" | "aac" | "mp4" | "webm" | "weba" | "mka" | "dca"
    );
    Ok(if direct { Source::Http(url.to_string()) } else { Source::Ytdl(url.to_string()) })
}

/// The playlist a YouTube video link also names (`watch?v=…&list=…`, `youtu.be/…?list=…`),
/// as its playlist page: the video plays, the playlist is offered beside it.
pub fn playlist_of(query: &str) -> Option<String> {
    let url = reqwest::Url::parse(query.trim()).ok()?;
    let host = url.host_str()?;
    let host = host.trim_start_matches("www.").trim_start_matches("m.").trim_start_matches("music.");
    let video = match host {
        "youtube.com" => url.path() == "/watch" && url.query_pairs().any(|(k, v)| k == "v" && !v.is_empty()),
        "youtu.be" => url.path().len() > 1,
        _ => false,
    };
    let list = url.query_pairs().find(|(k, _)| k == "list").map(|(_, v)| v.into_owned())?;
    let valid = !list.is_empty() && list.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (video && valid).then(|| format!("https://www.youtube.com/playlist?list={list}"))
}

/// How far a `/play` may make the bot go. One user's request must not exhaust the process:
/// resolutions in flight are capped per guild and per process, each bounded in time, and
/// what they may bring back is bounded in size and length.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub fetch: FetchLimits,
    /// A whole resolution (HEAD, or yt-dlp finding the stream), answered within Discord's
    /// 15-minute window for deferred replies with room to spare.
    pub resolve: Duration,
    pub per_guild: usize,
    pub per_process: usize,
    /// Longest track accepted, where its length is known before it plays.
    pub max_track: Duration,
    /// Largest file accepted, where the server says its size.
    pub max_file_bytes: u64,
    /// Most tracks one playlist or album adds.
    pub playlist_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fetch: FetchLimits { connect: Duration::from_secs(5), read: Duration::from_secs(15) },
            resolve: Duration::from_secs(30),
            per_guild: 2,
            per_process: 8,
            max_track: Duration::from_secs(3 * 3600),
            max_file_bytes: 200 << 20,
            playlist_max: 100,
        }
    }
}

/// Makes songbird inputs and looks up titles. yt-dlp runs once at `/play` to find the
/// title (and to fail early), and again when the track starts, since stream URLs expire.
#[derive(Clone)]
pub struct Sources {
    pub http: Client,
    /// What songbird runs for yt-dlp: this binary's sandbox (see `crate::sandbox`), a
    /// `&'static str` as songbird wants, set once at start-up; then its arguments.
    pub(super) ytdl_program: &'static str,
    pub(super) ytdl_args: Vec<String>,
    policy: Arc<MediaPolicy>,
    pub limits: Limits,
    pub(super) search_site: SearchSite,
    pub(super) page_bases: PageBases,
    in_flight: Arc<Semaphore>,
    per_guild: Arc<Mutex<HashMap<u64, usize>>>,
}

pub struct Resolved {
    pub title: String,
    pub duration: Option<Duration>,
}

/// What a `/play` found: one track, or a playlist's tracks (each resolved when it plays).
pub enum Found {
    One(Source, Resolved),
    Many { title: Option<String>, entries: Vec<Entry> },
}

/// A resolution slot of a guild, given back when dropped.
struct GuildSlot {
    guild: u64,
    counts: Arc<Mutex<HashMap<u64, usize>>>,
}

impl Drop for GuildSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("per-guild counts");
        if let Some(n) = counts.get_mut(&self.guild) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.guild);
            }
        }
    }
}

impl Sources {
    pub fn new(
        ytdlp: &str,
        policy: MediaPolicy,
        limits: Limits,
        search_site: SearchSite,
        page_bases: PageBases,
    ) -> Self {
        let policy = Arc::new(policy);
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "bot-runner".into());
        let proxy = match super::proxy::MediaProxy::start(policy.clone(), limits.fetch, limits.resolve) {
            Ok(proxy) => proxy.url(),
            Err(e) => {
                // Fail closed: a proxy port nothing listens on, so yt-dlp reaches nothing.
                tracing::error!(error = %e, "cannot start the yt-dlp proxy; pages will not play");
                "http://127.0.0.1:1".into()
            }
        };
        Self {
            http: guard::client(policy.clone(), limits.fetch),
            ytdl_program: Box::leak(exe.into_boxed_str()),
            ytdl_args: crate::sandbox::songbird_args(ytdlp, limits.resolve, &proxy),
            policy,
            limits,
            in_flight: Arc::new(Semaphore::new(limits.per_process)),
            per_guild: Arc::new(Mutex::new(HashMap::new())),
            search_site,
            page_bases,
        }
    }

    pub(super) fn policy_permits(&self, url: &reqwest::Url) -> bool {
        self.policy.permits_url(url)
    }

    pub fn input(&self, source: &Source) -> Input {
        match source {
            Source::Http(url) => HttpRequest::new(self.http.clone(), url.clone()).into(),
            Source::Ytdl(_) | Source::Search(_) => self.ytdl(source).into(),
        }
    }

    /// yt-dlp for a page or a search, run in the sandbox; its stream is fetched through the
    /// guarded client.
    fn ytdl(&self, source: &Source) -> YoutubeDl<'static> {
        let ytdl = match source {
            Source::Search(q) => YoutubeDl::new_search_ytdl_like(self.ytdl_program, self.http.clone(), q.clone()),
            Source::Ytdl(url) | Source::Http(url) => {
                YoutubeDl::new_ytdl_like(self.ytdl_program, self.http.clone(), url.clone())
            }
        };
        ytdl.user_args(self.ytdl_args.clone())
    }

    fn guild_slot(&self, guild: u64) -> Option<GuildSlot> {
        let mut counts = self.per_guild.lock().expect("per-guild counts");
        let n = counts.entry(guild).or_insert(0);
        if *n >= self.limits.per_guild {
            return None;
        }
        *n += 1;
        Some(GuildSlot { guild, counts: self.per_guild.clone() })
    }

    /// Title and length, for the reply to `/play` in `guild`. A search is pinned to the URL
    /// it found, so the track that plays is the one announced. Every failure is a short
    /// reason fit for the user: no internal status code, address or yt-dlp output.
    pub async fn resolve(&self, guild: u64, source: Source) -> Result<(Source, Resolved), Say> {
        match self.lookup(guild, source, false).await? {
            Found::One(source, found) => Ok((source, found)),
            Found::Many { .. } => Err(Say::new("source.cannot_load")),
        }
    }

    /// [`Self::resolve`], or with `playlists` a playlist's entries (flat, capped).
    pub async fn lookup(&self, guild: u64, source: Source, playlists: bool) -> Result<Found, Say> {
        let Some(_guild_slot) = self.guild_slot(guild) else {
            return Err(Say::new("source.guild_busy"));
        };
        let Ok(_slot) = self.in_flight.clone().try_acquire_owned() else {
            return Err(Say::new("source.busy"));
        };
        match tokio::time::timeout(self.limits.resolve, self.resolve_now(source, playlists)).await {
            Ok(found) => found,
            Err(_) => Err(Say::new("source.timed_out")),
        }
    }

    async fn resolve_now(&self, source: Source, playlists: bool) -> Result<Found, Say> {
        match source {
            Source::Http(url) => {
                let parsed = reqwest::Url::parse(&url).map_err(|_| Say::new("source.bad_url"))?;
                if !self.policy.permits_url(&parsed) {
                    return Err(Say::new(NOT_PUBLIC));
                }
                // A HEAD request catches dead links (and huge files) before they reach the queue.
                let head = self.http.head(parsed).send().await.map_err(|e| {
                    if guard::is_refusal(&e) { Say::new(NOT_PUBLIC) } else { Say::new("source.unreachable") }
                })?;
                if !head.status().is_success() {
                    return Err(Say::new("source.http_error"));
                }
                if head.content_length().is_some_and(|n| n > self.limits.max_file_bytes) {
                    return Err(Say::new("source.too_large").with("mb", self.limits.max_file_bytes >> 20));
                }
                let title = url.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(&url).to_string();
                Ok(Found::One(Source::Http(url), Resolved { title, duration: None }))
            }
            Source::Ytdl(ref q) | Source::Search(ref q) => {
                if let Source::Ytdl(url) = &source
                    && let Ok(parsed) = reqwest::Url::parse(url)
                    && !self.policy.permits_url(&parsed)
                {
                    return Err(Say::new(NOT_PUBLIC));
                }
                let listing = match &source {
                    Source::Search(words) => {
                        let first = self.search(words, 1).await?.into_iter().next();
                        super::listing::Listing {
                            title: None,
                            is_playlist: false,
                            entries: first.into_iter().collect(),
                        }
                    }
                    _ => self.list(q, self.limits.playlist_max, playlists).await?,
                };
                if listing.is_playlist {
                    if listing.entries.is_empty() {
                        return Err(Say::new("source.cannot_load"));
                    }
                    return Ok(Found::Many { title: listing.title, entries: listing.entries });
                }
                let Some(entry) = listing.entries.into_iter().next() else {
                    return Err(Say::new("source.cannot_load"));
                };
                if entry.duration.is_some_and(|d| d > self.limits.max_track) {
                    return Err(Say::new("source.too_long_track").with("max", format_duration(self.limits.max_track)));
                }
                // A search is pinned to the page it found; a page stays as asked.
                let pinned = match &source {
                    Source::Search(_) => entry.source,
                    _ => source.clone(),
                };
                Ok(Found::One(pinned, Resolved { title: entry.title, duration: entry.duration }))
            }
        }
    }
}

const NOT_PUBLIC: &str = "source.not_public";

/// yt-dlp's errors run to many lines; the first says what went wrong.
pub(super) fn first_line(s: &str) -> String {
    let line = s.lines().find(|l| l.contains("ERROR")).or_else(|| s.lines().next()).unwrap_or(s);
    line.chars().take(300).collect()
}

/// `/seek` positions: seconds (`90`), `m:ss` or `h:mm:ss`.
pub fn parse_position(s: &str) -> Option<Duration> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut secs: u64 = 0;
    for (i, p) in parts.iter().enumerate() {
        let v: u64 = p.parse().ok()?;
        if i > 0 && v >= 60 {
            return None;
        }
        secs = secs.checked_mul(60)?.checked_add(v)?;
    }
    Some(Duration::from_secs(secs))
}

pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_video_link_that_names_a_playlist_offers_it() {
        let list = Some("https://www.youtube.com/playlist?list=PLx_1-a".to_string());
        assert_eq!(playlist_of("https://www.youtube.com/watch?v=abc&list=PLx_1-a&index=3"), list);
        assert_eq!(playlist_of("https://youtu.be/abc?list=PLx_1-a"), list);
        assert_eq!(playlist_of("https://music.youtube.com/watch?v=abc&list=PLx_1-a"), list);
        for not in [
            "https://www.youtube.com/playlist?list=PLx",
            "https://www.youtube.com/watch?v=abc",
            "https://example.org/watch?v=abc&list=PLx",
            "https://www.youtube.com/watch?v=abc&list=bad%20list",
            "lofi beats",
        ] {
            assert_eq!(playlist_of(not), None, "{not}");
        }
    }

    #[test]
    fn queries_are_classified() {
        assert_eq!(classify("http://127.0.0.1:9/tone.WAV"), Ok(Source::Http("http://127.0.0.1:9/tone.WAV".into())));
        assert_eq!(
            classify("https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
            Ok(Source::Ytdl("https://www.youtube.com/watch?v=dQw4w9WgXcQ".into()))
        );
        assert_eq!(
            classify("http://127.0.0.1:9/dca/440/3.dca"),
            Ok(Source::Http("http://127.0.0.1:9/dca/440/3.dca".into()))
        );
        assert_eq!(classify("  lofi beats "), Ok(Source::Search("lofi beats".into())));
        assert!(classify("   ").is_err());
        assert!(classify("http://").is_err());
        assert!(classify(&"x".repeat(501)).is_err());
    }

    #[test]
    fn positions() {
        assert_eq!(parse_position("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_position("1:30"), Some(Duration::from_secs(90)));
        assert_eq!(parse_position("1:02:03"), Some(Duration::from_secs(3723)));
        for bad in ["", "abc", "1:60", "-5", "1::2", "1:2:3:4", "99999999999999999999999"] {
            assert_eq!(parse_position(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(Duration::from_secs(65)), "1:05");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1:02:03");
    }

    #[test]
    fn yt_dlp_errors_are_cut_to_the_point() {
        let e = "yt-dlp failed with non-zero status code: WARNING: x\nERROR: [generic] Unable to download webpage: 404\nmore";
        assert_eq!(first_line(e), "ERROR: [generic] Unable to download webpage: 404");
    }
}
