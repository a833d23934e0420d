//! The Nexmark benchmark's queries as one job binary.
//!
//! ```text
//! cargo run --release --example nexmark -- generate --events 1000000 --out /tmp/nexmark.jsonl
//! cargo run --release --example nexmark -- --query q1 --input /tmp/nexmark.jsonl --output /tmp/q1.csv
//! cargo run --release --example nexmark -- --query q2 --events 10000000 --output null --parallelism 2
//! cargo run --release --example nexmark -- --query q5 --unbounded --events-per-second 50000
//! ```
//!
//! Input is either a file of JSON lines in the shape of Flink's Nexmark
//! source table (`--input FILE`, written by `generate`) or the generator,
//! bounded (`--events N`) or endless (`--unbounded`, for a cluster: stop it
//! with a savepoint or cancel it), optionally held to `--events-per-second
//! R` over all its instances. Both start at `--base-time MS` (default
//! 2026-01-01T00:00:00Z), so runs are reproducible; event time is the
//! events' own `dateTime`, never the wall clock. A malformed input line
//! (reported with its file and line number) fails the job (`--on-malformed
//! fail`, the default) or is skipped, logged and counted in
//! `weir_nexmark_malformed_events_total` (`--on-malformed skip`).
//!
//! Output (`--output FILE.csv`): a header line with the SELECT's columns,
//! then one row per result (order across parallel instances is not
//! defined); `--output null` discards the results (for benchmarks); without
//! `--output` rows go to standard output. The engine flags apply
//! (`--parallelism N`, `--state-backend`, checkpoints). The job prints the
//! number of events it read per second on standard error at its end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command, value_parser};
use weir::prelude::*;
use weir_nexmark::source::DEFAULT_BASE_TIME;
use weir_nexmark::{NexmarkSource, json, queries};

fn command() -> Command {
    Command::new("nexmark")
        .about("Nexmark queries over generated events or a JSON lines file")
        .subcommand_negates_reqs(true)
        .arg(
            Arg::new("query")
                .long("query")
                .required(true)
                .value_parser(clap::builder::PossibleValuesParser::new(queries::QUERIES)),
        )
        .arg(Arg::new("input").long("input").value_name("FILE.jsonl").value_parser(value_parser!(PathBuf)))
        .arg(
            Arg::new("events")
                .long("events")
                .value_name("N")
                .value_parser(value_parser!(u64))
                .help("generate N events"),
        )
        .arg(
            Arg::new("unbounded")
                .long("unbounded")
                .action(ArgAction::SetTrue)
                .help("generate events until the job is stopped or cancelled"),
        )
        .group(clap::ArgGroup::new("source").args(["input", "events", "unbounded"]).required(true))
        .arg(
            Arg::new("events-per-second")
                .long("events-per-second")
                .value_name("R")
                .value_parser(value_parser!(f64))
                .conflicts_with("input")
                .help("hold the generator to R events per second over all its instances"),
        )
        .arg(base_time_flag())
        .arg(Arg::new("output").long("output").value_name("FILE.csv|null"))
        .arg(
            Arg::new("on-malformed")
                .long("on-malformed")
                .value_parser(["fail", "skip"])
                .default_value("fail")
                .help("what a malformed input line does: fail the job, or skip it and count it"),
        )
        .subcommand(
            Command::new("generate")
                .about("Write N generated events as JSON lines")
                .arg(Arg::new("events").long("events").value_name("N").required(true).value_parser(value_parser!(u64)))
                .arg(base_time_flag())
                .arg(Arg::new("out").long("out").value_name("FILE").required(true).value_parser(value_parser!(PathBuf)))
                .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue)),
        )
}

fn base_time_flag() -> Arg {
    Arg::new("base-time")
        .long("base-time")
        .value_name("MS")
        .value_parser(value_parser!(u64))
        .help("epoch milliseconds of the first event (default 2026-01-01T00:00:00Z)")
}

