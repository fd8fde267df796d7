//! The audio a bot sent: decoded Opus, kept per (guild, bot) so tests can measure it.

use std::collections::VecDeque;
use std::time::Instant;

use opus2::{Channels, Decoder};
use realfft::RealFftPlanner;

pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 960;
/// A frame whose RMS is below this (about -60 dBFS) counts as silence.
const SILENCE_RMS: f32 = 1e-3;
/// Silence (or missing frames) this long between two audible frames counts as a gap:
/// three frames, so one late or lost packet does not, but a stall a listener hears does.
pub const GAP_FRAMES: u64 = 3;
/// Audible audio kept for analysis (the most recent); counters cover everything.
const KEEP_SECONDS: usize = 60;
/// Opus payloads kept as they came (the most recent 10 s), to tell passthrough from re-encoding.
const KEEP_PAYLOADS: usize = 500;

/// Measurements of one stream, as `DiscordSim::audio` returns them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AudioStats {
    /// RTP packets decrypted and decoded.
    pub packets: u64,
    /// Seconds of audio decoded (silence frames included).
    pub seconds: f64,
    /// Seconds of audible (non-silent) audio.
    pub audible_seconds: f64,
    /// Strongest frequency in the kept audible audio, Hz (None without audible audio).
    pub dominant_hz: Option<f64>,
    /// Interruptions of at least `GAP_FRAMES` frames (silence or missing packets) between
    /// audible frames.
    pub gaps: u32,
    /// Frames missing according to RTP timestamps (songbird advances them while idle too, so
    /// pauses between tracks count here).
    pub missing_frames: u64,
    /// RMS of the kept audible audio, 0..1 full scale.
    pub rms: f64,
    pub decrypt_failures: u64,
    pub decode_failures: u64,
    /// Seconds between the first and the last audible frame's arrival.
    pub span_seconds: f64,
    /// RTP streams the audio came in: one per voice connection (a reconnect or move adds one).
    pub streams: u32,
    /// Every silence between audible frames, in seconds, oldest first (the first
    /// `KEEP_PAUSES`): silent frames, frames missing by RTP timestamp, and the time between
    /// streams. What a listener hears between two tracks, or while a bot comes back.
    pub pauses: Vec<f64>,
}

/// Pauses kept in [`AudioStats::pauses`].
const KEEP_PAUSES: usize = 1000;

pub(crate) struct AudioTrack {
    decoder: Decoder,
    pcm: Vec<i16>,
    /// Mono, audible frames only, newest last.
    kept: VecDeque<f32>,
    payloads: VecDeque<Vec<u8>>,
    stats: AudioStats,
    ssrc: Option<u32>,
    last_ts: Option<u32>,
    last_arrival: Option<Instant>,
    silent_frames_since_audible: u64,
    heard_audible: bool,
    first_audible: Option<Instant>,
    last_audible: Option<Instant>,
}

