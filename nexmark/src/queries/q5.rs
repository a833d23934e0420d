//! q5, hot items: per sliding window, the auctions with the most bids.

use std::fmt::{self, Display};
use std::time::Duration;

use weir_api::windows::{WindowAssigner, WindowContext};
use weir_api::{Collector, DataStream, KeyedContext, KeyedProcessFunction, ProcessError};
use weir_state::keyed::{AggregateFunction, KeyedStateBackend, StateError, ValueState};

use super::{bids, state_missing};
use crate::events::{Bid, Event};

/// A row of q5: `auction, num`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct HotItemRow {
    /// One of the window's auctions with the most bids.
    pub auction: u64,
    /// Its number of bids in the window.
    pub num: u64,
}

impl Display for HotItemRow {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "{},{}", self.auction, self.num)
    }
}

/// Counts records (q5's bids per auction and 2 s slice).
struct Count;

impl AggregateFunction for Count {
    type In = Bid;
    type Acc = u64;
    type Out = u64;

    fn create_accumulator(&self) -> u64 {
        0
    }

    fn add(&self, count: &mut u64, _: Bid) {
        *count += 1;
    }

    fn result(&self, count: &u64) -> u64 {
        *count
    }

    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

/// q5's sliding windows: 10 s long, every 2 s, so each is five 2 s slices.
const Q5_SLICE_MS: i64 = 2_000;
/// A window's length in slices.
const Q5_SLICES_PER_WINDOW: i64 = 5;

/// q5, hot items: per sliding window (10 s, every 2 s), the auctions with
/// the most bids, and their count.
///
/// Each bid is counted once, in its 2 s slice, and each window sums its five
/// slices per auction (as Flink's planner slices sliding windows), instead
/// of every bid updating the five windows it falls in. A bid whose slice
/// has closed is late for all its windows (sliding windows would still
/// count it in those not yet closed).
pub fn q5(events: &DataStream<Event>) -> DataStream<HotItemRow> {
    bids(events)
        .key_by(|bid: &Bid| bid.auction)
        .window(WindowAssigner::tumbling_event_time(Duration::from_millis(Q5_SLICE_MS as u64)))
        .aggregate_with_process(
            Count,
            |auction: &u64, context: &WindowContext, count, out: &mut Collector<'_, (u64, i64, u64)>| {
                out.collect((*auction, context.window.end, count));
            },
        )
        .name("Bids per auction and slice")
        .key_by(|(auction, _, _): &(u64, i64, u64)| *auction)
        .process(SlidingCount::default())
        .name("Bids per auction and window")
        // Each count carries its window's end − 1 as time: a 2 s tumbling
        // window holds exactly the counts of one sliding window.
        .key_by(|(end, _, _): &(i64, u64, u64)| *end)
        .window(WindowAssigner::tumbling_event_time(Duration::from_secs(2)))
        .process(|_: &i64, _: &WindowContext, counts: Vec<(i64, u64, u64)>, out: &mut Collector<'_, HotItemRow>| {
            let most = counts.iter().map(|(_, _, count)| *count).max().unwrap_or(0);
            for (_, auction, num) in counts.into_iter().filter(|(_, _, count)| *count == most) {
                out.collect(HotItemRow { auction, num });
            }
        })
        .name("q5")
}

/// q5 per auction: its recent slice counts, summed into each window as the
/// window closes (an event-time timer at its end − 1, which is also the
/// time the count carries, as a window's result would).
#[derive(Clone, Default)]
struct SlidingCount {
    slices: Option<ValueState<(), Vec<(i64, u64)>>>,
}

impl KeyedProcessFunction<u64, (u64, i64, u64), (i64, u64, u64)> for SlidingCount {
    fn open(&mut self, state: &mut KeyedStateBackend<u64>) -> Result<(), StateError> {
        self.slices = Some(state.register_value("q5-slice-counts")?);
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, slice_end, count): (u64, i64, u64),
        ctx: &mut KeyedContext<'_, u64, (i64, u64, u64)>,
    ) -> Result<(), ProcessError> {
        let state = self.slices.clone().ok_or_else(state_missing)?;
        let mut slices = ctx.state().value(&state, &())?.unwrap_or_default();
        slices.push((slice_end, count));
        ctx.state().set_value(&state, &(), slices)?;
        // The windows holding this slice end with it and in the 8 s after.
        for later in 0..Q5_SLICES_PER_WINDOW {
            ctx.register_event_time_timer(slice_end + later * Q5_SLICE_MS - 1)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, time: i64, ctx: &mut KeyedContext<'_, u64, (i64, u64, u64)>) -> Result<(), ProcessError> {
        let state = self.slices.clone().ok_or_else(state_missing)?;
        let mut slices = ctx.state().value(&state, &())?.unwrap_or_default();
        let window_end = time + 1;
        let window_start = window_end - Q5_SLICE_MS * Q5_SLICES_PER_WINDOW;
        let count: u64 = slices
            .iter()
            .filter(|(end, _)| (window_start + 1..=window_end).contains(end))
            .map(|(_, count)| count)
            .sum();
        if count > 0 {
            let auction = *ctx.key();
            ctx.collect((window_end, auction, count));
        }
        // The next window starts a slice later: slices before it are done.
        slices.retain(|(end, _)| *end > window_start + Q5_SLICE_MS);
        if slices.is_empty() {
            ctx.state().clear(&state, &())?;
        } else {
            ctx.state().set_value(&state, &(), slices)?;
        }
        Ok(())
    }
}
