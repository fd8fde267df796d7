//! Where audio comes from: a direct HTTP file (songbird's `HttpRequest`, decoded by
//! symphonia), or anything yt-dlp understands (YouTube, SoundCloud, searches, other pages).
//! Tracks keep their source, not a stream, so a looped track or queue can play again.

use std::time::Duration;

use reqwest::Client;
use songbird::input::{Compose, HttpRequest, Input, YoutubeDl};

#[derive(Clone, Debug, PartialEq, Eq)]
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
pub fn classify(query: &str) -> Result<Source, String> {
    let query = query.trim();
    if query.is_empty() {
        return Err("Give me a URL or some words to search for.".into());
    }
    if query.len() > 500 {
        return Err("That query is too long (500 characters at most).".into());
    }
    if !(query.starts_with("http://") || query.starts_with("https://")) {
        return Ok(Source::Search(query.to_string()));
    }
    let url = reqwest::Url::parse(query).map_err(|e| format!("That URL doesn't parse: {e}."))?;
    if url.host_str().is_none() {
        return Err("That URL has no host.".into());
    }
    let ext = url.path().rsplit('.').next().unwrap_or_default().to_ascii_lowercase();
    let direct = matches!(
        ext.as_str(),
        "mp3" | "wav" | "flac" | "ogg" | "oga" | "opus" | "m4a" | "aac" | "mp4" | "webm" | "weba" | "mka" | "dca"
    );
    Ok(if direct { Source::Http(url.to_string()) } else { Source::Ytdl(url.to_string()) })
}

/// Makes songbird inputs and looks up titles. yt-dlp runs once at `/play` to find the
/// title (and to fail early), and again when the track starts, since stream URLs expire.
#[derive(Clone)]
pub struct Sources {
    pub http: Client,
    /// songbird wants a `&'static str` for the program; it is set once at start-up.
    pub ytdlp: &'static str,
}

pub struct Resolved {
    pub title: String,
    pub duration: Option<Duration>,
}

impl Sources {
    pub fn new(ytdlp: &str) -> Self {
        // Extra CAs (MUSICBOT_CA_FILE) apply to audio fetched over HTTPS too.
        let http = crate::ca::http_client_builder().build().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "HTTP client with the extra CAs failed to build; using the default one");
            Client::new()
        });
        Self { http, ytdlp: Box::leak(ytdlp.to_string().into_boxed_str()) }
    }

    pub fn input(&self, source: &Source) -> Input {
        match source {
            Source::Http(url) => HttpRequest::new(self.http.clone(), url.clone()).into(),
            Source::Ytdl(url) => YoutubeDl::new_ytdl_like(self.ytdlp, self.http.clone(), url.clone()).into(),
            Source::Search(q) => YoutubeDl::new_search_ytdl_like(self.ytdlp, self.http.clone(), q.clone()).into(),
        }
    }

    /// Title and length, for the reply to `/play`. A search is pinned to the URL it found,
    /// so the track that plays is the one announced.
    pub async fn resolve(&self, source: Source) -> Result<(Source, Resolved), String> {
        match source {
            Source::Http(url) => {
                // A HEAD request catches dead links before they reach the queue.
                let head =
                    self.http.head(&url).send().await.map_err(|e| format!("I couldn't reach that URL ({e})."))?;
                if !head.status().is_success() {
                    return Err(format!("That URL answered {}.", head.status()));
                }
                let title = url.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(&url).to_string();
                Ok((Source::Http(url), Resolved { title, duration: None }))
            }
            Source::Ytdl(ref q) | Source::Search(ref q) => {
                let mut ytdl = match &source {
                    Source::Search(_) => YoutubeDl::new_search_ytdl_like(self.ytdlp, self.http.clone(), q.clone()),
                    _ => YoutubeDl::new_ytdl_like(self.ytdlp, self.http.clone(), q.clone()),
                };
                let meta = ytdl
                    .aux_metadata()
                    .await
                    .map_err(|e| format!("I couldn't load that: {}", first_line(&e.to_string())))?;
                let pinned = match (&source, &meta.source_url) {
                    (Source::Search(_), Some(url)) => Source::Ytdl(url.clone()),
                    _ => source.clone(),
                };
                let title = meta.title.or(meta.track).unwrap_or_else(|| q.clone());
                Ok((pinned, Resolved { title, duration: meta.duration }))
            }
        }
    }
}

/// yt-dlp's errors run to many lines; the first says what went wrong.
fn first_line(s: &str) -> String {
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
