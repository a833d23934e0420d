//! The control plane against forged requests and outages: each forged or
//! malformed request is refused with an error that names what is wrong and
//! the cluster goes on; a job that finishes while the coordinator is down is
//! not run again.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use weir_proto::v1 as pb;

use crate::common;
use crate::harness::*;

fn deployment(artifact: &str, job_id: &str) -> pb::DeployJobRequest {
    pb::DeployJobRequest {
        job_id: job_id.into(),
        attempt: 1,
        artifact_sha256: artifact.into(),
        args: vec!["-c".into(), "touch /tmp/weir-owned".into()],
        graph_hash: "hash".into(),
        process_index: 0,
        failure_times_ms: Vec::new(),
    }
}

#[test]
fn forged_deployments_and_registrations_are_refused_and_the_cluster_still_runs_a_job() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path(), 1, 2)?;
    let worker_url = cluster.workers[0].1.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    let (deploy_errors, register_error) = runtime.block_on(async {
        let mut worker = pb::worker_client::WorkerClient::connect(worker_url).await?;
        let sha = "ab".repeat(32);
        let mut errors = Vec::new();
        for request in [deployment("/bin/sh", "job-0000000000000001"), deployment(&sha, "../../../tmp/owned")] {
            let refused = worker.deploy_job(request).await.expect_err("a forged deployment is refused");
            errors.push((refused.code(), refused.message().to_owned()));
        }
        let mut coordinator = pb::coordinator_client::CoordinatorClient::connect(cluster.url.clone()).await?;
        let rogue = pb::RegisterWorkerRequest { address: "http://127.0.0.1:9".into(), slots: u32::MAX };
        let refused = coordinator.register_worker(rogue).await.expect_err("a rogue registration is refused");
        anyhow::Ok((errors, refused.message().to_owned()))
    })?;
    assert_eq!(deploy_errors[0].0, tonic::Code::InvalidArgument);
    assert!(deploy_errors[0].1.contains("artifact \"/bin/sh\" is not a lowercase hex SHA-256"), "{deploy_errors:?}");
    assert!(deploy_errors[1].1.contains("job id \"../../../tmp/owned\" is not"), "{deploy_errors:?}");
    let logs = dir.path().join("worker-0").join("logs");
    assert!(!logs.read_dir()?.any(|entry| entry.is_ok()), "no log file was created");
    assert!(register_error.contains("a worker offers 1 to 1024 slots, not 4294967295"), "{register_error}");
    // The cluster still runs a real job to its end, and a forged report of
    // its leader's clean exit does not end it.
    let output = dir.path().join("out");
    let example = common::example_binary("event_time_windows")?;
    let mut args = generator_args("20000", output.to_str().context("path")?);
    args.extend(["--rate", "10000"]);
    let job = cluster.submit_detached(&example, 2, &args)?;
    cluster.wait_for(&job, "RUNNING", &[], Duration::from_secs(30))?;
    let forged = pb::ReportJobProcessRequest {
        worker_id: "worker-99@127.0.0.1:9".into(),
        job_id: job.clone(),
        attempt: 1,
        process_index: 0,
        state: pb::ProcessState::Exited as i32,
        exit_code: 0,
        message: String::new(),
    };
    let refused = runtime.block_on(async {
        let mut coordinator = pb::coordinator_client::CoordinatorClient::connect(cluster.url.clone()).await?;
        anyhow::Ok(coordinator.report_job_process(forged).await.expect_err("a forged report is refused"))
    })?;
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("does not run process 0 of deployment 1"), "{refused:?}");
    assert!(cluster.status(&job)?.contains(" RUNNING "), "the job still runs");
    cluster.wait_for(&job, "FINISHED", &[], Duration::from_secs(60))?;
    assert_eq!(committed(&output), group_by(&generated_readings(20_000), 1000));
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

#[test]
fn a_job_that_finishes_while_the_coordinator_is_down_is_not_run_again() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::restartable(dir.path(), 1, 2)?;
    let data = dir.path().join("coordinator");
    let input = dir.path().join("readings.csv");
    let text = write_readings(&input, 200_000)?;
    let expected = group_by(&text, 1000);
    let example = common::example_binary("event_time_windows")?;
    let (input, output) = (input.to_str().context("path")?, dir.path().join("out"));
    let job = cluster.submit_detached(&example, 2, &job_args(input, output.to_str().context("path")?))?;
    cluster.wait_for(&job, "RUNNING", &[], Duration::from_secs(30))?;
    cluster.kill_coordinator();
    let down = std::time::Instant::now();
    // The job ends meanwhile: all of its output is committed.
    while committed(&output) != expected {
        anyhow::ensure!(down.elapsed() < Duration::from_secs(60), "the job did not finish without its coordinator");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(15).saturating_sub(down.elapsed()));
    cluster.restart_coordinator()?;
    let status = cluster.wait_for(&job, "FINISHED", &[], Duration::from_secs(30))?;
    assert!(status.contains("attempts=1"), "deployed once only: {status}");
    // Past the recovery hold, nothing runs the job again.
    std::thread::sleep(Duration::from_secs(7));
    assert!(cluster.status(&job)?.contains(" FINISHED "), "still finished");
    assert_eq!(committed(&output), expected, "nothing lost, nothing twice");
    // The coordinator deletes the checkpoints once it recorded the end.
    assert!(!data.join("checkpoints").join(&job).exists(), "a finished job's checkpoints are deleted");
    Ok(())
}

