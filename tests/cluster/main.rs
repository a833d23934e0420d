//! The cluster as real processes on 127.0.0.1 with ephemeral ports: a
//! coordinator, workers, and `weir submit` of a compiled example. The test
//! kills only the processes it started.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[path = "../common/mod.rs"]
mod common;
mod control_plane;
mod harness;

use harness::*;

#[test]
fn a_job_spread_over_three_workers_gives_the_output_of_a_local_run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path(), 3, 2)?;
    let example = common::example_binary("event_time_windows")?;
    let output = dir.path().join("out");
    let output_arg = output.to_str().context("path")?;
    let submitted = Instant::now();
    let job = cluster.submit_detached(&example, 4, &generator_args("200000", output_arg))?;
    let running = cluster.wait_for(&job, "RUNNING", &[], Duration::from_secs(30))?;
    eprintln!("submit to running: {:?}", submitted.elapsed());
    // Four slices over three workers of two slots: every worker runs a process.
    assert_eq!(job_workers(&running).len(), 3, "{running}");
    cluster.wait_for(&job, "FINISHED", &[], Duration::from_secs(120))?;
    eprintln!("submit to finished: {:?}", submitted.elapsed());
    // The same binary run locally.
    let local_output = dir.path().join("local");
    let mut local_args = generator_args("200000", local_output.to_str().context("path")?);
    let local_checkpoints = dir.path().join("local-chk");
    local_args.extend(["--parallelism", "4", "--checkpoint-dir", local_checkpoints.to_str().context("path")?]);
    let local = Command::new(&example).args(local_args).output()?;
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));
    let expected = group_by(&generated_readings(200_000), 1000);
    assert_eq!(committed(&local_output), expected);
    assert_eq!(committed(&output), expected, "the cluster's output equals the local run's");
    Ok(())
}

#[test]
fn a_file_job_submitted_and_waited_for_gives_the_output_of_a_local_run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path(), 2, 1)?;
    let input = dir.path().join("readings.csv");
    let text = write_readings(&input, 30_000)?;
    let example = common::example_binary("event_time_windows")?;
    let (input, output) = (input.to_str().context("path")?, dir.path().join("out"));
    let output_arg = output.to_str().context("path")?;
    let example_arg = example.to_str().context("path")?;
    let mut args = vec!["submit", example_arg, "--parallelism", "2", "--"];
    args.extend(job_args(input, output_arg));
    let run = cluster.weir(&args)?;
    if !run.status.success() {
        bail!("submit failed: {}", String::from_utf8_lossy(&run.stderr));
    }
    assert_eq!(committed(&output), group_by(&text, 1000));
    Ok(())
}

#[test]
fn a_killed_worker_is_replaced_and_the_output_stays_exact() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::start(dir.path(), 3, 2)?;
    let example = common::example_binary("event_time_windows")?;
    let output = dir.path().join("out");
    let output_arg = output.to_str().context("path")?;
    let mut job_args = generator_args("600000", output_arg);
    job_args.extend(["--rate", "100000"]);
    let job = cluster.submit_detached(&example, 4, &job_args)?;
    let status = cluster.wait_for(&job, "RUNNING", &[], Duration::from_secs(30))?;
    // Kill the worker of the job's leader once a checkpoint has committed output.
    wait_for_commit(&output)?;
    let leader = job_workers(&status).first().cloned().context("the job's workers")?;
    let victim = cluster
        .workers
        .iter()
        .position(|(_, url)| leader.ends_with(url.trim_start_matches("http://")))
        .context("the leader's worker")?;
    let (mut process, _) = cluster.workers.remove(victim);
    process.0.kill()?;
    let killed = Instant::now();
    // Running again on the workers left (a deployment tried on the dead
    // worker before it was known dead counts as an attempt too).
    let again = loop {
        let status = cluster.wait_for(&job, "RUNNING", &[], Duration::from_secs(30))?;
        if !status.contains("attempts=1 ") && !job_workers(&status).contains(&leader) {
            break status;
        }
        if killed.elapsed() > Duration::from_secs(30) {
            bail!("the job did not move off the killed worker: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("worker killed -> job running again: {:?} ({})", killed.elapsed(), again.trim());
    assert_eq!(job_workers(&again).len(), 2, "four slices on the two workers left: {again}");
    cluster.wait_for(&job, "FINISHED", &[], Duration::from_secs(120))?;
    assert_eq!(committed(&output), group_by(&generated_readings(600_000), 1000), "nothing lost, nothing twice");
    Ok(())
}

#[test]
fn a_job_stopped_with_a_savepoint_resumes_from_it_at_another_parallelism() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path(), 3, 2)?;
    let example = common::example_binary("event_time_windows")?;
    let output = dir.path().join("out");
    let output_arg = output.to_str().context("path")?;
    let example_arg = example.to_str().context("path")?;
    let mut job_args = generator_args("400000", output_arg);
    // At parallelism 3 one reader takes over two of the four generator
    // positions and interleaves them; their event times differ by how far
    // apart the stopped readers were, so the watermark allows for that (it
    // follows each reader, not each position).
    job_args.extend(["--rate", "100000", "--out-of-orderness-ms", "30000"]);
    let job = cluster.submit_detached(&example, 4, &job_args)?;
    cluster.wait_for(&job, "RUNNING", &[], Duration::from_secs(30))?;
    wait_for_commit(&output)?;
    let savepoint = cluster.weir(&["savepoint", &job, "--stop"])?;
    assert!(savepoint.status.success(), "{}", String::from_utf8_lossy(&savepoint.stderr));
    let path = String::from_utf8(savepoint.stdout)?.trim().to_owned();
    assert!(Path::new(&path).join("_metadata").exists(), "the savepoint is at {path}");
    cluster.wait_for(&job, "FINISHED", &[], Duration::from_secs(30))?;
    let partial = committed(&output);
    let expected = group_by(&generated_readings(400_000), 1000);
    assert!(!partial.is_empty() && partial.len() < expected.len(), "stopped mid-way: {} rows", partial.len());
    // Resume with three slices instead of four.
    let mut args = vec!["submit", example_arg, "--parallelism", "3", "--from-savepoint", &path, "--"];
    args.extend(job_args.iter().copied());
    let resumed = cluster.weir(&args)?;
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_same_rows(&committed(&output), &expected, "stopped and resumed: nothing lost, nothing twice");
    Ok(())
}

