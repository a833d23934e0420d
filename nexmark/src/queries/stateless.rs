//! q0, q1 and q2: one row per bid, or none; no state.

use std::fmt::{self, Display};

use weir_api::DataStream;

use super::{CsvField, bids};
use crate::events::{Bid, Event};

/// A row of q0 and q1: `auction, bidder, price, dateTime, extra`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BidRow<Price> {
    /// The bid's auction.
    pub auction: u64,
    /// The bid's bidder.
    pub bidder: u64,
    /// The bid's price: cents in q0, [`Euros`] in q1.
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
    /// A price in cents, converted: `0.908 * price`, exactly.
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

/// A row of q2: `auction, price`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AuctionPriceRow {
    /// The bid's auction, a multiple of 123.
    pub auction: u64,
    /// The bid's price, in cents.
    pub price: u64,
}

impl Display for AuctionPriceRow {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "{},{}", self.auction, self.price)
    }
}

/// q2, selection: `SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0`.
pub fn q2(events: &DataStream<Event>) -> DataStream<AuctionPriceRow> {
    bids(events)
        .filter(|bid: &Bid| bid.auction.is_multiple_of(123))
        .map(|bid: Bid| AuctionPriceRow { auction: bid.auction, price: bid.price })
        .name("q2")
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
}
