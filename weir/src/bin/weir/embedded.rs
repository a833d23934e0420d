//! `weir run`: a coordinator and a worker in this process (on ephemeral
//! ports of 127.0.0.1, with a temporary data directory), the job submitted
//! to them as to any cluster; its standard output is printed at its end.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::ArgMatches;

use crate::submit::{job_arguments, submit_job};

/// Slots of the embedded worker: slots only count slices, so plenty.
const EMBEDDED_SLOTS: u32 = 256;

pub async fn run(args: &ArgMatches) -> Result<ExitCode> {
    let binary = job_binary(args)?;
    let data = tempfile::tempdir().context("a temporary data directory for the embedded cluster")?;
    let loopback: SocketAddr = "127.0.0.1:0".parse().context("loopback address")?;
    let config = weir_coordinator::CoordinatorConfig::new(loopback, data.path().join("coordinator"));
    let (ready, address) = tokio::sync::oneshot::channel();
    let coordinator = tokio::spawn(weir_coordinator::serve(config, Some(ready)));
    let url = format!("http://{}", address.await.context("the embedded coordinator did not start")?);
    let worker_data = data.path().join("worker");
    let config = weir_worker::daemon::WorkerConfig {
        coordinator: url.clone(),
        slots: EMBEDDED_SLOTS,
        data_dir: worker_data.clone(),
        bind: loopback,
    };
    let (ready, started) = tokio::sync::oneshot::channel();
    let worker = tokio::spawn(weir_worker::daemon::run(config, Some(ready)));
    started.await.context("the embedded worker did not start")?;
    let (job_id, code) = submit_job(&url, &binary, job_arguments(args), String::new(), false).await?;
    print_job_output(&worker_data, &job_id)?;
    worker.abort();
    coordinator.abort();
    Ok(code)
}

/// The binary given, or the example named by `--example`.
fn job_binary(args: &ArgMatches) -> Result<PathBuf> {
    match (args.get_one::<PathBuf>("binary"), args.get_one::<String>("example")) {
        (Some(binary), _) => Ok(binary.clone()),
        (None, Some(example)) => {
            // `cargo build --example NAME` puts it next to this binary's directory.
            let me = std::env::current_exe().context("locating the weir binary")?;
            let binary = me.parent().context("the weir binary's directory")?.join("examples").join(example);
            if !binary.exists() {
                bail!(
                    "example '{example}' is not built at {}: run `cargo build --example {example}`",
                    binary.display()
                );
            }
            Ok(binary)
        }
        (None, None) => bail!("give a job binary, or --example NAME"),
    }
}

/// Prints what the job wrote to its standard output. The worker keeps each
/// job process's in its logs (`<job>-<attempt>-<process>.out`); the one
/// worker here runs one process per deployment, and the last file is the
/// latest deployment's.
fn print_job_output(worker_data: &Path, job_id: &str) -> Result<()> {
    let mut outputs: Vec<PathBuf> = std::fs::read_dir(worker_data.join("logs"))
        .context("the embedded worker's logs")?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "out"))
        .filter(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with(job_id)))
        .collect();
    outputs.sort();
    if let Some(last) = outputs.last() {
        let text = std::fs::read(last).with_context(|| format!("reading {}", last.display()))?;
        std::io::Write::write_all(&mut std::io::stdout(), &text)?;
    }
    Ok(())
}
