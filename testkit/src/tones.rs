//! Test tones, and an HTTP server for them: what a bot under test plays, so the simulator
//! can check it heard the right pitch.
//!
//! - `/tone/{hz}/{seconds}.wav`: 16-bit stereo PCM at 48 kHz (re-encoded to Opus by songbird);
//! - `/dca/{hz}/{seconds}.dca`: the same tone already in Opus (DCA1 framing), which songbird
//!   passes through without decoding;
//! - `/page/{hz}/{seconds}`: the WAV without an extension, for yt-dlp's generic extractor;
//! - `/broken/noise.mp3`: 200 with bytes no decoder accepts; anything else: 404.

use std::net::SocketAddr;

use anyhow::Result;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use opus2::{Application, Channels, Encoder};

const RATE: u32 = 48_000;
const AMPLITUDE: f64 = 0.4;

fn sample(hz: f64, i: u32) -> i16 {
    (AMPLITUDE * (2.0 * std::f64::consts::PI * hz * f64::from(i) / f64::from(RATE)).sin() * f64::from(i16::MAX)) as i16
}

/// 16-bit stereo PCM WAV at 48 kHz, amplitude 0.4.
pub fn wav(hz: f64, seconds: f64) -> Vec<u8> {
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
        let s = sample(hz, i).to_le_bytes();
        w.extend_from_slice(&s);
        w.extend_from_slice(&s);
    }
    w
}

/// The tone as 20 ms stereo Opus frames in DCA1 framing (magic, JSON metadata, then each
/// frame as a little-endian u16 length and the packet), which songbird reads natively.
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
    let mut enc = Encoder::new(RATE, Channels::Stereo, Application::Audio)?;
    let mut packet = [0u8; 4000];
    let frames = (seconds * 50.0) as u32;
    let mut pcm = Vec::with_capacity(960 * 2);
    for f in 0..frames {
        pcm.clear();
        for i in f * 960..(f + 1) * 960 {
            let s = sample(hz, i);
            pcm.extend_from_slice(&[s, s]);
        }
        let n = enc.encode(&pcm, &mut packet)?;
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend_from_slice(&packet[..n]);
    }
    Ok(out)
}

/// Serves the tones on 127.0.0.1; stops on drop.
pub struct ToneServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ToneServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn parse(file: &str) -> f64 {
    file.split('.').next().and_then(|s| s.parse().ok()).unwrap_or(1.0)
}

impl ToneServer {
    pub async fn start() -> Result<Self> {
        async fn tone(Path((hz, file)): Path<(u32, String)>) -> impl IntoResponse {
            ([(header::CONTENT_TYPE, "audio/wav")], wav(f64::from(hz), parse(&file)))
        }
        async fn opus(Path((hz, file)): Path<(u32, String)>) -> axum::response::Response {
            match dca(f64::from(hz), parse(&file)) {
                Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
        let app = axum::Router::new()
            .route("/tone/{hz}/{file}", get(tone))
            .route("/page/{hz}/{file}", get(tone))
            .route("/dca/{hz}/{file}", get(opus))
            .route(
                "/broken/{file}",
                get(|| async { ([(header::CONTENT_TYPE, "audio/mpeg")], "not audio at all ".repeat(512)) }),
            )
            .fallback(|| async { StatusCode::NOT_FOUND });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    pub fn wav(&self, hz: u32, seconds: u32) -> String {
        format!("http://{}/tone/{hz}/{seconds}.wav", self.addr)
    }

    pub fn dca(&self, hz: u32, seconds: u32) -> String {
        format!("http://{}/dca/{hz}/{seconds}.dca", self.addr)
    }

    pub fn page(&self, hz: u32, seconds: u32) -> String {
        format!("http://{}/page/{hz}/{seconds}", self.addr)
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
        let hz = crate::discord::audio::dominant_frequency(&mono, 48_000).unwrap();
        assert!((hz - 440.0).abs() < 5.0, "{hz}");
    }
}
