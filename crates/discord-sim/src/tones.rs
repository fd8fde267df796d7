//! Test tones, and an HTTP server for them: what a bot under test plays, so the simulator
//! can check it heard the right pitch.
//!
//! - `/tone/{hz}/{seconds}.wav`: 16-bit stereo PCM at 48 kHz (re-encoded to Opus by songbird);
//! - `/dca/{hz}/{seconds}.dca`: the same tone already in Opus (DCA1 framing), which songbird
//!   passes through without decoding;
//! - `/webm/{hz}/{seconds}.webm`: the same Opus packets in WebM, as YouTube serves audio;
//! - `/page/{hz}/{seconds}`: the WAV without an extension, for yt-dlp's generic extractor;
//! - `/ramp/{hz}/{seconds}.wav`: a WAV whose pitch climbs [`RAMP_STEP_HZ`] each second, so
//!   the pitch heard tells where in the track a bot is ([`ramp_second`]);
//! - `/stall/{hz}/{seconds}.wav`, `/stall-always/…`: the tone's WAV, whose first answer
//!   sends [`STALL_AFTER_SECONDS`] of audio and then nothing (the connection held open for a
//!   minute), as a server that stops mid-stream; later answers are whole (for `stall-always`,
//!   every answer stalls);
//! - `/broken/noise.mp3`: 200 with bytes no decoder accepts; anything else: 404.
//!
//! Files are served with `Accept-Ranges` and answer `Range` requests, as media servers and
//! CDNs do: a bot seeks in them by asking for the bytes from a point on.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use opus2::{Application, Channels, Encoder};

const RATE: u32 = 48_000;
const AMPLITUDE: f64 = 0.4;

fn sample(hz: f64, i: u32) -> i16 {
    (AMPLITUDE * (2.0 * std::f64::consts::PI * hz * f64::from(i) / f64::from(RATE)).sin() * f64::from(i16::MAX)) as i16
}

/// Seconds of audio a stalling file sends before it stops.
pub const STALL_AFTER_SECONDS: usize = 4;

/// How much a ramp's pitch climbs each second.
pub const RAMP_STEP_HZ: f64 = 20.0;

/// The second of a ramp starting at `start_hz` that sounds at `heard_hz`.
pub fn ramp_second(start_hz: f64, heard_hz: f64) -> f64 {
    (heard_hz - start_hz) / RAMP_STEP_HZ
}

/// 16-bit stereo PCM WAV at 48 kHz, amplitude 0.4.
pub fn wav(hz: f64, seconds: f64) -> Vec<u8> {
    pcm_wav(seconds, |i| sample(hz, i))
}

/// A WAV at `hz` for its first second, `hz + RAMP_STEP_HZ` for the next, and so on. The
/// phase carries over from one second to the next, so the steps do not click.
pub fn ramp(hz: f64, seconds: f64) -> Vec<u8> {
    let mut phase = 0.0f64;
    pcm_wav(seconds, |i| {
        let f = hz + RAMP_STEP_HZ * f64::from(i / RATE);
        phase = (phase + 2.0 * std::f64::consts::PI * f / f64::from(RATE)) % (2.0 * std::f64::consts::PI);
        (AMPLITUDE * phase.sin() * f64::from(i16::MAX)) as i16
    })
}

fn pcm_wav(seconds: f64, mut sample_at: impl FnMut(u32) -> i16) -> Vec<u8> {
    let frames = (seconds * f64::from(RATE)) as u32;
    let data_len = frames * 4;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&2u16.to_le_bytes()); // stereo
    w.extend_from_slice(&RATE.to_le_bytes());
    w.extend_from_slice(&(RATE * 4).to_le_bytes());
    w.extend_from_slice(&4u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..frames {
        let s = sample_at(i).to_le_bytes();
        w.extend_from_slice(&s);
        w.extend_from_slice(&s);
    }
    w
}

/// The tone as 20 ms stereo Opus packets, as libopus makes them (deterministic, so a test
/// can recognise the very packets a bot passed through).
pub fn opus_frames(hz: f64, seconds: f64) -> Result<Vec<Vec<u8>>> {
    let mut enc = Encoder::new(RATE, Channels::Stereo, Application::Audio)?;
    let mut packet = [0u8; 4000];
    let frames = (seconds * 50.0) as u32;
    let mut pcm = Vec::with_capacity(960 * 2);
    let mut out = Vec::with_capacity(frames as usize);
    for f in 0..frames {
        pcm.clear();
        for i in f * 960..(f + 1) * 960 {
            let s = sample(hz, i);
            pcm.extend_from_slice(&[s, s]);
        }
        let n = enc.encode(&pcm, &mut packet)?;
        out.push(packet[..n].to_vec());
    }
    Ok(out)
}

