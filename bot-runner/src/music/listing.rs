//! What yt-dlp lists without resolving each entry (`--flat-playlist -J`): a playlist's or
//! an album's tracks, a search's results, or one page's own title and length. Entries keep
//! only their URL and title; each is resolved when it comes up to play, so a 500-track
//! playlist is queued at once. yt-dlp runs in the sandbox and through the media proxy,
//! as for playback.

use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use super::source::{Source, Sources, classify};
use crate::i18n::Say;

/// Most bytes of yt-dlp's listing read: a few hundred tracks of flat JSON.
const MAX_LISTING: usize = 16 << 20;

/// Where searches go: a yt-dlp search key (`ytsearch`, `scsearch`), or the URL of a page
/// whose media yt-dlp lists, with `{query}` for the words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchSite {
    Key(String),
    Page(String),
}

impl SearchSite {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.contains("{query}") {
            let url = reqwest::Url::parse(&s.replace("{query}", "x")).map_err(|e| format!("{s:?}: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("{s:?}: a search page is http or https"));
            }
            return Ok(Self::Page(s.to_string()));
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(format!("{s:?} is neither a yt-dlp search key (ytsearch, scsearch) nor a URL with {{query}}"));
        }
        Ok(Self::Key(s.to_string()))
    }

    /// What yt-dlp is given for the first `n` results for `words`.
    fn target(&self, words: &str, n: usize) -> String {
        match self {
            Self::Key(key) => format!("{key}{n}:{words}"),
            Self::Page(url) => url.replace("{query}", &urlencoding(words)),
        }
    }
}

/// The query part of a URL, percent-encoded (form style). Hand-written: `url`'s form
/// serializer needs a whole URL to write into.
fn urlencoding(words: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", [("q", words)])
        .ok()
        .and_then(|u| u.query().map(|q| q.trim_start_matches("q=").to_string()))
        .unwrap_or_default()
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub title: String,
    pub source: Source,
    pub duration: Option<Duration>,
}

/// A listing: several entries for a playlist or a search, or one page's own.
#[derive(Debug)]
pub struct Listing {
    pub title: Option<String>,
    pub is_playlist: bool,
    pub entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Info {
    #[serde(rename = "_type")]
    kind: Option<String>,
    title: Option<String>,
    duration: Option<f64>,
    url: Option<String>,
    webpage_url: Option<String>,
    original_url: Option<String>,
    #[serde(default)]
    entries: Vec<Option<Info>>,
}

impl Info {
    /// A playlist's entry is its `url` (its `webpage_url` can be the playlist's page); a
    /// single page is its `webpage_url` (its `url` is the stream, which expires).
    fn entry(self, fallback_title: &str, in_playlist: bool) -> Option<Entry> {
        let url = if in_playlist { self.url.or(self.webpage_url) } else { self.webpage_url.or(self.url) };
        let url = url.or(self.original_url)?;
        // A link yt-dlp found that is not one (a relative path of a page, an ID).
        let source = classify(&url).ok().filter(|s| !matches!(s, Source::Search(_)))?;
        let duration = self.duration.filter(|d| d.is_finite() && *d > 0.0).map(Duration::from_secs_f64);
        Some(Entry { title: self.title.unwrap_or_else(|| fallback_title.to_string()), source, duration })
    }
}

/// Reads yt-dlp's `-J` answer.
fn parse(json: &[u8], asked: &str, max: usize) -> Result<Listing, Say> {
    let info: Info = serde_json::from_slice(json).map_err(|e| {
        tracing::info!(error = %e, "yt-dlp's listing did not parse");
        Say::new("source.cannot_load")
    })?;
    if info.kind.as_deref() == Some("playlist") {
        let title = info.title.clone();
        let entries: Vec<Entry> =
            info.entries.into_iter().flatten().filter_map(|e| e.entry(asked, true)).take(max).collect();
        return Ok(Listing { title, is_playlist: true, entries });
    }
    let title = info.title.clone();
    let entry = Info { webpage_url: info.webpage_url.clone().or_else(|| Some(asked.to_string())), ..info };
    Ok(Listing { title, is_playlist: false, entries: entry.entry(asked, false).into_iter().collect() })
}

impl Sources {
    /// Lists `target` (a URL or a search), at most `max` entries; `playlists: false` takes
    /// a video of a playlist alone.
    pub async fn list(&self, target: &str, max: usize, playlists: bool) -> Result<Listing, Say> {
        let max = max.max(1).to_string();
        let which = if playlists { "--yes-playlist" } else { "--no-playlist" };
        let mut command = Command::new(self.ytdl_program);
        command.args(&self.ytdl_args).args(["--flat-playlist", "-J", which, "--playlist-end", &max, "--", target]);
        command.kill_on_drop(true).stdin(std::process::Stdio::null());
        let output = tokio::time::timeout(self.limits.resolve, command.output()).await;
        let output = match output {
            Err(_) => return Err(Say::new("source.timed_out")),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not run yt-dlp");
                return Err(Say::new("source.cannot_load"));
            }
            Ok(Ok(o)) => o,
        };
        if !output.status.success() || output.stdout.len() > MAX_LISTING {
            let stderr = String::from_utf8_lossy(&output.stderr);
            tracing::info!(error = %super::source::first_line(&stderr), "yt-dlp could not list a request");
            return Err(Say::new("source.cannot_load"));
        }
        parse(&output.stdout, target, max.parse().unwrap_or(1))
    }

