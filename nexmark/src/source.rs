//! The Nexmark generator as a parallel, replayable source.
//!
//! Event `i` of the sequence is a pure function of `i` and the configuration
//! (the `nexmark` crate's generator seeks to any offset), so the source is an
//! index generator: subtask `k` of `n` emits events `k, k + n, …`, and a
//! checkpoint records each subtask's next index. The generator's base time
//! defaults to the wall clock in the `nexmark` crate; here it is always set,
//! so runs are reproducible.

use std::cell::RefCell;

use weir_api::{DataStream, GeneratorSource, StreamEnv};

use crate::events::Event;

/// Where and how many events to generate.
#[derive(Clone, Debug)]
pub struct NexmarkSource {
    /// Epoch milliseconds of the first event.
    pub base_time: u64,
    /// Events in all (`None`: unbounded).
    pub events: Option<u64>,
    /// Events per second over all subtasks (`None`: as fast as possible).
    pub events_per_second: Option<f64>,
}

/// The base time the tests, the example and the benchmarks share by
/// default: 2026-01-01T00:00:00Z.
pub const DEFAULT_BASE_TIME: u64 = 1_767_225_600_000;

impl Default for NexmarkSource {
    fn default() -> Self {
        Self { base_time: DEFAULT_BASE_TIME, events: None, events_per_second: None }
    }
}

thread_local! {
    /// The generator this thread used last, with its base time: seeking it
    /// to the next index is a field update, while a fresh one costs a copy
    /// of its configuration.
    static GENERATOR: RefCell<Option<(u64, nexmark::EventGenerator)>> = const { RefCell::new(None) };
}

/// Event `index` of the sequence that starts at `base_time`.
pub fn event_at(prototype: &nexmark::EventGenerator, base_time: u64, index: u64) -> Event {
    GENERATOR.with(|cell| {
        let mut cached = cell.borrow_mut();
        let generator = match cached.take() {
            Some((time, generator)) if time == base_time => generator,
            _ => prototype.clone(),
        };
        let mut generator = generator.with_offset(index);
        let event = generator.next().expect("the Nexmark generator is endless");
        *cached = Some((base_time, generator));
        Event::from(event)
    })
}

/// The generator configured with `base_time`.
pub fn generator(base_time: u64) -> nexmark::EventGenerator {
    let config = nexmark::config::NexmarkConfig { base_time, ..Default::default() };
    nexmark::EventGenerator::new(config)
}

impl NexmarkSource {
    /// The events as a stream of `env`.
    pub fn stream(&self, env: &StreamEnv) -> DataStream<Event> {
        let prototype = generator(self.base_time);
        let base_time = self.base_time;
        let mut source = GeneratorSource::new(move |index: u64| event_at(&prototype, base_time, index))
            .named("Source: Nexmark generator");
        if let Some(events) = self.events {
            source = source.count(events);
        }
        if let Some(rate) = self.events_per_second {
            source = source.records_per_second(rate);
        }
        env.source(source).uid("nexmark-generator")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_a_function_of_their_index_and_base_time() {
        let prototype = generator(DEFAULT_BASE_TIME);
        let in_order: Vec<Event> = (0..50).map(|index| event_at(&prototype, DEFAULT_BASE_TIME, index)).collect();
        let straight: Vec<Event> = generator(DEFAULT_BASE_TIME).take(50).map(Event::from).collect();
        assert_eq!(in_order, straight, "seeking gives the generator's own sequence");
        let backwards: Vec<Event> = (0..50).rev().map(|index| event_at(&prototype, DEFAULT_BASE_TIME, index)).collect();
        assert_eq!(backwards.into_iter().rev().collect::<Vec<_>>(), in_order);
        assert!(in_order.iter().all(|event| event.date_time() >= DEFAULT_BASE_TIME as i64));
        let later = event_at(&generator(DEFAULT_BASE_TIME + 1000), DEFAULT_BASE_TIME + 1000, 0);
        assert_eq!(later.date_time(), in_order[0].date_time() + 1000, "the base time moves every event");
        let kinds = in_order.iter().filter(|event| matches!(event, Event::Bid(_))).count();
        assert!(kinds > 40, "most events are bids (46 of 50 in Nexmark's proportions): {kinds}");
    }
}
