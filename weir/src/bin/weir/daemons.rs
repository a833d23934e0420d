//! `weir coordinator` and `weir worker`: the cluster's processes, which
//! print where they serve and run until they are stopped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ArgMatches;

use crate::jobs::coordinator_url;

/// The cluster has no authentication or TLS yet (SECURITY.md): its
/// processes listen on loopback unless the operator says the network is
/// trusted, and then it says loudly that the cluster is open.
fn check_bind(args: &ArgMatches) -> Result<SocketAddr> {
    let bind = *args.get_one::<SocketAddr>("bind").context("--bind")?;
    if bind.ip().is_loopback() {
        return Ok(bind);
    }
    if !args.get_flag("open-cluster") {
        bail!(
            "--bind {bind} would let anyone who reaches it run programs on the cluster's workers: \
             Weir has no authentication or TLS yet. Bind a loopback address, or pass --open-cluster \
             on a network you trust (see SECURITY.md)"
        );
    }
    eprintln!("WARNING: the cluster is open: {bind} accepts jobs and deployments from anyone who reaches it");
    Ok(bind)
}

pub async fn coordinator(args: &ArgMatches) -> Result<ExitCode> {
    let bind = check_bind(args)?;
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
        bind: check_bind(args)?,
    };
    let (ready, address) = tokio::sync::oneshot::channel();
    let worker = tokio::spawn(weir_worker::daemon::run(config, Some(ready)));
    if let Ok(address) = address.await {
        println!("worker serving on http://{address}");
    }
    worker.await??;
    Ok(ExitCode::SUCCESS)
}