/// The tone's Opus packets in DCA1 framing (magic, JSON metadata, then each packet as a
/// little-endian u16 length and its bytes), which songbird reads natively.
pub fn dca(hz: f64, seconds: f64) -> Result<Vec<u8>> {
    let meta = serde_json::json!({
        "dca": {"version": 1, "tool": {"name": "testkit", "version": "1"}},
        "opus": {"mode": "music", "sample_rate": RATE, "frame_size": 960, "abr": null, "vbr": true, "channels": 2},
        "info": null, "origin": null, "extra": null,
    })
    .to_string();
    let mut out = b"DCA1".to_vec();
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(meta.as_bytes());
    for packet in opus_frames(hz, seconds)? {
        out.extend_from_slice(&(packet.len() as u16).to_le_bytes());
        out.extend_from_slice(&packet);
    }
    Ok(out)
}

/// The tone's Opus packets in a WebM file, the container yt-dlp hands over for YouTube's
/// best audio: EBML header, Info, one Opus track, one-second clusters of SimpleBlocks.
/// Written by hand (no muxer crate is needed for one track of whole frames).
pub fn webm(hz: f64, seconds: f64) -> Result<Vec<u8>> {
    let opus_head = [b"OpusHead".as_slice(), &[1, 2], &312u16.to_le_bytes(), &RATE.to_le_bytes(), &[0, 0, 0]].concat();
    let header = ebml(
        0x1A45_DFA3,
        &[
            uint(0x4286, 1),
            uint(0x42F7, 1),
            uint(0x42F2, 4),
            uint(0x42F3, 8),
            ebml(0x4282, b"webm"),
            uint(0x4287, 4),
            uint(0x4285, 2),
        ]
        .concat(),
    );
    // Timestamps in milliseconds.
    let info =
        ebml(0x1549_A966, &[uint(0x2A_D7B1, 1_000_000), ebml(0x4D80, b"testkit"), ebml(0x5741, b"testkit")].concat());
    let audio = ebml(0xE1, &[float(0xB5, f64::from(RATE)), uint(0x9F, 2)].concat());
    let track = ebml(
        0xAE,
        &[uint(0xD7, 1), uint(0x73C5, 1), uint(0x83, 2), ebml(0x86, b"A_OPUS"), ebml(0x63A2, &opus_head), audio]
            .concat(),
    );
    let mut body = [info, ebml(0x1654_AE6B, &track)].concat();
    for (second, packets) in opus_frames(hz, seconds)?.chunks(50).enumerate() {
        let mut cluster = uint(0xE7, second as u64 * 1000);
        for (i, packet) in packets.iter().enumerate() {
            // Track 1, timestamp relative to the cluster, keyframe flag, the packet.
            let block = [&[0x81], &((i * 20) as i16).to_be_bytes()[..], &[0x80], packet].concat();
            cluster.extend(ebml(0xA3, &block));
        }
        body.extend(ebml(0x1F43_B675, &cluster));
    }
    Ok([header, ebml(0x1853_8067, &body)].concat())
}

/// One EBML element, its size in the shortest varint, as muxers write it (some demuxers,
/// prism-media's among them, read nothing else).
fn ebml(id: u32, body: &[u8]) -> Vec<u8> {
    let id = id.to_be_bytes();
    let first = id.iter().position(|b| *b != 0).unwrap_or(3);
    [&id[first..], &vint(body.len() as u64), body].concat()
}

/// An EBML varint: `n` bytes carry 7·n bits, the length marked by the first byte's leading
/// zeros; all ones is reserved (unknown size).
fn vint(v: u64) -> Vec<u8> {
    let n = (1..=8u32).find(|n| v < (1 << (7 * n)) - 1).expect("an EBML element under 2^56 bytes");
    let marked = v | (1 << (7 * n));
    marked.to_be_bytes()[8 - n as usize..].to_vec()
}

