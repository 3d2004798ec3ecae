//! `deployer` as a library: the commands behind the binary, and the typed state and
//! configuration the test harness reads. The binary (`main.rs`) only calls [`main`].
//!
//! [`main`] parses the command line, runs the command, prints the error and exits with
//! 0 (ok), 1 (a remote service failed) or 2 (bad input; nothing was changed).

pub mod apply;
#[cfg(test)]
mod architecture_tests;
pub mod aws;
pub mod build;
pub mod cli;
pub mod commands;
pub mod config;
pub mod env;
pub mod error;
pub mod lambda_zip;
pub mod lease;
pub mod migrate;
pub mod neon;
pub mod output;
pub mod plan;
pub mod preview;
pub mod resources;
pub mod retry;
pub mod state;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// Runs `deployer` with the process's arguments: what the binary does.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEPLOYER_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_target(false)
        .init();
    pgconn::tls::install_default_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime\ncaused by: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Deploy(args) => commands::deploy::run(&cli.config, args).await.map(|()| 0),
            Command::Diff(args) => commands::diff::run(&cli.config, args).await.map(|()| 0),
            Command::Remove(args) => commands::remove::run(&cli.config, args).await.map(|()| 0),
            Command::Outputs(args) => commands::outputs::run(&cli.config, args).await.map(|()| 0),
            Command::Migrate(args) => commands::migrate::run(&cli.config, args).await.map(|()| 0),
            Command::Logs(args) => commands::logs::run(&cli.config, args).await.map(|()| 0),
            Command::Releases(args) => commands::releases::list(&cli.config, args)
                .await
                .map(|()| 0),
            Command::Rollback(args) => commands::releases::rollback(&cli.config, args)
                .await
                .map(|()| 0),
            Command::Dev(args) => commands::dev::run(&cli.config, args).await,
            Command::Unlock(args) => commands::unlock::run(&cli.config, args).await.map(|()| 0),
            Command::Refresh(args) => commands::refresh::run(&cli.config, args).await.map(|()| 0),
            Command::Prune(args) => commands::prune::run(&cli.config, args).await.map(|()| 0),
            Command::State(command) => commands::state::run(&cli.config, command).await.map(|()| 0),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::from(failure.code)
        }
    }
}
