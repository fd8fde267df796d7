//! `bots invite`: a bot's invite URL, or a guild assigned to the least-loaded bot.

use crate::config::MongoArgs;
use crate::mongo::Records;
use anyhow::bail;
use clap::Args;
use mongodb::bson::{Document, doc};
use musicbot_db::records::is_snowflake;
use musicbot_db::{Assigner, invite_url};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct InviteArgs {
    #[command(flatten)]
    db: MongoArgs,
    /// The bot whose invite URL to print.
    #[arg(required_unless_present = "guild", conflicts_with = "guild")]
    client_id: Option<String>,
    /// Pick the least-loaded active bot not yet in this guild and record a PENDING_INVITE.
    #[arg(long)]
    guild: Option<String>,
    /// Seconds the invite stays pending before it becomes FAILED.
    #[arg(long, env = "MUSICBOT_INVITE_TIMEOUT_SECONDS", default_value_t = 3600)]
    invite_timeout_seconds: u64,
}

pub(super) async fn invite(a: InviteArgs) -> anyhow::Result<()> {
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
