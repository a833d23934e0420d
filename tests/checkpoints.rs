//! Exactly-once through barrier checkpoints, on real files, with both state
//! backends and at parallelism 1 and 4: a job fails once, part way, restarts
//! from its latest checkpoint, and its committed output equals the output of
//! a run without failure, which the test computes independently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir::state::AggregateFunction;

/// `(timestamp ms, key, value)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Reading {
    timestamp: i64,
    key: String,
    value: i64,
}

const WINDOW_MS: i64 = 10_000;

/// Writes `count` readings in timestamp order; returns the file.
fn write_input(dir: &Path, name: &str, count: usize, seed: u64, step_ms: i64) -> PathBuf {
    let mut state = seed | 1;
    let mut text = String::new();
    for index in 0..count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(&format!("{},key-{},{}\n", index as i64 * step_ms, state % 50, (state >> 20) % 1000));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("input written");
    path
}

/// Window results by a plain group-by over the input files.
fn expected(files: &[&Path]) -> Vec<String> {
    let mut groups: BTreeMap<(i64, String), (u64, i64)> = BTreeMap::new();
    for file in files {
        for line in std::fs::read_to_string(file).expect("input").lines() {
            let reading = parse(line).expect("valid input");
            let start = reading.timestamp - reading.timestamp.rem_euclid(WINDOW_MS);
            let entry = groups.entry((start, reading.key)).or_default();
            entry.0 += 1;
            entry.1 += reading.value;
        }
    }
    let mut rows: Vec<String> = groups
        .into_iter()
        .map(|((start, key), (count, sum))| format!("{start},{},{key},{count},{sum}", start + WINDOW_MS))
        .collect();
    rows.sort();
    rows
}

fn parse(line: &str) -> Result<Reading, String> {
    let fields: Vec<&str> = line.split(',').collect();
    let [timestamp, key, value] = fields[..] else { return Err(format!("bad line {line}")) };
    Ok(Reading {
        timestamp: timestamp.parse().map_err(|_| format!("bad timestamp in {line}"))?,
        key: key.to_owned(),
        value: value.parse().map_err(|_| format!("bad value in {line}"))?,
    })
}

struct CountAndSum;

impl AggregateFunction for CountAndSum {
    type In = Reading;
    type Acc = (u64, i64);
    type Out = (u64, i64);

    fn create_accumulator(&self) -> (u64, i64) {
        (0, 0)
    }

    fn add(&self, accumulator: &mut (u64, i64), reading: Reading) {
        accumulator.0 += 1;
        accumulator.1 += reading.value;
    }

    fn result(&self, accumulator: &(u64, i64)) -> (u64, i64) {
        *accumulator
    }

    fn merge(&self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

/// Fails the job once: at the first record after `after` records have passed
/// and a checkpoint has committed output (so the restart restores state).
#[derive(Clone)]
struct FailOnce {
    after: u64,
    seen: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    output: PathBuf,
}

impl FailOnce {
    fn new(after: u64, output: &Path) -> Self {
        Self { after, seen: Arc::default(), failed: Arc::default(), output: output.to_path_buf() }
    }

    fn check(&self) {
        let seen = self.seen.fetch_add(1, Ordering::Relaxed);
        if seen >= self.after
            && seen.is_multiple_of(64)
            && !self.failed.load(Ordering::Relaxed)
            && committed_parts(&self.output) > 0
        {
            self.failed.store(true, Ordering::Relaxed);
            panic!("injected failure after {seen} records");
        }
    }
}

fn committed_parts(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|listing| {
            listing.flatten().filter(|entry| entry.file_name().to_string_lossy().starts_with("part-")).count()
        })
        .unwrap_or(0)
}

/// The sorted lines of every committed part file.
fn committed_output(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir").flatten() {
        if entry.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(std::fs::read_to_string(entry.path()).expect("part").lines().map(str::to_owned));
        }
    }
    lines.sort();
    lines
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    RocksDb,
}

struct Job<'a> {
    inputs: Vec<&'a Path>,
    /// Sleep 1 ms every this many records per input, so checkpoints happen.
    throttle: Vec<u64>,
    parallelism: usize,
    backend: Backend,
    fail: Option<FailOnce>,
}

