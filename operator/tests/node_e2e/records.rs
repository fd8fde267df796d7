//! A record added to the MusicBotDB collection becomes a Secret, a MusicBot and a pod that
//! plays: the sync inside the helm-installed operator, SecantusDB reached from its pod.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use mongodb::bson::doc;
use musicbot_api::crd::Phase;

use crate::product::{Slot, WAIT, product};
use crate::run;

#[test]
fn a_mongodb_record_becomes_a_playing_bot() {
    run(async {
        let p = product().await;
        let slot = Slot::new(4);
        let db = p.mongo.client().await.unwrap().database("musicbot");
        let inserted = Instant::now();
        db.collection::<mongodb::bson::Document>("MusicBotDB")
            .insert_one(doc! {"name": "Record Bot", "clientId": slot.client_id(), "token": slot.token(0), "isActive": true, "guildCount": 0})
            .await
            .unwrap();
        let name = format!("bot-{}", slot.client_id());
        let secrets: Api<Secret> = Api::namespaced(p.client.clone(), &p.release_ns);
        let deadline = Instant::now() + WAIT;
        while secrets.get_opt(&format!("{name}-token")).await.unwrap().is_none() {
            assert!(Instant::now() < deadline, "the sync made no Secret for the record");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        p.wait_pod_ready(&p.release_ns, &name, None).await;
        p.play_and_hear(&slot, &slot.token(0), 440).await.unwrap();
        eprintln!("insert → 440 Hz heard {:.1} s", inserted.elapsed().as_secs_f64());
        p.wait_musicbot(&p.release_ns, &name, "Running", |b| {
            b.status.as_ref().and_then(|s| s.phase) == Some(Phase::Running)
        })
        .await;
    })
}
