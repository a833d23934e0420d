//! Nexmark queries with the semantics of Flink's SQL texts
//! (`nexmark-flink/src/main/resources/queries/`), written with the
//! DataStream API. Each query turns the event stream into rows of its
//! SELECT's columns, in order, written as CSV ([`header`] names the
//! columns) to an [`Output`].

use std::fmt::{self, Display};
use std::path::PathBuf;
use std::time::Duration;

use weir_api::windows::{WindowAssigner, WindowContext};
use weir_api::{
    Collector, Data, DataStream, DataStreamSink, Either, KeyedCoProcessFunction, KeyedContext, KeyedProcessFunction,
    OutputTag, ProcessContext, ProcessError, WatermarkStrategy,
};
use weir_state::keyed::{AggregateFunction, KeyedStateBackend, ListState, StateError, ValueState};

use crate::events::{Auction, Bid, Event, Person};

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

fn state_missing() -> ProcessError {
    "state used before open".into()
}

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

/// A row of q0 and q1: `auction, bidder, price, dateTime, extra`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BidRow<Price> {
    /// The bid's auction.
    pub auction: u64,
    /// The bid's bidder.
    pub bidder: u64,
    /// The price column.
    pub price: Price,
    /// The bid's time, epoch milliseconds.
    pub date_time: i64,
    /// The bid's `extra`.
    pub extra: String,
}

impl<Price> BidRow<Price> {
    fn of(bid: Bid, price: impl FnOnce(u64) -> Price) -> Self {
        Self {
            auction: bid.auction,
            bidder: bid.bidder,
            price: price(bid.price),
            date_time: bid.date_time,
            extra: bid.extra,
        }
    }
}

impl<Price: Display> Display for BidRow<Price> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "{},{},{},{},{}", self.auction, self.bidder, self.price, self.date_time, CsvField(&self.extra))
    }
}

/// q0, pass-through: `SELECT auction, bidder, price, dateTime, extra FROM bid`.
pub fn q0(events: &DataStream<Event>) -> DataStream<BidRow<u64>> {
    bids(events).map(|bid: Bid| BidRow::of(bid, |price| price)).name("q0")
}

/// q1's price, `0.908 * price` as a `DECIMAL(23, 3)`: thousandths, exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Euros {
    /// The price in thousandths of a euro.
    pub thousandths: u128,
}

impl Euros {
    /// `0.908 * cents`.
    pub fn of_price(price: u64) -> Self {
        Self { thousandths: u128::from(price) * 908 }
    }
}

impl Display for Euros {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "{}.{:03}", self.thousandths / 1000, self.thousandths % 1000)
    }
}

/// The price in euros of q1, `0.908 * price`, exact to its three decimals.
pub fn euros(price: u64) -> String {
    Euros::of_price(price).to_string()
}

/// q1, currency conversion: `SELECT auction, bidder, 0.908 * price as price,
/// dateTime, extra FROM bid`. The conversion is computed here; only its
/// text waits for the sink.
pub fn q1(events: &DataStream<Event>) -> DataStream<BidRow<Euros>> {
    bids(events).map(|bid: Bid| BidRow::of(bid, Euros::of_price)).name("q1")
}

/// q2, selection: `SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0`.
pub fn q2(events: &DataStream<Event>) -> DataStream<String> {
    bids(events)
        .filter(|bid: &Bid| bid.auction % 123 == 0)
        .map(|bid: Bid| format!("{},{}", bid.auction, bid.price))
        .name("q2")
}

/// q3, local item suggestion: `SELECT P.name, P.city, P.state, A.id FROM
/// auction AS A INNER JOIN person AS P on A.seller = P.id WHERE A.category =
/// 10 and (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')` — an
/// unbounded join: a row as soon as both sides are there, whatever arrives first.
pub fn q3(events: &DataStream<Event>) -> DataStream<String> {
    let (auctions, persons) = split(events, "Auctions of category 10, persons in or, id, ca", |event| match event {
        Event::Auction(auction) if auction.category == 10 => Some(Either::Left(auction)),
        Event::Person(person) if matches!(person.state.as_str(), "or" | "id" | "ca") => Some(Either::Right(person)),
        _ => None,
    });
    auctions
        .connect(&persons)
        .key_by(|auction: &Auction| auction.seller, |person: &Person| person.id)
        .process(SellerJoin::default())
        .name("q3")
}

/// q3's join, per seller: the person once known, the auctions that came first.
#[derive(Clone, Default)]
struct SellerJoin {
    person: Option<ValueState<(), (String, String, String)>>,
    waiting: Option<ListState<(), u64>>,
}

impl KeyedCoProcessFunction<u64, Auction, Person, String> for SellerJoin {
    fn open(&mut self, state: &mut KeyedStateBackend<u64>) -> Result<(), StateError> {
        self.person = Some(state.register_value("q3-person")?);
        self.waiting = Some(state.register_list("q3-waiting-auctions")?);
        Ok(())
    }