fn main() -> ExitCode {
    let env = StreamEnv::from_args();
    let program = std::iter::once("nexmark".to_owned());
    let flags = command().try_get_matches_from(program.chain(env.args())).unwrap_or_else(|error| error.exit());
    let outcome = match flags.subcommand() {
        Some(("generate", flags)) => generate(flags),
        _ => run_query(&env, &flags),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn base_time(flags: &clap::ArgMatches) -> u64 {
    flags.get_one::<u64>("base-time").copied().unwrap_or(DEFAULT_BASE_TIME)
}

/// `generate`: the first N events, one JSON line each.
fn generate(flags: &clap::ArgMatches) -> Result<(), String> {
    let events = flags.get_one::<u64>("events").copied().unwrap_or(0);
    let out = flags.get_one::<PathBuf>("out").cloned().unwrap_or_default();
    let file = std::fs::File::create(&out).map_err(|error| format!("cannot create '{}': {error}", out.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let base_time = base_time(flags);
    let prototype = weir_nexmark::source::generator(base_time);
    for index in 0..events {
        let event = weir_nexmark::source::event_at(&prototype, base_time, index);
        writeln!(writer, "{}", json::to_line(&event))
            .map_err(|error| format!("cannot write '{}': {error}", out.display()))?;
    }
    writer.flush().map_err(|error| format!("cannot write '{}': {error}", out.display()))?;
    if !flags.get_flag("quiet") {
        eprintln!("wrote {events} events to {}", out.display());
    }
    Ok(())
}

fn run_query(env: &StreamEnv, flags: &clap::ArgMatches) -> Result<(), String> {
    let query = flags.get_one::<String>("query").cloned().unwrap_or_default();
    let events = match flags.get_one::<PathBuf>("input") {
        Some(input) => {
            let lines = env.source(FileSource::lines_of([input.clone()]).numbered()).uid("nexmark-input");
            let file = input.display().to_string();
            let parse = move |(number, line): (u64, String)| {
                json::parse_line(&line).map_err(|error| format!("{file}, line {number}: {error}"))
            };
            if flags.get_one::<String>("on-malformed").is_some_and(|policy| policy == "skip") {
                let malformed = metrics::counter!("weir_nexmark_malformed_events_total");
                lines
                    .flat_map(move |numbered: (u64, String)| match parse(numbered) {
                        Ok(event) => Some(event),
                        Err(error) => {
                            tracing::warn!(%error, "skipping a malformed event");
                            malformed.increment(1);
                            None
                        }
                    })
                    .name("Parse JSON")
            } else {
                lines.try_map(parse).name("Parse JSON")
            }
        }
        None => NexmarkSource {
            base_time: base_time(flags),
            // Unbounded when `--unbounded` chose the source instead of `--events`.
            events: flags.get_one::<u64>("events").copied(),
            events_per_second: flags.get_one::<f64>("events-per-second").copied(),
        }
        .stream(env),
    };
    let output = flags.get_one::<String>("output").cloned();
    let parts = tempfile_dir(output.as_deref())?;
    let sink = match (&output, &parts) {
        (Some(null), _) if null == "null" => queries::Output::Discard,
        (Some(_), Some(parts)) => queries::Output::Text(parts.clone()),
        _ => queries::Output::Print,
    };
    queries::run(&query, &events, &sink).ok_or_else(|| format!("query {query} is not built"))?;
    let result = env.execute(&format!("nexmark-{query}")).map_err(|error| error.to_string())?;
    let seconds = result.net_runtime.as_secs_f64();
    if let (Some(output), Some(parts)) = (&output, &parts) {
        concatenate(&query, parts, Path::new(output))?;
        let _ = std::fs::remove_dir_all(parts);
    }
    let events = match flags.get_one::<PathBuf>("input") {
        // Counted outside the job, so the count is not the reader's own.
        Some(input) => Some(
            FileSource::count_lines(input).map_err(|error| format!("cannot read '{}': {error}", input.display()))?,
        ),
        None => flags.get_one::<u64>("events").copied(),
    };
    match events {
        Some(events) => eprintln!(
            "query={query} events={events} seconds={seconds:.3} events_per_second={:.0}",
            events as f64 / seconds.max(1e-9)
        ),
        // A stopped endless run: how far the generator got is not known here.
        None => eprintln!("query={query} seconds={seconds:.3}"),
    }
    Ok(())
}

/// Where the parallel instances write their rows before they become one CSV file.
fn tempfile_dir(output: Option<&str>) -> Result<Option<PathBuf>, String> {
    let Some(output) = output.filter(|output| *output != "null") else { return Ok(None) };
    let output = Path::new(output);
    let name = output.file_name().ok_or_else(|| format!("--output '{}' names no file", output.display()))?;
    let parent = output.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(Some(parent.join(format!(".{}.parts", name.to_string_lossy()))))
}

/// The header, then every instance's rows.
fn concatenate(query: &str, parts: &Path, output: &Path) -> Result<(), String> {
    let failed = |error: std::io::Error| format!("cannot write '{}': {error}", output.display());
    let mut out = std::io::BufWriter::new(std::fs::File::create(output).map_err(failed)?);
    writeln!(out, "{}", queries::header(query).unwrap_or_default()).map_err(failed)?;
    let mut files: Vec<PathBuf> = match std::fs::read_dir(parts) {
        Ok(entries) => entries.flatten().map(|entry| entry.path()).collect(),
        // One instance writes one file instead of a directory.
        Err(_) if parts.is_file() => vec![parts.to_path_buf()],
        Err(_) => Vec::new(),
    };
    files.sort();
    for file in files {
        let mut input = std::fs::File::open(&file).map_err(failed)?;
        std::io::copy(&mut input, &mut out).map_err(failed)?;
    }
    out.flush().map_err(failed)
}
