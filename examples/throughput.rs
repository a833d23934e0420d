//! Throughput benchmark of the local runtime: runs one pipeline over a fixed
//! number of generated records and prints records per second.
//!
//! ```text
//! cargo run --release --example throughput -- --pipeline stateless --records 200000000 --parallelism 2
//! cargo run --release --example throughput -- --pipeline keyed --records 50000000 --parallelism 2
//! ```
//!
//! Pipelines:
//! - `stateless`: generator → map → filter → discard (all chained);
//! - `keyed`: generator → key_by (10,000 keys) → rolling sum → discard.

use std::process::ExitCode;

use weir::prelude::*;

struct Options {
    pipeline: String,
    records: u64,
    keys: u64,
}

fn main() -> ExitCode {
    let env = StreamEnv::from_args();
    let options = match parse(&env.args()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            eprintln!("usage: throughput --pipeline stateless|keyed [--records N] [--keys N] [--parallelism N]");
            return ExitCode::from(2);
        }
    };
    let records = env.source(GeneratorSource::new(|index: u64| index).count(options.records));
    match options.pipeline.as_str() {
        "stateless" => {
            records
                .map(|n: u64| n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .filter(|n: &u64| !n.is_multiple_of(3))
                .discard();
        }
        _ => {
            let keys = options.keys;
            records
                .map(move |n: u64| (n % keys, 1u64))
                .key_by(|pair: &(u64, u64)| pair.0)
                .sum(|pair: &mut (u64, u64)| &mut pair.1)
                .discard();
        }
    }
    match env.execute(&format!("throughput-{}", options.pipeline)) {
        Ok(result) => {
            let seconds = result.net_runtime.as_secs_f64();
            println!(
                "pipeline={} parallelism={} records={} seconds={seconds:.3} records_per_second={:.0}",
                options.pipeline,
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
    let mut options = Options { pipeline: "stateless".into(), records: 100_000_000, keys: 10_000 };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|_| format!("{flag} expects a number, got '{value}'"));
        match flag.as_str() {
            "--pipeline" if value == "stateless" || value == "keyed" => options.pipeline = value.clone(),
            "--pipeline" => return Err(format!("unknown pipeline '{value}'")),
            "--records" => options.records = number()?,
            "--keys" => options.keys = number()?.max(1),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(options)
}