    fn process_element1(
        &mut self,
        auction: Auction,
        ctx: &mut KeyedContext<'_, u64, String>,
    ) -> Result<(), ProcessError> {
        let (person, waiting) =
            (self.person.clone().ok_or_else(state_missing)?, self.waiting.clone().ok_or_else(state_missing)?);
        match ctx.state().value(&person, &())? {
            Some((name, city, state)) => {
                ctx.collect(format!("{},{},{state},{}", csv_field(&name), csv_field(&city), auction.id))
            }
            None => ctx.state().list_add(&waiting, &(), auction.id)?,
        }
        Ok(())
    }

    fn process_element2(
        &mut self,
        person: Person,
        ctx: &mut KeyedContext<'_, u64, String>,
    ) -> Result<(), ProcessError> {
        let (state, waiting) =
            (self.person.clone().ok_or_else(state_missing)?, self.waiting.clone().ok_or_else(state_missing)?);
        for auction in ctx.state().list(&waiting, &())? {
            ctx.collect(format!("{},{},{},{auction}", csv_field(&person.name), csv_field(&person.city), person.state));
        }
        ctx.state().clear(&waiting, &())?;
        ctx.state().set_value(&state, &(), (person.name, person.city, person.state))?;
        Ok(())
    }
}

/// q4, average closing price per category: the highest bid of each auction
/// (bids between its start and its expiry), averaged per category as Flink's
/// `AVG` of a `BIGINT` does (an integer, truncated). An updating query: the
/// rows are the final result, emitted at the end of input.
pub fn q4(events: &DataStream<Event>) -> DataStream<String> {
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

impl ClosingPrice {
    fn states(
        &self,
    ) -> Result<
        (ValueState<(), AuctionTerms>, ValueState<(), u64>, ListState<(), (u64, i64)>, ValueState<(), bool>),
        ProcessError,
    > {
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

impl KeyedProcessFunction<u64, (u64, u64), String> for AveragePerCategory {
    fn open(&mut self, state: &mut KeyedStateBackend<u64>) -> Result<(), StateError> {
        self.totals = Some(state.register_value("q4-category-totals")?);
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, price): (u64, u64),
        ctx: &mut KeyedContext<'_, u64, String>,
    ) -> Result<(), ProcessError> {
        let totals = self.totals.clone().ok_or_else(state_missing)?;
        let (sum, count) = ctx.state().value(&totals, &())?.unwrap_or_default();
        ctx.state().set_value(&totals, &(), (sum + u128::from(price), count + 1))?;
        ctx.register_event_time_timer(END_OF_INPUT)?;
        Ok(())
    }

    fn on_timer(&mut self, _: i64, ctx: &mut KeyedContext<'_, u64, String>) -> Result<(), ProcessError> {
        let totals = self.totals.clone().ok_or_else(state_missing)?;
        if let Some((sum, count)) = ctx.state().value(&totals, &())? {
            let category = *ctx.key();
            ctx.collect(format!("{category},{}", sum / u128::from(count.max(1))));
        }
        Ok(())
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
const Q5_SLICES_PER_WINDOW: i64 = 5;

/// q5, hot items: per sliding window (10 s, every 2 s), the auctions with
/// the most bids, and their count.
///
/// Each bid is counted once, in its 2 s slice, and each window sums its five
/// slices per auction (as Flink's planner slices sliding windows), instead
/// of every bid updating the five windows it falls in. A bid whose slice
/// has closed is late for all its windows (sliding windows would still
/// count it in those not yet closed).
pub fn q5(events: &DataStream<Event>) -> DataStream<String> {
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
        .process(|_: &i64, _: &WindowContext, counts: Vec<(i64, u64, u64)>, out: &mut Collector<'_, String>| {
            let most = counts.iter().map(|(_, _, count)| *count).max().unwrap_or(0);
            for (_, auction, count) in counts.into_iter().filter(|(_, _, count)| *count == most) {
                out.collect(format!("{auction},{count}"));
            }
        })
        .name("q5")
}

/// q7's window: 10 seconds.
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

const Q7_WINDOW_MS: i64 = 10_000;

/// q7, highest bid: per 10 s tumbling window, the bids at its highest price
/// whose time is within the window's bounds, both included (`BETWEEN`), so a
/// bid exactly at a window's end also counts for the window it closes.
pub fn q7(events: &DataStream<Event>) -> DataStream<String> {
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

impl KeyedProcessFunction<i64, (i64, bool, Bid), String> for HighestBid {
    fn open(&mut self, state: &mut KeyedStateBackend<i64>) -> Result<(), StateError> {
        self.highest = Some(state.register_value("q7-highest")?);
        self.leaders = Some(state.register_list("q7-leaders")?);
        self.at_end = Some(state.register_list("q7-at-end")?);
        Ok(())
    }

    fn process_element(
        &mut self,
        (window, on_end, bid): (i64, bool, Bid),
        ctx: &mut KeyedContext<'_, i64, String>,
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

    fn on_timer(&mut self, _: i64, ctx: &mut KeyedContext<'_, i64, String>) -> Result<(), ProcessError> {
        let (highest, leaders, at_end) = (
            self.highest.clone().ok_or_else(state_missing)?,
            self.leaders.clone().ok_or_else(state_missing)?,
            self.at_end.clone().ok_or_else(state_missing)?,
        );
        if let Some(price) = ctx.state().value(&highest, &())? {
            let winners = ctx.state().list(&leaders, &())?;
            let closing = ctx.state().list(&at_end, &())?.into_iter().filter(|bid| bid.price == price);
            for bid in winners.into_iter().chain(closing) {
                ctx.collect(format!(
                    "{},{},{},{},{}",
                    bid.auction,
                    bid.price,
                    bid.bidder,
                    bid.date_time,
                    csv_field(&bid.extra)
                ));
            }
        }
        ctx.state().clear(&highest, &())?;
        ctx.state().clear(&leaders, &())?;
        ctx.state().clear(&at_end, &())?;
        Ok(())
    }
}

/// q8's window: 10 seconds.
const Q8_WINDOW_MS: i64 = 10_000;

/// q8, monitor new users: persons who registered and opened an auction in
/// the same 10 s tumbling window; one row per person and window.
pub fn q8(events: &DataStream<Event>) -> DataStream<String> {
    let (persons, auctions) = split(events, "Persons and auctions", |event| match event {
        Event::Person(person) => Some(Either::Left(person)),
        Event::Auction(auction) => Some(Either::Right(auction)),
        Event::Bid(_) => None,
    });
    let window = |time: i64| time - time.rem_euclid(Q8_WINDOW_MS);
    persons
        .connect(&auctions)
        .key_by(
            move |person: &Person| (person.id, window(person.date_time)),
            move |auction: &Auction| (auction.seller, window(auction.date_time)),
        )
        .process(NewUsers::default())
        .name("q8")
}

/// q8 per person and window: the person's name, whether they sold, whether
/// the row went out.
#[derive(Clone, Default)]
struct NewUsers {
    name: Option<ValueState<(), String>>,
    sold: Option<ValueState<(), bool>>,
    reported: Option<ValueState<(), bool>>,
}

type PersonWindow = (u64, i64);

impl NewUsers {
    fn states(&self) -> Result<(ValueState<(), String>, ValueState<(), bool>, ValueState<(), bool>), ProcessError> {
        Ok((
            self.name.clone().ok_or_else(state_missing)?,
            self.sold.clone().ok_or_else(state_missing)?,
            self.reported.clone().ok_or_else(state_missing)?,
        ))
    }

    /// Reports the person once both sides of the window are there.
    fn report(&self, ctx: &mut KeyedContext<'_, PersonWindow, String>) -> Result<(), ProcessError> {
        let (name, sold, reported) = self.states()?;
        let (Some(person), Some(true)) = (ctx.state().value(&name, &())?, ctx.state().value(&sold, &())?) else {
            return Ok(());
        };
        if !ctx.state().value(&reported, &())?.unwrap_or(false) {
            let (id, start) = *ctx.key();
            ctx.collect(format!("{id},{},{start}", csv_field(&person)));
            ctx.state().set_value(&reported, &(), true)?;
        }
        Ok(())
    }
}

impl KeyedCoProcessFunction<PersonWindow, Person, Auction, String> for NewUsers {
    fn open(&mut self, state: &mut KeyedStateBackend<PersonWindow>) -> Result<(), StateError> {
        self.name = Some(state.register_value("q8-name")?);
        self.sold = Some(state.register_value("q8-sold")?);
        self.reported = Some(state.register_value("q8-reported")?);
        Ok(())
    }

    fn process_element1(
        &mut self,
        person: Person,
        ctx: &mut KeyedContext<'_, PersonWindow, String>,
    ) -> Result<(), ProcessError> {
        let (name, _, _) = self.states()?;
        ctx.state().set_value(&name, &(), person.name)?;
        ctx.register_event_time_timer(ctx.key().1 + Q8_WINDOW_MS)?;
        self.report(ctx)
    }

    fn process_element2(
        &mut self,
        _: Auction,
        ctx: &mut KeyedContext<'_, PersonWindow, String>,
    ) -> Result<(), ProcessError> {
        let (_, sold, _) = self.states()?;
        ctx.state().set_value(&sold, &(), true)?;
        ctx.register_event_time_timer(ctx.key().1 + Q8_WINDOW_MS)?;
        self.report(ctx)
    }

    fn on_timer(&mut self, _: i64, ctx: &mut KeyedContext<'_, PersonWindow, String>) -> Result<(), ProcessError> {
        // The window closed: nothing of it can join any more.
        let (name, sold, reported) = self.states()?;
        ctx.state().clear(&name, &())?;
        ctx.state().clear(&sold, &())?;
        ctx.state().clear(&reported, &())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euros_are_exact_to_three_decimals() {
        assert_eq!(euros(0), "0.000");
        assert_eq!(euros(1), "0.908");
        assert_eq!(euros(1000), "908.000");
        assert_eq!(euros(12_345_678), "11209875.624");
        assert_eq!(euros(u64::MAX), "16749643618928272866.420");
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