/// An unsigned integer element in as few bytes as hold it.
fn uint(id: u32, v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    ebml(id, &bytes[first..])
}

fn float(id: u32, v: f64) -> Vec<u8> {
    ebml(id, &v.to_be_bytes())
}

/// Serves the tones on 127.0.0.1 (or the address given to `start_on`); stops on drop.
pub struct ToneServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    /// The words of each search asked for, in order.
    searches: Arc<Mutex<Vec<String>>>,
}

impl Drop for ToneServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The one range of a `Range: bytes=…` header over `len` bytes, inclusive, as RFC 9110
/// reads it (`first-`, `first-last`, `-suffix`); `None` when it is not satisfiable. Ranges
/// of several parts are answered with the first.
fn byte_range(header: &str, len: usize) -> Option<(usize, usize)> {
    let spec = header.trim().strip_prefix("bytes=")?.split(',').next()?.trim();
    let (first, last) = spec.split_once('-')?;
    let end = len.checked_sub(1)?;
    let (first, last) = match (first.trim(), last.trim()) {
        ("", suffix) => (len.saturating_sub(suffix.parse().ok()?), end),
        (first, "") => (first.parse().ok()?, end),
        (first, last) => (first.parse().ok()?, last.parse::<usize>().ok()?.min(end)),
    };
    (first <= last && first <= end).then_some((first, last))
}

fn parse(file: &str) -> f64 {
    file.split('.').next().and_then(|s| s.parse().ok()).unwrap_or(1.0)
}