#[test]
fn uploads_larger_than_the_limit_or_than_their_header_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path(), 0, 1)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let refusals = runtime.block_on(async {
        let mut client = pb::coordinator_client::CoordinatorClient::connect(cluster.url.clone()).await?;
        let mut refusals = Vec::new();
        for (size, chunk) in [(u64::MAX, vec![0u8; 16]), (4, vec![0u8; 1024])] {
            let header = pb::ArtifactHeader { sha256: "c".repeat(64), size };
            let parts = vec![
                pb::UploadArtifactRequest { part: Some(pb::upload_artifact_request::Part::Header(header)) },
                pb::UploadArtifactRequest { part: Some(pb::upload_artifact_request::Part::Chunk(chunk)) },
            ];
            let refused = client.upload_artifact(tokio_stream::iter(parts)).await.expect_err("refused");
            refusals.push(refused.message().to_owned());
        }
        anyhow::Ok(refusals)
    })?;
    assert!(refusals[0].contains("larger than the 1073741824 bytes the coordinator accepts"), "{refusals:?}");
    assert!(refusals[1].contains("more than the 4 bytes its header announced"), "{refusals:?}");
    let artifacts = dir.path().join("coordinator").join("artifacts");
    assert_eq!(artifacts.read_dir()?.count(), 0, "nothing stored, no temporary file left");
    Ok(())
}

#[test]
fn a_job_that_sets_its_own_checkpoint_directory_is_refused_at_submit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path(), 1, 2)?;
    let example = common::example_binary("event_time_windows")?;
    let elsewhere = dir.path().join("elsewhere");
    let flag = format!("--checkpoint-dir={}", elsewhere.display());
    let args = ["submit", example.to_str().context("path")?, "--", "--generate", "1000", &flag];
    let refused = cluster.weir(&args)?;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("set --checkpoint-dir, which the cluster sets itself"), "{stderr}");
    assert!(String::from_utf8_lossy(&cluster.weir(&["list"])?.stdout).trim().is_empty(), "no job was created");
    Ok(())
}

/// Whether process `pid` has ended (gone, or a zombie its frozen parent cannot reap).
fn ended(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_none_or(|state| state == "Z")
}

fn signal(pid: u32, name: &str) -> Result<()> {
    let sent = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status()?;
    anyhow::ensure!(sent.success(), "kill -{name} {pid} failed");
    Ok(())
}

#[test]
fn a_frozen_workers_job_process_stops_itself_and_the_job_moves_with_exact_output() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path(), 2, 1)?;
    let output = dir.path().join("out");
    let output_arg = output.to_str().context("path")?;
    let example = common::example_binary("event_time_windows")?;
    let mut args = generator_args("60000", output_arg);
    args.extend(["--rate", "10000"]);
    let job = cluster.submit_detached(&example, 1, &args)?;
    let running = cluster.wait_for(&job, "RUNNING", &[], Duration::from_secs(30))?;
    let worker = job_workers(&running).first().cloned().context("the job's worker")?;
    // A worker's id ends with its address.
    let address = |index: usize| cluster.workers[index].1.trim_start_matches("http://").to_owned();
    let frozen = usize::from(!worker.ends_with(&address(0)));
    let other = address(1 - frozen);
    wait_for_commit(&output)?;
    let worker_pid = cluster.workers[frozen].0.0.id();
    let job_processes = children(worker_pid);
    anyhow::ensure!(!job_processes.is_empty(), "the frozen worker runs the job's process");
    signal(worker_pid, "STOP")?;
    let frozen_at = std::time::Instant::now();
    // The job process cannot renew its lease with a frozen worker: it stops itself.
    while !job_processes.iter().all(|pid| ended(*pid)) {
        anyhow::ensure!(frozen_at.elapsed() < Duration::from_secs(10), "the frozen worker's job process runs on");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped_after = frozen_at.elapsed();
    let moved = cluster.wait_for(&job, "RUNNING", &[&format!("@{other}")], Duration::from_secs(30));
    signal(worker_pid, "CONT")?;
    moved?;
    assert!(stopped_after < Duration::from_secs(3), "stopped within its lease, before the move: {stopped_after:?}");
    cluster.wait_for(&job, "FINISHED", &[], Duration::from_secs(120))?;
    assert_same_rows(&committed(&output), &group_by(&generated_readings(60_000), 1000), "after the freeze");
    Ok(())
}
