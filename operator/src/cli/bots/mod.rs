//! `musicbot-operator bots add|list|remove|invite|encrypt|keygen`: the records in MongoDB,
//! replacing the seed's seed script. Tokens are read from stdin or a file (never from
//! argv, where `ps` and shell history would keep them) and never printed.

mod add;
mod encrypt;
mod invite;
mod list;
mod remove;

pub use add::AddArgs;
pub use encrypt::EncryptArgs;
pub use invite::InviteArgs;
pub use list::ListArgs;
pub use remove::RemoveArgs;

use clap::Subcommand;
use musicbot_db::cipher::TokenCipher;

#[derive(Subcommand, Debug)]
pub enum BotsCommand {
    /// Add a bot: checks the client id and the token, stores the token encrypted, prints the invite URL.
    Add(AddArgs),
    /// List the bots (never their tokens).
    List(ListArgs),
    /// Remove a bot's record(s); the sync then deletes its MusicBot and Secret.
    Remove(RemoveArgs),
    /// Print a bot's invite URL, or with --guild pick the least-loaded bot for a guild and record the invite.
    Invite(InviteArgs),
    /// Encrypt every plaintext token in place (with --old-key-file: re-encrypt under the current key).
    Encrypt(EncryptArgs),
    /// Print a new random token key (base64) to put in the key Secret.
    Keygen,
}

pub async fn run(command: BotsCommand) -> anyhow::Result<()> {
    match command {
        BotsCommand::Add(a) => add::add(a).await,
        BotsCommand::List(a) => list::list(a).await,
        BotsCommand::Remove(a) => remove::remove(a).await,
        BotsCommand::Invite(a) => invite::invite(a).await,
        BotsCommand::Encrypt(a) => encrypt::encrypt(a).await,
        BotsCommand::Keygen => {
            println!("{}", TokenCipher::generate_key());
            Ok(())
        }
    }
}

/// A well-shaped token of `client`, for the tests.
#[cfg(test)]
fn token(client: &str) -> String {
    use base64::Engine;
    format!("{}.Gx1y2z.tail-of-the-token", base64::engine::general_purpose::STANDARD_NO_PAD.encode(client))
}
