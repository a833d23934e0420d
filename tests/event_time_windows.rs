//! End-to-end: the `event_time_windows` example as a real process, on files
//! and on standard input, against expectations computed by hand or by a
//! plain group-by here.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

mod common;

fn run(args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut child = Command::new(common::example_binary("event_time_windows")?)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(input) = stdin {
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// Sorted stdout lines and the `late,` lines of stderr of a successful run.
fn results(output: &Output) -> Result<(Vec<String>, Vec<String>)> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("the example failed ({}): {stderr}", output.status);
    }
    let mut rows: Vec<String> = String::from_utf8(output.stdout.clone())?.lines().map(str::to_owned).collect();
    rows.sort();
    let late = stderr.lines().filter(|line| line.starts_with("late,")).map(str::to_owned).collect();
    Ok((rows, late))
}

fn lines(rows: &[&str]) -> Vec<String> {
    let mut rows: Vec<String> = rows.iter().map(|row| row.to_string()).collect();
    rows.sort();
    rows
}

const READINGS: &str = "\
1000,sensor-a,5
4000,sensor-b,7
2500,sensor-a,-2
9000,sensor-a,10
3000,sensor-b,1
12500,sensor-b,4
6500,sensor-a,3
30000,sensor-a,1
11000,sensor-b,100
";

#[test]
fn tumbling_windows_with_out_of_order_and_late_readings() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("readings.csv");
    std::fs::write(&input, READINGS)?;
    // One reader, so lateness follows the file order. Bound 3000: 3000 is
    // 6000 behind 9000, whose watermark 5999 closed [0, 5000): late. 6500 is
    // 6000 behind 12500 too, but its window [5000, 10000) is still open
    // (watermark 9499): on time. 11000 comes after watermark 26999: late.
    let args = ["--window-ms", "5000", "--out-of-orderness-ms", "3000", "--parallelism", "1"];
    let output = run(&[&[input.to_str().context("path")?][..], &args].concat(), None)?;
    let (rows, late) = results(&output)?;
    let expected = lines(&[
        "0,5000,sensor-a,2,3",
        "0,5000,sensor-b,1,7",
        "5000,10000,sensor-a,2,13",
        "10000,15000,sensor-b,1,4",
        "30000,35000,sensor-a,1,1",
    ]);
    assert_eq!(rows, expected);
    assert_eq!(late, vec!["late,3000,sensor-b,1", "late,11000,sensor-b,100"]);
    Ok(())
}

#[test]
fn session_and_sliding_windows_from_standard_input() -> Result<()> {
    let output = run(&["--session-gap-ms", "3000", "--out-of-orderness-ms", "100000"], Some(READINGS))?;
    let (rows, late) = results(&output)?;
    // sensor-a: 1000, 2500 -> [1000, 5500); 6500, 9000 -> [6500, 12000); 30000 alone.
    // sensor-b: 3000, 4000 -> [3000, 7000); 11000, 12500 -> [11000, 15500).
    let expected = lines(&[
        "1000,5500,sensor-a,2,3",
        "6500,12000,sensor-a,2,13",
        "30000,33000,sensor-a,1,1",
        "3000,7000,sensor-b,2,8",
        "11000,15500,sensor-b,2,104",
    ]);
    assert_eq!((rows, late), (expected, vec![]));

    let output =
        run(&["--window-ms", "10000", "--slide-ms", "5000", "--out-of-orderness-ms", "100000"], Some(READINGS))?;
    let (rows, _) = results(&output)?;
    let expected = lines(&[
        "-5000,5000,sensor-a,2,3",
        "0,10000,sensor-a,4,16",
        "5000,15000,sensor-a,2,13",
        "25000,35000,sensor-a,1,1",
        "30000,40000,sensor-a,1,1",
        "-5000,5000,sensor-b,2,8",
        "0,10000,sensor-b,2,8",
        "5000,15000,sensor-b,2,104",
        "10000,20000,sensor-b,2,104",
    ]);
    assert_eq!(rows, expected);
    Ok(())
}

/// Readings for 50 keys, mostly in order, every seventh 900 ms behind.
fn generated_readings(count: i64) -> String {
    let mut text = String::new();
    for i in 0..count {
        let timestamp = if i % 7 == 0 { (i * 10 - 900).max(0) } else { i * 10 };
        text.push_str(&format!("{timestamp},key-{},{}\n", (i * 31) % 50, i % 13 - 6));
    }
    text
}

fn group_by(text: &str, size: i64) -> Vec<String> {
    let mut groups: BTreeMap<(i64, String), (u64, i64)> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let (timestamp, value): (i64, i64) = (fields[0].parse().unwrap_or(0), fields[2].parse().unwrap_or(0));
        let entry = groups.entry((timestamp - timestamp.rem_euclid(size), fields[1].to_owned())).or_default();
        entry.0 += 1;
        entry.1 += value;
    }
    let rows =
        groups.into_iter().map(|((start, key), (count, sum))| format!("{start},{},{key},{count},{sum}", start + size));
    let mut rows: Vec<String> = rows.collect();
    rows.sort();
    rows
}

