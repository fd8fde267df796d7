//! Tokens encrypted at rest: AES-256-GCM (ring), a fresh 96-bit nonce per value, the bot's
//! client id as associated data so a ciphertext copied onto another record does not
//! decrypt. Stored as `enc:v1:` + base64(nonce ‖ ciphertext ‖ tag); the version prefix
//! leaves room for another scheme or key later.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "enc:v1:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error("the token-encryption key must be 32 bytes, raw or base64 (found {0} bytes)")]
    BadKey(usize),
    #[error("the token is encrypted but no token-encryption key is configured")]
    NoKey,
    #[error("the token does not decrypt with this key (wrong key, or copied from another bot)")]
    Undecryptable,
    #[error("the token is encrypted with an unknown scheme {0:?}")]
    UnknownScheme(String),
}

/// What a stored value turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    Encrypted,
    /// A plaintext token from a database that predates encryption: it works, with a warning.
    Plaintext,
}

pub struct TokenCipher {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher(<key>)")
    }
}

impl TokenCipher {
    /// A key as kept in a Kubernetes Secret: 32 raw bytes, or their base64 (whitespace ignored).
    pub fn from_key_material(material: &[u8]) -> Result<Self, CipherError> {
        let trimmed: Vec<u8> = material.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        let key = match STANDARD.decode(&trimmed) {
            Ok(k) if k.len() == 32 => k,
            _ if material.len() == 32 => material.to_vec(),
            Ok(k) => return Err(CipherError::BadKey(k.len())),
            Err(_) => return Err(CipherError::BadKey(material.len())),
        };
        let key = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| CipherError::BadKey(key.len()))?;
        Ok(Self { key: LessSafeKey::new(key), rng: SystemRandom::new() })
    }

    /// A new random key, base64-encoded, for `bots keygen`-style set-up.
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).expect("the system random source works");
        STANDARD.encode(key)
    }

    pub fn encrypt(&self, client_id: &str, token: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("the system random source works");
        let mut data = token.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(client_id.as_bytes()), &mut data)
            .expect("AES-GCM sealing cannot fail for tokens of sane length");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    pub fn decrypt(&self, client_id: &str, stored: &str) -> Result<String, CipherError> {
        let body = stored.strip_prefix(PREFIX).ok_or_else(|| scheme_of(stored))?;
        let raw = STANDARD.decode(body).map_err(|_| CipherError::Undecryptable)?;
        if raw.len() < NONCE_LEN {
            return Err(CipherError::Undecryptable);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CipherError::Undecryptable)?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(client_id.as_bytes()), &mut sealed)
            .map_err(|_| CipherError::Undecryptable)?;
        String::from_utf8(plain.to_vec()).map_err(|_| CipherError::Undecryptable)
    }
}

/// Names the scheme only when it looks like one (`v` and a few digits): what follows `enc:`
/// may be the token itself (`enc:` put before a plaintext token), which an error, and so a
/// log line, Event or `bots list`, must never quote.
fn scheme_of(stored: &str) -> CipherError {
    let version = stored.strip_prefix("enc:").and_then(|rest| rest.split(':').next()).unwrap_or("");
    let looks_like_one = version.len() <= 4
        && version.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    CipherError::UnknownScheme(if looks_like_one { format!("enc:{version}") } else { "enc:…".into() })
}

pub fn is_encrypted(stored: &str) -> bool {
    stored.starts_with("enc:")
}

/// Reads a stored token with an optional cipher: encrypted values need the key; plaintext
/// passes through (the caller warns).
pub fn reveal(cipher: Option<&TokenCipher>, client_id: &str, stored: &str) -> Result<(String, Stored), CipherError> {
    if !is_encrypted(stored) {
        return Ok((stored.to_string(), Stored::Plaintext));
    }
    let cipher = cipher.ok_or(CipherError::NoKey)?;
    Ok((cipher.decrypt(client_id, stored)?, Stored::Encrypted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> TokenCipher {
        TokenCipher::from_key_material(TokenCipher::generate_key().as_bytes()).unwrap()
    }

    #[test]
    fn round_trip_with_a_fresh_nonce_each_time() {
        let c = cipher();
        let a = c.encrypt("123456789012345678", "MTIz.abc.def");
        let b = c.encrypt("123456789012345678", "MTIz.abc.def");
        assert!(a.starts_with(PREFIX) && !a.contains("MTIz.abc.def"));
        assert_ne!(a, b, "nonces repeat");
        assert_eq!(c.decrypt("123456789012345678", &a).unwrap(), "MTIz.abc.def");
    }

    #[test]
    fn another_key_or_another_bot_does_not_decrypt() {
        let (c, other) = (cipher(), cipher());
        let v = c.encrypt("123456789012345678", "tok");
        assert_eq!(other.decrypt("123456789012345678", &v), Err(CipherError::Undecryptable));
        assert_eq!(c.decrypt("876543210987654321", &v), Err(CipherError::Undecryptable));
        let mut tampered = v.clone();
        tampered.pop();
        tampered.push(if v.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(c.decrypt("123456789012345678", &tampered), Err(CipherError::Undecryptable));
        assert_eq!(c.decrypt("123456789012345678", "enc:v1:!!!"), Err(CipherError::Undecryptable));
        assert_eq!(c.decrypt("1", "enc:v9:abc"), Err(CipherError::UnknownScheme("enc:v9".into())));
    }

    #[test]
    fn a_value_that_does_not_decrypt_is_never_quoted() {
        let c = cipher();
        for stored in ["enc:MTIz.secret-part.xyz", "enc:secret-part", "enc:v1secret-part:x", "enc:v12345:secret-part"] {
            for e in [c.decrypt("1", stored).unwrap_err(), reveal(None, "1", stored).unwrap_err()] {
                let text = e.to_string();
                assert!(!text.contains("secret-part"), "{stored}: {text}");
            }
        }
        assert_eq!(c.decrypt("1", "enc:MTIz.secret-part.xyz"), Err(CipherError::UnknownScheme("enc:…".into())));
    }

    #[test]
    fn plaintext_passes_and_encrypted_needs_a_key() {
        assert_eq!(reveal(None, "1", "plain.tok.en").unwrap(), ("plain.tok.en".to_string(), Stored::Plaintext));
        let c = cipher();
        let v = c.encrypt("1", "tok");
        assert_eq!(reveal(None, "1", &v), Err(CipherError::NoKey));
        assert_eq!(reveal(Some(&c), "1", &v).unwrap(), ("tok".to_string(), Stored::Encrypted));
    }

    #[test]
    fn keys_raw_or_base64_of_32_bytes() {
        assert!(TokenCipher::from_key_material(&[7u8; 32]).is_ok());
        let b64 = format!("{}\n", STANDARD.encode([7u8; 32]));
        assert!(TokenCipher::from_key_material(b64.as_bytes()).is_ok());
        assert_eq!(TokenCipher::from_key_material(b"short").unwrap_err(), CipherError::BadKey(5));
        assert_eq!(
            TokenCipher::from_key_material(STANDARD.encode([1u8; 16]).as_bytes()).unwrap_err(),
            CipherError::BadKey(16)
        );
    }
}
