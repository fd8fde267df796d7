//! Track links of services whose audio the bot cannot play (Spotify, Apple Music, Deezer):
//! the page's public metadata (its Open Graph and music tags, fetched like media, no API
//! keys) gives the artist and title, which become a search on the search site, answered as
//! a match rather than as the track itself. Their albums and playlists are refused.

use std::collections::HashMap;

use reqwest::Url;
use scraper::{Html, Selector};

use super::source::Sources;
use crate::i18n::Say;

/// Most bytes of a service's page read: the metadata is in its head.
const MAX_PAGE: usize = 2 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Spotify,
    AppleMusic,
    Deezer,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Spotify => "Spotify",
            Service::AppleMusic => "Apple Music",
            Service::Deezer => "Deezer",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Service::Spotify => "spotify",
            Service::AppleMusic => "apple",
            Service::Deezer => "deezer",
        }
    }
}

/// What a service link is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    Track(Service),
    /// An album, a playlist, an artist: not supported yet.
    Collection(Service),
}

/// The service link `url` is, if it is one.
pub fn link_of(url: &Url) -> Option<Link> {
    let host = url.host_str()?.trim_start_matches("www.");
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    // Spotify puts a locale first on some links: /intl-th/track/….
    let kind_at = |i: usize| segments.get(i).copied();
    match host {
        "open.spotify.com" => {
            let kind = if kind_at(0).is_some_and(|s| s.starts_with("intl-")) { kind_at(1) } else { kind_at(0) };
            match kind? {
                "track" => Some(Link::Track(Service::Spotify)),
                _ => Some(Link::Collection(Service::Spotify)),
            }
        }
        "music.apple.com" => match kind_at(1)? {
            "song" => Some(Link::Track(Service::AppleMusic)),
            // A track of an album is its album link with `?i=<track>`.
            "album" if url.query_pairs().any(|(k, _)| k == "i") => Some(Link::Track(Service::AppleMusic)),
            _ => Some(Link::Collection(Service::AppleMusic)),
        },
        "deezer.com" => {
            let kind = if kind_at(0).is_some_and(|s| s.len() == 2) { kind_at(1) } else { kind_at(0) };
            match kind? {
                "track" => Some(Link::Track(Service::Deezer)),
                _ => Some(Link::Collection(Service::Deezer)),
            }
        }
        _ => None,
    }
}

/// Where each service's pages are fetched from instead of its own site (`spotify=URL`,
/// `apple=URL`, `deezer=URL`): a mirror, or a test's page server. The link's path is kept.
#[derive(Clone, Debug, Default)]
pub struct PageBases(HashMap<String, Url>);

impl PageBases {
    pub fn parse(pairs: &[String]) -> Result<Self, String> {
        let mut bases = HashMap::new();
        for pair in pairs {
            let (service, base) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not service=URL"))?;
            if !["spotify", "apple", "deezer"].contains(&service) {
                return Err(format!("{service:?} is not spotify, apple or deezer"));
            }
            let base = Url::parse(base).map_err(|e| format!("{base:?}: {e}"))?;
            bases.insert(service.to_string(), base);
        }
        Ok(Self(bases))
    }

    fn page(&self, service: Service, link: &Url) -> Url {
        match self.0.get(service.key()) {
            Some(base) => {
                let mut url = base.clone();
                url.set_path(link.path());
                url.set_query(link.query());
                url
            }
            None => link.clone(),
        }
    }
}

/// The artist and title a track page names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub title: String,
    pub artist: Option<String>,
}

impl Named {
    /// The search the bot makes for it.
    pub fn words(&self) -> String {
        match &self.artist {
            Some(a) => format!("{a} {}", self.title),
            None => self.title.clone(),
        }
    }
}

/// Reads the title and artist from a track page's metadata.
pub fn named(html: &str, service: Service) -> Option<Named> {
    let page = Html::parse_document(html);
    let meta = |attr: &str, name: &str| {
        let selector = Selector::parse(&format!("meta[{attr}=\"{name}\"]")).ok()?;
        let content = page.select(&selector).next()?.value().attr("content")?.trim().to_string();
        (!content.is_empty()).then_some(content)
    };
    let mut title = meta("property", "og:title").or_else(|| meta("name", "twitter:title"))?;
    let mut artist = meta("name", "music:musician_description")
        .or_else(|| meta("name", "twitter:audio:artist_name"))
        .or_else(|| meta("property", "music:musician_description"));
    // Apple writes "Song by Artist on Apple Music"; Deezer "Song - Artist".
    if service == Service::AppleMusic {
        title = title.trim_end_matches(" on Apple Music").to_string();
        if let Some((song, by)) = title.rsplit_once(" by ") {
            artist = artist.or_else(|| Some(by.to_string()));
            title = song.to_string();
        }
    }
    if service == Service::Deezer
        && artist.is_none()
        && let Some((song, by)) = title.rsplit_once(" - ")
    {
        artist = Some(by.to_string());
        title = song.to_string();
    }
    let clip = |s: String| s.chars().take(200).collect::<String>();
    Some(Named { title: clip(title), artist: artist.map(clip) })
}

