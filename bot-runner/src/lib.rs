//! bot-runner: one Discord music bot per process (serenity gateway, songbird voice, poise
//! commands), with probes, metrics and MongoDB guild tracking; or several bots in one
//! process for people without Kubernetes.

pub mod app;
pub mod bot;
pub mod ca;
pub mod cli;
pub mod commands;
pub mod discord;
mod events;
pub mod fleet;
pub mod http;
pub mod metrics;
pub mod music;
pub mod registration;
pub mod sandbox;
pub mod shutdown;
pub mod telemetry;
pub mod token;
pub mod tracking;
