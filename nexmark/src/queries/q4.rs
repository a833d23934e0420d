//! q4, average closing price per category: the highest valid bid of each
//! auction at its expiry, then the average per category at the end of input.

use std::fmt::{self, Display};

use weir_api::{DataStream, Either, KeyedCoProcessFunction, KeyedContext, KeyedProcessFunction, ProcessError};
use weir_state::keyed::{KeyedStateBackend, ListState, StateError, ValueState};

use super::{split, state_missing};
use crate::events::{Auction, Bid, Event};

/// A row of q4: `category, avg`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CategoryAverageRow {
    /// The auctions' category.
    pub category: u64,
    /// The average closing price of its auctions, in cents, truncated.
    pub average: u128,
}

impl Display for CategoryAverageRow {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "{},{}", self.category, self.average)
    }
}

/// q4, average closing price per category: the highest bid of each auction
/// (bids between its start and its expiry), averaged per category as Flink's
/// `AVG` of a `BIGINT` does (an integer, truncated). An updating query: the
/// rows are the final result, emitted at the end of input.
pub fn q4(events: &DataStream<Event>) -> DataStream<CategoryAverageRow> {
    let (auctions, bids) = split(events, "Auctions and bids", |event| match event {
        Event::Auction(auction) => Some(Either::Left(auction)),
        Event::Bid(bid) => Some(Either::Right(bid)),
        Event::Person(_) => None,
    });
    auctions
        .connect(&bids)
        .key_by(|auction: &Auction| auction.id, |bid: &Bid| bid.auction)
        .process(ClosingPrice::default())
        .name("Closing price per auction")
        .key_by(|(category, _): &(u64, u64)| *category)
        .process(AveragePerCategory::default())
        .name("q4")
}

/// What q4 keeps of an auction.
type AuctionTerms = (u64, i64, i64);

/// q4's first stage, per auction: its highest valid bid, final at its expiry.
#[derive(Clone, Default)]
struct ClosingPrice {
    auction: Option<ValueState<(), AuctionTerms>>,
    highest: Option<ValueState<(), u64>>,
    early_bids: Option<ListState<(), (u64, i64)>>,
    closed: Option<ValueState<(), bool>>,
}

/// The handles of [`ClosingPrice`]'s states: the auction's terms, its highest
/// bid, the bids (price, time) that came before the auction, and whether it closed.
type ClosingPriceStates =
    (ValueState<(), AuctionTerms>, ValueState<(), u64>, ListState<(), (u64, i64)>, ValueState<(), bool>);

impl ClosingPrice {
    fn states(&self) -> Result<ClosingPriceStates, ProcessError> {
        Ok((
            self.auction.clone().ok_or_else(state_missing)?,
            self.highest.clone().ok_or_else(state_missing)?,
            self.early_bids.clone().ok_or_else(state_missing)?,
            self.closed.clone().ok_or_else(state_missing)?,
        ))
    }
}

fn raise(
    ctx: &mut KeyedContext<'_, u64, (u64, u64)>,
    highest: &ValueState<(), u64>,
    price: u64,
) -> Result<(), StateError> {
    let current = ctx.state().value(highest, &())?;
    if current.is_none_or(|current| price > current) {
        ctx.state().set_value(highest, &(), price)?;
    }
    Ok(())
}

impl KeyedCoProcessFunction<u64, Auction, Bid, (u64, u64)> for ClosingPrice {
    fn open(&mut self, state: &mut KeyedStateBackend<u64>) -> Result<(), StateError> {
        self.auction = Some(state.register_value("q4-auction")?);
        self.highest = Some(state.register_value("q4-highest-bid")?);
        self.early_bids = Some(state.register_list("q4-early-bids")?);
        self.closed = Some(state.register_value("q4-closed")?);
        Ok(())
    }

    fn process_element1(
        &mut self,
        auction: Auction,
        ctx: &mut KeyedContext<'_, u64, (u64, u64)>,
    ) -> Result<(), ProcessError> {
        let (terms, highest, early_bids, _) = self.states()?;
        for (price, time) in ctx.state().list(&early_bids, &())? {
            if (auction.date_time..=auction.expires).contains(&time) {
                raise(ctx, &highest, price)?;
            }
        }
        ctx.state().clear(&early_bids, &())?;
        ctx.state().set_value(&terms, &(), (auction.category, auction.date_time, auction.expires))?;
        ctx.register_event_time_timer(auction.expires)?;
        Ok(())
    }

    fn process_element2(&mut self, bid: Bid, ctx: &mut KeyedContext<'_, u64, (u64, u64)>) -> Result<(), ProcessError> {
        let (terms, highest, early_bids, closed) = self.states()?;
        if ctx.state().value(&closed, &())?.unwrap_or(false) {
            return Ok(()); // After the expiry: not a valid bid.
        }
        match ctx.state().value(&terms, &())? {
            Some((_, start, expires)) if (start..=expires).contains(&bid.date_time) => raise(ctx, &highest, bid.price)?,
            Some(_) => {}
            None => ctx.state().list_add(&early_bids, &(), (bid.price, bid.date_time))?,
        }
        Ok(())
    }

    fn on_timer(&mut self, _expiry: i64, ctx: &mut KeyedContext<'_, u64, (u64, u64)>) -> Result<(), ProcessError> {
        let (terms, highest, early_bids, closed) = self.states()?;
        if let (Some((category, _, _)), Some(price)) =
            (ctx.state().value(&terms, &())?, ctx.state().value(&highest, &())?)
        {
            ctx.collect((category, price));
        }
        ctx.state().clear(&terms, &())?;
        ctx.state().clear(&highest, &())?;
        ctx.state().clear(&early_bids, &())?;
        ctx.state().set_value(&closed, &(), true)?;
        Ok(())
    }
}

/// q4's second stage, per category: sum and count of closing prices, the
/// average emitted when the input ends (a timer at the end of event time).
#[derive(Clone, Default)]
struct AveragePerCategory {
    totals: Option<ValueState<(), (u128, u64)>>,
}

/// Fires when the input ends, after every real timer.
const END_OF_INPUT: i64 = i64::MAX - 1;

impl KeyedProcessFunction<u64, (u64, u64), CategoryAverageRow> for AveragePerCategory {
    fn open(&mut self, state: &mut KeyedStateBackend<u64>) -> Result<(), StateError> {
        self.totals = Some(state.register_value("q4-category-totals")?);
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, price): (u64, u64),
        ctx: &mut KeyedContext<'_, u64, CategoryAverageRow>,
    ) -> Result<(), ProcessError> {
        let totals = self.totals.clone().ok_or_else(state_missing)?;
        let (sum, count) = ctx.state().value(&totals, &())?.unwrap_or_default();
        ctx.state().set_value(&totals, &(), (sum + u128::from(price), count + 1))?;
        ctx.register_event_time_timer(END_OF_INPUT)?;
        Ok(())
    }

    fn on_timer(&mut self, _: i64, ctx: &mut KeyedContext<'_, u64, CategoryAverageRow>) -> Result<(), ProcessError> {
        let totals = self.totals.clone().ok_or_else(state_missing)?;
        if let Some((sum, count)) = ctx.state().value(&totals, &())? {
            let category = *ctx.key();
            ctx.collect(CategoryAverageRow { category, average: sum / u128::from(count.max(1)) });
        }
        Ok(())
    }
}