impl AudioTrack {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            decoder: Decoder::new(SAMPLE_RATE, Channels::Stereo)?,
            pcm: vec![0; FRAME_SAMPLES * 2 * 6],
            kept: VecDeque::new(),
            payloads: VecDeque::new(),
            stats: AudioStats::default(),
            ssrc: None,
            last_ts: None,
            last_arrival: None,
            silent_frames_since_audible: 0,
            heard_audible: false,
            first_audible: None,
            last_audible: None,
        })
    }

    pub fn decrypt_failed(&mut self) {
        self.stats.decrypt_failures += 1;
    }

    /// The next packet starts a new RTP stream (a new voice connection), whatever its SSRC.
    pub fn new_stream(&mut self) {
        self.last_ts = None;
    }

    /// Feeds one Opus frame with its RTP header fields.
    pub fn push(&mut self, ssrc: u32, rtp_timestamp: u32, opus: &[u8]) {
        let now = Instant::now();
        match self.last_ts {
            Some(last) if self.ssrc == Some(ssrc) => {
                let delta = rtp_timestamp.wrapping_sub(last);
                // A timestamp behind the last one is a reordered or repeated packet: no time passed.
                if delta < u32::MAX / 2 {
                    let missing = (delta as u64 / FRAME_SAMPLES as u64).saturating_sub(1);
                    self.stats.missing_frames += missing;
                    self.silent_frames_since_audible += missing;
                }
            }
            _ => {
                self.stats.streams += 1;
                // A new stream's timestamps start anywhere: the clock measures the silence
                // between streams.
                if let Some(prev) = self.last_arrival {
                    let frames = (now.duration_since(prev).as_millis() / 20) as u64;
                    self.silent_frames_since_audible += frames.saturating_sub(1);
                }
            }
        }
        self.ssrc = Some(ssrc);
        self.last_ts = Some(rtp_timestamp);
        self.last_arrival = Some(now);
        if self.payloads.len() == KEEP_PAYLOADS {
            self.payloads.pop_front();
        }
        self.payloads.push_back(opus.to_vec());

        let per_channel = match self.decoder.decode(opus, &mut self.pcm, false) {
            Ok(n) => n,
            Err(_) => {
                self.stats.decode_failures += 1;
                return;
            }
        };
        self.stats.packets += 1;
        self.stats.seconds += per_channel as f64 / SAMPLE_RATE as f64;

        let mono: Vec<f32> = self.pcm[..per_channel * 2]
            .chunks_exact(2)
            .map(|lr| (lr[0] as f32 + lr[1] as f32) / (2.0 * 32768.0))
            .collect();
        let rms = (mono.iter().map(|s| s * s).sum::<f32>() / mono.len().max(1) as f32).sqrt();
        if rms < SILENCE_RMS {
            self.silent_frames_since_audible += (per_channel / FRAME_SAMPLES).max(1) as u64;
            return;
        }
        if self.heard_audible && self.silent_frames_since_audible >= GAP_FRAMES {
            self.stats.gaps += 1;
        }
        if self.heard_audible && self.silent_frames_since_audible > 0 && self.stats.pauses.len() < KEEP_PAUSES {
            let frame = FRAME_SAMPLES as f64 / f64::from(SAMPLE_RATE);
            self.stats.pauses.push(self.silent_frames_since_audible as f64 * frame);
        }
        self.heard_audible = true;
        self.silent_frames_since_audible = 0;
        self.stats.audible_seconds += per_channel as f64 / SAMPLE_RATE as f64;
        let now = Instant::now();
        self.first_audible.get_or_insert(now);
        self.last_audible = Some(now);
        self.kept.extend(mono);
        let cap = KEEP_SECONDS * SAMPLE_RATE as usize;
        if self.kept.len() > cap {
            self.kept.drain(..self.kept.len() - cap);
        }
    }

    pub fn stats(&self) -> AudioStats {
        let mut s = self.stats.clone();
        let kept: Vec<f32> = self.kept.iter().copied().collect();
        s.dominant_hz = dominant_frequency(&kept, SAMPLE_RATE);
        s.rms = if kept.is_empty() {
            0.0
        } else {
            (kept.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / kept.len() as f64).sqrt()
        };
        if let (Some(a), Some(b)) = (self.first_audible, self.last_audible) {
            s.span_seconds = b.duration_since(a).as_secs_f64();
        }
        s
    }

    /// The Opus payloads received, oldest first (at most the last `KEEP_PAYLOADS`).
    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.payloads.iter().cloned().collect()
    }

    pub fn packets(&self) -> u64 {
        self.stats.packets
    }

    pub fn audible_seconds(&self) -> f64 {
        self.stats.audible_seconds
    }

    /// Audible mono samples kept (at most the last minute), -1..1.
    pub fn samples(&self) -> Vec<f32> {
        self.kept.iter().copied().collect()
    }
}

