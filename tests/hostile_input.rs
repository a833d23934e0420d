//! Forged and malformed requests against real coordinator and worker
//! processes on 127.0.0.1: each is refused with an error that names what is
//! wrong, and the cluster goes on running jobs. The test kills only the
//! processes it started.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use weir_proto::v1 as pb;

mod common;

use common::Process;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// Starts `weir ARGS` and returns it with the rest of its first line after `prefix`.
fn start(args: &[&str], prefix: &str) -> Result<(Process, String)> {
    let mut child = Command::new(WEIR).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let process = Process(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let rest = line.trim().strip_prefix(prefix).with_context(|| format!("unexpected first line {line:?}"))?;
    Ok((process, rest.to_owned()))
}

fn deployment(artifact: &str, job_id: &str) -> pb::DeployJobRequest {
    pb::DeployJobRequest {
        job_id: job_id.into(),
        attempt: 1,
        artifact_sha256: artifact.into(),
        args: vec!["-c".into(), "touch /tmp/weir-owned".into()],
        graph_hash: "hash".into(),
        process_index: 0,
    }
}

#[test]
fn forged_deployments_and_registrations_are_refused_and_the_cluster_still_runs_a_job() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("coordinator");
    let data_arg = data.to_str().context("path")?;
    let (_coordinator, url) =
        start(&["coordinator", "--bind", "127.0.0.1:0", "--data-dir", data_arg], "coordinator listening on ")?;
    let worker_data = dir.path().join("worker");
    let worker_args = ["worker", "--coordinator", &url, "--slots", "2", "--data-dir", worker_data.to_str().context("path")?];
    let (_worker, worker_url) = start(&worker_args, "worker serving on ")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let (deploy_errors, register_error) = runtime.block_on(async {
        let mut worker = pb::worker_client::WorkerClient::connect(worker_url.clone()).await?;
        let sha = "ab".repeat(32);
        let mut errors = Vec::new();
        for request in [deployment("/bin/sh", "job-0000000000000001"), deployment(&sha, "../../../tmp/owned")] {
            let refused = worker.deploy_job(request).await.expect_err("a forged deployment is refused");
            errors.push((refused.code(), refused.message().to_owned()));
        }
        let mut coordinator = pb::coordinator_client::CoordinatorClient::connect(url.clone()).await?;
        let rogue = pb::RegisterWorkerRequest { address: "http://127.0.0.1:9".into(), slots: u32::MAX };
        let refused = coordinator.register_worker(rogue).await.expect_err("a rogue registration is refused");
        anyhow::Ok((errors, refused.message().to_owned()))
    })?;
    assert_eq!(deploy_errors[0].0, tonic::Code::InvalidArgument);
    assert!(deploy_errors[0].1.contains("artifact \"/bin/sh\" is not a lowercase hex SHA-256"), "{deploy_errors:?}");
    assert!(deploy_errors[1].1.contains("job id \"../../../tmp/owned\" is not"), "{deploy_errors:?}");
    assert!(!worker_data.join("logs").read_dir()?.any(|entry| entry.is_ok()), "no log file was created");
    assert!(register_error.contains("a worker offers 1 to 1024 slots, not 4294967295"), "{register_error}");
    // The cluster still runs a real job to its end.
    let input = dir.path().join("words.txt");
    std::fs::write(&input, "to be or not to be\n")?;
    let wordcount = common::example_binary("wordcount")?;
    let args = ["submit", wordcount.to_str().context("path")?, "--coordinator", &url, "--", input.to_str().context("path")?];
    let submitted = Command::new(WEIR).args(args).output()?;
    assert!(submitted.status.success(), "{}", String::from_utf8_lossy(&submitted.stderr));
    Ok(())
}

#[test]
fn a_second_coordinator_on_one_data_directory_refuses_to_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_str().context("path")?;
    let (_first, _url) =
        start(&["coordinator", "--bind", "127.0.0.1:0", "--data-dir", data], "coordinator listening on ")?;
    let second = Command::new(WEIR).args(["coordinator", "--bind", "127.0.0.1:0", "--data-dir", data]).output()?;
    assert!(!second.status.success(), "the second coordinator must not run");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another coordinator uses this data directory"), "{stderr}");
    Ok(())
}