#[test]
fn weir_run_runs_a_job_on_an_embedded_cluster_and_prints_its_output() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("words.txt");
    std::fs::write(&input, "the quick fox\nthe lazy dog\nthe end\n")?;
    common::example_binary("wordcount")?; // Built, where `--example` finds it.
    let run = Command::new(WEIR)
        .args(["run", "--example", "wordcount", "--parallelism", "2", "--", input.to_str().context("path")?])
        .output()?;
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let mut counts: Vec<String> = String::from_utf8(run.stdout)?.lines().map(str::to_owned).collect();
    counts.sort();
    let expected = ["dog\t1", "end\t1", "fox\t1", "lazy\t1", "quick\t1", "the\t3"];
    assert_eq!(counts, expected);
    Ok(())
}

/// Resident memory (bytes) and CPU time used so far (clock ticks) of `pid`.
fn rss_and_cpu(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the command.
    let cpu = fields.get(11).and_then(|utime| utime.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|stime| stime.parse::<u64>().ok()).unwrap_or(0);
    (rss_kb * 1024, cpu)
}

#[test]
fn a_slow_sink_backpressures_its_producers_across_processes_with_bounded_memory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path(), 2, 1)?;
    let example = common::example_binary("throughput")?;
    let example_arg = example.to_str().context("path")?;
    // A billion records, summed per key and then handed to a sink that takes
    // 20,000 per second: without backpressure the generators would race
    // ahead and buffer hundreds of megabytes within seconds.
    let args = [
        "submit",
        example_arg,
        "--parallelism",
        "2",
        "--detached",
        "--",
        "--pipeline",
        "keyed",
        "--records",
        "1000000000",
        "--sink-records-per-second",
        "20000",
    ];
    let submitted = cluster.weir(&args)?;
    let job = String::from_utf8(submitted.stdout)?.trim().to_owned();
    assert!(job.starts_with("job-"), "{}", String::from_utf8_lossy(&submitted.stderr));
    let running = cluster.wait_for(&job, "RUNNING", &[], Duration::from_secs(30))?;
    assert_eq!(job_workers(&running).len(), 2, "one slice per worker: the keyed exchange crosses processes");
    let job_processes: Vec<u32> = cluster.workers.iter().flat_map(|(worker, _)| children(worker.0.id())).collect();
    assert_eq!(job_processes.len(), 2, "one job process per worker");
    std::thread::sleep(Duration::from_secs(2)); // Past start-up: buffers fill, then stay full.
    let ticks_per_second = 100.0; // USER_HZ on Linux.
    let first: Vec<(u64, u64)> = job_processes.iter().map(|pid| rss_and_cpu(*pid)).collect();
    let mut peak = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(200));
        peak = peak.max(job_processes.iter().map(|pid| rss_and_cpu(*pid).0).max().unwrap_or(0));
    }
    let last: Vec<(u64, u64)> = job_processes.iter().map(|pid| rss_and_cpu(*pid)).collect();
    let cpu_seconds: f64 = first.iter().zip(&last).map(|(a, b)| (b.1 - a.1) as f64 / ticks_per_second).sum();
    let growth: i64 = first.iter().zip(&last).map(|(a, b)| b.0 as i64 - a.0 as i64).max().unwrap_or(0);
    eprintln!(
        "slow sink: peak RSS {:.1} MiB, largest growth over 4 s {:.1} MiB, CPU {cpu_seconds:.2} s in 4 s",
        peak as f64 / 1048576.0,
        growth as f64 / 1048576.0
    );
    assert!(cluster.status(&job)?.contains(" RUNNING "), "the job is held back, not finished");
    assert!(peak < 200 * 1024 * 1024, "memory stays bounded: peak RSS {peak} bytes");
    assert!(growth < 16 * 1024 * 1024, "memory does not grow: {growth} bytes in 4 s");
    // Blocked producers do not spin: two processes use well under their two cores.
    assert!(cpu_seconds < 4.0, "the producers wait for credit: {cpu_seconds} CPU seconds in 4 s");
    let canceled = cluster.weir(&["cancel", &job])?;
    assert!(canceled.status.success());
    Ok(())
}

