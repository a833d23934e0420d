//! `weir coordinator` and `weir worker`: the cluster's processes, which
//! print where they serve and run until they are stopped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ArgMatches;

use crate::jobs::coordinator_url;

pub async fn coordinator(args: &ArgMatches) -> Result<ExitCode> {
    let bind = *args.get_one::<SocketAddr>("bind").context("--bind")?;
    let data_dir = args.get_one::<PathBuf>("data-dir").context("--data-dir")?.clone();
    let mut config = weir_coordinator::CoordinatorConfig::new(bind, data_dir);
    config.heartbeat_interval =
        Duration::from_millis(*args.get_one::<u64>("heartbeat-interval-ms").context("interval")?);
    config.heartbeat_timeout = Duration::from_millis(*args.get_one::<u64>("heartbeat-timeout-ms").context("timeout")?);
    let (ready, address) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(weir_coordinator::serve(config, Some(ready)));
    if let Ok(address) = address.await {
        println!("coordinator listening on http://{address}");
    }
    server.await??;
    Ok(ExitCode::SUCCESS)
}

pub async fn worker(args: &ArgMatches) -> Result<ExitCode> {
    let config = weir_worker::daemon::WorkerConfig {
        coordinator: coordinator_url(args)?,
        slots: *args.get_one::<u32>("slots").context("--slots")?,
        data_dir: args.get_one::<PathBuf>("data-dir").context("--data-dir")?.clone(),
        bind: *args.get_one::<SocketAddr>("bind").context("--bind")?,
    };
    let (ready, address) = tokio::sync::oneshot::channel();
    let worker = tokio::spawn(weir_worker::daemon::run(config, Some(ready)));
    if let Ok(address) = address.await {
        println!("worker serving on http://{address}");
    }
    worker.await??;
    Ok(ExitCode::SUCCESS)
}
