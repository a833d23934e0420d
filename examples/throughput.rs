//! Throughput benchmark of the local runtime: runs one pipeline over a fixed
//! number of generated records and prints records per second.
//!
//! ```text
//! cargo run --release --example throughput -- --pipeline stateless --records 200000000 --parallelism 2
//! cargo run --release --example throughput -- --pipeline keyed --records 50000000 --parallelism 2
//! cargo run --release --example throughput -- --pipeline window-aggregate --records 50000000 --parallelism 2 --state-backend rocksdb
//! ```
//!
//! Pipelines:
//! - `stateless`: generator → map → filter → discard (all chained);
//! - `keyed`: generator → key_by (10,000 keys) → rolling sum → discard;
//! - `window-aggregate`: generator → timestamps (`--events-per-second` of
//!   event time, default 5,000,000) and periodic watermarks → key_by (10,000
//!   keys) → 1 s tumbling event-time windows, count + sum kept as one
//!   accumulator per window → discard;
//! - `window-process`: the same with a process window function, so each
//!   window keeps its records until it fires;
//! - `skewed-union`: `window-aggregate` over the union of the generator and a
//!   second one at 1% of its records, rate-limited to 1% of the event-time
//!   rate: with checkpoints, barriers wait at the union for the slow input
//!   (`RUST_LOG=weir_worker=debug` logs each task's alignment time).
//!
//! `--sink-records-per-second R` (keyed pipeline) puts a deliberately slow operator (at most R
//! records per second over all its instances) in front of the sink, so the
//! pipeline runs under backpressure.
//!
//! The engine flags apply: `--state-backend memory|rocksdb` picks where keyed
//! state lives, `--checkpoint-dir DIR --checkpoint-interval-ms N` takes
//! checkpoints (generator positions and keyed state), as in every job.

use std::process::ExitCode;
use std::time::Duration;

use weir::prelude::*;
use weir::state::AggregateFunction;

const PIPELINES: [&str; 5] = ["stateless", "keyed", "window-aggregate", "window-process", "skewed-union"];

struct Options {
    pipeline: String,
    records: u64,
    keys: u64,
    events_per_second: u64,
    sink_records_per_second: Option<u64>,
}

/// `stream`, slowed down to `rate` records per second over all its instances
/// (each instance sleeps until its share of the rate allows the next record).
fn throttled<T: Data>(stream: &DataStream<T>, rate: Option<u64>, parallelism: usize) -> DataStream<T> {
    let Some(rate) = rate else { return stream.clone() };
    let per_instance = rate.max(1) as f64 / parallelism.max(1) as f64;
    let mut progress: Option<(std::time::Instant, u64)> = None;
    stream
        .map(move |record: T| {
            let (start, count) = progress.get_or_insert_with(|| (std::time::Instant::now(), 0));
            *count += 1;
            let due = Duration::from_secs_f64(*count as f64 / per_instance);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            record
        })
        .name("Slow sink")
}

/// `(key, value, timestamp ms)`.
type Reading = (u64, u64, i64);

/// Count and sum of a window, as one accumulator.
struct CountAndSum;

impl AggregateFunction for CountAndSum {
    type In = Reading;
    type Acc = (u64, u64);
    type Out = (u64, u64);

    fn create_accumulator(&self) -> (u64, u64) {
        (0, 0)
    }

    fn add(&self, accumulator: &mut (u64, u64), reading: Reading) {
        accumulator.0 += 1;
        accumulator.1 = accumulator.1.wrapping_add(reading.1);
    }

    fn result(&self, accumulator: &(u64, u64)) -> (u64, u64) {
        *accumulator
    }

    fn merge(&self, a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
        (a.0 + b.0, a.1.wrapping_add(b.1))
    }
}

fn windowed(records: &DataStream<u64>, options: &Options) -> WindowedStream<Reading, u64> {
    let (keys, rate) = (options.keys, options.events_per_second.max(1));
    let strategy =
        WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|reading: &Reading, _| reading.2);
    records
        .map(move |n: u64| (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % keys, n & 0xFF, (n * 1000 / rate) as i64))
        .assign_timestamps_and_watermarks(strategy)
        .key_by(|reading: &Reading| reading.0)
        .window(WindowAssigner::tumbling_event_time(Duration::from_secs(1)))
}

fn main() -> ExitCode {
    let env = StreamEnv::from_args();
    let options = match parse(&env.args()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            eprintln!(
                "usage: throughput --pipeline {} [--records N] [--keys N] [--events-per-second N] [--sink-records-per-second R] \
                 [--parallelism N] [--state-backend memory|rocksdb] [--checkpoint-dir DIR --checkpoint-interval-ms N]",
                PIPELINES.join("|")
            );
            return ExitCode::from(2);
        }
    };
    let records = env.source(GeneratorSource::new(|index: u64| index).count(options.records));
    match options.pipeline.as_str() {
        "window-aggregate" => {
            windowed(&records, &options).aggregate(CountAndSum).discard();
        }
        "skewed-union" => {
            // A second input at 1% of the first's rate: barriers from the
            // fast input wait at the union for the slow one's (alignment).
            let slow_rate = options.events_per_second as f64 / 100.0;
            let slow = env.source(
                // Indexes scaled ×100 keep its event time in step with the fast input's.
                GeneratorSource::new(|index: u64| index * 100)
                    .count(options.records / 100)
                    .records_per_second(slow_rate)
                    .named("Source: Slow generator"),
            );
            let both = records.union(&[slow]);
            windowed(&both, &options).aggregate(CountAndSum).discard();
        }
        "window-process" => {
            windowed(&records, &options)
                .process(
                    |key: &u64, _: &WindowContext, readings: Vec<Reading>, out: &mut Collector<'_, (u64, u64, u64)>| {
                        let sum = readings.iter().fold(0u64, |sum, reading| sum.wrapping_add(reading.1));
                        out.collect((*key, readings.len() as u64, sum));
                    },
                )
                .discard();
        }
        "stateless" => {
            records
                .map(|n: u64| n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .filter(|n: &u64| !n.is_multiple_of(3))
                .discard();
        }
        _ => {
            let keys = options.keys;
            let sums = records
                .map(move |n: u64| (n % keys, 1u64))
                .key_by(|pair: &(u64, u64)| pair.0)
                .sum(|pair: &mut (u64, u64)| &mut pair.1);
            throttled(&sums, options.sink_records_per_second, env.parallelism()).discard();
        }
    }
    let executed = env.execute(&format!("throughput-{}", options.pipeline));
    match executed {
        Ok(result) => {
            let seconds = result.net_runtime.as_secs_f64();
            println!(
                "pipeline={} backend={} parallelism={} records={} seconds={seconds:.3} records_per_second={:.0}",
                options.pipeline,
                match env.state_backend() {
                    StateBackend::Memory => "memory",
                    StateBackend::RocksDb { .. } => "rocksdb",
                },
                env.parallelism(),
                options.records,
                options.records as f64 / seconds
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        pipeline: "stateless".into(),
        records: 100_000_000,
        keys: 10_000,
        events_per_second: 5_000_000,
        sink_records_per_second: None,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|_| format!("{flag} expects a number, got '{value}'"));
        match flag.as_str() {
            "--pipeline" if PIPELINES.contains(&value.as_str()) => options.pipeline = value.clone(),
            "--pipeline" => return Err(format!("unknown pipeline '{value}'")),
            "--records" => options.records = number()?,
            "--keys" => options.keys = number()?.max(1),
            "--events-per-second" => options.events_per_second = number()?.max(1),
            "--sink-records-per-second" => options.sink_records_per_second = Some(number()?.max(1)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(options)
}
