//! Nexmark queries with the semantics of Flink's SQL texts
//! (`nexmark-flink/src/main/resources/queries/`), written with the
//! DataStream API. Each query turns the event stream into rows of its
//! SELECT's columns, in order, written as CSV ([`header`] names the
//! columns) to an [`Output`].
//!
//! Rows stay typed until the sink: each query emits a row struct
//! ([`BidRow`], [`AuctionPriceRow`], …) whose `Display` is its CSV line, and
//! only the sink formats it, so a run that discards its rows does not pay for
//! formatting.
//!
//! One file per query (q0–q2, stateless, share one); this file holds what
//! they share: the CSV header and field quoting, the event-time strategy,
//! the split of the event stream by kind, and the sink.

mod q3;
mod q4;
mod q5;
mod q7;
mod q8;
mod stateless;

use std::fmt::{self, Display};
use std::path::PathBuf;
use std::time::Duration;

use weir_api::{Data, DataStream, DataStreamSink, Either, OutputTag, ProcessContext, ProcessError, WatermarkStrategy};

pub use self::q3::{LocalItemRow, q3};
pub use self::q4::{CategoryAverageRow, q4};
pub use self::q5::{HotItemRow, q5};
pub use self::q7::{HighestBidRow, q7};
pub use self::q8::{NewUserRow, q8};
pub use self::stateless::{AuctionPriceRow, BidRow, Euros, euros, q0, q1, q2};
use crate::events::{Bid, Event};

/// The queries built so far.
pub const QUERIES: [&str; 8] = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8"];

/// Nexmark's watermark: the largest `dateTime` seen minus 4 seconds.
const OUT_OF_ORDERNESS: Duration = Duration::from_secs(4);

/// The CSV header of `query`'s rows.
pub fn header(query: &str) -> Option<&'static str> {
    Some(match query {
        "q0" => "auction,bidder,price,dateTime,extra",
        "q1" => "auction,bidder,price,dateTime,extra",
        "q2" => "auction,price",
        "q3" => "name,city,state,id",
        "q4" => "category,avg",
        "q5" => "auction,num",
        "q7" => "auction,price,bidder,dateTime,extra",
        "q8" => "id,name,starttime",
        _ => return None,
    })
}

/// Where a query's rows go.
#[derive(Clone, Debug)]
pub enum Output {
    /// Nowhere (benchmarks), as Flink's `blackhole` connector.
    Discard,
    /// Standard output, a line per row.
    Print,
    /// Text files under this path, a line per row (one file per parallel instance).
    Text(PathBuf),
}

/// `query` over `events`, its rows written to `output`; `None` for a query
/// not built. Rows become CSV text only when they are written, so a run that
/// discards them does not pay for formatting (Flink's blackhole sink does
/// not format either); what the SELECT computes is computed either way.
pub fn run(query: &str, events: &DataStream<Event>, output: &Output) -> Option<DataStreamSink> {
    Some(match query {
        "q0" => write(q0(events), output),
        "q1" => write(q1(events), output),
        "q2" => write(q2(events), output),
        "q3" => write(q3(events), output),
        "q4" => write(q4(&with_event_time(events)), output),
        "q5" => write(q5(&with_event_time(events)), output),
        "q7" => write(q7(&with_event_time(events)), output),
        "q8" => write(q8(&with_event_time(events)), output),
        _ => return None,
    })
}

/// Writes the rows to `output`, as CSV lines (their `Display`).
fn write<T: Data + Display>(rows: DataStream<T>, output: &Output) -> DataStreamSink {
    match output {
        Output::Discard => rows.discard(),
        Output::Print => rows.print(),
        Output::Text(path) => rows.write_as_text(path.clone()),
    }
}

/// Events with their `dateTime` as event time and Nexmark's watermark.
pub fn with_event_time(events: &DataStream<Event>) -> DataStream<Event> {
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(OUT_OF_ORDERNESS)
        .with_timestamp_assigner(|event: &Event, _| event.date_time());
    events.assign_timestamps_and_watermarks(strategy)
}

/// Two kinds of events out of one stream, without copying any: the first
/// kind is the operator's output, the second its side output. (Two filters
/// on the same stream would each get a copy of every event.)
fn split<A: Data, B: Data>(
    events: &DataStream<Event>,
    name: &str,
    route: fn(Event) -> Option<Either<A, B>>,
) -> (DataStream<A>, DataStream<B>) {
    let second = OutputTag::<B>::new(format!("{name} (second kind)"));
    let tag = second.clone();
    let first = events
        .process(move |event: Event, ctx: &mut ProcessContext<'_, A>| match route(event) {
            Some(Either::Left(record)) => ctx.collect(record),
            Some(Either::Right(record)) => ctx.output(&tag, record),
            None => {}
        })
        .name(name);
    let second = first.side_output(&second);
    (first, second)
}

/// A function's state handles are set in `open`, which runs before any
/// record: without them, the runtime broke that promise.
fn state_missing() -> ProcessError {
    "state used before open".into()
}

/// The bids among the events.
fn bids(events: &DataStream<Event>) -> DataStream<Bid> {
    events.flat_map(|event: Event| event.into_bid()).name("Bids")
}

/// A CSV field as text: quoted when it holds a comma, a quote or a line break.
pub struct CsvField<'a>(pub &'a str);

impl Display for CsvField<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains([',', '"', '\n', '\r']) {
            write!(out, "\"{}\"", self.0.replace('"', "\"\""))
        } else {
            out.write_str(self.0)
        }
    }
}

/// A CSV field: quoted when it holds a comma, a quote or a line break.
pub fn csv_field(text: &str) -> String {
    CsvField(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
