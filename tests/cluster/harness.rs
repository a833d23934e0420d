//! What the cluster tests share: starting `weir` processes, a cluster of
//! a coordinator and workers, submitting and waiting for jobs, and the
//! expected output of the `event_time_windows` example computed by a plain
//! group-by.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::common::Process;

pub(crate) const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// Starts `weir ARGS` and waits for its line starting with `prefix`; returns
/// the process and the rest of that line (the URL it serves on).
pub(crate) fn start(args: &[&str], prefix: &str) -> Result<(Process, String)> {
    let mut child = Command::new(WEIR).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let process = Process(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line.trim().strip_prefix(prefix).with_context(|| format!("unexpected first line {line:?}"))?;
    Ok((process, url.to_owned()))
}

pub(crate) struct Cluster {
    pub(crate) url: String,
    /// Killed when taken and dropped.
    pub(crate) coordinator: Option<Process>,
    pub(crate) workers: Vec<(Process, String)>,
    pub(crate) dir: PathBuf,
    /// How the coordinator was started, to start it again.
    coordinator_args: Vec<String>,
}

impl Cluster {
    pub(crate) fn start(dir: &Path, workers: usize, slots: u32) -> Result<Self> {
        Self::start_on(dir, "127.0.0.1:0", workers, slots)
    }

    /// A cluster whose coordinator listens on a fixed port, so that it can be
    /// killed and started again with [`Cluster::restart_coordinator`] and the
    /// workers find it.
    pub(crate) fn restartable(dir: &Path, workers: usize, slots: u32) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Self::start_on(dir, &format!("127.0.0.1:{port}"), workers, slots)
    }

    fn start_on(dir: &Path, bind: &str, workers: usize, slots: u32) -> Result<Self> {
        let data = dir.join("coordinator");
        let coordinator_args: Vec<String> =
            ["coordinator", "--bind", bind, "--data-dir", data.to_str().context("path")?].map(String::from).into();
        let args: Vec<&str> = coordinator_args.iter().map(String::as_str).collect();
        let (coordinator, url) = start(&args, "coordinator listening on ")?;
        let dir = dir.to_path_buf();
        let mut cluster = Self { url, coordinator: Some(coordinator), workers: Vec::new(), dir, coordinator_args };
        for _ in 0..workers {
            cluster.add_worker(slots)?;
        }
        Ok(cluster)
    }

    /// Kills the coordinator hard.
    pub(crate) fn kill_coordinator(&mut self) {
        drop(self.coordinator.take());
    }

    /// Starts the coordinator again, on the same address and data directory.
    pub(crate) fn restart_coordinator(&mut self) -> Result<()> {
        let args: Vec<&str> = self.coordinator_args.iter().map(String::as_str).collect();
        self.coordinator = Some(start(&args, "coordinator listening on ")?.0);
        Ok(())
    }

    pub(crate) fn add_worker(&mut self, slots: u32) -> Result<()> {
        let data = self.dir.join(format!("worker-{}", self.workers.len()));
        let slots = slots.to_string();
        let args =
            ["worker", "--coordinator", &self.url, "--slots", &slots, "--data-dir", data.to_str().context("path")?];
        let (process, url) = start(&args, "worker serving on ")?;
        self.workers.push((process, url));
        Ok(())
    }

    /// Runs `weir COMMAND --coordinator URL REST…`.
    pub(crate) fn weir(&self, args: &[&str]) -> Result<std::process::Output> {
        let (command, rest) = args.split_first().context("a command")?;
        Ok(Command::new(WEIR).arg(command).args(["--coordinator", &self.url]).args(rest).output()?)
    }

    /// Submits `binary` detached at `parallelism` with the job's own
    /// arguments; the new job's id.
    pub(crate) fn submit_detached(&self, binary: &Path, parallelism: u32, job_args: &[&str]) -> Result<String> {
        let parallelism = parallelism.to_string();
        let binary = binary.to_str().context("path")?;
        let mut args = vec!["submit", binary, "--parallelism", &parallelism, "--detached", "--"];
        args.extend(job_args);
        let submitted = self.weir(&args)?;
        let job = String::from_utf8(submitted.stdout)?.trim().to_owned();
        if !job.starts_with("job-") {
            bail!("no job id from weir submit: {}", String::from_utf8_lossy(&submitted.stderr));
        }
        Ok(job)
    }

    /// The state and worker of a job, from `weir status`.
    pub(crate) fn status(&self, job: &str) -> Result<String> {
        let output = self.weir(&["status", job])?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Waits until `weir status` shows `state` and every one of `also`.
    pub(crate) fn wait_for(&self, job: &str, state: &str, also: &[&str], limit: Duration) -> Result<String> {
        let started = Instant::now();
        loop {
            let status = self.status(job)?;
            if status.contains(&format!(" {state} ")) && also.iter().all(|text| status.contains(text)) {
                return Ok(status);
            }
            if status.contains(" FAILED ") || started.elapsed() > limit {
                bail!("job {job} is not {state}: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub(crate) fn write_readings(path: &Path, count: i64) -> Result<String> {
    let mut text = String::new();
    for i in 0..count {
        text.push_str(&format!("{},key-{},{}\n", i * 3, (i * 7919) % 50, i % 1000));
    }
    std::fs::write(path, &text)?;
    Ok(text)
}

/// Window rows `start,end,key,count,sum` by a plain group-by.
pub(crate) fn group_by(text: &str, size: i64) -> Vec<String> {
    let mut groups: BTreeMap<(i64, String), (u64, i64)> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let (timestamp, value): (i64, i64) = (fields[0].parse().unwrap_or(0), fields[2].parse().unwrap_or(0));
        let entry = groups.entry((timestamp - timestamp.rem_euclid(size), fields[1].to_owned())).or_default();
        entry.0 += 1;
        entry.1 += value;
    }
    let mut rows: Vec<String> = groups
        .into_iter()
        .map(|((start, key), (count, sum))| format!("{start},{},{key},{count},{sum}", start + size))
        .collect();
    rows.sort();
    rows
}

pub(crate) fn committed(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(std::fs::read_to_string(entry.path()).unwrap_or_default().lines().map(str::to_owned));
        }
    }
    lines.sort();
    lines
}

/// Compares rows as multisets and names what is missing or extra.
pub(crate) fn assert_same_rows(actual: &[String], expected: &[String], what: &str) {
    let count = |rows: &[String]| {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        rows.iter().for_each(|row| *counts.entry(row.clone()).or_default() += 1);
        counts
    };
    let (have, want) = (count(actual), count(expected));
    let missing: Vec<_> = want.iter().filter(|(row, n)| have.get(*row) != Some(n)).take(5).collect();
    let extra: Vec<_> = have.iter().filter(|(row, n)| want.get(*row) != Some(n)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} rows, {} expected; expected but not (as often) found: {missing:?}; found unexpectedly: {extra:?}",
        actual.len(),
        expected.len()
    );
}

/// Waits until a checkpoint has committed output into `dir`.
pub(crate) fn wait_for_commit(dir: &Path) -> Result<()> {
    let started = Instant::now();
    while committed(dir).is_empty() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("no output committed within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub(crate) fn job_args<'a>(input: &'a str, output: &'a str) -> Vec<&'a str> {
    vec![input, "--window-ms", "1000", "--output", output, "--checkpoint-interval-ms", "100"]
}

/// The generated readings `event_time_windows --generate N` reads.
pub(crate) fn generated_readings(count: i64) -> String {
    (0..count).map(|i| format!("{},key-{},{}\n", i * 3, (i * 7919) % 50, i % 1000)).collect()
}

pub(crate) fn generator_args<'a>(count: &'a str, output: &'a str) -> Vec<&'a str> {
    vec!["--generate", count, "--window-ms", "1000", "--output", output, "--checkpoint-interval-ms", "100"]
}

/// The workers of a job, leader first, from `weir status`.
pub(crate) fn job_workers(status: &str) -> Vec<String> {
    let list = status.split("workers=").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or_default();
    list.split(',').filter(|worker| !worker.is_empty()).map(str::to_owned).collect()
}

/// The processes whose parent is `parent` (Linux `/proc`).
pub(crate) fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid …`: the command may hold spaces and parentheses.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}
