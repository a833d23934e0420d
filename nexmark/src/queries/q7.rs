//! q7, highest bid: per 10 s tumbling window, the bids at its highest price.

use std::fmt::{self, Display};

use weir_api::{DataStream, KeyedContext, KeyedProcessFunction, ProcessError};
use weir_state::keyed::{KeyedStateBackend, ListState, StateError, ValueState};

use super::{CsvField, bids, state_missing};
use crate::events::{Bid, Event};

/// A row of q7: `auction, price, bidder, dateTime, extra`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct HighestBidRow {
    /// The bid's auction.
    pub auction: u64,
    /// The bid's price, the highest of its window, in cents.
    pub price: u64,
    /// The bid's bidder.
    pub bidder: u64,
    /// The bid's time, epoch milliseconds.
    pub date_time: i64,
    /// The bid's `extra`.
    pub extra: String,
}

impl Display for HighestBidRow {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { auction, price, bidder, date_time, extra } = self;
        write!(out, "{auction},{price},{bidder},{date_time},{}", CsvField(extra))
    }
}

/// q7's window: 10 seconds.
const Q7_WINDOW_MS: i64 = 10_000;

/// q7, highest bid: per 10 s tumbling window, the bids at its highest price
/// whose time is within the window's bounds, both included (`BETWEEN`), so a
/// bid exactly at a window's end also counts for the window it closes.
pub fn q7(events: &DataStream<Event>) -> DataStream<HighestBidRow> {
    bids(events)
        .flat_map(|bid: Bid| {
            let window = bid.date_time.div_euclid(Q7_WINDOW_MS);
            let on_boundary = bid.date_time.rem_euclid(Q7_WINDOW_MS) == 0;
            let closing = on_boundary.then(|| (window - 1, true, bid.clone()));
            std::iter::once((window, false, bid)).chain(closing)
        })
        .name("Bids per window")
        .key_by(|(window, _, _): &(i64, bool, Bid)| *window)
        .process(HighestBid::default())
        .name("q7")
}

/// q7 per window: its highest price, the bids at it, and the bids exactly at its end.
#[derive(Clone, Default)]
struct HighestBid {
    highest: Option<ValueState<(), u64>>,
    leaders: Option<ListState<(), Bid>>,
    at_end: Option<ListState<(), Bid>>,
}

impl KeyedProcessFunction<i64, (i64, bool, Bid), HighestBidRow> for HighestBid {
    fn open(&mut self, state: &mut KeyedStateBackend<i64>) -> Result<(), StateError> {
        self.highest = Some(state.register_value("q7-highest")?);
        self.leaders = Some(state.register_list("q7-leaders")?);
        self.at_end = Some(state.register_list("q7-at-end")?);
        Ok(())
    }

    fn process_element(
        &mut self,
        (window, on_end, bid): (i64, bool, Bid),
        ctx: &mut KeyedContext<'_, i64, HighestBidRow>,
    ) -> Result<(), ProcessError> {
        let (highest, leaders, at_end) = (
            self.highest.clone().ok_or_else(state_missing)?,
            self.leaders.clone().ok_or_else(state_missing)?,
            self.at_end.clone().ok_or_else(state_missing)?,
        );
        ctx.register_event_time_timer((window + 1) * Q7_WINDOW_MS)?;
        if on_end {
            ctx.state().list_add(&at_end, &(), bid)?;
            return Ok(());
        }
        match ctx.state().value(&highest, &())? {
            Some(price) if bid.price < price => {}
            Some(price) if bid.price == price => ctx.state().list_add(&leaders, &(), bid)?,
            _ => {
                ctx.state().set_value(&highest, &(), bid.price)?;
                ctx.state().list_set(&leaders, &(), vec![bid])?;
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, _: i64, ctx: &mut KeyedContext<'_, i64, HighestBidRow>) -> Result<(), ProcessError> {
        let (highest, leaders, at_end) = (
            self.highest.clone().ok_or_else(state_missing)?,
            self.leaders.clone().ok_or_else(state_missing)?,
            self.at_end.clone().ok_or_else(state_missing)?,
        );
        if let Some(price) = ctx.state().value(&highest, &())? {
            let winners = ctx.state().list(&leaders, &())?;
            let closing = ctx.state().list(&at_end, &())?.into_iter().filter(|bid| bid.price == price);
            for Bid { auction, price, bidder, date_time, extra, .. } in winners.into_iter().chain(closing) {
                ctx.collect(HighestBidRow { auction, price, bidder, date_time, extra });
            }
        }
        ctx.state().clear(&highest, &())?;
        ctx.state().clear(&leaders, &())?;
        ctx.state().clear(&at_end, &())?;
        Ok(())
    }
}
