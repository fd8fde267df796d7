//! RTCP receiver reports (RFC 3550 §6.4.2) for the bot's audio: how far its packets got.
//! The voice server sends one a second per session while audio arrives, sealed like RTP
//! (see [`crate::rtp::seal`]), so a bot can tell a path that delivers from one that drops.

use std::time::{Duration, Instant};

use crate::rtp::{VoiceCipher, seal};

/// RTCP packet type of a receiver report.
pub const RECEIVER_REPORT: u8 = 201;
/// The simulated server's own SSRC, the report's sender.
pub const SERVER_SSRC: u32 = 1;
/// Time between two reports of one session.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The receiving side of one voice session, as its reports tell it.
#[derive(Debug, Default)]
pub struct ReceiverReports {
    /// Extended highest sequence number received: 16 bits of cycles over the RTP sequence.
    highest: Option<u32>,
    received: u32,
    last_sent: Option<Instant>,
    counter: u32,
    /// Reports sent so far.
    pub sent: u32,
}

impl ReceiverReports {
    /// Counts an RTP packet with `sequence` from the bot.
    pub fn received(&mut self, sequence: u16) {
        self.received = self.received.wrapping_add(1);
        self.highest = Some(match self.highest {
            None => u32::from(sequence),
            Some(h) => {
                let (cycles, last) = (h & 0xFFFF_0000, h as u16);
                // A sequence far below the last one wrapped around; one a little below is late.
                let wrapped = sequence < last && last - sequence > 0x8000;
                let ext = if wrapped { cycles.wrapping_add(0x1_0000) } else { cycles } | u32::from(sequence);
                ext.max(h)
            }
        });
    }

    /// The report due now for the bot's `ssrc`, sealed with the session's cipher, if one is due.
    pub fn due(&mut self, cipher: &VoiceCipher, ssrc: u32, now: Instant) -> Option<Vec<u8>> {
        let highest = self.highest?;
        if self.last_sent.is_some_and(|t| now.duration_since(t) < REPORT_EVERY) {
            return None;
        }
        self.last_sent = Some(now);
        self.counter = self.counter.wrapping_add(1);
        self.sent += 1;
        let (header, block) = receiver_report(ssrc, highest);
        Some(seal(cipher, &header, &block, self.counter))
    }
}

/// The 8-byte header (in clear) and the one report block (sealed) of a receiver report.
/// Loss, jitter and the sender-report timestamps are left at zero: the bot reads only
/// whose packets and how far.
fn receiver_report(ssrc: u32, highest: u32) -> ([u8; 8], [u8; 24]) {
    let mut header = [0u8; 8];
    header[0] = 0x80 | 1; // version 2, one report block
    header[1] = RECEIVER_REPORT;
    // Length in 32-bit words minus one: header and block, 32 bytes.
    header[2..4].copy_from_slice(&7u16.to_be_bytes());
    header[4..8].copy_from_slice(&SERVER_SSRC.to_be_bytes());
    let mut block = [0u8; 24];
    block[0..4].copy_from_slice(&ssrc.to_be_bytes());
    block[8..12].copy_from_slice(&highest.to_be_bytes());
    (header, block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_sequence_counts_wraps_and_ignores_late_packets() {
        let mut r = ReceiverReports::default();
        for s in [65_530u16, 65_535, 65_534, 2, 1, 7] {
            r.received(s);
        }
        assert_eq!(r.highest, Some(0x1_0007));
        assert_eq!(r.received, 6);
    }

    #[test]
    fn a_report_a_second_at_most_and_none_before_any_audio() {
        let cipher = VoiceCipher::new(crate::rtp::AES256_GCM_RTPSIZE, &[3; 32]).unwrap();
        let mut r = ReceiverReports::default();
        let t0 = Instant::now();
        assert!(r.due(&cipher, 9, t0).is_none(), "nothing received yet");
        r.received(40);
        let packet = r.due(&cipher, 9, t0).expect("the first report");
        assert_eq!(&packet[..2], &[0x81, RECEIVER_REPORT]);
        assert_eq!(packet.len(), 8 + 24 + 16 + 4, "header, block, tag, counter");
        assert!(r.due(&cipher, 9, t0 + Duration::from_millis(500)).is_none());
        assert!(r.due(&cipher, 9, t0 + REPORT_EVERY).is_some());
        assert_eq!(r.sent, 2);
    }
}
