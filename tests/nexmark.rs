//! The Nexmark example's queries on a generated file, at parallelism 1 and
//! 4, against a plain evaluation written here: the file is read as untyped
//! JSON (not with the crate's parser) and each query is computed with
//! ordinary loops and maps.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

mod common;

/// The example's binary, a generated file of `events` events, and its lines as JSON.
fn generated(dir: &Path, events: u64) -> Result<(std::path::PathBuf, std::path::PathBuf, Vec<Value>)> {
    let binary = common::example_binary("nexmark")?;
    let file = dir.join("events.jsonl");
    let events = events.to_string();
    let status = Command::new(&binary)
        .args(["generate", "--events", &events, "--out", file.to_str().context("path")?, "--quiet"])
        .status()?;
    assert!(status.success());
    let lines =
        std::fs::read_to_string(&file)?.lines().map(serde_json::from_str::<Value>).collect::<Result<Vec<_>, _>>()?;
    Ok((binary, file, lines))
}

/// Runs a query at `parallelism`; its CSV header and its rows, sorted.
fn run(binary: &Path, file: &Path, query: &str, parallelism: u32, out: &Path) -> Result<(String, Vec<String>)> {
    let output = Command::new(binary)
        .args(["--query", query, "--input", file.to_str().context("path")?])
        .args(["--output", out.to_str().context("path")?, "--parallelism", &parallelism.to_string()])
        .output()?;
    if !output.status.success() {
        bail!("{query} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = std::fs::read_to_string(out)?;
    let mut lines = text.lines().map(str::to_owned);
    let header = lines.next().context("a header line")?;
    let mut rows: Vec<String> = lines.collect();
    rows.sort();
    Ok((header, rows))
}

fn bids(events: &[Value]) -> impl Iterator<Item = &Value> {
    events.iter().filter(|event| event["event_type"] == 2).map(|event| &event["bid"])
}

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or(u64::MAX)
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// The expected header and sorted rows of `query`.
fn expected(query: &str, events: &[Value]) -> (String, Vec<String>) {
    let (header, mut rows): (&str, Vec<String>) = match query {
        "q0" => (
            "auction,bidder,price,dateTime,extra",
            bids(events)
                .map(|bid| {
                    let (auction, bidder, price) =
                        (number(&bid["auction"]), number(&bid["bidder"]), number(&bid["price"]));
                    format!("{auction},{bidder},{price},{},{}", number(&bid["dateTime"]), text(&bid["extra"]))
                })
                .collect(),
        ),
        "q1" => (
            "auction,bidder,price,dateTime,extra",
            bids(events)
                .map(|bid| {
                    // 0.908 * price, with three decimals, from integers.
                    let cents = u128::from(number(&bid["price"])) * 908;
                    let euros = format!("{}.{:03}", cents / 1000, cents % 1000);
                    let (auction, bidder) = (number(&bid["auction"]), number(&bid["bidder"]));
                    format!("{auction},{bidder},{euros},{},{}", number(&bid["dateTime"]), text(&bid["extra"]))
                })
                .collect(),
        ),
        "q2" => (
            "auction,price",
            bids(events)
                .filter(|bid| number(&bid["auction"]).is_multiple_of(123))
                .map(|bid| format!("{},{}", number(&bid["auction"]), number(&bid["price"])))
                .collect(),
        ),
        "q3" => ("name,city,state,id", q3(events)),
        "q4" => ("category,avg", q4(events)),
        "q5" => ("auction,num", q5(events)),
        "q7" => ("auction,price,bidder,dateTime,extra", q7(events)),
        "q8" => ("id,name,starttime", q8(events)),
        _ => ("", Vec::new()),
    };
    rows.sort();
    (header.to_owned(), rows)
}

fn of_kind(events: &[Value], kind: u64, field: &str) -> Vec<Value> {
    events.iter().filter(|event| event["event_type"] == kind).map(|event| event[field].clone()).collect()
}

fn q3(events: &[Value]) -> Vec<String> {
    let persons: HashMap<u64, Value> = of_kind(events, 0, "person")
        .into_iter()
        .filter(|person| ["or", "id", "ca"].contains(&person["state"].as_str().unwrap_or_default()))
        .map(|person| (number(&person["id"]), person))
        .collect();
    of_kind(events, 1, "auction")
        .iter()
        .filter(|auction| number(&auction["category"]) == 10)
        .filter_map(|auction| {
            let person = persons.get(&number(&auction["seller"]))?;
            Some(format!(
                "{},{},{},{}",
                text(&person["name"]),
                text(&person["city"]),
                text(&person["state"]),
                number(&auction["id"])
            ))
        })
        .collect()
}

fn q4(events: &[Value]) -> Vec<String> {
    let mut bids_of: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for bid in bids(events) {
        bids_of.entry(number(&bid["auction"])).or_default().push((number(&bid["dateTime"]), number(&bid["price"])));
    }
    let mut per_category: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for auction in of_kind(events, 1, "auction") {
        let (id, start, end) = (number(&auction["id"]), number(&auction["dateTime"]), number(&auction["expires"]));
        let closing = bids_of
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|(time, _)| (start..=end).contains(time))
            .map(|(_, price)| *price)
            .max();
        if let Some(price) = closing {
            per_category.entry(number(&auction["category"])).or_default().push(price);
        }
    }
    per_category
        .into_iter()
        .map(|(category, prices)| {
            let sum: u128 = prices.iter().map(|price| u128::from(*price)).sum();
            format!("{category},{}", sum / prices.len() as u128)
        })
        .collect()
}

fn q5(events: &[Value]) -> Vec<String> {
    let mut counts: BTreeMap<u64, BTreeMap<u64, u64>> = BTreeMap::new();
    for bid in bids(events) {
        let time = number(&bid["dateTime"]);
        let last_start = time - time % 2000;
        for start in (0..5).filter_map(|k| last_start.checked_sub(k * 2000)) {
            *counts.entry(start).or_default().entry(number(&bid["auction"])).or_default() += 1;
        }
    }
    let mut rows = Vec::new();
    for per_auction in counts.values() {
        let most = per_auction.values().copied().max().unwrap_or(0);
        rows.extend(
            per_auction
                .iter()
                .filter(|(_, count)| **count == most)
                .map(|(auction, count)| format!("{auction},{count}")),
        );
    }
    rows
}

fn q7(events: &[Value]) -> Vec<String> {
    let mut highest: BTreeMap<u64, u64> = BTreeMap::new();
    for bid in bids(events) {
        let entry = highest.entry(number(&bid["dateTime"]) / 10_000).or_default();
        *entry = (*entry).max(number(&bid["price"]));
    }
    let mut rows = Vec::new();
    for (window, price) in highest {
        let (start, end) = (window * 10_000, (window + 1) * 10_000);
        rows.extend(
            bids(events)
                .filter(|bid| number(&bid["price"]) == price && (start..=end).contains(&number(&bid["dateTime"])))
                .map(|bid| {
                    let (auction, bidder, time) =
                        (number(&bid["auction"]), number(&bid["bidder"]), number(&bid["dateTime"]));
                    format!("{auction},{price},{bidder},{time},{}", text(&bid["extra"]))
                }),
        );
    }
    rows
}

fn q8(events: &[Value]) -> Vec<String> {
    let window = |time: u64| time - time % 10_000;
    let sellers: std::collections::HashSet<(u64, u64)> = of_kind(events, 1, "auction")
        .iter()
        .map(|auction| (number(&auction["seller"]), window(number(&auction["dateTime"]))))
        .collect();
    of_kind(events, 0, "person")
        .iter()
        .filter(|person| sellers.contains(&(number(&person["id"]), window(number(&person["dateTime"])))))
        .map(|person| {
            format!("{},{},{}", number(&person["id"]), text(&person["name"]), window(number(&person["dateTime"])))
        })
        .collect()
}

#[test]
fn every_query_equals_a_plain_evaluation_at_parallelism_1_and_4() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // 150,000 events span 15 s of event time at the generator's default
    // rate: several windows of every window query.
    let (binary, file, events) = generated(dir.path(), 150_000)?;
    for query in ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8"] {
        let want = expected(query, &events);
        assert!(!want.1.is_empty(), "{query} has results on this input");
        for parallelism in [1, 4] {
            let out = dir.path().join(format!("{query}-{parallelism}.csv"));
            let got = run(&binary, &file, query, parallelism, &out)?;
            assert_eq!(got.0, want.0, "{query} header");
            assert_eq!(got.1.len(), want.1.len(), "{query} at parallelism {parallelism}: row count");
            assert!(got.1 == want.1, "{query} at parallelism {parallelism}: rows differ");
        }
    }
    Ok(())
}

