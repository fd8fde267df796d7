//! Discord's transport encryption for voice RTP ("rtpsize" AEAD modes).
//!
//! Layout: RTP header (+ 4-byte extension preamble when X is set) | ciphertext | 16-byte tag |
//! 4-byte big-endian counter. The counter fills the first 4 bytes of the nonce; the header up
//! to and including the extension preamble is the additional data. The extension body is
//! encrypted, so it is skipped after decryption.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use discortp::rtp::{RtpPacket, RtpType};

pub const AES256_GCM_RTPSIZE: &str = "aead_aes256_gcm_rtpsize";
pub const XCHACHA20_POLY1305_RTPSIZE: &str = "aead_xchacha20_poly1305_rtpsize";
/// Modes the simulator offers in READY, most preferred first (as Discord lists them).
pub const MODES: [&str; 2] = [AES256_GCM_RTPSIZE, XCHACHA20_POLY1305_RTPSIZE];
/// RTP payload type Discord uses for Opus.
pub const OPUS_PAYLOAD_TYPE: u8 = 0x78;

const TAG_LEN: usize = 16;
const COUNTER_LEN: usize = 4;

#[derive(Clone)]
pub enum VoiceCipher {
    Aes(Box<Aes256Gcm>),
    XChaCha(XChaCha20Poly1305),
}

impl VoiceCipher {
    pub fn new(mode: &str, key: &[u8; 32]) -> Option<Self> {
        match mode {
            AES256_GCM_RTPSIZE => Some(Self::Aes(Box::new(Aes256Gcm::new(key.into())))),
            XCHACHA20_POLY1305_RTPSIZE => Some(Self::XChaCha(XChaCha20Poly1305::new(key.into()))),
            _ => None,
        }
    }
}

/// A decrypted voice packet.
#[derive(Debug, PartialEq, Eq)]
pub struct VoiceFrame {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    pub opus: Vec<u8>,
}

/// SSRC of an RTP packet carrying Opus, without decrypting it.
pub fn opus_ssrc(packet: &[u8]) -> Option<u32> {
    let rtp = RtpPacket::new(packet)?;
    (rtp.get_version() == 2 && rtp.get_payload_type() == RtpType::Dynamic(OPUS_PAYLOAD_TYPE)).then(|| rtp.get_ssrc())
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecryptError {
    NotRtp,
    TooShort,
    Authentication,
}

pub fn decrypt(cipher: &VoiceCipher, packet: &[u8]) -> Result<VoiceFrame, DecryptError> {
    let rtp = RtpPacket::new(packet).ok_or(DecryptError::NotRtp)?;
    let csrc_len = 4 * rtp.get_csrc_count() as usize;
    let has_extension = rtp.get_extension() != 0;
    // The header part in clear: fixed header, CSRCs, and the extension preamble if any.
    let aad_len = 12 + csrc_len + if has_extension { 4 } else { 0 };
    if packet.len() < aad_len + TAG_LEN + COUNTER_LEN {
        return Err(DecryptError::TooShort);
    }
    let (aad, rest) = packet.split_at(aad_len);
    let (sealed, counter) = rest.split_at(rest.len() - COUNTER_LEN);
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let mut plain = ciphertext.to_vec();
    let ok = match cipher {
        VoiceCipher::Aes(c) => {
            let mut nonce = Nonce::default();
            nonce[..COUNTER_LEN].copy_from_slice(counter);
            c.decrypt_in_place_detached(&nonce, aad, &mut plain, tag.into())
        }
        VoiceCipher::XChaCha(c) => {
            let mut nonce = XNonce::default();
            nonce[..COUNTER_LEN].copy_from_slice(counter);
            c.decrypt_in_place_detached(&nonce, aad, &mut plain, tag.into())
        }
    };
    ok.map_err(|_| DecryptError::Authentication)?;
    if has_extension {
        // Preamble: 2 bytes profile, 2 bytes length in 32-bit words.
        let words = u16::from_be_bytes([aad[aad_len - 2], aad[aad_len - 1]]) as usize;
        plain.drain(..(4 * words).min(plain.len()));
    }
    Ok(VoiceFrame {
        ssrc: rtp.get_ssrc(),
        sequence: rtp.get_sequence().0.0,
        timestamp: rtp.get_timestamp().0.0,
        opus: plain,
    })
}

/// Seals a packet the way songbird does: the header in clear as additional data, then the
/// ciphertext, the tag and the counter. RTCP is sealed the same way, with its 8-byte header.
pub fn seal(cipher: &VoiceCipher, header: &[u8], body: &[u8], counter: u32) -> Vec<u8> {
    let mut buf = body.to_vec();
    let tag = match cipher {
        VoiceCipher::Aes(c) => {
            let mut nonce = Nonce::default();
            nonce[..4].copy_from_slice(&counter.to_be_bytes());
            c.encrypt_in_place_detached(&nonce, header, &mut buf)
                .expect("a buffer of any length can be sealed")
                .to_vec()
        }
        VoiceCipher::XChaCha(c) => {
            let mut nonce = XNonce::default();
            nonce[..4].copy_from_slice(&counter.to_be_bytes());
            c.encrypt_in_place_detached(&nonce, header, &mut buf)
                .expect("a buffer of any length can be sealed")
                .to_vec()
        }
    };
    [header, &buf, &tag, &counter.to_be_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(extension: bool) -> Vec<u8> {
        let mut h = vec![
            0x80 | if extension { 0x10 } else { 0 },
            OPUS_PAYLOAD_TYPE,
            0x01,
            0x02,
            0,
            0,
            0x03,
            0xC0,
            0,
            0,
            0x30,
            0x39,
        ];
        if extension {
            h.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01]);
        }
        h
    }

    #[test]
    fn opens_both_modes_with_and_without_extension() {
        let key = [7u8; 32];
        for mode in MODES {
            let cipher = VoiceCipher::new(mode, &key).unwrap();
            for extension in [false, true] {
                let body: Vec<u8> =
                    if extension { [&[1, 2, 3, 4][..], &[0xF8, 0xFF, 0xFE]].concat() } else { vec![0xF8, 0xFF, 0xFE] };
                let packet = seal(&cipher, &header(extension), &body, 41);
                let frame = decrypt(&cipher, &packet).unwrap();
                assert_eq!(
                    frame,
                    VoiceFrame { ssrc: 12345, sequence: 0x0102, timestamp: 0x3C0, opus: vec![0xF8, 0xFF, 0xFE] }
                );
                assert_eq!(opus_ssrc(&packet), Some(12345));
            }
        }
    }

    #[test]
    fn rejects_a_wrong_key_or_a_tampered_header() {
        let cipher = VoiceCipher::new(AES256_GCM_RTPSIZE, &[7; 32]).unwrap();
        let mut packet = seal(&cipher, &header(false), &[1, 2, 3], 1);
        let other = VoiceCipher::new(AES256_GCM_RTPSIZE, &[8; 32]).unwrap();
        assert_eq!(decrypt(&other, &packet), Err(DecryptError::Authentication));
        packet[3] ^= 1;
        assert_eq!(decrypt(&cipher, &packet), Err(DecryptError::Authentication));
        assert_eq!(decrypt(&cipher, &packet[..20]), Err(DecryptError::TooShort));
    }
}
