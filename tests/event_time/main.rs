//! Event time through the public API: watermarks, window assigners, lateness
//! and session merging, checked against expectations computed by hand or by
//! a plain group-by in the test.
//!
//! `windows` runs window operators on hand-made and random inputs;
//! `two_inputs` joins and connects two timestamped streams; `watermarks`
//! covers what drives event time: timers, custom generators, idleness.

mod two_inputs;
mod watermarks;
mod windows;

use weir::state::AggregateFunction;

/// `(timestamp ms, key, value)`.
type Event = (i64, String, i64);

/// Counts the events of a window and sums their values.
struct CountAndSum;

impl AggregateFunction for CountAndSum {
    type In = Event;
    type Acc = (u64, i64);
    type Out = (u64, i64);

    fn create_accumulator(&self) -> (u64, i64) {
        (0, 0)
    }

    fn add(&self, accumulator: &mut (u64, i64), event: Event) {
        accumulator.0 += 1;
        accumulator.1 += event.2;
    }

    fn result(&self, accumulator: &(u64, i64)) -> (u64, i64) {
        *accumulator
    }

    fn merge(&self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

fn event(timestamp: i64, key: &str, value: i64) -> Event {
    (timestamp, key.to_owned(), value)
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}