#[test]
fn bad_submissions_get_clear_errors_and_the_cluster_stays_healthy() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path(), 1, 2)?;
    let stderr = |output: std::process::Output| String::from_utf8_lossy(&output.stderr).into_owned();
    // Not a Weir job: a program that exits without planning.
    let not_a_job = cluster.weir(&["submit", "/bin/true"])?;
    assert!(!not_a_job.status.success());
    assert!(stderr(not_a_job).contains("is not a Weir job"));
    // A job binary that fails while planning (a malformed flag).
    let example = common::example_binary("event_time_windows")?;
    let example_arg = example.to_str().context("path")?;
    let failing = cluster.weir(&["submit", example_arg, "--", "--window-ms", "zero"])?;
    assert!(!failing.status.success());
    assert!(stderr(failing).contains("failed while planning"));
    // A missing binary.
    let missing = cluster.weir(&["submit", "/nonexistent/job"])?;
    assert!(stderr(missing).contains("/nonexistent/job"));
    // An unreachable coordinator.
    let unreachable = Command::new(WEIR).args(["list", "--coordinator", "http://127.0.0.1:1"]).output()?;
    assert!(!unreachable.status.success());
    assert!(stderr(unreachable).contains("cannot reach the coordinator at http://127.0.0.1:1"));
    // A truncated upload: the header promises more than arrives.
    let runtime = tokio::runtime::Runtime::new()?;
    let refused = runtime.block_on(async {
        use weir_proto::v1 as pb;
        let mut client = pb::coordinator_client::CoordinatorClient::connect(cluster.url.clone()).await?;
        let header = pb::ArtifactHeader { sha256: "a".repeat(64), size: 1000 };
        let parts = vec![
            pb::UploadArtifactRequest { part: Some(pb::upload_artifact_request::Part::Header(header)) },
            pb::UploadArtifactRequest { part: Some(pb::upload_artifact_request::Part::Chunk(vec![1, 2, 3])) },
        ];
        let answer = client.upload_artifact(tokio_stream::iter(parts)).await;
        anyhow::Ok(answer.expect_err("a truncated upload is refused").message().to_owned())
    })?;
    assert!(refused.contains("does not match its header"), "{refused}");
    // The cluster still runs a good job.
    let input = dir.path().join("readings.csv");
    let text = write_readings(&input, 3_000)?;
    let output = dir.path().join("out");
    let mut args = vec!["submit", example_arg, "--"];
    args.extend(job_args(input.to_str().context("path")?, output.to_str().context("path")?));
    let good = cluster.weir(&args)?;
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    assert_eq!(committed(&output), group_by(&text, 1000));
    Ok(())
}

#[test]
fn a_killed_coordinator_restarted_resumes_the_job_with_exact_output() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::restartable(dir.path(), 1, 2)?;
    let input = dir.path().join("readings.csv");
    let text = write_readings(&input, 400_000)?;
    let example = common::example_binary("event_time_windows")?;
    let (input, output) = (input.to_str().context("path")?, dir.path().join("out"));
    let output_arg = output.to_str().context("path")?;
    let job = cluster.submit_detached(&example, 2, &job_args(input, output_arg))?;
    cluster.wait_for(&job, "RUNNING", &[], Duration::from_secs(30))?;
    wait_for_commit(&output)?;
    cluster.kill_coordinator();
    cluster.restart_coordinator()?;
    cluster.wait_for(&job, "FINISHED", &[], Duration::from_secs(120))?;
    assert_eq!(committed(&output), group_by(&text, 1000), "nothing lost, nothing twice");
    Ok(())
}
