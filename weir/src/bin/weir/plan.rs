//! Planning a job binary: run it in plan mode (with `WEIR_PLAN_OUTPUT` set,
//! `StreamEnv::execute` writes the job graph and the process ends) and read
//! the graph it wrote. `weir submit` and `weir run` submit that graph;
//! `weir plan` prints it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::ArgMatches;
use weir_common::JobGraph;

use crate::submit::job_arguments;

/// How long planning may take before the binary is given up on.
const PLAN_TIMEOUT: Duration = Duration::from_secs(60);

/// `weir plan`: prints the job graph, as text or as Graphviz DOT.
pub async fn print_plan(args: &ArgMatches) -> Result<ExitCode> {
    let binary = args.get_one::<PathBuf>("binary").context("JOB_BINARY")?;
    let graph = plan_job(binary, &job_arguments(args)).await?;
    let text = if args.get_flag("dot") { graph.to_dot() } else { graph.to_string() };
    // Not print!: a closed pipe (`weir plan … | head`) is an error, not a panic.
    std::io::stdout().lock().write_all(text.as_bytes()).context("writing the plan")?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the binary in plan mode; returns its job graph, validated.
pub async fn plan_job(binary: &Path, args: &[String]) -> Result<JobGraph> {
    let output_dir = tempfile::tempdir().context("a temporary directory for planning")?;
    let graph_file = output_dir.path().join("job-graph.pb");
    let child = tokio::process::Command::new(binary)
        .args(args)
        .env(weir::env::PLAN_OUTPUT_ENV, &graph_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run '{}'", binary.display()))?;
    let output = tokio::time::timeout(PLAN_TIMEOUT, child.wait_with_output()).await.map_err(|_| {
        anyhow!("'{}' did not plan a job within {PLAN_TIMEOUT:?}: is it a Weir job?", binary.display())
    })??;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("'{}' failed while planning its job ({}):\n{}", binary.display(), output.status, stderr.trim_end());
    }
    let bytes = std::fs::read(&graph_file).map_err(|_| {
        anyhow!(
            "'{}' is not a Weir job: it ended without planning a job graph (it never calls StreamEnv::execute)",
            binary.display()
        )
    })?;
    JobGraph::decode(&bytes).with_context(|| format!("'{}' planned an invalid job graph", binary.display()))
}
