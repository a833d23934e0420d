//! `weir-nexmark`: the Nexmark benchmark (an online auction: people, auctions,
//! bids) for Weir jobs.
//!
//! It owns the event types (shaped like the source table of Flink's Nexmark
//! suite), the generator source (the `nexmark` crate's port of the reference
//! generator, replayable by event index), JSON lines in Flink's format, and
//! the benchmark's queries written with the DataStream API. It knows the
//! typed API (`weir-api`) and nothing of the runtime, state backends or the
//! cluster.

pub mod events;
pub mod json;
pub mod queries;
pub mod source;

pub use events::{Auction, Bid, Event, Person};
pub use source::NexmarkSource;
