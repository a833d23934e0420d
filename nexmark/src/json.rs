//! Nexmark events as JSON lines, one event per line, shaped like Flink's
//! Nexmark source table:
//! `{"event_type":2,"person":null,"auction":null,"bid":{"auction":…,"dateTime":…}}`
//! (`event_type` 0 person, 1 auction, 2 bid; times are epoch milliseconds).

use serde::{Deserialize, Serialize};

use crate::events::{Auction, Bid, Event, Person};

/// One line of the file.
#[derive(Serialize, Deserialize)]
struct Line {
    event_type: u8,
    person: Option<Person>,
    auction: Option<Auction>,
    bid: Option<Bid>,
}

/// Why a line is not a Nexmark event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed Nexmark event ({reason}) in line '{excerpt}'")]
pub struct MalformedEvent {
    /// What is wrong.
    pub reason: String,
    /// The line's start.
    pub excerpt: String,
}

/// The JSON line of `event`.
pub fn to_line(event: &Event) -> String {
    let line = match event {
        Event::Person(person) => Line { event_type: 0, person: Some(person.clone()), auction: None, bid: None },
        Event::Auction(auction) => Line { event_type: 1, person: None, auction: Some(auction.clone()), bid: None },
        Event::Bid(bid) => Line { event_type: 2, person: None, auction: None, bid: Some(bid.clone()) },
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// The event of one JSON line.
pub fn parse_line(text: &str) -> Result<Event, MalformedEvent> {
    let malformed = |reason: String| MalformedEvent { reason, excerpt: text.chars().take(120).collect() };
    let line: Line = serde_json::from_str(text).map_err(|error| malformed(error.to_string()))?;
    match (line.event_type, line.person, line.auction, line.bid) {
        (0, Some(person), None, None) => Ok(Event::Person(person)),
        (1, None, Some(auction), None) => Ok(Event::Auction(auction)),
        (2, None, None, Some(bid)) => Ok(Event::Bid(bid)),
        (kind @ 0..=2, ..) => {
            Err(malformed(format!("event_type {kind} needs exactly its own object, the others null")))
        }
        (kind, ..) => Err(malformed(format!("unknown event_type {kind}; expected 0, 1 or 2"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{DEFAULT_BASE_TIME, event_at, generator};

    #[test]
    fn events_survive_their_json_lines_in_flinks_shape() {
        let prototype = generator(DEFAULT_BASE_TIME);
        for index in 0..200 {
            let event = event_at(&prototype, DEFAULT_BASE_TIME, index);
            let line = to_line(&event);
            assert_eq!(parse_line(&line), Ok(event), "{line}");
        }
        let bid = to_line(&event_at(&prototype, DEFAULT_BASE_TIME, 10));
        assert!(bid.starts_with(r#"{"event_type":2,"person":null,"auction":null,"bid":{"auction":"#), "{bid}");
        assert!(bid.contains(r#""dateTime":"#));
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let not_json = parse_line("{not json").expect_err("malformed");
        assert!(not_json.to_string().contains("in line '{not json'"));
        let mixed = parse_line(r#"{"event_type":0,"person":null,"auction":null,"bid":null}"#).expect_err("no person");
        assert!(mixed.reason.contains("event_type 0 needs exactly its own object"));
        let unknown = parse_line(r#"{"event_type":7,"person":null,"auction":null,"bid":null}"#).expect_err("kind");
        assert!(unknown.reason.contains("unknown event_type 7"));
    }
}
