use anyhow::Result;
use clap::Parser;

use bot_runner::app;
use bot_runner::cli::{Cli, Command, CommonArgs};

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Before anything else: the sandbox is a short-lived process around yt-dlp.
    if let Some(Command::YtdlpSandbox(args)) = &cli.command {
        std::process::exit(bot_runner::sandbox::run(args));
    }
    // serenity, songbird and the MongoDB driver all use rustls: one provider for all.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let common: &CommonArgs = match &cli.command {
        None => &cli.run.common,
        Some(Command::Run(a)) => &a.common,
        Some(Command::Fleet(a)) => &a.common,
        Some(Command::Commands(_) | Command::YtdlpSandbox(_)) => &cli.run.common,
    };
    musicbot_runtime::init_logs(common.log_format, &common.log_filter);
    // Before the runtime, so before any other thread: this sets SSL_CERT_FILE. Held to the
    // end of main, which removes the bundle file.
    let _ca_bundle = common.ca_file.as_deref().map(bot_runner::ca::install).transpose()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            None => app::run(cli.run).await,
            Some(Command::Run(a)) => app::run(*a).await,
            Some(Command::Fleet(a)) => app::fleet(*a).await,
            Some(Command::Commands(c)) => app::commands(c).await,
            Some(Command::YtdlpSandbox(_)) => unreachable!("handled before the runtime"),
        }
    })
}
