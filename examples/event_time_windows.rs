//! Event-time windows over CSV readings: per key and window, the number of
//! readings and the sum of their values.
//!
//! Input: lines `timestamp_ms,key,value` (value an integer) from the files
//! given as arguments, or from standard input when there are none. Output, on
//! standard output, one line per window result:
//! `window_start,window_end,key,count,sum` (milliseconds, end exclusive).
//! Late readings go to standard error as `late,<the input line>`; a malformed
//! line fails the job with an error that quotes it. With `--output DIR` the
//! results go, exactly once, into part files in DIR instead (committed with
//! each checkpoint; hidden `.part-…` files are in progress).
//!
//! With `--generate N` the input is N generated readings instead of files:
//! reading `i` is `3i,key-<7919i mod 50>,<i mod 1000>`, read in parallel, and
//! `--rate R` limits them to R per second (all readers together), which
//! turns the example into a long-running job for the cluster's tests.
//!
//! Checkpointing and recovery come from the engine flags: `--checkpoint-dir
//! DIR --checkpoint-interval-ms N` take checkpoints, `--state-backend
//! memory|rocksdb` picks where window state lives, and `--from-checkpoint
//! DIR/<job-id>/chk-<n>` resumes a killed run.
//!
//! Event time is the largest timestamp seen minus `--out-of-orderness-ms`
//! (default 0) minus 1 ms, as Flink's bounded out-of-orderness: a reading at
//! most that far behind the largest one before it is on time. The watermark
//! follows every reading (generated readings, never late: every 200 ms), so with one reader (standard input, or
//! `--parallelism 1`) which readings are late depends on the input order
//! alone; with several readers, each follows its part of the files and the
//! windows see the minimum, so results of on-time readings stay the same and
//! only which late readings are caught may differ. Windows: tumbling of `--window-ms` (default 60000); sliding
//! with `--slide-ms`; session windows with `--session-gap-ms`. Engine flags
//! (`--parallelism N`, ...) may appear anywhere.
//!
//! ```text
//! printf '1000,a,1\n2000,a,2\n61000,a,4\n500,a,8\n' | cargo run --example event_time_windows -- --window-ms 60000
//! ```

use std::time::Duration;

use clap::{Arg, ArgAction, Command, value_parser};
use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir::state::AggregateFunction;

/// One input line, parsed; the line is kept for the late output.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Reading {
    timestamp: i64,
    key: String,
    value: i64,
    line: String,
}

fn parse(line: String) -> Result<Reading, String> {
    let malformed = |why: &str| format!("malformed input line '{line}': {why}; expected timestamp_ms,key,value");
    let mut fields = line.split(',');
    let (Some(timestamp), Some(key), Some(value), None) = (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed("not three comma-separated fields"));
    };
    let timestamp = timestamp.trim().parse().map_err(|_| malformed("the timestamp is not an integer"))?;
    let value = value.trim().parse().map_err(|_| malformed("the value is not an integer"))?;
    let key = key.trim().to_owned();
    Ok(Reading { timestamp, key, value, line })
}

/// Count and sum of a window's readings, kept as one accumulator.
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
        accumulator.1 = accumulator.1.saturating_add(reading.value);
    }

    fn result(&self, accumulator: &(u64, i64)) -> (u64, i64) {
        *accumulator
    }

    fn merge(&self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1.saturating_add(b.1))
    }
}

fn millis_flag(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name).long(name).value_name("MS").value_parser(value_parser!(u64).range(1..)).help(help)
}

