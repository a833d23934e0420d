//! `weir`: the command line of a Weir cluster.
//!
//! ```text
//! weir coordinator [--bind 127.0.0.1:6123] [--data-dir DIR] [--heartbeat-interval-ms 500] [--heartbeat-timeout-ms 3000]
//! weir worker [--coordinator URL] [--slots N] [--data-dir DIR] [--bind ADDR]
//! weir submit JOB_BINARY [--coordinator URL] [--parallelism N] [--from-savepoint PATH] [--detached] [-- JOB_ARGS…]
//! weir run (JOB_BINARY | --example NAME) [--parallelism N] [-- JOB_ARGS…]
//! weir plan JOB_BINARY [--parallelism N] [--dot] [-- JOB_ARGS…]
//! weir list [--coordinator URL]
//! weir status JOB_ID [--coordinator URL]
//! weir cancel JOB_ID [--coordinator URL]
//! weir savepoint JOB_ID [--stop] [--coordinator URL]
//! ```
//!
//! The client commands reach the coordinator at `http://127.0.0.1:6123`
//! unless `--coordinator` says otherwise. One module per group of commands:
//! `cli` (the grammar), `daemons`, `submit`, `embedded` (`run`), `plan`,
//! `jobs` (`list`, `status`, `cancel`, `savepoint`).

mod cli;
mod daemons;
mod embedded;
mod jobs;
mod plan;
mod submit;

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::ArgMatches;

fn main() -> ExitCode {
    let matches = cli::command().get_matches();
    // The daemons log what they do; `run` shows the job's output, and only
    // warnings of the embedded cluster.
    let default_level = if matches.subcommand_name() == Some("run") { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only on a terminal: log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(matches)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(matches: ArgMatches) -> Result<ExitCode> {
    match matches.subcommand() {
        Some(("coordinator", args)) => daemons::coordinator(args).await,
        Some(("worker", args)) => daemons::worker(args).await,
        Some(("submit", args)) => submit::submit(args).await,
        Some(("run", args)) => embedded::run(args).await,
        Some(("plan", args)) => plan::print_plan(args).await,
        Some(("list", args)) => jobs::list(args).await,
        Some(("status", args)) => jobs::status(args).await,
        Some(("cancel", args)) => jobs::cancel(args).await,
        Some(("savepoint", args)) => jobs::savepoint(args).await,
        _ => bail!("unknown command; see weir --help"),
    }
}

#[cfg(test)]
mod tests {
    use super::cli::command;

    #[test]
    fn the_command_line_is_well_formed() {
        command().debug_assert();
    }

    /// The synopsis above is checked by eye; the README's, here.
    #[test]
    fn the_readme_shows_every_command() {
        let readme = include_str!("../../../../README.md");
        for subcommand in command().get_subcommands() {
            let usage = format!("weir {} ", subcommand.get_name());
            let listed = readme.lines().any(|line| line.starts_with(&usage) || line == usage.trim_end());
            assert!(listed, "the README's command list lacks a line starting with '{usage}'");
        }
    }
}