impl Job<'_> {
    fn run(&self, work: &Path, output: &Path) {
        let env = StreamEnv::new();
        env.set_parallelism(self.parallelism);
        env.enable_checkpointing(Duration::from_millis(100));
        env.set_checkpoint_dir(work.join("checkpoints"));
        env.set_restart_strategy(RestartStrategy::FixedDelay { attempts: 2, delay: Duration::ZERO });
        if let Backend::RocksDb = self.backend {
            env.set_state_backend(StateBackend::RocksDb { dir: work.join("rocksdb") });
        }
        self.build(&env, output);
        env.execute("exactly-once test").expect("the job recovers and finishes");
    }

    /// Adds the job to `env`: files → parse → throttle → timestamps →
    /// (union) → failure injection → key_by → 10 s windows → exactly-once files.
    fn build(&self, env: &StreamEnv, output: &Path) {
        let strategy = WatermarkStrategy::for_monotonous_timestamps()
            .with_timestamp_assigner(|reading: &Reading, _| reading.timestamp);
        let mut streams = Vec::new();
        for (index, (input, every)) in self.inputs.iter().zip(&self.throttle).enumerate() {
            let every = *every;
            let count = Arc::new(AtomicU64::new(0));
            let stream = env
                .source(FileSource::lines(*input))
                .uid(format!("input-{index}"))
                .try_map(|line: String| parse(&line))
                .map(move |reading: Reading| {
                    if count.fetch_add(1, Ordering::Relaxed).is_multiple_of(every) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    reading
                })
                .assign_timestamps_and_watermarks(strategy.clone());
            streams.push(stream);
        }
        let mut readings = streams[0].clone();
        if streams.len() > 1 {
            readings = readings.union(&streams[1..]);
        }
        let fail = self.fail.clone();
        readings
            .map(move |reading: Reading| {
                if let Some(fail) = &fail {
                    fail.check();
                }
                reading
            })
            .key_by(|reading: &Reading| reading.key.clone())
            .window(WindowAssigner::tumbling_event_time(Duration::from_millis(WINDOW_MS as u64)))
            .aggregate_with_process(CountAndSum, |key: &String, context: &WindowContext, (count, sum), out| {
                out.collect(format!("{},{},{key},{count},{sum}", context.window.start, context.window.end));
            })
            .uid("windows")
            .sink_to_files(output)
            .uid("sink");
    }
}

fn seeds() -> impl Iterator<Item = u64> {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64);
    let mut state = seed | 1;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    })
}

fn exactly_once_under_failure(backend: Backend, parallelism: usize) {
    let work = tempfile::tempdir().expect("temp dir");
    let input = write_input(work.path(), "readings.csv", 60_000, 42, 7);
    let expected = expected(&[&input]);
    for (run, random) in seeds().take(2).enumerate() {
        let output = work.path().join(format!("out-{run}"));
        let after = 5_000 + random % 40_000;
        let fail = FailOnce::new(after, &output);
        let job = Job { inputs: vec![&input], throttle: vec![40], parallelism, backend, fail: Some(fail.clone()) };
        job.run(&work.path().join(format!("work-{run}")), &output);
        assert!(
            fail.failed.load(Ordering::Relaxed),
            "{backend:?} p{parallelism}: the failure was injected (k = {after})"
        );
        let committed = committed_output(&output);
        assert_eq!(
            committed.len(),
            expected.len(),
            "{backend:?} p{parallelism} k = {after}: nothing lost, nothing twice"
        );
        assert_eq!(committed, expected, "{backend:?} p{parallelism} k = {after}");
    }
}

#[test]
fn exactly_once_memory_parallelism_1() {
    exactly_once_under_failure(Backend::Memory, 1);
}

#[test]
fn exactly_once_memory_parallelism_4() {
    exactly_once_under_failure(Backend::Memory, 4);
}

#[test]
fn exactly_once_rocksdb_parallelism_1() {
    exactly_once_under_failure(Backend::RocksDb, 1);
}

#[test]
fn exactly_once_rocksdb_parallelism_4() {
    exactly_once_under_failure(Backend::RocksDb, 4);
}

#[test]
fn two_inputs_of_different_speeds_stay_exactly_once() {
    let work = tempfile::tempdir().expect("temp dir");
    let slow = write_input(work.path(), "slow.csv", 8_000, 5, 50);
    let fast = write_input(work.path(), "fast.csv", 40_000, 9, 10);
    let expected = expected(&[&slow, &fast]);
    for (backend, parallelism) in [(Backend::Memory, 4), (Backend::RocksDb, 1)] {
        let output = work.path().join(format!("out-{backend:?}-{parallelism}"));
        let fail = FailOnce::new(10_000, &output);
        let job =
            Job { inputs: vec![&slow, &fast], throttle: vec![5, 200], parallelism, backend, fail: Some(fail.clone()) };
        job.run(&work.path().join(format!("work-{backend:?}")), &output);
        assert!(fail.failed.load(Ordering::Relaxed), "{backend:?}: the failure was injected");
        assert_eq!(committed_output(&output), expected, "{backend:?} p{parallelism}");
    }
}

