//! Playlists, the search picker and `/play`'s autocomplete, against real yt-dlp listing
//! pages of the tone server: a playlist page queues its tracks in one reply, each resolved
//! when it plays; `/search` offers five results in a menu only its caller may pick from, and
//! the menu expires politely; typing `/play` is answered from the queue and history; a
//! Spotify track link becomes a search for the artist and title its page names.

use std::time::Duration;

use discord_sim::{DiscordSim, Press, SlashCommand};

use crate::support::*;

async fn say(sim: &DiscordSim, b: &discord_sim::Bot<'_>, c: SlashCommand) -> anyhow::Result<String> {
    let i = b.inject_interaction(c)?;
    Ok(sim.wait_reply(i.id, WAIT).await?.text())
}

async fn hears(b: &discord_sim::Bot<'_>, hz: f64) -> anyhow::Result<()> {
    let what = format!("{hz} Hz");
    eventually(&what, WAIT, async || near(recent_hz(&b.audio_samples(GUILD), 1.0), hz).then_some(())).await
}

async fn started(sim: &DiscordSim, tones: &Tones) -> anyhow::Result<BotProcess> {
    let launch = Launch::bot(APP)
        .env("MUSICBOT_SEARCH", tones.search_site())
        .env("MUSICBOT_MENU_EXPIRY_SECONDS", "4")
        .env("MUSICBOT_LINK_PAGE_BASES", format!("spotify={}", tones.service_pages()));
    let mut bot = BotProcess::start(sim, launch).await?;
    bot.wait_ready().await?;
    Ok(bot)
}

#[tokio::test]
async fn a_playlist_page_is_queued_in_one_reply_and_plays_track_by_track() -> anyhow::Result<()> {
    let sim = world().start().await?;
    let tones = Tones::start().await?;
    let bot = started(&sim, &tones).await?;
    let b = sim.bot(&bot.token);
    let said = say(&sim, &b, play(&tones.playlist(300, 50))).await?;
    assert_eq!(said, "Queued 50 tracks from **Tone playlist**; playing **Tone playlist (1)**");
    hears(&b, 300.0).await?;
    let queue = say(&sim, &b, cmd("queue")).await?;
    assert!(queue.contains("1. Tone playlist (2)") && queue.contains("49 waiting"), "{queue}");
    say(&sim, &b, cmd("skip")).await?;
    hears(&b, 310.0).await?;
    Ok(())
}

#[tokio::test]
async fn the_search_picker_queues_the_pick_and_expires_politely() -> anyhow::Result<()> {
    let sim = world().start().await?;
    let tones = Tones::start().await?;
    let bot = started(&sim, &tones).await?;
    let b = sim.bot(&bot.token);

    let i = b.inject_interaction(cmd("search").option("words", "some tones"))?;
    let menu = sim.wait_reply(i.id, WAIT).await?;
    assert!(menu.ephemeral(), "{menu:?}");
    let text = menu.text();
    assert!(text.starts_with("Results for **some tones**:\n1. Tone search (1)\n2. Tone search (2)"), "{text}");
    assert!(text.ends_with("5. Tone search (5)"), "{text}");
    let message = menu.messages().last().copied().cloned().unwrap();
    let options = &message["components"][0]["components"][0];
    let custom_id = options["custom_id"].as_str().unwrap().to_string();
    assert_eq!(options["options"].as_array().map(Vec::len), Some(5), "{options}");
    let id: u64 = message["id"].as_str().unwrap().parse()?;
    let pick = |user: u64, value: &str| Press::select(GUILD, TEXT, user, id, &custom_id, &[value]);

    let theirs = b.press(pick(BOB, "2"))?;
    let theirs = sim.wait_reply(theirs.id, WAIT).await?;
    assert!(theirs.ephemeral() && theirs.text().contains("someone else's"), "{theirs:?}");

    let mine = b.press(pick(ALICE, "2"))?;
    sim.wait_interaction(mine.id, WAIT, |r| r.callback.is_some()).await?;
    let content = || b.message(id).and_then(|m| m["content"].as_str().map(str::to_string)).unwrap_or_default();
    eventually("the menu answered", WAIT, async || content().starts_with("Playing").then_some(())).await?;
    assert_eq!(content(), "Playing **Tone search (3)**");
    assert_eq!(b.message(id).unwrap()["components"], serde_json::json!([]), "the menu is gone once picked");
    hears(&b, 660.0).await?;

    // A second search, left alone: its menu is taken off when it expires.
    let i = b.inject_interaction(cmd("search").option("words", "more tones"))?;
    let menu = sim.wait_reply(i.id, WAIT).await?;
    let id: u64 = menu.messages().last().unwrap()["id"].as_str().unwrap().parse()?;
    eventually("the menu expired", Duration::from_secs(20), async || {
        b.message(id).filter(|m| m["components"] == serde_json::json!([])).map(|m| m["content"].clone())
    })
    .await
    .map(|c| assert_eq!(c, "This menu has expired; search again with /search."))?;
    Ok(())
}

