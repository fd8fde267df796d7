//! Replies to injected slash commands, sent with serenity's own interaction API: callbacks,
//! the ephemeral flag, deferring, editing, follow-ups, and Discord's refusals.

mod support;

use std::time::Duration;

use discord_sim::{DiscordSim, DiscordSimBuilder, SlashCommand};
use serenity::all::{
    CommandInteraction, CreateEmbed, CreateInteractionResponse, CreateInteractionResponseFollowup,
    CreateInteractionResponseMessage, EditInteractionResponse, Http, HttpBuilder, HttpError, Interaction,
};
use support::*;

struct Fixture {
    sim: DiscordSim,
    gw: RawGateway,
    http: Http,
}

async fn fixture(builder: DiscordSimBuilder) -> Fixture {
    let sim = builder.start().await.unwrap();
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    gw.dispatch("GUILD_CREATE").await;
    let http = HttpBuilder::new(TOKEN).proxy(sim.api_url()).ratelimiter_disabled(true).build();
    http.set_application_id(BOT_ID.into());
    Fixture { sim, gw, http }
}

impl Fixture {
    /// Injects `/name` from alice and returns the interaction as serenity parsed it.
    async fn command(&mut self, name: &str) -> CommandInteraction {
        self.sim.bot(TOKEN).inject_interaction(SlashCommand::new(GUILD, TEXT, ALICE, name)).unwrap();
        let d = self.gw.dispatch("INTERACTION_CREATE").await;
        match serde_json::from_value(d).unwrap() {
            Interaction::Command(c) => c,
            other => panic!("expected a command, got {other:?}"),
        }
    }
}

fn code_of(err: serenity::Error) -> (u16, isize) {
    match err {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(e)) => (e.status_code.as_u16(), e.error.code),
        other => panic!("expected an HTTP error status, got {other:?}"),
    }
}

#[tokio::test]
async fn message_replies_edits_and_followups_are_recorded() {
    let mut f = fixture(world()).await;
    let c = f.command("nowplaying").await;
    let reply = CreateInteractionResponseMessage::new().content("Nothing is playing").ephemeral(true);
    c.create_response(&f.http, CreateInteractionResponse::Message(reply)).await.unwrap();

    let rec = f.sim.wait_reply(c.id.get(), WAIT).await.unwrap();
    assert_eq!((rec.response_type(), rec.content(), rec.ephemeral()), (Some(4), Some("Nothing is playing"), true));
    assert_eq!(rec.callback.as_ref().unwrap()["data"]["flags"], 64);

    // The original answer reads back as a serenity Message, and edits apply to it.
    let original = c.get_response(&f.http).await.unwrap();
    assert_eq!((original.content.as_str(), original.author.id.get()), ("Nothing is playing", BOT_ID));
    let edited = c.edit_response(&f.http, EditInteractionResponse::new().content("Queue is empty")).await.unwrap();
    assert_eq!(edited.content, "Queue is empty");
    let followup = c
        .create_followup(
            &f.http,
            CreateInteractionResponseFollowup::new().embed(CreateEmbed::new().title("Queue").description("1. Song")),
        )
        .await
        .unwrap();
    let rec = f.sim.interaction(c.id.get()).unwrap();
    assert_eq!(rec.content(), Some("Queue is empty"));
    assert_eq!(rec.followups.len(), 1);
    assert_eq!(rec.text(), "Queue is empty\nQueue\n1. Song");

    c.delete_followup(&f.http, followup.id).await.unwrap();
    c.delete_response(&f.http).await.unwrap();
    assert_eq!(code_of(c.get_response(&f.http).await.unwrap_err()), (404, 10008));

    // One callback per interaction.
    let again = c
        .create_response(
            &f.http,
            CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content("twice")),
        )
        .await;
    assert_eq!(code_of(again.unwrap_err()), (400, 40060));
    assert!(f.sim.unknown_requests().is_empty(), "{:?}", f.sim.unknown_requests());
    assert!(f.sim.payload_errors().is_empty(), "{:?}", f.sim.payload_errors());
}

