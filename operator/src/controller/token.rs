//! Checking the token a MusicBot points at, without ever logging or storing it.

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;

/// Why a MusicBot's token cannot be used. The `Display` text goes into conditions and
/// Events, so it names the Secret and key but never includes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    #[error("Secret {0:?} does not exist in this namespace")]
    SecretNotFound(String),
    #[error("Secret {secret:?} has no key {key:?}")]
    KeyNotFound { secret: String, key: String },
    #[error("key {key:?} of Secret {secret:?} is empty")]
    Empty { secret: String, key: String },
    #[error("key {key:?} of Secret {secret:?} is not a Discord bot token (expected three dot-separated parts)")]
    Malformed { secret: String, key: String },
    #[error("the token in Secret {secret:?} belongs to application {token_client_id}, not to clientId {client_id}")]
    ClientIdMismatch { secret: String, client_id: String, token_client_id: String },
}

impl TokenProblem {
    /// CamelCase reason for the `TokenResolved` condition and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SecretNotFound(_) => "SecretNotFound",
            Self::KeyNotFound { .. } => "KeyNotFound",
            Self::Empty { .. } => "TokenEmpty",
            Self::Malformed { .. } => "TokenMalformed",
            Self::ClientIdMismatch { .. } => "ClientIdMismatch",
        }
    }
}

/// Checks the token in `secret` (None: the Secret does not exist) and returns a salted
/// digest of it, which changes exactly when the token does.
pub fn resolve(
    secret: Option<&Secret>,
    secret_name: &str,
    key: &str,
    client_id: &str,
    salt: &str,
) -> Result<String, TokenProblem> {
    let secret = secret.ok_or_else(|| TokenProblem::SecretNotFound(secret_name.into()))?;
    let names = || (secret_name.to_string(), key.to_string());
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(key)).map(|s| s.clone().into_bytes()))
        .ok_or_else(|| {
            let (secret, key) = names();
            TokenProblem::KeyNotFound { secret, key }
        })?;
    let token = String::from_utf8_lossy(&bytes);
    let token = token.trim();
    if token.is_empty() {
        let (secret, key) = names();
        return Err(TokenProblem::Empty { secret, key });
    }
    check_shape(token, client_id).map_err(|found| {
        let (secret, key) = names();
        match found {
            Some(token_client_id) => {
                TokenProblem::ClientIdMismatch { secret, client_id: client_id.into(), token_client_id }
            }
            None => TokenProblem::Malformed { secret, key },
        }
    })?;
    Ok(digest(token, salt))
}

/// A Discord bot token is `base64(application id).timestamp.hmac`. Err(None): not that
/// shape; Err(Some(id)): a token of another application.
pub fn check_shape(token: &str, client_id: &str) -> Result<(), Option<String>> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) || token.chars().any(char::is_whitespace) {
        return Err(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(parts[0].trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[0].trim_end_matches('=')))
        .map_err(|_| None)?;
    let id = String::from_utf8(decoded).map_err(|_| None)?;
    if !id.chars().all(|c| c.is_ascii_digit()) || id.is_empty() {
        return Err(None);
    }
    if id != client_id {
        return Err(Some(id));
    }
    Ok(())
}

fn digest(token: &str, salt: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0]);
    h.update(token.as_bytes());
    super::workload::hex(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    const CLIENT: &str = "123456789012345678";

    fn token_for(id: &str) -> String {
        format!("{}.GhIjKl.{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(id), "x".repeat(38))
    }

    fn secret(key: &str, value: &str) -> Secret {
        Secret {
            data: Some(BTreeMap::from([(key.to_string(), ByteString(value.as_bytes().to_vec()))])),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_token_resolves_to_a_digest_that_hides_it() {
        let token = token_for(CLIENT);
        let d = resolve(Some(&secret("token", &token)), "s", "token", CLIENT, "uid-1").unwrap();
        assert_eq!(d.len(), 16);
        assert!(!token.contains(&d) && !d.contains(&token[..10]));
        // Same token, same digest; other token or other bot, other digest.
        assert_eq!(d, resolve(Some(&secret("token", &format!("{token}\n"))), "s", "token", CLIENT, "uid-1").unwrap());
        let other = token_for(CLIENT).replace("GhIjKl", "ZZZZZZ");
        assert_ne!(d, resolve(Some(&secret("token", &other)), "s", "token", CLIENT, "uid-1").unwrap());
        assert_ne!(d, resolve(Some(&secret("token", &token)), "s", "token", CLIENT, "uid-2").unwrap());
    }

    #[test]
    fn each_problem_has_its_reason_and_never_echoes_the_token() {
        let token = token_for(CLIENT);
        let cases = [
            (resolve(None, "s", "token", CLIENT, ""), "SecretNotFound"),
            (resolve(Some(&secret("other", &token)), "s", "token", CLIENT, ""), "KeyNotFound"),
            (resolve(Some(&secret("token", "  \n")), "s", "token", CLIENT, ""), "TokenEmpty"),
            (resolve(Some(&secret("token", "not-a-token")), "s", "token", CLIENT, ""), "TokenMalformed"),
            (
                resolve(Some(&secret("token", &token_for("999999999999999999"))), "s", "token", CLIENT, ""),
                "ClientIdMismatch",
            ),
        ];
        for (result, reason) in cases {
            let problem = result.unwrap_err();
            assert_eq!(problem.reason(), reason);
            assert!(!problem.to_string().contains("GhIjKl"), "{problem}");
        }
    }

    #[test]
    fn url_safe_and_padded_first_parts_are_accepted() {
        let padded = format!("{}.a.b", base64::engine::general_purpose::STANDARD.encode("12345678901234567"));
        assert_eq!(check_shape(&padded, "12345678901234567"), Ok(()));
        assert_eq!(check_shape("a.b", CLIENT), Err(None));
        assert_eq!(check_shape("a b.c.d", CLIENT), Err(None));
    }
}
