//! `musicbot-operator bots add|list|remove|invite|encrypt|keygen`: the records in MongoDB,
//! replacing the seed's seed script. Tokens are read from stdin or a file (never from
//! argv, where `ps` and shell history would keep them) and never printed.

use crate::config::MongoArgs;
use crate::mongo::{Records, load_key};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use musicbot_api::token::Token;
use musicbot_db::cipher::{self, TokenCipher};
use musicbot_db::guild_entry::field::{MUSIC_BOT_ID, REMOVED_AT, STATUS, UPDATED_AT};
use musicbot_db::records::is_snowflake;
use musicbot_db::{Assigner, AssignmentStatus, BotRecord, invite_url};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum BotsCommand {
    /// Add a bot: checks the client id and the token, stores the token encrypted, prints the invite URL.
    Add(AddArgs),
    /// List the bots (never their tokens).
    List(ListArgs),
    /// Remove a bot's record(s); the sync then deletes its MusicBot and Secret.
    Remove(RemoveArgs),
    /// Print a bot's invite URL, or with --guild pick the least-loaded bot for a guild and record the invite.
    Invite(InviteArgs),
    /// Encrypt every plaintext token in place (with --old-key-file: re-encrypt under the current key).
    Encrypt(EncryptArgs),
    /// Print a new random token key (base64) to put in the key Secret.
    Keygen,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    pub db: MongoArgs,
    /// The Discord application (client) id.
    #[arg(long)]
    pub client_id: String,
    /// A name for /bots and logs (default: the client id).
    #[arg(long)]
    pub name: Option<String>,
    /// File holding the bot token; without it the token is read from stdin.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Add the bot suspended (isActive: false).
    #[arg(long)]
    pub inactive: bool,
    /// Store the token in plaintext when no --token-key-file is given (not recommended).
    #[arg(long)]
    pub allow_plaintext: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: MongoArgs,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub db: MongoArgs,
    /// The client id of the bot to remove.
    pub client_id: String,
}

#[derive(Args, Debug)]
pub struct InviteArgs {
    #[command(flatten)]
    pub db: MongoArgs,
    /// The bot whose invite URL to print.
    #[arg(required_unless_present = "guild", conflicts_with = "guild")]
    pub client_id: Option<String>,
    /// Pick the least-loaded active bot not yet in this guild and record a PENDING_INVITE.
    #[arg(long)]
    pub guild: Option<String>,
    /// Seconds the invite stays pending before it becomes FAILED.
    #[arg(long, env = "MUSICBOT_INVITE_TIMEOUT_SECONDS", default_value_t = 3600)]
    pub invite_timeout_seconds: u64,
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub db: MongoArgs,
    /// The previous key: tokens encrypted with it are re-encrypted with --token-key-file's key.
    #[arg(long)]
    pub old_key_file: Option<PathBuf>,
    /// Count what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(command: BotsCommand) -> anyhow::Result<()> {
    match command {
        BotsCommand::Add(a) => add(a).await,
        BotsCommand::List(a) => list(a).await,
        BotsCommand::Remove(a) => remove(a).await,
        BotsCommand::Invite(a) => invite(a).await,
        BotsCommand::Encrypt(a) => encrypt(a).await,
        BotsCommand::Keygen => {
            println!("{}", TokenCipher::generate_key());
            Ok(())
        }
    }
}

