//! What crosses a process boundary between musicbot-operator and bot-runner, defined once:
//! the MusicBot CRD, bot-runner's `/status` answer, the environment of a bot pod, the
//! labels and annotations the controller and the sync share, the token's shape, and what
//! the bots of a fleet say to each other.

pub mod conditions;
pub mod crd;
pub mod env;
pub mod handoff;
pub mod labels;
pub mod report;
pub mod token;

pub use crd::{MusicBot, MusicBotSpec, MusicBotStatus, Phase};
pub use report::{BotReport, ShardInfo, StatusReport};
pub use token::{Token, TokenError};
