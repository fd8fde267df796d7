//! Proves the test MongoDB server is real: change streams, unique indexes, durability.

use futures::StreamExt;
use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use std::time::Duration;
use testkit::MongoServer;

#[tokio::test]
async fn change_stream_delivers_an_insert() {
    let server = MongoServer::shared().await;
    let db = server.client().await.unwrap().database(&MongoServer::database_name("cs"));
    let coll = db.collection::<Document>("bots");
    coll.insert_one(doc! {"seed": true}).await.unwrap(); // the collection must exist first
    let mut stream = coll.watch().await.unwrap();
    coll.insert_one(doc! {"name": "Music Bot #1"}).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("no change event within 20 s")
        .expect("stream ended")
        .unwrap();
    let inserted = event.full_document.expect("inserts carry the full document");
    assert_eq!(inserted.get_str("name").unwrap(), "Music Bot #1");
    assert!(stream.resume_token().is_some(), "the stream offers a resume token");
}

#[tokio::test]
async fn duplicate_key_on_a_unique_index_is_error_11000() {
    let server = MongoServer::shared().await;
    let db = server.client().await.unwrap().database(&MongoServer::database_name("uniq"));
    let coll = db.collection::<Document>("bots");
    let index =
        IndexModel::builder().keys(doc! {"clientId": 1}).options(IndexOptions::builder().unique(true).build()).build();
    coll.create_index(index).await.unwrap();
    coll.insert_one(doc! {"clientId": "1234567890"}).await.unwrap();
    let err = coll.insert_one(doc! {"clientId": "1234567890"}).await.unwrap_err();
    match *err.kind {
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(ref e)) => assert_eq!(e.code, 11000),
        ref other => panic!("expected a duplicate-key write error, got {other:?}"),
    }
}

#[tokio::test]
async fn data_survives_a_restart_on_the_same_directory() {
    let mut server = MongoServer::start().await.unwrap();
    let name = MongoServer::database_name("durable");
    {
        let client = server.client().await.unwrap();
        client.database(&name).collection::<Document>("bots").insert_one(doc! {"_id": 7, "x": "kept"}).await.unwrap();
        client.shutdown().await;
    }
    server.restart().await.unwrap();
    let client = server.client().await.unwrap();
    let found = client.database(&name).collection::<Document>("bots").find_one(doc! {"_id": 7}).await.unwrap();
    assert_eq!(found.expect("document lost in the restart").get_str("x").unwrap(), "kept");
}