fn command() -> Command {
    Command::new("event_time_windows")
        .about("Per key and event-time window: count and sum of CSV readings timestamp_ms,key,value")
        .arg(Arg::new("files").value_name("FILE").action(ArgAction::Append).help("input files (default: stdin)"))
        .arg(
            Arg::new("out-of-orderness-ms")
                .long("out-of-orderness-ms")
                .value_name("MS")
                .value_parser(value_parser!(u64))
                .default_value("0")
                .help("how far behind the largest timestamp seen a reading may be and still be on time"),
        )
        .arg(
            Arg::new("generate")
                .long("generate")
                .value_name("N")
                .value_parser(value_parser!(u64))
                .conflicts_with("files")
                .help("read N generated readings (3i,key-<7919i mod 50>,<i mod 1000>) instead of files"),
        )
        .arg(
            Arg::new("rate")
                .long("rate")
                .value_name("R")
                .value_parser(value_parser!(f64))
                .requires("generate")
                .help("generate at most R readings per second"),
        )
        .arg(millis_flag("window-ms", "window size (default 60000)"))
        .arg(millis_flag("slide-ms", "sliding windows: start a window every MS").conflicts_with("session-gap-ms"))
        .arg(millis_flag("session-gap-ms", "session windows: close after MS without readings for the key"))
        .arg(
            Arg::new("output")
                .long("output")
                .value_name("DIR")
                .value_parser(value_parser!(std::path::PathBuf))
                .help("write results exactly once into part files in DIR instead of standard output"),
        )
}

fn main() -> weir::Result<()> {
    let env = StreamEnv::from_args();
    let program = std::iter::once("event_time_windows".to_owned());
    let flags = command().try_get_matches_from(program.chain(env.args())).unwrap_or_else(|error| error.exit());
    let millis = |name: &str| flags.get_one::<u64>(name).copied().map(Duration::from_millis);
    let size = millis("window-ms").unwrap_or(Duration::from_secs(60));
    let assigner = match (millis("slide-ms"), millis("session-gap-ms")) {
        (Some(slide), _) => WindowAssigner::sliding_event_time(size, slide),
        (None, Some(gap)) => WindowAssigner::event_time_session(gap),
        (None, None) => WindowAssigner::tumbling_event_time(size),
    };
    let bound = millis("out-of-orderness-ms").unwrap_or_default();
    let files: Vec<String> =
        flags.get_many::<String>("files").map(|files| files.cloned().collect()).unwrap_or_default();

    // Watermarks are generated where the lines are read (chained to the
    // reader), so each reader's event time follows its own input order.
    let (lines, readers) = match flags.get_one::<u64>("generate") {
        Some(&count) => {
            let mut generator =
                GeneratorSource::new(|i: u64| format!("{},key-{},{}", i * 3, (i * 7919) % 50, i % 1000))
                    .count(count)
                    .named("Generated readings");
            if let Some(&rate) = flags.get_one::<f64>("rate") {
                generator = generator.records_per_second(rate);
            }
            (env.source(generator), env.parallelism())
        }
        None if files.is_empty() => (env.read_stdin(), 1),
        None => (env.source(FileSource::lines_of(files)), env.parallelism()),
    };
    let late = OutputTag::<Reading>::new("late readings");
    // A watermark after every reading makes lateness depend on the input
    // order alone. Generated readings are in order per reader, so nothing is
    // late and the usual periodic watermark (every 200 ms) gives the same
    // results with far fewer events (each one is a message between processes).
    let emit_interval = if flags.contains_id("generate") { Duration::from_millis(200) } else { Duration::ZERO };
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(bound)
        .with_timestamp_assigner(|reading: &Reading, _| reading.timestamp)
        .with_emit_interval(emit_interval);
    let results = lines
        .uid("readings")
        .try_map(parse)
        .name("Parse CSV")
        .set_parallelism(readers)
        .assign_timestamps_and_watermarks(strategy)
        .set_parallelism(readers)
        .key_by(|reading: &Reading| reading.key.clone())
        .window(assigner)
        .side_output_late_data(&late)
        .aggregate_with_process(CountAndSum, |key: &String, context: &WindowContext, (count, sum), out| {
            let window = context.window;
            out.collect(format!("{},{},{key},{count},{sum}", window.start, window.end));
        });
    match flags.get_one::<std::path::PathBuf>("output") {
        Some(dir) => {
            results.sink_to_files(dir).uid("output");
        }
        None => {
            results.print();
        }
    }
    results.side_output(&late).map(|reading: Reading| format!("late,{}", reading.line)).print_to_err();
    env.execute("event_time_windows")?;
    Ok(())
}
