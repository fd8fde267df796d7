//! Where bot-runner finds its token: a file (as the operator mounts it) or `$DISCORD_TOKEN`.
//! The token's type and shape rule are the contract's ([`musicbot_api::Token`]).

use std::path::Path;

use anyhow::{Context, Result, bail};
use musicbot_api::Token;

pub fn from_file(path: &Path) -> Result<Token> {
    // The path is fine to show; the contents never are.
    let raw = std::fs::read_to_string(path).with_context(|| format!("reading the token file {}", path.display()))?;
    Token::parse(&raw).with_context(|| format!("in {}", path.display()))
}

/// The token file if given, else `$DISCORD_TOKEN`.
pub fn load(file: Option<&Path>) -> Result<Token> {
    match file {
        Some(f) => from_file(f),
        None => match std::env::var("DISCORD_TOKEN") {
            Ok(t) => Token::parse(&t).context("in $DISCORD_TOKEN"),
            Err(_) => bail!("no token: set --token-file (MUSICBOT_TOKEN_FILE) or DISCORD_TOKEN"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_read_and_checked_and_its_contents_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let missing = from_file(&dir.path().join("nope")).unwrap_err();
        assert!(format!("{missing:#}").contains("reading the token file"));
        let file = dir.path().join("token");
        std::fs::write(&file, "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.secretpart\n").unwrap();
        assert_eq!(from_file(&file).unwrap().client_id(), 123456789012345678);
        std::fs::write(&file, "two words.secretpart").unwrap();
        let e = format!("{:#}", from_file(&file).unwrap_err());
        assert!(e.contains("not a Discord bot token") && !e.contains("secretpart"), "{e}");
    }
}
