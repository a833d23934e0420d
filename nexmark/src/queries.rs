//! Nexmark queries with the semantics of Flink's SQL texts
//! (`nexmark-flink/src/main/resources/queries/`), written with the
//! DataStream API. Each query turns the event stream into CSV rows of its
//! SELECT's columns, in order; [`header`] names them.

use weir_api::DataStream;

use crate::events::{Bid, Event};

/// The queries built so far.
pub const QUERIES: [&str; 3] = ["q0", "q1", "q2"];

/// The CSV header of `query`'s rows.
pub fn header(query: &str) -> Option<&'static str> {
    Some(match query {
        "q0" => "auction,bidder,price,dateTime,extra",
        "q1" => "auction,bidder,price,dateTime,extra",
        "q2" => "auction,price",
        _ => return None,
    })
}

/// `query` over `events`, as CSV rows; `None` for a query not built.
pub fn run(query: &str, events: &DataStream<Event>) -> Option<DataStream<String>> {
    Some(match query {
        "q0" => q0(events),
        "q1" => q1(events),
        "q2" => q2(events),
        _ => return None,
    })
}

fn bids(events: &DataStream<Event>) -> DataStream<Bid> {
    events.flat_map(|event: Event| event.into_bid()).name("Bids")
}

/// A CSV field: quoted when it holds a comma, a quote or a line break.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

/// q0, pass-through: `SELECT auction, bidder, price, dateTime, extra FROM bid`.
pub fn q0(events: &DataStream<Event>) -> DataStream<String> {
    bids(events)
        .map(|bid: Bid| {
            format!("{},{},{},{},{}", bid.auction, bid.bidder, bid.price, bid.date_time, csv_field(&bid.extra))
        })
        .name("q0")
}

/// The price in euros of q1, `0.908 * price`, exact to its three decimals.
pub fn euros(price: u64) -> String {
    let thousandths = u128::from(price) * 908;
    format!("{}.{:03}", thousandths / 1000, thousandths % 1000)
}

/// q1, currency conversion: `SELECT auction, bidder, 0.908 * price as price,
/// dateTime, extra FROM bid`.
pub fn q1(events: &DataStream<Event>) -> DataStream<String> {
    bids(events)
        .map(|bid: Bid| {
            format!("{},{},{},{},{}", bid.auction, bid.bidder, euros(bid.price), bid.date_time, csv_field(&bid.extra))
        })
        .name("q1")
}

/// q2, selection: `SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0`.
pub fn q2(events: &DataStream<Event>) -> DataStream<String> {
    bids(events)
        .filter(|bid: &Bid| bid.auction % 123 == 0)
        .map(|bid: Bid| format!("{},{}", bid.auction, bid.price))
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

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
