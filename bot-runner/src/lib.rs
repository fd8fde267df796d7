//! bot-runner: one Discord music bot per process (serenity gateway, songbird voice, poise
//! commands), with probes, metrics and MongoDB guild tracking; or several bots in one
//! process for people without Kubernetes.

// The catalogs of `crate::i18n`, compiled in; English fills what another lacks.
rust_i18n::i18n!("locales", fallback = "en");

pub mod app;
mod bot;
pub mod ca;
pub mod cli;
mod commands;
mod discord;
mod events;
mod fleet;
mod guilds;
mod handoff;
mod http;
mod i18n;
mod identify;
mod metrics;
mod music;
mod registration;
pub mod sandbox;
mod settings;
mod token;
mod tracking;
