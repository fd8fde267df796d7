//! The bot token and the one rule for its shape, shared by everything that reads a token:
//! the controller (from a Secret), the sync and the `bots` CLI (from a record) and bot-runner
//! (from a file, or a record in fleet mode). `Debug` never shows it and there is no
//! `Display`, so a stray `{:?}` cannot put it into a log.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    value: String,
    client_id: u64,
}

/// Why a string is not a usable bot token. The messages never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("not a Discord bot token (expected three dot-separated parts, the first the application id in base64)")]
    Malformed,
    #[error("the token belongs to application {token_client_id}, not to {client_id}")]
    WrongApplication { client_id: String, token_client_id: u64 },
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<redacted> of {})", self.client_id)
    }
}

impl Token {
    /// A token as Discord issues them, `base64(application id).timestamp.hmac`. Surrounding
    /// whitespace (a file's final newline) is dropped.
    pub fn parse(raw: &str) -> Result<Self, TokenError> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(TokenError::Empty);
        }
        let parts: Vec<&str> = value.split('.').collect();
        if parts.len() != 3
            || parts.iter().any(|p| p.is_empty())
            || value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(TokenError::Malformed);
        }
        let first = parts[0].trim_end_matches('=');
        let decoded = STANDARD_NO_PAD
            .decode(first)
            .or_else(|_| URL_SAFE_NO_PAD.decode(first))
            .map_err(|_| TokenError::Malformed)?;
        let id = std::str::from_utf8(&decoded).map_err(|_| TokenError::Malformed)?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::Malformed);
        }
        let client_id = id.parse().map_err(|_| TokenError::Malformed)?;
        Ok(Self { value: value.to_string(), client_id })
    }

    /// [`Token::parse`], and the token must belong to `client_id`.
    pub fn parse_for(raw: &str, client_id: &str) -> Result<Self, TokenError> {
        let token = Self::parse(raw)?;
        if token.client_id.to_string() != client_id {
            return Err(TokenError::WrongApplication { client_id: client_id.into(), token_client_id: token.client_id });
        }
        Ok(token)
    }

    /// The application (and bot user) id the token was issued for.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The secret itself, for the Discord client and nothing else.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    const CLIENT: &str = "123456789012345678";

    fn token_for(id: &str) -> String {
        format!("{}.GhIjKl.{}", STANDARD_NO_PAD.encode(id), "x".repeat(38))
    }

    #[test]
    fn a_token_names_its_application_and_debug_hides_it() {
        let t = Token::parse(&format!("{}\n", token_for(CLIENT))).unwrap();
        assert_eq!(t.client_id(), 123456789012345678);
        assert_eq!(t.expose(), token_for(CLIENT));
        assert!(!format!("{t:?}").contains("GhIjKl"));
        assert!(Token::parse_for(&token_for(CLIENT), CLIENT).is_ok());
    }

    #[test]
    fn each_bad_shape_has_its_error_and_none_quotes_the_token() {
        assert_eq!(Token::parse("  \n"), Err(TokenError::Empty));
        for bad in ["not-a-token", "a.b", "a b.c.d", "MTIz..x", &format!("{}.a.b", STANDARD_NO_PAD.encode("12ab"))] {
            assert_eq!(Token::parse(bad), Err(TokenError::Malformed), "{bad}");
        }
        let other = Token::parse_for(&token_for("999999999999999999"), CLIENT).unwrap_err();
        assert_eq!(
            other,
            TokenError::WrongApplication { client_id: CLIENT.into(), token_client_id: 999999999999999999 }
        );
        assert!(!other.to_string().contains("GhIjKl"));
    }

    #[test]
    fn url_safe_and_padded_first_parts_are_accepted() {
        let padded = format!("{}.a.b", STANDARD.encode("12345678901234567"));
        assert_eq!(Token::parse(&padded).unwrap().client_id(), 12345678901234567);
    }
}