    /// The first `n` results for `words` on the configured search site.
    pub async fn search(&self, words: &str, n: usize) -> Result<Vec<Entry>, Say> {
        let listing = self.list(&self.search_site.target(words, n), n, true).await?;
        if listing.entries.is_empty() {
            return Err(Say::new("search.nothing").with("words", words));
        }
        Ok(listing.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_site_is_a_key_or_a_page() {
        assert_eq!(SearchSite::parse("ytsearch").unwrap().target("lofi beats", 5), "ytsearch5:lofi beats");
        let page = SearchSite::parse("https://music.example/find?q={query}").unwrap();
        assert_eq!(page.target("lofi & beats", 5), "https://music.example/find?q=lofi+%26+beats");
        for bad in ["", "YTSEARCH", "ftp://x/{query}", "yt search"] {
            assert!(SearchSite::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_playlist_lists_its_entries_and_a_page_itself() {
        let playlist = br#"{"_type": "playlist", "title": "Mix", "entries": [
            {"url": "https://www.youtube.com/watch?v=a", "title": "A", "duration": 61.0,
             "webpage_url": "https://www.youtube.com/playlist?list=x"},
            null,
            {"url": "relative/thing", "title": "not a link"},
            {"url": "https://cdn.example/b.mp3"},
            {"url": "https://www.youtube.com/watch?v=c", "title": "C"}
        ]}"#;
        let l = parse(playlist, "https://www.youtube.com/playlist?list=x", 2).unwrap();
        assert!(l.is_playlist);
        assert_eq!(l.title.as_deref(), Some("Mix"));
        assert_eq!(
            l.entries,
            [
                Entry {
                    title: "A".into(),
                    source: Source::Ytdl("https://www.youtube.com/watch?v=a".into()),
                    duration: Some(Duration::from_secs(61)),
                },
                Entry {
                    title: "https://www.youtube.com/playlist?list=x".into(),
                    source: Source::Http("https://cdn.example/b.mp3".into()),
                    duration: None,
                },
            ],
            "at most `max`, links only"
        );
        let single = br#"{"title": "Song", "duration": 200.5, "webpage_url": "https://x.example/watch/1"}"#;
        let l = parse(single, "https://x.example/watch/1", 100).unwrap();
        assert!(!l.is_playlist);
        assert_eq!(l.entries[0].title, "Song");
        assert!(parse(b"not json", "x", 1).is_err());
    }
}
