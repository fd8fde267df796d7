//! `bots encrypt`: plaintext tokens encrypted in place, or re-encrypted under a new key.

use crate::config::MongoArgs;
use crate::mongo::load_key;
use anyhow::bail;
use clap::Args;
use futures::TryStreamExt;
use mongodb::bson::{self, Document, doc};
use musicbot_db::cipher::{self, TokenCipher};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EncryptArgs {
    #[command(flatten)]
    db: MongoArgs,
    /// The previous key: tokens encrypted with it are re-encrypted with --token-key-file's key.
    #[arg(long)]
    old_key_file: Option<PathBuf>,
    /// Count what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// What `encrypt` does to one stored token.
#[derive(Debug, PartialEq, Eq)]
enum Rewrite {
    Encrypt(String),
    Reencrypt(String),
    AlreadyEncrypted,
    /// Encrypted, but neither key opens it.
    Unreadable,
}

fn rewrite(current: &TokenCipher, old: Option<&TokenCipher>, client_id: &str, stored: &str) -> Rewrite {
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

pub(super) async fn encrypt(a: EncryptArgs) -> anyhow::Result<()> {
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
    use crate::cli::bots::token;

    const CLIENT: &str = "123456789012345678";

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