#[test]
fn the_generator_and_its_file_give_the_same_results() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (binary, file, _) = generated(dir.path(), 5_000)?;
    let from_file = run(&binary, &file, "q2", 2, &dir.path().join("file.csv"))?;
    let out = dir.path().join("generated.csv");
    let output = Command::new(&binary)
        .args(["--query", "q2", "--events", "5000", "--parallelism", "3", "--output", out.to_str().context("path")?])
        .output()?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&out)?;
    let mut rows: Vec<String> = text.lines().skip(1).map(str::to_owned).collect();
    rows.sort();
    assert_eq!(rows, from_file.1);
    Ok(())
}

#[test]
fn a_malformed_line_fails_the_job_or_is_skipped_as_asked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (binary, file, events) = generated(dir.path(), 2_000)?;
    let mut text = std::fs::read_to_string(&file)?;
    text.push_str("{\"event_type\":2,\"bid\":{\"auction\":\"not a number\"}}\n");
    std::fs::write(&file, &text)?;
    let out = dir.path().join("q0.csv");
    let failed = Command::new(&binary)
        .args(["--query", "q0", "--input", file.to_str().context("path")?, "--output", out.to_str().context("path")?])
        .output()?;
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("malformed Nexmark event") && stderr.contains("not a number"), "{stderr}");
    assert!(stderr.contains("events.jsonl, line 2001:"), "the error names the file and line: {stderr}");
    let skipped = run(&binary, &file, "q0", 2, &out);
    assert!(skipped.is_err(), "the default policy fails");
    let output = Command::new(&binary)
        .args(["--query", "q0", "--input", file.to_str().context("path")?, "--on-malformed", "skip"])
        .args(["--output", out.to_str().context("path")?])
        .output()?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows = std::fs::read_to_string(&out)?.lines().count() - 1;
    assert_eq!(rows, expected("q0", &events).1.len(), "every good line, the bad one skipped");
    Ok(())
}

