//! Clearing a deleted bot's slash commands on Discord (opt-in: `clearCommandsOnDelete`).

use super::{Context, Error};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use musicbot_api::crd::MusicBot;

pub(super) async fn clear(bot: &MusicBot, ctx: &Context) -> Result<(), Error> {
    let ns = bot.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns).get_opt(&bot.spec.token_secret_ref.name).await?;
    let token = secret
        .as_ref()
        .and_then(|s| s.data.as_ref()?.get(&bot.spec.token_secret_ref.key))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or(Error::Discord("the token Secret is gone".into()))?;
    let app = &bot.spec.client_id;
    let base = ctx.discord_api_url.trim_end_matches('/');
    let mut urls = vec![format!("{base}/applications/{app}/commands")];
    urls.extend(bot.spec.guild_ids.iter().map(|g| format!("{base}/applications/{app}/guilds/{g}/commands")));
    for url in urls {
        let resp = ctx
            .http
            .put(&url)
            .header("Authorization", format!("Bot {token}"))
            .json(&serde_json::json!([]))
            .send()
            .await
            // reqwest errors carry the URL, never headers: safe to show.
            .map_err(|e| Error::Discord(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(Error::Discord(format!("PUT {url} answered {}", resp.status())));
        }
    }
    Ok(())
}