#[tokio::test]
async fn typing_play_is_answered_from_the_queue_and_history() -> anyhow::Result<()> {
    let sim = world().start().await?;
    let tones = Tones::start().await?;
    let bot = started(&sim, &tones).await?;
    let b = sim.bot(&bot.token);
    say(&sim, &b, play(&tones.wav(440, 41))).await?;
    say(&sim, &b, play(&tones.wav(550, 42))).await?;
    say(&sim, &b, cmd("skip")).await?;

    let typed = |partial: &str| SlashCommand::new(GUILD, TEXT, ALICE, "play").typing("query", partial);
    let asked = b.inject_autocomplete(typed("41"))?;
    let answer = sim.wait_reply(asked.id, WAIT).await?;
    let choices = answer.choices();
    assert_eq!(choices.len(), 1, "{choices:?}");
    assert_eq!(choices[0]["name"], "41.wav", "the track that played");
    assert_eq!(choices[0]["value"], tones.wav(440, 41), "its link: it plays again as it was");
    let asked = b.inject_autocomplete(typed(".WAV"))?;
    assert_eq!(sim.wait_reply(asked.id, WAIT).await?.choices().len(), 2, "case does not matter");
    let asked = b.inject_autocomplete(typed("nothing like it"))?;
    assert!(sim.wait_reply(asked.id, WAIT).await?.choices().is_empty());
    assert!(sim.payload_errors().is_empty(), "{:?}", sim.payload_errors());
    Ok(())
}

#[tokio::test]
async fn a_spotify_track_link_is_played_as_a_labelled_match_and_albums_are_refused() -> anyhow::Result<()> {
    let sim = world().start().await?;
    let tones = Tones::start().await?;
    let bot = started(&sim, &tones).await?;
    let b = sim.bot(&bot.token);

    let said = say(&sim, &b, play("https://open.spotify.com/intl-th/track/4uLU6hMCjMI75M1A2tKUQC?si=x")).await?;
    assert_eq!(
        said,
        "Playing **Tone search (1)** (a match found by searching for Spotify's «Tone Song 4uLU6hMCjMI75M1A2tKUQC» \
         — Tone Artist)"
    );
    assert_eq!(tones.searches(), ["Tone Artist Tone Song 4uLU6hMCjMI75M1A2tKUQC"], "the search made");
    hears(&b, 440.0).await?;

    for (link, service) in [
        ("https://open.spotify.com/album/1DFixLWuPkv3KT3TnV35m3", "Spotify"),
        ("https://music.apple.com/us/playlist/x/pl.u-1", "Apple Music"),
        ("https://www.deezer.com/album/302127", "Deezer"),
    ] {
        let i = b.inject_interaction(play(link))?;
        let r = sim.wait_reply(i.id, WAIT).await?;
        assert!(r.ephemeral(), "{r:?}");
        assert_eq!(r.text(), format!("{service} albums and playlists aren't supported yet; a track link works."));
    }
    assert_eq!(tones.searches().len(), 1, "nothing searched for them");
    Ok(())
}