/// Runs the window job at `parallelism` until a savepoint stops it partway,
/// then from the savepoint at `restored_parallelism` to the end.
fn savepoint_and_rescale(parallelism: usize, restored_parallelism: usize, backend: Backend) {
    let work = tempfile::tempdir().expect("temp dir");
    let input = write_input(work.path(), "readings.csv", 40_000, 11, 7);
    let expected = expected(&[&input]);
    let output = work.path().join("out");
    let build = |parallelism: usize, restore: Option<&Path>| {
        let env = StreamEnv::new();
        env.set_parallelism(parallelism);
        env.enable_checkpointing(Duration::from_millis(100));
        env.set_checkpoint_dir(work.path().join("checkpoints"));
        if let Backend::RocksDb = backend {
            env.set_state_backend(StateBackend::RocksDb { dir: work.path().join("rocksdb") });
        }
        if let Some(savepoint) = restore {
            env.restore_from_checkpoint(savepoint);
        }
        let job = Job { inputs: vec![&input], throttle: vec![20], parallelism, backend, fail: None };
        job.build(&env, &output);
        env
    };
    let first = build(parallelism, None).execute_async("before the savepoint").expect("starts");
    // Let some windows fire and some output commit, then stop partway.
    while committed_parts(&output) == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let savepoint = first.stop_with_savepoint().expect("savepoint taken");
    first.wait().expect("stopped cleanly");
    assert!(savepoint.join("_metadata").exists(), "{}", savepoint.display());
    let partial = committed_output(&output);
    assert!(!partial.is_empty() && partial.len() < expected.len(), "stopped partway: {} rows", partial.len());
    build(restored_parallelism, Some(&savepoint)).execute("after the savepoint").expect("restores and finishes");
    assert_eq!(committed_output(&output), expected, "p{parallelism} -> p{restored_parallelism} {backend:?}");
}

#[test]
fn a_savepoint_at_parallelism_2_restored_at_3() {
    savepoint_and_rescale(2, 3, Backend::Memory);
    savepoint_and_rescale(2, 3, Backend::RocksDb);
}

#[test]
fn a_savepoint_at_parallelism_4_restored_at_1() {
    savepoint_and_rescale(4, 1, Backend::Memory);
    savepoint_and_rescale(4, 1, Backend::RocksDb);
}

/// Everything the engine logs, captured for the assertions of this file.
fn captured_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
    .clone()
}

struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Completed checkpoints of the job directories under `checkpoints`, oldest first.
fn completed_checkpoints(checkpoints: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for job in std::fs::read_dir(checkpoints).into_iter().flatten().flatten() {
        for checkpoint in std::fs::read_dir(job.path()).into_iter().flatten().flatten() {
            let name = checkpoint.file_name().to_string_lossy().into_owned();
            if let Some(number) = name.strip_prefix("chk-").and_then(|n| n.parse::<u64>().ok())
                && checkpoint.path().join("_metadata").exists()
            {
                found.push((number, checkpoint.path()));
            }
        }
    }
    found.sort();
    found.into_iter().map(|(_, path)| path).collect()
}

/// The files of a checkpoint directory, recursively (the metadata excluded).
fn state_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(state_files(&path));
        } else if entry.file_name() != "_metadata" {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_corrupt_or_missing_checkpoint_file_falls_back_to_the_previous_checkpoint() {
    let logs = captured_logs();
    let work = tempfile::tempdir().expect("temp dir");
    let input = write_input(work.path(), "readings.csv", 40_000, 3, 7);
    let expected = expected(&[&input]);
    for damage in ["corrupt", "missing"] {
        let (output, checkpoints) =
            (work.path().join(format!("out-{damage}")), work.path().join(format!("chk-{damage}")));
        let build = |restore: Option<&Path>| {
            let env = StreamEnv::new();
            env.set_parallelism(2);
            env.enable_checkpointing(Duration::from_millis(100));
            env.set_checkpoint_dir(&checkpoints);
            env.set_retained_checkpoints(3);
            env.set_retain_checkpoints_on_cancel(true);
            if let Some(checkpoint) = restore {
                env.restore_from_checkpoint(checkpoint);
            }
            Job { inputs: vec![&input], throttle: vec![20], parallelism: 2, backend: Backend::Memory, fail: None }
                .build(&env, &output);
            env
        };
        let first = build(None).execute_async("first").expect("starts");
        while completed_checkpoints(&checkpoints).len() < 2 {
            std::thread::sleep(Duration::from_millis(10));
        }
        first.cancel();
        assert!(first.wait().is_err(), "a cancelled job reports it");
        let completed = completed_checkpoints(&checkpoints);
        let newest = completed.last().expect("a checkpoint").clone();
        let damaged = state_files(&newest).into_iter().find(|file| file.to_string_lossy().contains("keyed-state"));
        let damaged = damaged.expect("the newest checkpoint has keyed state");
        if damage == "corrupt" {
            let mut bytes = std::fs::read(&damaged).expect("file");
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xFF;
            std::fs::write(&damaged, bytes).expect("corrupted");
        } else {
            std::fs::remove_file(&damaged).expect("removed");
        }
        build(Some(&newest)).execute("second").expect("falls back and finishes");
        let relative = damaged.strip_prefix(&checkpoints).expect("inside").to_string_lossy().into_owned();
        let logged =
            String::from_utf8_lossy(&logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned();
        assert!(logged.contains(&relative), "{damage}: the warning names {relative}:\n{logged}");
        // Falling back behind output a newer checkpoint committed replays it:
        // nothing is lost and every value is right, though rows may repeat.
        let mut distinct = committed_output(&output);
        distinct.dedup();
        assert_eq!(distinct, expected, "{damage}");
    }
}