impl Sources {
    /// The artist and title behind a service's track link, from its page.
    pub async fn name_track(&self, service: Service, link: &Url) -> Result<Named, Say> {
        let page = self.page_bases.page(service, link);
        if !self.policy_permits(&page) {
            return Err(Say::new("source.not_public"));
        }
        let unreadable = || Say::new("services.unreadable").with("service", service.name());
        let fetched = tokio::time::timeout(self.limits.resolve, async {
            let response = self.http.get(page).send().await.ok()?.error_for_status().ok()?;
            let bytes = response.bytes().await.ok()?;
            (bytes.len() <= MAX_PAGE).then(|| String::from_utf8_lossy(&bytes).into_owned())
        });
        let html = fetched.await.ok().flatten().ok_or_else(unreadable)?;
        named(&html, service).ok_or_else(unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(s: &str) -> Option<Link> {
        link_of(&Url::parse(s).unwrap())
    }

    #[test]
    fn track_links_and_collections_are_told_apart() {
        use Service::*;
        assert_eq!(link("https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC"), Some(Link::Track(Spotify)));
        assert_eq!(
            link("https://open.spotify.com/intl-th/track/4uLU6hMCjMI75M1A2tKUQC?si=x"),
            Some(Link::Track(Spotify))
        );
        assert_eq!(link("https://open.spotify.com/album/1DFixLWuPkv3KT3TnV35m3"), Some(Link::Collection(Spotify)));
        assert_eq!(link("https://open.spotify.com/playlist/37i9dQZF1DXcBWIGoYBM5M"), Some(Link::Collection(Spotify)));
        assert_eq!(link("https://music.apple.com/us/song/never-gonna/1558533900"), Some(Link::Track(AppleMusic)));
        assert_eq!(link("https://music.apple.com/us/album/x/1558533000?i=1558533900"), Some(Link::Track(AppleMusic)));
        assert_eq!(link("https://music.apple.com/us/album/x/1558533000"), Some(Link::Collection(AppleMusic)));
        assert_eq!(link("https://www.deezer.com/track/3135556"), Some(Link::Track(Deezer)));
        assert_eq!(link("https://www.deezer.com/th/track/3135556"), Some(Link::Track(Deezer)));
        assert_eq!(link("https://www.deezer.com/album/302127"), Some(Link::Collection(Deezer)));
        assert_eq!(link("https://www.youtube.com/watch?v=x"), None);
    }

    #[test]
    fn the_artist_and_title_come_from_the_pages_metadata() {
        let spotify = r#"<html><head><meta property="og:title" content="Song One">
            <meta name="music:musician_description" content="The Band"></head></html>"#;
        let named_spotify = named(spotify, Service::Spotify).unwrap();
        assert_eq!(named_spotify, Named { title: "Song One".into(), artist: Some("The Band".into()) });
        assert_eq!(named_spotify.words(), "The Band Song One");
        let apple = r#"<meta property="og:title" content="Song Two by Some Singer on Apple Music">"#;
        assert_eq!(named(apple, Service::AppleMusic).unwrap().words(), "Some Singer Song Two");
        let deezer = r#"<meta property="og:title" content="Song Three - A Duo">"#;
        assert_eq!(named(deezer, Service::Deezer).unwrap().words(), "A Duo Song Three");
        assert_eq!(named("<html><title>nothing</title></html>", Service::Spotify), None);
    }

    #[test]
    fn a_page_base_keeps_the_links_path() {
        let bases = PageBases::parse(&["spotify=http://127.0.0.1:9000".into()]).unwrap();
        let page = bases.page(Service::Spotify, &Url::parse("https://open.spotify.com/track/abc?si=1").unwrap());
        assert_eq!(page.as_str(), "http://127.0.0.1:9000/track/abc?si=1");
        let apple = Url::parse("https://music.apple.com/us/song/x/1").unwrap();
        assert_eq!(bases.page(Service::AppleMusic, &apple), apple, "no base: the service's own page");
        assert!(PageBases::parse(&["tidal=http://x".into()]).is_err());
        assert!(PageBases::parse(&["spotify".into()]).is_err());
    }
}
