//! What drives event time: timers firing in timestamp order, a custom
//! per-event watermark generator, and idle inputs.

use std::time::Duration;

use weir::prelude::*;
use weir::state::AggregateFunction;

use super::{CountAndSum, Event, event};

/// Registers an event-time timer per record and reports each firing.
#[derive(Clone)]
struct TimerEcho;

impl KeyedProcessFunction<String, Event, (i64, String)> for TimerEcho {
    fn process_element(
        &mut self,
        event: Event,
        ctx: &mut KeyedContext<'_, String, (i64, String)>,
    ) -> Result<(), ProcessError> {
        // The value is when the timer should fire.
        ctx.register_event_time_timer(event.2)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, String, (i64, String)>,
    ) -> Result<(), ProcessError> {
        assert_eq!(ctx.timestamp(), Some(timestamp));
        let key = ctx.key().clone();
        ctx.collect((timestamp, key));
        Ok(())
    }
}

#[test]
fn timers_fire_in_timestamp_order_across_keys() {
    let env = StreamEnv::new();
    env.set_parallelism(1);
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|event: &Event, _| event.0)
        .with_emit_interval(Duration::ZERO);
    let events = vec![
        event(1, "a", 500),
        event(2, "b", 50),
        event(3, "c", 300),
        event(4, "a", 20),
        event(5, "b", 300), // the same time as c's: both fire
        event(6, "c", 300), // the same timer again: fires once
        event(100, "d", 7), // already passed at the next watermark: fires at once
        event(200, "e", 1_000_000),
    ];
    let fired = env
        .from_collection(events)
        .assign_timestamps_and_watermarks(strategy)
        .key_by(|event: &Event| event.1.clone())
        .process(TimerEcho)
        .collect();
    env.execute("timers").expect("job runs");
    let fired = fired.take();
    let times: Vec<i64> = fired.iter().map(|(time, _)| *time).collect();
    assert_eq!(times, vec![7, 20, 50, 300, 300, 500, 1_000_000], "{fired:?}");
    let mut at_300: Vec<&str> = fired.iter().filter(|(time, _)| *time == 300).map(|(_, key)| key.as_str()).collect();
    at_300.sort();
    assert_eq!(at_300, vec!["b", "c"]);
}

/// Emits a watermark at the timestamp of every record whose key is "tick"
/// (a per-event, punctuated generator).
struct Punctuated;

impl WatermarkGenerator<Event> for Punctuated {
    fn on_event(&mut self, event: &Event, timestamp: i64, output: &mut WatermarkOutput) {
        if event.1 == "tick" {
            output.emit_watermark(timestamp);
        }
    }

    fn on_periodic_emit(&mut self, _output: &mut WatermarkOutput) {}
}

#[test]
fn a_custom_per_event_generator_drives_event_time() {
    let env = StreamEnv::new();
    env.set_parallelism(1);
    let late = OutputTag::<Event>::new("late");
    let events = vec![event(1, "a", 1), event(3, "a", 2), event(10, "tick", 0), event(4, "a", 4), event(12, "a", 8)];
    let strategy = WatermarkStrategy::for_generator(|| Punctuated).with_timestamp_assigner(|event: &Event, _| event.0);
    let windows = env
        .from_collection(events)
        .assign_timestamps_and_watermarks(strategy)
        .filter(|event: &Event| event.1 != "tick")
        .key_by(|event: &Event| event.1.clone())
        .window(WindowAssigner::tumbling_event_time(Duration::from_millis(5)))
        .side_output_late_data(&late)
        .aggregate(CountAndSum);
    let (sums, late_records) = (windows.collect(), windows.side_output(&late).collect());
    env.execute("punctuated").expect("job runs");
    // The tick at 10 closes [0, 5) and [5, 10): 4 is late, 12 is not.
    assert_eq!(sums.take(), vec![(2, 3), (1, 8)]);
    assert_eq!(late_records.take(), vec![event(4, "a", 4)]);
}

/// When each window result was emitted, by the wall clock.
fn emission_times(idleness: Option<Duration>) -> (Vec<std::time::Instant>, std::time::Instant) {
    let env = StreamEnv::new();
    env.set_parallelism(2);
    let emitted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|n: &u64, _| *n as i64)
        .with_emit_interval(Duration::from_millis(10));
    if let Some(timeout) = idleness {
        strategy = strategy.with_idleness(timeout);
    }
    let record = emitted.clone();
    // 600 records over about 1.5 s; subtask 1's are all filtered out, so its
    // watermark never moves unless it is marked idle.
    env.source(GeneratorSource::new(|n: u64| n).count(600).records_per_second(400.0))
        .filter(|n: &u64| n.is_multiple_of(2))
        .assign_timestamps_and_watermarks(strategy)
        .key_by(|_: &u64| 0u8)
        .window(WindowAssigner::tumbling_event_time(Duration::from_millis(100)))
        .aggregate(CountOnly)
        .map(move |count: u64| {
            record.lock().expect("lock").push(std::time::Instant::now());
            count
        })
        .discard();
    env.execute("idleness").expect("job runs");
    let ended = std::time::Instant::now();
    let times = emitted.lock().expect("lock").clone();
    (times, ended)
}

struct CountOnly;

impl AggregateFunction for CountOnly {
    type In = u64;
    type Acc = u64;
    type Out = u64;

    fn create_accumulator(&self) -> u64 {
        0
    }

    fn add(&self, accumulator: &mut u64, _: u64) {
        *accumulator += 1;
    }

    fn result(&self, accumulator: &u64) -> u64 {
        *accumulator
    }

    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

#[test]
fn an_idle_split_stops_holding_back_event_time() {
    // Without idleness the silent subtask holds event time at its start: every
    // window fires at the end of input, within moments of the job's end.
    let (times, ended) = emission_times(None);
    assert_eq!(times.len(), 6, "600 records, even ones in 100 ms windows: 6 windows");
    let first = times.iter().min().expect("results");
    assert!(ended.duration_since(*first) < Duration::from_millis(400), "fired early without idleness");
    // With idleness the windows fire while the input still flows.
    let (times, ended) = emission_times(Some(Duration::from_millis(50)));
    assert_eq!(times.len(), 6);
    let first = times.iter().min().expect("results");
    assert!(ended.duration_since(*first) > Duration::from_millis(600), "the first window fired only at the end");
}
