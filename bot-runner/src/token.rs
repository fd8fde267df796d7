//! The bot token: read from a file or `$DISCORD_TOKEN`, kept in a type whose `Debug` and
//! `Display` never show it, so a stray `{:?}` cannot leak it into a log.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into().trim().to_string();
        if value.is_empty() {
            bail!("the bot token is empty");
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("the bot token contains whitespace; is the file holding something else?");
        }
        Ok(Self(value))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        // The path is fine to show; the contents never are.
        let raw =
            std::fs::read_to_string(path).with_context(|| format!("reading the token file {}", path.display()))?;
        Self::new(raw).with_context(|| format!("in {}", path.display()))
    }

    /// The token file if given, else `$DISCORD_TOKEN`.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        match file {
            Some(f) => Self::from_file(f),
            None => match std::env::var("DISCORD_TOKEN") {
                Ok(t) => Self::new(t).context("in $DISCORD_TOKEN"),
                Err(_) => bail!("no token: set --token-file (MUSICBOT_TOKEN_FILE) or DISCORD_TOKEN"),
            },
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A bot token's first part is its user id (= the application id) in base64.
    pub fn client_id(&self) -> Option<u64> {
        let first = self.0.split('.').next()?;
        let bytes = STANDARD_NO_PAD
            .decode(first.trim_end_matches('='))
            .or_else(|_| URL_SAFE_NO_PAD.decode(first.trim_end_matches('=')))
            .ok()?;
        std::str::from_utf8(&bytes).ok()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let t = Token::new("MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.secretpart").unwrap();
        assert!(!format!("{t:?}").contains("secretpart"));
    }

    #[test]
    fn client_id_from_the_first_part() {
        let t = Token::new("MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.secretpart\n").unwrap();
        assert_eq!(t.client_id(), Some(123456789012345678));
        assert_eq!(Token::new("not-a-token").unwrap().client_id(), None);
    }

    #[test]
    fn empty_or_odd_tokens_are_refused() {
        assert!(Token::new("  \n").is_err());
        assert!(Token::new("two words").is_err());
        let dir = tempfile::tempdir().unwrap();
        let missing = Token::from_file(&dir.path().join("nope")).unwrap_err();
        assert!(format!("{missing:#}").contains("reading the token file"));
    }
}