#[test]
fn the_unbounded_generator_runs_on_at_its_rate_with_the_bounded_events() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let binary = common::example_binary("nexmark")?;
    let bounded = dir.path().join("bounded.csv");
    let output = Command::new(&binary)
        .args(["--query", "q0", "--events", "20000", "--output", bounded.to_str().context("path")?])
        .output()?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let bounded_rows: std::collections::HashSet<String> =
        std::fs::read_to_string(&bounded)?.lines().skip(1).map(str::to_owned).collect();

    // q0 passes every bid through; rows go to standard output as they come.
    let rate = 4_000.0;
    let started = std::time::Instant::now();
    let mut job = common::Process(
        Command::new(&binary)
            .args(["--query", "q0", "--unbounded", "--events-per-second", &rate.to_string(), "--parallelism", "2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let stdout = job.0.stdout.take().context("the job's standard output")?;
    let wanted = 2_000;
    let mut rows = std::collections::HashSet::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).take(wanted) {
        let line = line?;
        assert!(bounded_rows.contains(&line), "an unbounded row the bounded run did not produce: {line}");
        assert!(rows.insert(line.clone()), "a row twice: {line}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let still_running = job.0.try_wait()?.is_none();
    drop(job);
    assert_eq!(rows.len(), wanted, "the job stopped emitting before {wanted} rows");
    assert!(still_running, "an unbounded job does not end by itself");
    // 2,000 bids are about 2,170 events (Nexmark's 46 bids in 50 events):
    // at 4,000 events/s that takes over half a second, whatever the machine.
    assert!(elapsed > 0.45, "the rate limit held {wanted} rows to {elapsed:.2} s");
    Ok(())
}
