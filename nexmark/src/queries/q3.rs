//! q3, local item suggestion: an unbounded join of auctions and their
//! sellers.

use std::fmt::{self, Display};

use weir_api::{DataStream, Either, KeyedCoProcessFunction, KeyedContext, ProcessError};
use weir_state::keyed::{KeyedStateBackend, ListState, StateError, ValueState};

use super::{CsvField, split, state_missing};
use crate::events::{Auction, Event, Person};

/// A row of q3: `name, city, state, id`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LocalItemRow {
    /// The seller's name.
    pub name: String,
    /// The seller's city.
    pub city: String,
    /// The seller's US state: `or`, `id` or `ca`.
    pub state: String,
    /// The auction's id.
    pub id: u64,
}

impl Display for LocalItemRow {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The state is one of three plain words: never quoted.
        write!(out, "{},{},{},{}", CsvField(&self.name), CsvField(&self.city), self.state, self.id)
    }
}

/// q3, local item suggestion: `SELECT P.name, P.city, P.state, A.id FROM
/// auction AS A INNER JOIN person AS P on A.seller = P.id WHERE A.category =
/// 10 and (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')` — an
/// unbounded join: a row as soon as both sides are there, whatever arrives first.
pub fn q3(events: &DataStream<Event>) -> DataStream<LocalItemRow> {
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

impl KeyedCoProcessFunction<u64, Auction, Person, LocalItemRow> for SellerJoin {
    fn open(&mut self, state: &mut KeyedStateBackend<u64>) -> Result<(), StateError> {
        self.person = Some(state.register_value("q3-person")?);
        self.waiting = Some(state.register_list("q3-waiting-auctions")?);
        Ok(())
    }

    fn process_element1(
        &mut self,
        auction: Auction,
        ctx: &mut KeyedContext<'_, u64, LocalItemRow>,
    ) -> Result<(), ProcessError> {
        let (person, waiting) =
            (self.person.clone().ok_or_else(state_missing)?, self.waiting.clone().ok_or_else(state_missing)?);
        match ctx.state().value(&person, &())? {
            Some((name, city, state)) => ctx.collect(LocalItemRow { name, city, state, id: auction.id }),
            None => ctx.state().list_add(&waiting, &(), auction.id)?,
        }
        Ok(())
    }

    fn process_element2(
        &mut self,
        person: Person,
        ctx: &mut KeyedContext<'_, u64, LocalItemRow>,
    ) -> Result<(), ProcessError> {
        let (state, waiting) =
            (self.person.clone().ok_or_else(state_missing)?, self.waiting.clone().ok_or_else(state_missing)?);
        for id in ctx.state().list(&waiting, &())? {
            let (name, city, state) = (person.name.clone(), person.city.clone(), person.state.clone());
            ctx.collect(LocalItemRow { name, city, state, id });
        }
        ctx.state().clear(&waiting, &())?;
        ctx.state().set_value(&state, &(), (person.name, person.city, person.state))?;
        Ok(())
    }
}
