//! q8, monitor new users: persons who registered and opened an auction in
//! the same 10 s window.

use std::fmt::{self, Display};

use weir_api::{DataStream, Either, KeyedCoProcessFunction, KeyedContext, ProcessError};
use weir_state::keyed::{KeyedStateBackend, StateError, ValueState};

use super::{CsvField, split, state_missing};
use crate::events::{Auction, Event, Person};

/// A row of q8: `id, name, starttime`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NewUserRow {
    /// The person's id.
    pub id: u64,
    /// The person's name.
    pub name: String,
    /// The start of the window, epoch milliseconds.
    pub start_time: i64,
}

impl Display for NewUserRow {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "{},{},{}", self.id, CsvField(&self.name), self.start_time)
    }
}

/// q8's window: 10 seconds.
const Q8_WINDOW_MS: i64 = 10_000;

/// q8, monitor new users: persons who registered and opened an auction in
/// the same 10 s tumbling window; one row per person and window.
pub fn q8(events: &DataStream<Event>) -> DataStream<NewUserRow> {
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

/// q8's key: a person's id and a window's start.
type PersonWindow = (u64, i64);

/// The handles of [`NewUsers`]' states: the name, whether they sold, whether reported.
type NewUsersStates = (ValueState<(), String>, ValueState<(), bool>, ValueState<(), bool>);

impl NewUsers {
    fn states(&self) -> Result<NewUsersStates, ProcessError> {
        Ok((
            self.name.clone().ok_or_else(state_missing)?,
            self.sold.clone().ok_or_else(state_missing)?,
            self.reported.clone().ok_or_else(state_missing)?,
        ))
    }

    /// Reports the person once both sides of the window are there.
    fn report(&self, ctx: &mut KeyedContext<'_, PersonWindow, NewUserRow>) -> Result<(), ProcessError> {
        let (name, sold, reported) = self.states()?;
        let (Some(person), Some(true)) = (ctx.state().value(&name, &())?, ctx.state().value(&sold, &())?) else {
            return Ok(());
        };
        if !ctx.state().value(&reported, &())?.unwrap_or(false) {
            let (id, start_time) = *ctx.key();
            ctx.collect(NewUserRow { id, name: person, start_time });
            ctx.state().set_value(&reported, &(), true)?;
        }
        Ok(())
    }
}

impl KeyedCoProcessFunction<PersonWindow, Person, Auction, NewUserRow> for NewUsers {
    fn open(&mut self, state: &mut KeyedStateBackend<PersonWindow>) -> Result<(), StateError> {
        self.name = Some(state.register_value("q8-name")?);
        self.sold = Some(state.register_value("q8-sold")?);
        self.reported = Some(state.register_value("q8-reported")?);
        Ok(())
    }

    fn process_element1(
        &mut self,
        person: Person,
        ctx: &mut KeyedContext<'_, PersonWindow, NewUserRow>,
    ) -> Result<(), ProcessError> {
        let (name, _, _) = self.states()?;
        ctx.state().set_value(&name, &(), person.name)?;
        ctx.register_event_time_timer(ctx.key().1 + Q8_WINDOW_MS)?;
        self.report(ctx)
    }

    fn process_element2(
        &mut self,
        _: Auction,
        ctx: &mut KeyedContext<'_, PersonWindow, NewUserRow>,
    ) -> Result<(), ProcessError> {
        let (_, sold, _) = self.states()?;
        ctx.state().set_value(&sold, &(), true)?;
        ctx.register_event_time_timer(ctx.key().1 + Q8_WINDOW_MS)?;
        self.report(ctx)
    }

    fn on_timer(&mut self, _: i64, ctx: &mut KeyedContext<'_, PersonWindow, NewUserRow>) -> Result<(), ProcessError> {
        // The window closed: nothing of it can join any more.
        let (name, sold, reported) = self.states()?;
        ctx.state().clear(&name, &())?;
        ctx.state().clear(&sold, &())?;
        ctx.state().clear(&reported, &())?;
        Ok(())
    }
}