#[test]
fn results_are_identical_at_parallelism_1_2_and_4() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("generated.csv");
    let text = generated_readings(40_000);
    std::fs::write(&input, &text)?;
    let expected = group_by(&text, 1000);
    for parallelism in ["1", "2", "4"] {
        let args = [input.to_str().context("path")?, "--window-ms", "1000", "--out-of-orderness-ms", "1000"];
        let output = run(&[&args[..], &["--parallelism", parallelism]].concat(), None)?;
        let (rows, late) = results(&output)?;
        assert!(late.is_empty(), "parallelism {parallelism}: {} late", late.len());
        assert_eq!(rows.len(), expected.len(), "parallelism {parallelism}");
        assert_eq!(rows, expected, "parallelism {parallelism}");
    }
    Ok(())
}

#[test]
fn a_malformed_line_fails_the_job_and_names_the_line() -> Result<()> {
    let output = run(&[], Some("1000,a,1\n2000,a,two\n"))?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("malformed input line '2000,a,two'"), "{stderr}");
    let output = run(&["/nonexistent/readings.csv"], None)?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/readings.csv"));
    Ok(())
}

/// The newest completed checkpoint under a checkpoint directory.
fn newest_checkpoint(checkpoints: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut completed = Vec::new();
    for job in std::fs::read_dir(checkpoints).ok()?.flatten() {
        for checkpoint in std::fs::read_dir(job.path()).ok()?.flatten() {
            let name = checkpoint.file_name().to_string_lossy().into_owned();
            if let Some(number) = name.strip_prefix("chk-").and_then(|n| n.parse::<u64>().ok())
                && checkpoint.path().join("_metadata").exists()
            {
                completed.push((number, checkpoint.path()));
            }
        }
    }
    completed.into_iter().max().map(|(_, path)| path)
}

/// Sorted lines of the committed part files in `dir`.
fn committed(dir: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).map(|listing| listing.flatten().collect::<Vec<_>>()).unwrap_or_default() {
        if entry.file_name().to_string_lossy().starts_with("part-") {
            lines.extend(std::fs::read_to_string(entry.path()).unwrap_or_default().lines().map(str::to_owned));
        }
    }
    lines.sort();
    lines
}

#[test]
fn killed_mid_run_and_resumed_from_the_newest_checkpoint_gives_one_runs_output() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("readings.csv");
    let mut text = String::new();
    for i in 0..300_000i64 {
        text.push_str(&format!("{},key-{},{}\n", i * 3, (i * 7919) % 100, i % 1000));
    }
    std::fs::write(&input, &text)?;
    let expected = group_by(&text, 10_000);
    let (output, checkpoints) = (dir.path().join("out"), dir.path().join("checkpoints"));
    let path = |path: &std::path::Path| path.to_str().map(str::to_owned).context("utf-8 path");
    let args = vec![
        path(&input)?,
        "--window-ms".into(),
        "10000".into(),
        "--output".into(),
        path(&output)?,
        "--checkpoint-dir".into(),
        path(&checkpoints)?,
        "--checkpoint-interval-ms".into(),
        "100".into(),
        "--parallelism".into(),
        "2".into(),
    ];
    for backend in ["memory", "rocksdb"] {
        let _ = std::fs::remove_dir_all(&output);
        let _ = std::fs::remove_dir_all(&checkpoints);
        let mut first = Command::new(common::example_binary("event_time_windows")?)
            .args(&args)
            .args(["--state-backend", backend])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        // Wait until a checkpoint has committed output, then kill the process hard.
        let started = std::time::Instant::now();
        while committed(&output).is_empty() {
            if let Some(status) = first.try_wait()? {
                bail!("the first run ended ({status}) before it could be killed");
            }
            if started.elapsed() > std::time::Duration::from_secs(60) {
                first.kill()?;
                bail!("no checkpoint committed output within a minute");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        first.kill()?;
        first.wait()?;
        let partial = committed(&output);
        assert!(partial.len() < expected.len(), "{backend}: killed too late to test anything");
        let checkpoint = newest_checkpoint(&checkpoints).context("a completed checkpoint")?;
        let second = Command::new(common::example_binary("event_time_windows")?)
            .args(&args)
            .args(["--state-backend", backend, "--from-checkpoint", &path(&checkpoint)?])
            .output()?;
        if !second.status.success() {
            bail!("the resumed run failed: {}", String::from_utf8_lossy(&second.stderr));
        }
        assert_eq!(committed(&output), expected, "{backend}: both runs' committed files are one run's output");
    }
    Ok(())
}