#[tokio::test]
async fn a_deferred_reply_counts_once_it_is_edited() {
    let mut f = fixture(world()).await;
    let c = f.command("play").await;
    c.defer(&f.http).await.unwrap();
    let rec = f.sim.interaction(c.id.get()).unwrap();
    assert_eq!((rec.response_type(), rec.content(), rec.ephemeral()), (Some(5), Some(""), false));
    assert!(f.sim.wait_reply(c.id.get(), Duration::from_millis(300)).await.is_err(), "a deferral alone is no answer");

    c.edit_response(&f.http, EditInteractionResponse::new().content("Playing 440 Hz")).await.unwrap();
    let rec = f.sim.wait_reply(c.id.get(), WAIT).await.unwrap();
    assert_eq!(rec.content(), Some("Playing 440 Hz"));
    assert_eq!(rec.original.as_ref().unwrap()["flags"], 0, "no longer loading");
}

#[tokio::test]
async fn late_or_unknown_interactions_are_refused() {
    let mut f = fixture(world().interaction_deadline(Duration::from_millis(200))).await;
    let c = f.command("skip").await;
    // Follow-ups need an acknowledged interaction.
    let early = c.create_followup(&f.http, CreateInteractionResponseFollowup::new().content("too early")).await;
    assert_eq!(code_of(early.unwrap_err()), (404, 10015));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let late = c
        .create_response(
            &f.http,
            CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content("late")),
        )
        .await;
    assert_eq!(code_of(late.unwrap_err()), (404, 10062));

    let mut forged = f.command("skip").await;
    forged.token = "not-the-token".into();
    let r = forged
        .create_response(
            &f.http,
            CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content("x")),
        )
        .await;
    assert_eq!(code_of(r.unwrap_err()), (404, 10062));
    let recorded = f.sim.requests();
    let callbacks: Vec<_> = recorded.iter().filter(|r| r.route().ends_with("/callback")).collect();
    assert_eq!(callbacks.iter().map(|r| r.status).collect::<Vec<_>>(), [404, 404]);
    assert_eq!(callbacks[0].bot.as_deref(), Some(TOKEN), "the acting bot is known from the interaction");
}

/// Buttons and select menus on a channel message, as serenity builds and parses them: a
/// press arrives as a component interaction carrying the message; an update-message answer
/// or a deferred update and an edit change that message in place.
#[tokio::test]
async fn pressed_components_reach_the_bot_and_answers_change_the_message() {
    use serenity::all::{
        ButtonStyle, ChannelId, ComponentInteractionDataKind, CreateActionRow, CreateButton, CreateMessage,
        CreateSelectMenu, CreateSelectMenuKind, CreateSelectMenuOption,
    };
    let mut f = fixture(world()).await;
    let rows = vec![
        CreateActionRow::Buttons(vec![CreateButton::new("np:pause").label("Pause").style(ButtonStyle::Secondary)]),
        CreateActionRow::SelectMenu(CreateSelectMenu::new(
            "pick",
            CreateSelectMenuKind::String { options: vec![CreateSelectMenuOption::new("One", "1")] },
        )),
    ];
    let sent = ChannelId::new(TEXT).send_message(&f.http, CreateMessage::new().content("Now playing").components(rows));
    let sent = sent.await.unwrap();
    let bot = f.sim.bot(TOKEN);
    let press = |custom_id: &str| discord_sim::Press::button(GUILD, TEXT, ALICE, sent.id.get(), custom_id);
    assert!(bot.press(press("np:nothing")).is_err(), "only components the message has can be pressed");

    bot.press(press("np:pause")).unwrap();
    let d = f.gw.dispatch("INTERACTION_CREATE").await;
    let Interaction::Component(c) = serde_json::from_value(d).unwrap() else { panic!("not a component interaction") };
    assert_eq!((c.data.custom_id.as_str(), c.message.id), ("np:pause", sent.id));
    assert!(matches!(c.data.kind, ComponentInteractionDataKind::Button));
    let update = CreateInteractionResponseMessage::new().content("Paused");
    c.create_response(&f.http, CreateInteractionResponse::UpdateMessage(update)).await.unwrap();
    assert_eq!(bot.message(sent.id.get()).unwrap()["content"], "Paused");

    bot.press(discord_sim::Press::select(GUILD, TEXT, BOB, sent.id.get(), "pick", &["1"])).unwrap();
    let d = f.gw.dispatch("INTERACTION_CREATE").await;
    let Interaction::Component(c) = serde_json::from_value(d).unwrap() else { panic!("not a component interaction") };
    let ComponentInteractionDataKind::StringSelect { values } = &c.data.kind else { panic!("{:?}", c.data.kind) };
    assert_eq!((values.as_slice(), c.user.id.get()), (["1".to_string()].as_slice(), BOB));
    c.create_response(&f.http, CreateInteractionResponse::Acknowledge).await.unwrap();
    c.edit_response(&f.http, EditInteractionResponse::new().content("Picked one").components(vec![])).await.unwrap();
    let now = bot.message(sent.id.get()).unwrap();
    assert_eq!((now["content"].as_str(), now["components"].as_array().map(Vec::len)), (Some("Picked one"), Some(0)));
    assert!(f.sim.payload_errors().is_empty(), "{:?}", f.sim.payload_errors());
}

