//! `bots list`: what the records say, as a table or JSON, never their tokens.

use crate::config::MongoArgs;
use clap::Args;
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use musicbot_db::BotRecord;
use musicbot_db::cipher;

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    db: MongoArgs,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One line of `bots list`: what a record says, minus its token.
#[derive(serde::Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Listed {
    id: String,
    client_id: String,
    name: String,
    is_active: bool,
    guild_count: i64,
    /// "encrypted" or "plaintext".
    token: &'static str,
    /// Why the sync skips it, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

fn listed(d: &Document) -> Listed {
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

fn table(rows: &[Listed]) -> String {
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

pub(super) async fn list(a: ListArgs) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bots::token;
    use mongodb::bson;
    use musicbot_db::TokenCipher;

    const CLIENT: &str = "123456789012345678";

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
}
