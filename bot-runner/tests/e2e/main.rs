//! bot-runner end to end: the real binary against the Discord simulator (audio decoded
//! and measured), SecantusDB for guild tracking, and its HTTP endpoints.

mod commands;
mod controls;
mod dj;
mod fleet;
mod fleet_live;
mod handoff;
mod hostile;
mod identify;
mod picks;
mod playback;
mod process;
mod resilience;
mod sessions;
mod support;
mod tracking;
mod voice;
