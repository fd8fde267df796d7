//! Checking the token a MusicBot points at, without ever logging or storing it.

use k8s_openapi::api::core::v1::Secret;
use musicbot_api::conditions::Reason;
use musicbot_api::token::{Token, TokenError};

/// Why a MusicBot's token cannot be used. The `Display` text goes into conditions and
/// Events, so it names the Secret and key but never includes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum TokenProblem {
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
    /// The reason of the `TokenResolved` condition.
    pub fn reason(&self) -> Reason {
        match self {
            Self::SecretNotFound(_) => Reason::SecretNotFound,
            Self::KeyNotFound { .. } => Reason::KeyNotFound,
            Self::Empty { .. } => Reason::TokenEmpty,
            Self::Malformed { .. } => Reason::TokenMalformed,
            Self::ClientIdMismatch { .. } => Reason::ClientIdMismatch,
        }
    }
}

/// Checks the token in `secret` (None: the Secret does not exist) and returns a salted
/// digest of it, which changes exactly when the token does.
pub(super) fn resolve(
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
    let token = Token::parse_for(&token, client_id).map_err(|e| {
        let (secret, key) = names();
        match e {
            TokenError::Empty => TokenProblem::Empty { secret, key },
            TokenError::Malformed => TokenProblem::Malformed { secret, key },
            TokenError::WrongApplication { client_id, token_client_id } => {
                TokenProblem::ClientIdMismatch { secret, client_id, token_client_id: token_client_id.to_string() }
            }
        }
    })?;
    Ok(digest(token.expose(), salt))
}

fn digest(token: &str, salt: &str) -> String {
    crate::digest::short(&[salt.as_bytes(), &[0], token.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
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
            (resolve(None, "s", "token", CLIENT, ""), Reason::SecretNotFound),
            (resolve(Some(&secret("other", &token)), "s", "token", CLIENT, ""), Reason::KeyNotFound),
            (resolve(Some(&secret("token", "  \n")), "s", "token", CLIENT, ""), Reason::TokenEmpty),
            (resolve(Some(&secret("token", "not-a-token")), "s", "token", CLIENT, ""), Reason::TokenMalformed),
            (
                resolve(Some(&secret("token", &token_for("999999999999999999"))), "s", "token", CLIENT, ""),
                Reason::ClientIdMismatch,
            ),
        ];
        for (result, reason) in cases {
            let problem = result.unwrap_err();
            assert_eq!(problem.reason(), reason);
            assert!(!problem.to_string().contains("GhIjKl"), "{problem}");
        }
    }
}
