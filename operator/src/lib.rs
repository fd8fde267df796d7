//! musicbot-operator: MusicBot resources reconciled into bot-runner pods.

pub mod assign;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
mod digest;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod mongo;
pub mod sync;
