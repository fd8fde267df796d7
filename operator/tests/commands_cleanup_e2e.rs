//! `clearCommandsOnDelete`: deleting a MusicBot clears its slash commands on Discord (the
//! simulator here), globally and in its guilds, before the finalizer lets it go.

mod common;

use common::*;
use discord_sim::{BotSpec, DiscordSim, GuildSpec};
use kube::api::{Api, DeleteParams};
use musicbot_api::crd::MusicBot;
use musicbot_operator::controller::BotDefaults;
use serde_json::json;

const GUILD: u64 = 222222222222222222;

#[tokio::test]
async fn deleting_a_bot_clears_its_commands_when_asked() {
    let token = token_for(CLIENT_ID, "cleanup-secret");
    let app: u64 = CLIENT_ID.parse().unwrap();
    let sim = DiscordSim::builder()
        .guild(GuildSpec::new(GUILD, "Guild"))
        .bot(BotSpec::new(token.clone()).application_id(app).user_id(app).in_guild(GUILD))
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let command = json!([{"name": "play", "description": "Play a track", "type": 1}]);
    for path in [format!("/applications/{app}/commands"), format!("/applications/{app}/guilds/{GUILD}/commands")] {
        let resp = http
            .put(format!("{}{path}", sim.api_base()))
            .header("Authorization", format!("Bot {token}"))
            .json(&command)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
    }
    assert_eq!(sim.bot(&token).commands(None).len(), 1);
    assert_eq!(sim.bot(&token).commands(Some(GUILD)).len(), 1);

    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "cleanup").await.unwrap();
    let _op = start_operator_with(&client, &ns, BotDefaults::default(), &sim.api_base());
    create_secret(&client, &ns, "radio-token", "token", &token).await;
    create_bot(
        &client,
        &ns,
        "radio",
        json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "radio-token"},
               "guildIds": [GUILD.to_string()], "clearCommandsOnDelete": true}),
    )
    .await;
    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    eventually("finalizer added", || async {
        let b = bots.get("radio").await.unwrap();
        b.metadata.finalizers.unwrap_or_default().iter().any(|f| f == "musicbot.dev/cleanup").then_some(())
    })
    .await;

    bots.delete("radio", &DeleteParams::default()).await.unwrap();
    eventually("MusicBot gone", || async { bots.get_opt("radio").await.unwrap().is_none().then_some(()) }).await;
    assert!(sim.bot(&token).commands(None).is_empty(), "global commands left on Discord");
    assert!(sim.bot(&token).commands(Some(GUILD)).is_empty(), "guild commands left on Discord");
    assert!(sim.unknown_requests().is_empty(), "{:?}", sim.unknown_requests());
}
