//! `bots remove`: a bot's records go; its guild entries stay, as history.

use crate::config::MongoArgs;
use anyhow::bail;
use clap::Args;
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use musicbot_db::AssignmentStatus;
use musicbot_db::guild_entry::field::{MUSIC_BOT_ID, REMOVED_AT, STATUS, UPDATED_AT};

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    db: MongoArgs,
    /// The client id of the bot to remove.
    client_id: String,
}

pub(super) async fn remove(a: RemoveArgs) -> anyhow::Result<()> {
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
