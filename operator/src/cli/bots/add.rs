//! `bots add`: a new record, its client id and token checked, the token stored encrypted.

use crate::config::MongoArgs;
use anyhow::{Context as _, bail};
use clap::Args;
use mongodb::bson::{self, Document, doc};
use musicbot_api::token::Token;
use musicbot_db::invite_url;
use musicbot_db::records::is_snowflake;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    db: MongoArgs,
    /// The Discord application (client) id.
    #[arg(long)]
    client_id: String,
    /// A name for /bots and logs (default: the client id).
    #[arg(long)]
    name: Option<String>,
    /// File holding the bot token; without it the token is read from stdin.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Add the bot suspended (isActive: false).
    #[arg(long)]
    inactive: bool,
    /// Store the token in plaintext when no --token-key-file is given (not recommended).
    #[arg(long)]
    allow_plaintext: bool,
}

/// Checks a new bot's client id and token; the message never includes the token.
fn validate(client_id: &str, token: &str) -> Result<(), String> {
    if !is_snowflake(client_id) {
        return Err(format!("--client-id {client_id:?} is not a Discord application id (17 to 20 digits)"));
    }
    Token::parse_for(token, client_id).map(drop).map_err(|e| e.to_string())
}

fn read_token(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let raw = match file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => {
            let mut stdin = std::io::stdin();
            let mut s = String::new();
            if stdin.is_terminal() {
                eprintln!("Paste the bot token and press Enter (it is not echoed anywhere else):");
                stdin.read_line(&mut s)?;
            } else {
                stdin.read_to_string(&mut s)?;
            }
            s
        }
    };
    Ok(raw.trim().to_string())
}

pub(super) async fn add(a: AddArgs) -> anyhow::Result<()> {
    if !is_snowflake(&a.client_id) {
        bail!("--client-id {:?} is not a Discord application id (17 to 20 digits)", a.client_id);
    }
    let token = read_token(a.token_file.as_ref())?;
    validate(&a.client_id, &token).map_err(anyhow::Error::msg)?;
    let records = a.db.open().await?;
    let stored = match &records.cipher {
        Some(c) => c.encrypt(&a.client_id, &token),
        None if a.allow_plaintext => {
            eprintln!("warning: no --token-key-file: the token is stored in plaintext");
            token.clone()
        }
        None => bail!(
            "no token key: pass --token-key-file (or MUSICBOT_TOKEN_KEY_FILE) so the token is stored \
             encrypted, or --allow-plaintext"
        ),
    };
    let bots = records.db.collection::<Document>(&records.collections.bots);
    if let Some(existing) = bots.find_one(doc! {"clientId": &a.client_id}).await? {
        let id = existing.get("_id").map(ToString::to_string).unwrap_or_default();
        bail!("a bot with client id {} already exists (record {id})", a.client_id);
    }
    let name = a.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| a.client_id.clone());
    let now = bson::DateTime::now();
    let inserted = bots
        .insert_one(doc! {
            "name": &name,
            "clientId": &a.client_id,
            "token": stored,
            "isActive": !a.inactive,
            "guildCount": 0_i32,
            "createdAt": now,
            "updatedAt": now,
        })
        .await?;
    let id = inserted.inserted_id.as_object_id().map(|o| o.to_hex()).unwrap_or_default();
    let how = if records.cipher.is_some() { "encrypted" } else { "plaintext" };
    println!("added {name} ({}) as record {id}, token {how}", a.client_id);
    println!("invite URL: {}", invite_url(&a.client_id, None));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bots::token;

    const CLIENT: &str = "123456789012345678";

    #[test]
    fn validation_checks_the_id_and_the_token_shape_without_echoing_it() {
        assert_eq!(validate(CLIENT, &token(CLIENT)), Ok(()));
        assert!(validate("12ab", &token(CLIENT)).unwrap_err().contains("client-id"));
        let e = validate(CLIENT, "not-a-token").unwrap_err();
        assert!(e.contains("three dot-separated parts") && !e.contains("not-a-token"), "{e}");
        let e = validate(CLIENT, &token("999999999999999999")).unwrap_err();
        assert!(e.contains("999999999999999999") && !e.contains("tail-of-the-token"), "{e}");
        assert!(validate(CLIENT, "").is_err());
    }
}
