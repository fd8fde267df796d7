//! The OAuth2 URL that adds a bot to a guild, with the permissions a music bot needs.

/// Discord permission bits a music bot needs, and nothing more:
/// - View Channels (1 << 10 = 1,024): see the text channel it is asked in and voice channels;
/// - Send Messages (1 << 11 = 2,048): answer outside interaction replies (now playing, errors);
/// - Embed Links (1 << 14 = 16,384): the queue and now-playing embeds;
/// - Connect (1 << 20 = 1,048,576): join a voice channel;
/// - Speak (1 << 21 = 2,097,152): play audio in it;
/// - Use Voice Activity (1 << 25 = 33,554,432): transmit without push-to-talk.
///
/// Sum: 36,719,616.
pub const MUSIC_BOT_PERMISSIONS: u64 = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 20) | (1 << 21) | (1 << 25);

/// `bot` joins the guild; `applications.commands` lets it register slash commands there.
const SCOPES: &str = "bot%20applications.commands";

/// The invite URL of a bot. With a guild, Discord preselects it, so an assignment's invite
/// can only add the bot where it was assigned.
pub fn invite_url(client_id: &str, guild_id: Option<&str>) -> String {
    let mut url = format!(
        "https://discord.com/oauth2/authorize?client_id={client_id}&scope={SCOPES}&permissions={MUSIC_BOT_PERMISSIONS}"
    );
    if let Some(g) = guild_id {
        url.push_str(&format!("&guild_id={g}&disable_guild_select=true"));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_the_six_music_bits() {
        assert_eq!(MUSIC_BOT_PERMISSIONS, 36_719_616);
        assert_eq!(MUSIC_BOT_PERMISSIONS.count_ones(), 6);
    }

    #[test]
    fn urls_carry_scopes_permissions_and_the_guild() {
        assert_eq!(
            invite_url("123456789012345678", None),
            "https://discord.com/oauth2/authorize?client_id=123456789012345678&scope=bot%20applications.commands&permissions=36719616"
        );
        assert!(invite_url("1", Some("42")).ends_with("&guild_id=42&disable_guild_select=true"));
    }
}
