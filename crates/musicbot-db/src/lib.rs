//! The fleet's MongoDB data, shared by the operator (sync, assignment, CLI) and bot-runner
//! (guild tracking, fleet mode, command scripts), and following the records live (`follow`).
//!
//! Collections and field names follow the seed's Prisma models, so an existing database
//! works unchanged: `MusicBotDB` (one document per bot) and `ServerMusicBotDB` (which bot
//! serves which guild).

pub mod assignment;
pub mod cipher;
pub mod connect;
pub mod follow;
pub mod guild_entry;
pub mod guilds;
pub mod invite;
pub mod records;

pub use assignment::{AssignError, Assigner, Assignment};
pub use cipher::{CipherError, TokenCipher};
pub use guild_entry::GuildEntry;
pub use guilds::GuildTracker;
pub use invite::{MUSIC_BOT_PERMISSIONS, invite_url};
pub use records::{AssignmentStatus, BotRecord, Collections, RecordError};
