//! Fraud detection (the pattern of Flink's fraud-detection walkthrough): per
//! account, alert when a transaction under 1.00 is followed within one
//! minute by a transaction over 500.00.
//!
//! Input: CSV lines `timestamp_ms,account_id,amount` (amount a decimal with
//! at most two decimals, e.g. `0.50` or `734.10`), in timestamp order per
//! account, from the files given as arguments or from standard input when
//! there are none. One reader reads them in order (several readers would
//! interleave parts of the files), and the detection runs at the job's
//! parallelism. A malformed line fails the job with an error that quotes
//! it. Output, on standard output, one line per alert:
//! `alert,account_id,small_timestamp_ms,large_timestamp_ms,large_amount`.
//!
//! State per account: the time of its last small transaction, and an
//! event-time timer one minute later that forgets it; a large transaction
//! alerts if a small one is remembered and at most one minute older. Engine
//! flags (`--parallelism N`, ...) may appear anywhere.
//!
//! ```text
//! printf '1000,acct-1,0.50\n30000,acct-1,725.00\n' | cargo run --example fraud_detection
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir::state::{KeyedStateBackend, StateError, ValueState};

const SMALL_CENTS: i64 = 100;
const LARGE_CENTS: i64 = 50_000;
const ONE_MINUTE_MS: i64 = 60_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Transaction {
    timestamp: i64,
    account: String,
    cents: i64,
}

fn parse(line: String) -> Result<Transaction, String> {
    let malformed =
        |why: &str| format!("malformed input line '{line}': {why}; expected timestamp_ms,account_id,amount");
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [timestamp, account, amount] = fields[..] else {
        return Err(malformed("not three comma-separated fields"));
    };
    let timestamp = timestamp.parse().map_err(|_| malformed("the timestamp is not an integer"))?;
    let cents =
        parse_cents(amount).ok_or_else(|| malformed("the amount is not a decimal with at most two decimals"))?;
    Ok(Transaction { timestamp, account: account.to_owned(), cents })
}

/// `"734.1"` → 73410 cents, exactly (no floating point).
fn parse_cents(amount: &str) -> Option<i64> {
    let (units, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    if units.is_empty() || fraction.len() > 2 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let units: i64 = units.parse().ok().filter(|units: &i64| *units >= 0)?;
    let fraction: i64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<2}").parse().ok()? };
    units.checked_mul(100)?.checked_add(fraction)
}

fn format_cents(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Remembers each account's last small transaction for one minute.
#[derive(Clone, Default)]
struct FraudDetector {
    last_small: Option<ValueState<(), i64>>,
}

impl FraudDetector {
    fn last_small(&self) -> Result<&ValueState<(), i64>, ProcessError> {
        Ok(self.last_small.as_ref().ok_or("state used before open")?)
    }
}

impl KeyedProcessFunction<String, Transaction, String> for FraudDetector {
    fn open(&mut self, state: &mut KeyedStateBackend<String>) -> Result<(), StateError> {
        self.last_small = Some(state.register_value("last-small-transaction")?);
        Ok(())
    }

    fn process_element(
        &mut self,
        transaction: Transaction,
        ctx: &mut KeyedContext<'_, String, String>,
    ) -> Result<(), ProcessError> {
        let last_small = self.last_small()?.clone();
        if transaction.cents > LARGE_CENTS
            && let Some(small) = ctx.state().value(&last_small, &())?
            && transaction.timestamp - small <= ONE_MINUTE_MS
        {
            let amount = format_cents(transaction.cents);
            let alert = format!("alert,{},{small},{},{amount}", transaction.account, transaction.timestamp);
            ctx.collect(alert);
        }
        if transaction.cents < SMALL_CENTS {
            // A newer small transaction restarts the minute.
            if let Some(earlier) = ctx.state().value(&last_small, &())? {
                ctx.delete_event_time_timer(earlier + ONE_MINUTE_MS)?;
            }
            ctx.state().set_value(&last_small, &(), transaction.timestamp)?;
            ctx.register_event_time_timer(transaction.timestamp + ONE_MINUTE_MS)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, _timestamp: i64, ctx: &mut KeyedContext<'_, String, String>) -> Result<(), ProcessError> {
        let last_small = self.last_small()?.clone();
        ctx.state().clear(&last_small, &())?;
        Ok(())
    }
}

fn main() -> weir::Result<()> {
    let env = StreamEnv::from_args();
    let files = env.args();
    // One reader: the detector sees each account's transactions in input
    // order; the detection itself runs at the job's parallelism.
    let lines =
        if files.is_empty() { env.read_stdin() } else { env.source(FileSource::lines_of(files)).set_parallelism(1) };
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|transaction: &Transaction, _| transaction.timestamp)
        .with_emit_interval(Duration::ZERO);
    lines
        .try_map(parse)
        .name("Parse CSV")
        .set_parallelism(1)
        .assign_timestamps_and_watermarks(strategy)
        .set_parallelism(1)
        .key_by(|transaction: &Transaction| transaction.account.clone())
        .process(FraudDetector::default())
        .name("Fraud detector")
        .print();
    env.execute("fraud_detection")?;
    Ok(())
}