impl ToneServer {
    pub async fn start() -> Result<Self> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// Binds `ip`, and every URL it hands out names it: pods of a test cluster reach the
    /// host on its bridge address only.
    pub async fn start_on(ip: IpAddr) -> Result<Self> {
        if ip.is_unspecified() {
            anyhow::bail!("the tone server's URLs name its address, so it must bind one a client can dial, not {ip}");
        }
        // Each file is made once: a benchmark asks for the same tone in many guilds, and
        // encoding two minutes of Opus per request would load the machine it measures.
        type Files = Arc<Mutex<HashMap<String, axum::body::Bytes>>>;
        // Stalling files already answered once.
        type Stalled = Arc<Mutex<std::collections::HashSet<String>>>;
        async fn file(
            State((files, stalled)): State<(Files, Stalled)>,
            Path((kind, hz, file)): Path<(String, u32, String)>,
            method: axum::http::Method,
            headers: HeaderMap,
        ) -> Response {
            let key = format!("{kind}/{hz}/{file}");
            let cached = files.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
            let bytes = match cached {
                Some(bytes) => bytes,
                None => {
                    let (hz, seconds) = (f64::from(hz), parse(&file));
                    let made = match kind.as_str() {
                        "tone" | "page" | "stall" | "stall-always" => Ok(wav(hz, seconds)),
                        "ramp" => Ok(ramp(hz, seconds)),
                        "dca" => dca(hz, seconds),
                        "webm" => webm(hz, seconds),
                        _ => return StatusCode::NOT_FOUND.into_response(),
                    };
                    match made {
                        Ok(bytes) => {
                            let bytes = axum::body::Bytes::from(bytes);
                            files.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), bytes.clone());
                            bytes
                        }
                        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
                    }
                }
            };
            let accept = (header::ACCEPT_RANGES, "bytes");
            let [ctype] = content_type(&kind);
            // A HEAD (a bot checking the link) is not the answer that stalls.
            let first =
                method == axum::http::Method::GET && stalled.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
            if method == axum::http::Method::GET && (kind == "stall-always" || (kind == "stall" && first)) {
                // 44 header bytes, then 4 bytes a frame at 48 kHz.
                let cut = (44 + STALL_AFTER_SECONDS * RATE as usize * 4).min(bytes.len());
                let head = bytes.slice(..cut);
                let held = futures::stream::once(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    Err::<axum::body::Bytes, _>(std::io::Error::other("the stalled answer ends"))
                });
                let body = futures::StreamExt::chain(futures::stream::once(async { Ok(head) }), held);
                let len = (header::CONTENT_LENGTH, bytes.len().to_string());
                return ([ctype, accept], [len], axum::body::Body::from_stream(body)).into_response();
            }
            match headers.get(header::RANGE).and_then(|r| r.to_str().ok()).map(|r| byte_range(r, bytes.len())) {
                None => ([ctype, accept], bytes).into_response(),
                Some(Some((first, last))) => {
                    let range = format!("bytes {first}-{last}/{}", bytes.len());
                    let part = bytes.slice(first..=last);
                    (StatusCode::PARTIAL_CONTENT, [ctype, accept], [(header::CONTENT_RANGE, range)], part)
                        .into_response()
                }
                Some(None) => {
                    let range = format!("bytes */{}", bytes.len());
                    (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, range)]).into_response()
                }
            }
        }
        fn content_type(kind: &str) -> [(header::HeaderName, &'static str); 1] {
            let t = match kind {
                "dca" => "application/octet-stream",
                "webm" => "audio/webm",
                _ => "audio/wav",
            };
            [(header::CONTENT_TYPE, t)]
        }
        // A page of `count` tones from `hz` up (10 Hz apart), as yt-dlp lists a playlist.
        async fn playlist(Path((hz, count)): Path<(u32, u32)>) -> Response {
            let tracks = (0..count.min(500)).map(|i| (hz + 10 * i, 30));
            html("Tone playlist", tracks)
        }
        // A search results page: five tones whatever the words, 440 Hz first.
        async fn search(
            State(searches): State<Arc<Mutex<Vec<String>>>>,
            axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
        ) -> Response {
            let words = q.get("q").cloned().unwrap_or_default();
            searches.lock().unwrap_or_else(|e| e.into_inner()).push(words);
            html("Tone search", [440, 550, 660, 770, 880].map(|hz| (hz, 30)))
        }
        // A music service's track page, as Spotify's carries its metadata.
        async fn track(Path(id): Path<String>) -> Response {
            let page = format!(
                "<!DOCTYPE html><html><head><title>Tone Song {id} | Spotify</title>\
                 <meta property=\"og:title\" content=\"Tone Song {id}\">\
                 <meta name=\"music:musician_description\" content=\"Tone Artist\"></head><body></body></html>"
            );
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
        }
        fn html(title: &str, tracks: impl IntoIterator<Item = (u32, u32)>) -> Response {
            let audio: String =
                tracks.into_iter().map(|(hz, s)| format!("<audio src=\"/tone/{hz}/{s}.wav\"></audio>\n")).collect();
            let page = format!("<!DOCTYPE html><html><head><title>{title}</title></head><body>\n{audio}</body></html>");
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
        }
        let searches: Arc<Mutex<Vec<String>>> = Arc::default();
        let pages = axum::Router::new()
            .route("/search", get(search))
            .route("/track/{id}", get(track))
            // Spotify's links with a locale: /intl-th/track/<id>.
            .route("/{locale}/track/{id}", get(|Path((_, id)): Path<(String, String)>| track(Path(id))))
            .with_state(searches.clone());
        let app = axum::Router::new()
            .route("/playlist/{hz}/{count}", get(playlist))
            .route("/{kind}/{hz}/{file}", get(file))
            .route(
                "/broken/{file}",
                get(|| async { ([(header::CONTENT_TYPE, "audio/mpeg")], "not audio at all ".repeat(512)) }),
            )
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state((Files::default(), Stalled::default()))
            .merge(pages);
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task, searches })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn wav(&self, hz: u32, seconds: u32) -> String {
        format!("http://{}/tone/{hz}/{seconds}.wav", self.addr)
    }

    pub fn dca(&self, hz: u32, seconds: u32) -> String {
        format!("http://{}/dca/{hz}/{seconds}.dca", self.addr)
    }

    pub fn webm(&self, hz: u32, seconds: u32) -> String {
        format!("http://{}/webm/{hz}/{seconds}.webm", self.addr)
    }

    /// A ramp: its pitch tells the second of it that plays (see [`ramp_second`]).
    pub fn ramp(&self, hz: u32, seconds: u32) -> String {
        format!("http://{}/ramp/{hz}/{seconds}.wav", self.addr)
    }

    /// A WAV whose first answer stops after [`STALL_AFTER_SECONDS`]; `always`: every one.
    pub fn stalling(&self, hz: u32, seconds: u32, always: bool) -> String {
        let kind = if always { "stall-always" } else { "stall" };
        format!("http://{}/{kind}/{hz}/{seconds}.wav", self.addr)
    }

    pub fn page(&self, hz: u32, seconds: u32) -> String {
        format!("http://{}/page/{hz}/{seconds}", self.addr)
    }

    /// The words of each search asked of [`Self::search_site`], in order.
    pub fn searches(&self) -> Vec<String> {
        self.searches.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Where bot-runner's `--link-page-bases` sends Spotify pages: `/track/<id>` names
    /// "Tone Song <id>" by "Tone Artist".
    pub fn service_pages(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A page yt-dlp lists as a playlist of `count` 30 s tones: `hz`, `hz` + 10, ….
    pub fn playlist(&self, hz: u32, count: u32) -> String {
        format!("http://{}/playlist/{hz}/{count}", self.addr)
    }

    /// A search site for bot-runner's `--search`: five 30 s tones, 440, 550, 660, 770 and
    /// 880 Hz, whatever the words.
    pub fn search_site(&self) -> String {
        format!("http://{}/search?q={{query}}", self.addr)
    }

    pub fn broken(&self) -> String {
        format!("http://{}/broken/noise.mp3", self.addr)
    }

    pub fn missing(&self) -> String {
        format!("http://{}/missing.mp3", self.addr)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_ranges_are_read_as_rfc_9110_says() {
        use super::byte_range;
        assert_eq!(byte_range("bytes=0-", 10), Some((0, 9)));
        assert_eq!(byte_range("bytes=4-6", 10), Some((4, 6)));
        assert_eq!(byte_range("bytes=4-60", 10), Some((4, 9)), "a last byte past the end is the end");
        assert_eq!(byte_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(byte_range("bytes=10-", 10), None, "past the end");
        assert_eq!(byte_range("bytes=6-4", 10), None);
        assert_eq!(byte_range("lines=1-2", 10), None);
        assert_eq!(byte_range("bytes=0-", 0), None);
    }

    #[test]
    fn a_ramp_climbs_a_step_each_second() {
        let bytes = super::ramp(300.0, 3.0);
        let pcm: Vec<f32> =
            bytes[44..].chunks_exact(4).map(|f| f32::from(i16::from_le_bytes([f[0], f[1]])) / 32768.0).collect();
        for second in 0..3 {
            let part = &pcm[second * 48_000..(second + 1) * 48_000];
            let hz = crate::audio::dominant_frequency(part, 48_000).unwrap();
            assert!((super::ramp_second(300.0, hz) - second as f64).abs() < 0.1, "second {second}: {hz} Hz");
        }
    }

    #[test]
    fn ebml_sizes_and_integers_take_the_shortest_form() {
        assert_eq!(super::vint(0), [0x80]);
        assert_eq!(super::vint(126), [0xFE]);
        assert_eq!(super::vint(127), [0x40, 0x7F], "0xFF would mean an unknown size");
        assert_eq!(super::uint(0xD7, 1), [0xD7, 0x81, 0x01]);
        assert_eq!(super::uint(0xE7, 0), [0xE7, 0x81, 0x00]);
        assert_eq!(super::uint(0x2A_D7B1, 1_000_000), [0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40]);
        // The EBML header: six small integers and the doctype, 31 bytes.
        assert_eq!(super::webm(440.0, 1.0).unwrap()[..5], [0x1A, 0x45, 0xDF, 0xA3, 0x9F]);
    }

    #[test]
    fn dca_frames_decode_to_the_tone() {
        let bytes = super::dca(440.0, 1.0).unwrap();
        assert_eq!(&bytes[..4], b"DCA1");
        let meta_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let mut pos = 8 + meta_len;
        let mut dec = opus2::Decoder::new(48_000, opus2::Channels::Stereo).unwrap();
        let mut mono = Vec::new();
        let mut pcm = [0i16; 960 * 2];
        while pos < bytes.len() {
            let n = u16::from_le_bytes([bytes[pos], bytes[pos + 1]]) as usize;
            let got = dec.decode(&bytes[pos + 2..pos + 2 + n], &mut pcm, false).unwrap();
            mono.extend(pcm[..got * 2].chunks(2).map(|c| f32::from(c[0]) / 32768.0));
            pos += 2 + n;
        }
        assert_eq!(mono.len(), 48_000);
        let hz = crate::audio::dominant_frequency(&mono, 48_000).unwrap();
        assert!((hz - 440.0).abs() < 5.0, "{hz}");
    }
}
