//! Nexmark's three event kinds, with the fields (and JSON names) of Flink's
//! Nexmark source table; times are epoch milliseconds (UTC).

use serde::{Deserialize, Serialize};

/// A person who sells or bids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// Unique id.
    pub id: u64,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email_address: String,
    /// Credit card number.
    pub credit_card: String,
    /// City.
    pub city: String,
    /// US state, lower case (`or`, `id`, `ca`, …).
    pub state: String,
    /// When the person registered, epoch milliseconds.
    pub date_time: i64,
    /// Padding to the configured event size.
    pub extra: String,
}

/// An item put up for auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Auction {
    /// Unique id.
    pub id: u64,
    /// What is sold.
    pub item_name: String,
    /// Its description.
    pub description: String,
    /// The opening price.
    pub initial_bid: u64,
    /// The lowest price it sells for.
    pub reserve: u64,
    /// When the auction opened, epoch milliseconds.
    pub date_time: i64,
    /// When it closes, epoch milliseconds.
    pub expires: i64,
    /// The selling person's id.
    pub seller: u64,
    /// Category id.
    pub category: u64,
    /// Padding to the configured event size.
    pub extra: String,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    /// The auction's id.
    pub auction: u64,
    /// The bidding person's id.
    pub bidder: u64,
    /// The price offered (in cents of a dollar).
    pub price: u64,
    /// Where the bid came from (`Google`, `Facebook`, …).
    pub channel: String,
    /// The bid's URL.
    pub url: String,
    /// When the bid was made, epoch milliseconds.
    pub date_time: i64,
    /// Padding to the configured event size.
    pub extra: String,
}

/// One Nexmark event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A new person.
    Person(Person),
    /// A new auction.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// The event's time (its `dateTime`), epoch milliseconds.
    pub fn date_time(&self) -> i64 {
        match self {
            Self::Person(person) => person.date_time,
            Self::Auction(auction) => auction.date_time,
            Self::Bid(bid) => bid.date_time,
        }
    }

    /// The bid, if the event is one.
    pub fn into_bid(self) -> Option<Bid> {
        match self {
            Self::Bid(bid) => Some(bid),
            _ => None,
        }
    }
}

fn millis(time: u64) -> i64 {
    i64::try_from(time).unwrap_or(i64::MAX)
}

impl From<nexmark::event::Event> for Event {
    fn from(event: nexmark::event::Event) -> Self {
        match event {
            nexmark::event::Event::Person(p) => Self::Person(Person {
                id: p.id as u64,
                name: p.name,
                email_address: p.email_address,
                credit_card: p.credit_card,
                city: p.city,
                state: p.state,
                date_time: millis(p.date_time),
                extra: p.extra,
            }),
            nexmark::event::Event::Auction(a) => Self::Auction(Auction {
                id: a.id as u64,
                item_name: a.item_name,
                description: a.description,
                initial_bid: a.initial_bid as u64,
                reserve: a.reserve as u64,
                date_time: millis(a.date_time),
                expires: millis(a.expires),
                seller: a.seller as u64,
                category: a.category as u64,
                extra: a.extra,
            }),
            nexmark::event::Event::Bid(b) => Self::Bid(Bid {
                auction: b.auction as u64,
                bidder: b.bidder as u64,
                price: b.price as u64,
                channel: b.channel,
                url: b.url,
                date_time: millis(b.date_time),
                extra: b.extra,
            }),
        }
    }
}