/// Checks a new bot's client id and token; the message never includes the token.
pub fn validate(client_id: &str, token: &str) -> Result<(), String> {
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

async fn add(a: AddArgs) -> anyhow::Result<()> {
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

/// One line of `bots list`: what a record says, minus its token.
#[derive(serde::Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub is_active: bool,
    pub guild_count: i64,
    /// "encrypted" or "plaintext".
    pub token: &'static str,
    /// Why the sync skips it, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

pub fn listed(d: &Document) -> Listed {
    let id = d.get("_id").map(|i| i.as_object_id().map(|o| o.to_hex()).unwrap_or_else(|| i.to_string()));
    let token_state = |t: Option<&str>| if t.is_some_and(cipher::is_encrypted) { "encrypted" } else { "plaintext" };
    match BotRecord::from_document(d) {
        Ok(r) => Listed {
            id: r.id.to_hex(),
            token: token_state(Some(&r.token)),
            client_id: r.client_id,
            name: r.name,
            is_active: r.is_active,
            guild_count: r.guild_count,
            problem: None,
        },
        Err(e) => Listed {
            id: id.unwrap_or_default(),
            client_id: d.get_str("clientId").unwrap_or("-").to_string(),
            name: d.get_str("name").unwrap_or("-").to_string(),
            is_active: d.get_bool("isActive").unwrap_or(false),
            guild_count: 0,
            token: token_state(d.get_str("token").ok()),
            problem: Some(e.to_string()),
        },
    }
}

pub fn table(rows: &[Listed]) -> String {
    let mut out =
        format!("{:<24}  {:<20}  {:<6}  {:>6}  {:<9}  NAME\n", "RECORD", "CLIENT ID", "ACTIVE", "GUILDS", "TOKEN");
    for r in rows {
        let name = match &r.problem {
            Some(p) => format!("{} (invalid: {p})", r.name),
            None => r.name.clone(),
        };
        out.push_str(&format!(
            "{:<24}  {:<20}  {:<6}  {:>6}  {:<9}  {name}\n",
            r.id, r.client_id, r.is_active, r.guild_count, r.token
        ));
    }
    out
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let records = a.db.open().await?;
    let docs: Vec<Document> =
        records.db.collection::<Document>(&records.collections.bots).find(doc! {}).await?.try_collect().await?;
    let rows: Vec<Listed> = docs.iter().map(listed).collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

async fn remove(a: RemoveArgs) -> anyhow::Result<()> {
    let records = a.db.open().await?;
    let bots = records.db.collection::<Document>(&records.collections.bots);
    let ids: Vec<Bson> = bots
        .find(doc! {"clientId": &a.client_id})
        .projection(doc! {"_id": 1})
        .await?
        .try_collect::<Vec<Document>>()
        .await?
        .into_iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect();
    if ids.is_empty() {
        bail!("no bot with client id {}", a.client_id);
    }
    let deleted = bots.delete_many(doc! {"clientId": &a.client_id}).await?.deleted_count;
    // Its guild entries stay as history, no longer holding slots.
    let now = bson::DateTime::now();
    let freed = records
        .db
        .collection::<Document>(&records.collections.guilds)
        .update_many(
            doc! {MUSIC_BOT_ID: {"$in": ids}, STATUS: {"$in": AssignmentStatus::HOLDS_A_SLOT.to_vec()}},
            doc! {"$set": {STATUS: AssignmentStatus::Removed, REMOVED_AT: now, UPDATED_AT: now}},
        )
        .await?
        .modified_count;
    println!(
        "removed {deleted} record(s) of {}; {freed} guild entr(y/ies) marked REMOVED; the sync deletes its MusicBot",
        a.client_id
    );
    Ok(())
}

async fn invite(a: InviteArgs) -> anyhow::Result<()> {
    let records: Records = a.db.open().await?;
    if let Some(guild) = &a.guild {
        let assigner =
            Assigner::new(&records.db, &records.collections, Duration::from_secs(a.invite_timeout_seconds.max(1)));
        let got = assigner.assign(guild).await?;
        println!(
            "guild {}: {} ({}), invite pending until {}",
            got.guild_id,
            got.name,
            got.client_id,
            got.expires_at.to_rfc3339()
        );
        println!("invite URL: {}", got.invite_url);
        return Ok(());
    }
    let client_id = a.client_id.unwrap_or_default();
    if !is_snowflake(&client_id) {
        bail!("{client_id:?} is not a Discord application id (17 to 20 digits)");
    }
    let bots = records.db.collection::<Document>(&records.collections.bots);
    if bots.find_one(doc! {"clientId": &client_id}).await?.is_none() {
        eprintln!("warning: no record has client id {client_id}");
    }
    println!("{}", invite_url(&client_id, None));
    Ok(())
}

/// What `encrypt` does to one stored token.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewrite {
    Encrypt(String),
    Reencrypt(String),
    AlreadyEncrypted,
    /// Encrypted, but neither key opens it.
    Unreadable,
}

pub fn rewrite(current: &TokenCipher, old: Option<&TokenCipher>, client_id: &str, stored: &str) -> Rewrite {
    if !cipher::is_encrypted(stored) {
        return Rewrite::Encrypt(current.encrypt(client_id, stored.trim()));
    }
    if current.decrypt(client_id, stored).is_ok() {
        return Rewrite::AlreadyEncrypted;
    }
    match old.map(|o| o.decrypt(client_id, stored)) {
        Some(Ok(plain)) => Rewrite::Reencrypt(current.encrypt(client_id, &plain)),
        _ => Rewrite::Unreadable,
    }
}

async fn encrypt(a: EncryptArgs) -> anyhow::Result<()> {
    let records = a.db.open().await?;
    let Some(current) = records.cipher.clone() else {
        bail!("no token key: pass --token-key-file (or MUSICBOT_TOKEN_KEY_FILE)");
    };
    let old = a.old_key_file.as_deref().map(load_key).transpose()?;
    let bots = records.db.collection::<Document>(&records.collections.bots);
    let docs: Vec<Document> = bots.find(doc! {}).await?.try_collect().await?;
    let (mut encrypted, mut reencrypted, mut already, mut unreadable, mut skipped) = (0, 0, 0, 0, 0);
    for d in &docs {
        let (Some(id), Ok(client_id), Ok(stored)) = (d.get("_id"), d.get_str("clientId"), d.get_str("token")) else {
            skipped += 1;
            continue;
        };
        let new = match rewrite(&current, old.as_ref(), client_id, stored) {
            Rewrite::Encrypt(v) => {
                encrypted += 1;
                v
            }
            Rewrite::Reencrypt(v) => {
                reencrypted += 1;
                v
            }
            Rewrite::AlreadyEncrypted => {
                already += 1;
                continue;
            }
            Rewrite::Unreadable => {
                unreadable += 1;
                eprintln!("record {id} ({client_id}): encrypted with another key; left as it is");
                continue;
            }
        };
        if a.dry_run {
            continue;
        }
        // Only if the token is still what we read: a concurrent edit wins.
        let r = bots
            .update_one(
                doc! {"_id": id.clone(), "token": stored},
                doc! {"$set": {"token": new, "updatedAt": bson::DateTime::now()}},
            )
            .await?;
        if r.modified_count == 0 {
            eprintln!("record {id} changed meanwhile; left as it is");
        }
    }
    let verb = if a.dry_run { "would encrypt" } else { "encrypted" };
    println!(
        "{verb} {encrypted}, re-encrypted {reencrypted}, already encrypted {already}, \
         unreadable {unreadable}, skipped (no clientId or token) {skipped}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const CLIENT: &str = "123456789012345678";

    fn token(client: &str) -> String {
        format!("{}.Gx1y2z.tail-of-the-token", base64::engine::general_purpose::STANDARD_NO_PAD.encode(client))
    }

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

    #[test]
    fn listing_shows_the_token_state_never_the_token() {
        let id = bson::oid::ObjectId::new();
        let c = TokenCipher::from_key_material(&[3u8; 32]).unwrap();
        let d = doc! {"_id": id, "name": "Music Bot #1", "clientId": CLIENT, "token": c.encrypt(CLIENT, &token(CLIENT)), "guildCount": 3};
        let row = listed(&d);
        assert_eq!((row.token, row.guild_count, row.is_active), ("encrypted", 3, true));
        let plain = listed(&doc! {"_id": id, "clientId": CLIENT, "token": token(CLIENT)});
        assert_eq!(plain.token, "plaintext");
        let bad = listed(&doc! {"_id": id, "clientId": 5, "token": token(CLIENT)});
        assert!(bad.problem.unwrap().contains("clientId"));
        let out = table(&[row, plain]) + &serde_json::to_string(&listed(&d)).unwrap();
        assert!(!out.contains("tail-of-the-token") && !out.contains("enc:v1"), "{out}");
        assert!(out.contains("Music Bot #1"));
    }

    #[test]
    fn encrypt_rewrites_plaintext_and_old_keys_only() {
        let (new, old) =
            (TokenCipher::from_key_material(&[1u8; 32]).unwrap(), TokenCipher::from_key_material(&[2u8; 32]).unwrap());
        let t = token(CLIENT);
        let Rewrite::Encrypt(v) = rewrite(&new, None, CLIENT, &t) else { panic!("plaintext is encrypted") };
        assert_eq!(new.decrypt(CLIENT, &v).unwrap(), t);
        assert_eq!(rewrite(&new, None, CLIENT, &v), Rewrite::AlreadyEncrypted);
        let under_old = old.encrypt(CLIENT, &t);
        assert_eq!(rewrite(&new, None, CLIENT, &under_old), Rewrite::Unreadable);
        let Rewrite::Reencrypt(v) = rewrite(&new, Some(&old), CLIENT, &under_old) else {
            panic!("old key re-encrypts")
        };
        assert_eq!(new.decrypt(CLIENT, &v).unwrap(), t);
    }
}