/// Strongest frequency between 20 Hz and 20 kHz: Hann window, real FFT over (at most) the
/// last 10 s, and a parabola through the peak bin and its neighbours for sub-bin accuracy.
pub fn dominant_frequency(samples: &[f32], sample_rate: u32) -> Option<f64> {
    let n = samples.len().min(10 * sample_rate as usize);
    if n < 1024 {
        return None;
    }
    let samples = &samples[samples.len() - n..];
    let mut input: Vec<f32> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| s * (0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / (n - 1) as f32).cos()))
        .collect();
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
    let mut spectrum = fft.make_output_vec();
    fft.process(&mut input, &mut spectrum).ok()?;
    let bin_hz = sample_rate as f64 / n as f64;
    let lo = ((20.0 / bin_hz).ceil() as usize).max(1);
    let hi = ((20_000.0 / bin_hz) as usize).min(spectrum.len() - 2);
    let mag = |i: usize| spectrum[i].norm() as f64;
    let peak = (lo..=hi).max_by(|a, b| mag(*a).total_cmp(&mag(*b)))?;
    if mag(peak) <= f64::EPSILON {
        return None;
    }
    let (a, b, c) = (mag(peak - 1).ln(), mag(peak).ln(), mag(peak + 1).ln());
    let denom = a - 2.0 * b + c;
    let offset = if denom.abs() > f64::EPSILON { (0.5 * (a - c) / denom).clamp(-0.5, 0.5) } else { 0.0 };
    Some((peak as f64 + offset) * bin_hz)
}

/// Where a ramp (see [`crate::tones::ramp`]) was when its audio stopped and where it was
/// when it came back: the second of the ramp sounding in the half second of audible audio
/// before and after the point `cut` audible seconds in. `samples` are the kept audible
/// samples and `audible` the audible seconds counted when they were read.
pub fn ramp_around(samples: &[f32], audible: f64, cut: f64, start_hz: f64) -> Option<(f64, f64)> {
    let half = SAMPLE_RATE as usize / 2;
    let after_cut = ((audible - cut) * f64::from(SAMPLE_RATE)) as usize;
    let at = samples.len().checked_sub(after_cut)?;
    let before = samples.get(at.checked_sub(half)?..at)?;
    let after = samples.get(at..at + half)?;
    let second = |s: &[f32]| Some(crate::tones::ramp_second(start_hz, dominant_frequency(s, SAMPLE_RATE)?));
    Some((second(before)?, second(after)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, seconds: f64) -> Vec<f32> {
        (0..(seconds * SAMPLE_RATE as f64) as usize)
            .map(|i| (0.5 * (2.0 * std::f64::consts::PI * hz * i as f64 / SAMPLE_RATE as f64).sin()) as f32)
            .collect()
    }

    #[test]
    fn finds_the_frequency_of_a_tone() {
        for hz in [110.0, 440.0, 1234.5, 5000.0] {
            let found = dominant_frequency(&tone(hz, 1.0), SAMPLE_RATE).unwrap();
            assert!((found - hz).abs() < 0.5, "{hz} Hz measured as {found}");
        }
    }

    #[test]
    fn silence_has_no_frequency() {
        assert_eq!(dominant_frequency(&vec![0.0; 48_000], SAMPLE_RATE), None);
        assert_eq!(dominant_frequency(&[0.1; 100], SAMPLE_RATE), None);
    }

    #[test]
    fn counts_seconds_and_gaps_of_opus_frames() {
        let mut enc = opus2::Encoder::new(SAMPLE_RATE, Channels::Stereo, opus2::Application::Audio).unwrap();
        let mono = tone(440.0, 2.0);
        let mut track = AudioTrack::new().unwrap();
        let mut ts = 1000u32;
        for (i, frame) in mono.chunks_exact(FRAME_SAMPLES).enumerate() {
            let stereo: Vec<f32> = frame.iter().flat_map(|s| [*s, *s]).collect();
            let packet = enc.encode_vec_float(&stereo, 4000).unwrap();
            // Frames 40..45 never arrive: a 100 ms hole in the middle of the tone.
            if !(40..45).contains(&i) {
                track.push(7, ts, &packet);
            }
            ts = ts.wrapping_add(FRAME_SAMPLES as u32);
        }
        let stats = track.stats();
        assert_eq!(stats.packets, 95);
        assert_eq!(stats.missing_frames, 5);
        assert_eq!((stats.gaps, stats.streams), (1, 1));
        assert!((stats.seconds - 1.9).abs() < 1e-9, "{stats:?}");
        assert!((stats.dominant_hz.unwrap() - 440.0).abs() < 2.0, "{stats:?}");
    }
}