/// An autocomplete question carries the focused option and the member's locale, roles and
/// permissions; its answer's choices are kept (at most 25, as Discord allows).
#[tokio::test]
async fn autocomplete_questions_carry_the_focused_option_and_answers_keep_the_choices() {
    use serenity::all::{AutocompleteChoice, CreateAutocompleteResponse, GuildId, UserId};
    let sim = world()
        .guild(
            discord_sim::GuildSpec::new(GUILD, "Thai guild")
                .text_channel(TEXT, "general")
                .role(GUILD + 50, "DJ")
                .member(discord_sim::UserSpec::new(ALICE, "alice").locale("th").with_role(GUILD + 50).manager())
                .locale("th"),
        )
        .start()
        .await
        .unwrap();
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    let http = HttpBuilder::new(TOKEN).proxy(sim.api_url()).ratelimiter_disabled(true).build();
    sim.bot(TOKEN).inject_autocomplete(SlashCommand::new(GUILD, TEXT, ALICE, "play").typing("query", "ab")).unwrap();
    let d = gw.dispatch("INTERACTION_CREATE").await;
    let Interaction::Autocomplete(a) = serde_json::from_value(d).unwrap() else { panic!("not autocomplete") };
    let focused = a.data.autocomplete().unwrap();
    assert_eq!((focused.name, focused.value), ("query", "ab"));
    assert_eq!((a.locale.as_str(), a.guild_locale.as_deref()), ("th", Some("th")));
    let member = a.member.as_ref().unwrap();
    assert_eq!(member.roles, [serenity::all::RoleId::new(GUILD + 50)]);
    assert!(member.permissions.unwrap().manage_guild());
    assert_eq!((a.guild_id, a.user.id), (Some(GuildId::new(GUILD)), UserId::new(ALICE)));

    let choices: Vec<AutocompleteChoice> =
        (0..3).map(|i| AutocompleteChoice::new(format!("ab {i}"), format!("ab {i}"))).collect();
    a.create_response(
        &http,
        CreateInteractionResponse::Autocomplete(CreateAutocompleteResponse::new().set_choices(choices)),
    )
    .await
    .unwrap();
    let rec = sim.wait_reply(a.id.get(), WAIT).await.unwrap();
    assert_eq!(rec.choices().iter().map(|c| c["name"].as_str().unwrap()).collect::<Vec<_>>(), ["ab 0", "ab 1", "ab 2"]);

    // Too many choices, or a message answer to a question, are refused.
    sim.bot(TOKEN).inject_autocomplete(SlashCommand::new(GUILD, TEXT, ALICE, "play").typing("query", "x")).unwrap();
    let d = gw.dispatch("INTERACTION_CREATE").await;
    let Interaction::Autocomplete(a) = serde_json::from_value(d).unwrap() else { panic!("not autocomplete") };
    let message = CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content("no"));
    assert_eq!(code_of(a.create_response(&http, message).await.unwrap_err()), (400, 50035));
    let many: Vec<AutocompleteChoice> =
        (0..26).map(|i| AutocompleteChoice::new(i.to_string(), i.to_string())).collect();
    let r = a.create_response(
        &http,
        CreateInteractionResponse::Autocomplete(CreateAutocompleteResponse::new().set_choices(many)),
    );
    assert_eq!(code_of(r.await.unwrap_err()), (400, 50035));
    assert!(sim.payload_errors().is_empty(), "{:?}", sim.payload_errors());
}
