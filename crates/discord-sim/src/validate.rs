//! Run-time guard against drift: every gateway payload is read back with serenity before it
//! is sent, and every voice payload with serenity-voice-model (songbird's own types).
//! A mismatch is recorded (see `DiscordSim::payload_errors`) rather than sent silently:
//! serenity turns a malformed dispatch into `Event::Unknown` and songbird drops unparsable
//! voice payloads, so a broken shape would otherwise only show up as a hung test.

use serde::de::DeserializeOwned;
use serde_json::Value;
use serenity::model::prelude::*;

/// Checks a payload for the main gateway (`{"op", "d", "s", "t"}`).
pub fn gateway(payload: &Value) -> Result<(), String> {
    let event: GatewayEvent =
        serde_json::from_value(payload.clone()).map_err(|e| format!("op {}: {e}", payload["op"]))?;
    let GatewayEvent::Dispatch(_, event) = event else {
        return Ok(());
    };
    if event.name().is_some() {
        return Ok(());
    }
    // serenity fell back to `Event::Unknown`: name the field it choked on.
    let t = payload["t"].as_str().unwrap_or_default();
    let d = &payload["d"];
    let detail = match t {
        "READY" => typed::<Ready>(d),
        "RESUMED" => typed::<ResumedEvent>(d),
        "GUILD_CREATE" => typed::<GuildCreateEvent>(d),
        "GUILD_DELETE" => typed::<GuildDeleteEvent>(d),
        "INTERACTION_CREATE" => typed::<Interaction>(d),
        "VOICE_STATE_UPDATE" => typed::<VoiceState>(d),
        "VOICE_SERVER_UPDATE" => typed::<VoiceServerUpdateEvent>(d),
        _ => Err("not an event serenity knows".to_string()),
    };
    Err(format!("{t}: {}", detail.err().unwrap_or_else(|| "parsed only as Event::Unknown".into())))
}

/// Checks a payload for the voice gateway.
pub fn voice(payload: &Value) -> Result<(), String> {
    // From text, as songbird reads it: the model borrows from the input and rejects a `Value`.
    serde_json::from_str::<serenity_voice_model::Event>(&payload.to_string())
        .map(drop)
        .map_err(|e| format!("voice op {}: {e}", payload["op"]))
}

fn typed<T: DeserializeOwned>(d: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(d.clone()).map(drop).map_err(|e| e.to_string())
}
