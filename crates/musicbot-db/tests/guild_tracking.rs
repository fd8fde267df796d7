//! Guild tracking against a real MongoDB-protocol server (SecantusDB).

use mongodb::bson::{Document, doc, oid::ObjectId};
use musicbot_db::{AssignmentStatus, Collections, GuildEntry, GuildTracker};
use testkit::mongo::MongoServer;

#[tokio::test]
async fn join_leave_and_guild_count_follow_the_seed_schema() -> anyhow::Result<()> {
    let server = MongoServer::shared().await;
    let client = server.client().await?;
    let db = client.database(&MongoServer::database_name("tracking"));
    let cols = Collections::default();
    let bot_id = ObjectId::new();
    db.collection::<Document>("MusicBotDB")
        .insert_one(doc! {"_id": bot_id, "name": "Music Bot #1", "clientId": "123456789012345678", "token": "x", "isActive": true, "guildCount": 0})
        .await?;
    let tracker = GuildTracker::for_client(&db, &cols, "123456789012345678").await?.expect("the record is found");
    assert!(GuildTracker::for_client(&db, &cols, "999999999999999999").await?.is_none());
    // Filters spell the seed's field names, so a renamed field fails here.
    let guilds = db.collection::<GuildEntry>("ServerMusicBotDB");
    // A pending invite written by guild assignment becomes ACTIVE when the bot joins.
    guilds.insert_one(GuildEntry::new("111", bot_id, AssignmentStatus::PendingInvite)).await?;

    tracker.joined(111).await?;
    tracker.joined(222).await?;
    let first = guilds.find_one(doc! {"serverId": "222"}).await?.unwrap();
    tracker.joined(222).await?; // a replayed GUILD_CREATE
    let again = guilds.find_one(doc! {"serverId": "222"}).await?.unwrap();
    assert!(first.activated_at.is_some());
    assert_eq!(first.activated_at, again.activated_at, "activatedAt marks the transition");
    assert_eq!(guilds.count_documents(doc! {"serverId": "222"}).await?, 1);
    let pending = guilds.find_one(doc! {"serverId": "111"}).await?.unwrap();
    assert_eq!(pending.status, AssignmentStatus::Active);
    assert_eq!(tracker.refresh_guild_count().await?, 2);

    tracker.left(111).await?;
    let removed = guilds.find_one(doc! {"serverId": "111"}).await?.unwrap();
    assert_eq!(removed.status, AssignmentStatus::Removed);
    assert!(removed.removed_at.is_some());
    assert_eq!(tracker.refresh_guild_count().await?, 1);
    let bot = db.collection::<Document>("MusicBotDB").find_one(doc! {"_id": bot_id}).await?.unwrap();
    assert_eq!(bot.get_i64("guildCount")?, 1);

    // Offline while removed from 222 and added to 333: after READY, 333's GUILD_CREATE is
    // a join and the absent 222 was left, while guilds of other shards are left alone.
    tracker.joined(444).await?;
    tracker.joined(333).await?;
    let gone = tracker.left_while_offline(&[333], |g| g != 444).await?;
    assert_eq!(gone, vec![222]);
    let status = |g: &'static str| {
        let guilds = guilds.clone();
        async move { guilds.find_one(doc! {"serverId": g}).await.unwrap().unwrap().status }
    };
    assert_eq!(status("222").await, AssignmentStatus::Removed);
    assert_eq!(status("333").await, AssignmentStatus::Active);
    assert_eq!(status("444").await, AssignmentStatus::Active, "another shard's guild is not touched");
    Ok(())
}

/// The operator's side: a state, not events. What the reporting shards say they are in
/// becomes ACTIVE, their other ACTIVE guilds REMOVED, other shards' guilds stay, and a
/// state already written writes nothing.
#[tokio::test]
async fn sync_makes_the_entries_match_the_reported_guilds() -> anyhow::Result<()> {
    use std::collections::BTreeSet;
    let server = MongoServer::shared().await;
    let client = server.client().await?;
    let db = client.database(&MongoServer::database_name("tracking_sync"));
    let cols = Collections::default();
    let bot_id = ObjectId::new();
    db.collection::<Document>("MusicBotDB")
        .insert_one(doc! {"_id": bot_id, "name": "Music Bot #1", "clientId": "123456789012345678", "token": "x", "isActive": true, "guildCount": 0})
        .await?;
    let tracker = GuildTracker::new(&db, &cols, bot_id);
    let guilds = db.collection::<GuildEntry>("ServerMusicBotDB");
    guilds.insert_one(GuildEntry::new("111", bot_id, AssignmentStatus::PendingInvite)).await?;
    guilds.insert_one(GuildEntry::new("222", bot_id, AssignmentStatus::Active)).await?;
    guilds.insert_one(GuildEntry::new("444", bot_id, AssignmentStatus::Active)).await?;

    let first = tracker.sync(&BTreeSet::from([111, 333]), |g| g != 444).await?;
    assert_eq!((first.joined, first.left, first.guild_count), (vec![111, 333], vec![222], Some(3)));
    let status = |g: &'static str| {
        let guilds = guilds.clone();
        async move { guilds.find_one(doc! {"serverId": g}).await.unwrap().unwrap().status }
    };
    assert_eq!(status("111").await, AssignmentStatus::Active, "the invite is fulfilled");
    assert_eq!(status("222").await, AssignmentStatus::Removed);
    assert_eq!(status("333").await, AssignmentStatus::Active);
    assert_eq!(status("444").await, AssignmentStatus::Active, "another shard's guild is not touched");
    let bot = db.collection::<Document>("MusicBotDB").find_one(doc! {"_id": bot_id}).await?.unwrap();
    assert_eq!(bot.get_i64("guildCount")?, 3);

    let again = tracker.sync(&BTreeSet::from([111, 333]), |g| g != 444).await?;
    assert_eq!(again, musicbot_db::guilds::Synced::default(), "nothing changed, nothing written");
    Ok(())
}
