//! The command line. `musicbot-operator [run] [flags]` runs the operator (`run` is the
//! default, so the flags work on their own as before); `musicbot-operator bots ...` manages
//! the bot records in MongoDB.

pub mod bots;

use crate::config::Config;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "musicbot-operator",
    version,
    about = "Runs fleets of Discord music bots on Kubernetes",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: Config,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator (the default when no subcommand is given).
    Run(Box<Config>),
    /// Manage the bot records in MongoDB (add, list, remove, invite, encrypt, keygen).
    #[command(subcommand)]
    Bots(bots::BotsCommand),
}

/// What the process should do.
pub enum Action {
    Run(Box<Config>),
    Bots(bots::BotsCommand),
}

impl Cli {
    pub fn action(self) -> Action {
        match self.command {
            None => Action::Run(Box::new(self.run)),
            Some(Command::Run(config)) => Action::Run(config),
            Some(Command::Bots(command)) => Action::Bots(command),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_alone_still_run_the_operator_and_bots_is_a_subcommand() {
        let Action::Run(c) = Cli::parse_from(["musicbot-operator", "--watch-namespace", "x"]).action() else {
            panic!("flags alone run the operator")
        };
        assert_eq!(c.watch_namespace.as_deref(), Some("x"));
        let Action::Run(c) = Cli::parse_from(["musicbot-operator", "run", "--concurrency", "3"]).action() else {
            panic!("run runs the operator")
        };
        assert_eq!(c.concurrency, 3);
        let parsed = Cli::try_parse_from(["musicbot-operator", "bots", "add", "--client-id", "123456789012345678"]);
        assert!(matches!(parsed.unwrap().action(), Action::Bots(bots::BotsCommand::Add(_))));
        assert!(
            Cli::try_parse_from(["musicbot-operator", "bots", "add", "--client-id", "1", "--token", "x"]).is_err(),
            "there is no way to pass a token in argv"
        );
    }
}
