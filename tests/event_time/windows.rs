//! Window operators: results against hand-computed rows and a plain
//! group-by, late records, allowed lateness, sessions, and the same results
//! at every parallelism.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir::prelude::*;

use super::{CountAndSum, Event, event, sorted};

/// `(window start, window end, key, count, sum)`.
type Row = (i64, i64, String, u64, i64);

/// A keyed window job counting and summing per window, with a late-data side
/// output.
struct Job {
    assigner: WindowAssigner,
    bound_ms: u64,
    lateness_ms: u64,
    parallelism: usize,
    /// Read and assign watermarks at `parallelism` too (else one reader).
    parallel_source: bool,
}

impl Job {
    fn new(assigner: WindowAssigner, bound_ms: u64) -> Self {
        Self { assigner, bound_ms, lateness_ms: 0, parallelism: 1, parallel_source: false }
    }

    /// Every window result (as emitted, updates included) and the late records.
    fn run(&self, events: &[Event]) -> (Vec<Row>, Vec<Event>) {
        let env = StreamEnv::new();
        env.set_parallelism(self.parallelism);
        let late = OutputTag::<Event>::new("late");
        // One reader keeps the input order, so lateness is a function of it
        // alone. Parallel readers each see a subsequence, whose records are
        // within the bound too; the window tasks then combine their watermarks.
        let source_parallelism = if self.parallel_source { self.parallelism } else { 1 };
        let strategy = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(self.bound_ms))
            .with_timestamp_assigner(|event: &Event, _| event.0)
            .with_emit_interval(Duration::ZERO);
        let windows = env
            .from_collection(events.to_vec())
            .set_parallelism(source_parallelism)
            .assign_timestamps_and_watermarks(strategy)
            .set_parallelism(source_parallelism)
            .key_by(|event: &Event| event.1.clone())
            .window(self.assigner)
            .allowed_lateness(Duration::from_millis(self.lateness_ms))
            .side_output_late_data(&late)
            .aggregate_with_process(CountAndSum, |key: &String, context: &WindowContext, (count, sum), out| {
                out.collect((context.window.start, context.window.end, key.clone(), count, sum));
            });
        let rows = windows.collect();
        let late_records = windows.side_output(&late).collect();
        env.execute("event time test").expect("job runs");
        (rows.take(), late_records.take())
    }
}

fn row(start: i64, end: i64, key: &str, count: u64, sum: i64) -> Row {
    (start, end, key.to_owned(), count, sum)
}

#[test]
fn out_of_order_input_within_the_bound_gives_the_windows_of_the_in_order_input() {
    let in_order = vec![
        event(1, "a", 1),
        event(4, "b", 10),
        event(8, "a", 2),
        event(11, "a", 4),
        event(13, "b", 20),
        event(19, "a", 8),
        event(22, "b", 40),
    ];
    // Each record at most 5 ms behind the largest timestamp before it.
    let shuffled = vec![
        event(4, "b", 10),
        event(1, "a", 1),
        event(11, "a", 4),
        event(8, "a", 2),
        event(13, "b", 20),
        event(22, "b", 40),
        event(19, "a", 8),
    ];
    let job = Job::new(WindowAssigner::tumbling_event_time(Duration::from_millis(10)), 5);
    let expected = vec![
        row(0, 10, "a", 2, 3),
        row(0, 10, "b", 1, 10),
        row(10, 20, "a", 2, 12),
        row(10, 20, "b", 1, 20),
        row(20, 30, "b", 1, 40),
    ];
    let (rows, late) = job.run(&in_order);
    assert_eq!((sorted(rows), late), (expected.clone(), vec![]));
    let (rows, late) = job.run(&shuffled);
    assert_eq!((sorted(rows), late), (expected, vec![]));
}

#[test]
fn records_beyond_the_bound_go_to_the_late_side_output_and_are_not_counted() {
    // Bound 2: after 15 the watermark is 12, so window [0, 10) has fired and
    // 7 (8 behind) is late; 13 (2 behind 15) is on time.
    let events = vec![event(1, "a", 1), event(5, "a", 2), event(15, "a", 4), event(7, "a", 100), event(13, "a", 8)];
    let (rows, late) = Job::new(WindowAssigner::tumbling_event_time(Duration::from_millis(10)), 2).run(&events);
    assert_eq!(sorted(rows), vec![row(0, 10, "a", 2, 3), row(10, 20, "a", 2, 12)]);
    assert_eq!(late, vec![event(7, "a", 100)]);
}

#[test]
fn allowed_lateness_fires_an_updated_result_then_drops_the_window() {
    // Bound 0, lateness 5: window [0, 10) fires at watermark 9 and is kept
    // until watermark 14.
    let events = vec![
        event(2, "a", 1),
        event(12, "a", 10),  // watermark 11: [0, 10) fires with 1
        event(3, "a", 2),    // late, within lateness: [0, 10) fires again with 3
        event(30, "a", 100), // watermark 29: [10, 20) fires; [0, 10) is dropped
        event(4, "a", 1000), // beyond the lateness: side output
    ];
    let job = Job { lateness_ms: 5, ..Job::new(WindowAssigner::tumbling_event_time(Duration::from_millis(10)), 0) };
    let (rows, late) = job.run(&events);
    assert_eq!(
        rows,
        vec![row(0, 10, "a", 1, 1), row(0, 10, "a", 2, 3), row(10, 20, "a", 1, 10), row(30, 40, "a", 1, 100)]
    );
    assert_eq!(late, vec![event(4, "a", 1000)]);
}

#[test]
fn session_windows_merge_across_out_of_order_records() {
    // Gap 10: [0, 10) and [20, 30) are apart until 10 arrives and touches both.
    let events = vec![event(0, "a", 1), event(20, "a", 2), event(10, "a", 4), event(20, "b", 8), event(55, "a", 16)];
    let (rows, late) = Job::new(WindowAssigner::event_time_session(Duration::from_millis(10)), 20).run(&events);
    assert_eq!(sorted(rows), vec![row(0, 30, "a", 3, 7), row(20, 30, "b", 1, 8), row(55, 65, "a", 1, 16)]);
    assert!(late.is_empty());
}

/// Windows computed by a plain group-by over (key, window).
fn group_by(events: &[Event], size: i64, slide: i64) -> Vec<Row> {
    let mut groups: BTreeMap<(i64, String), (u64, i64)> = BTreeMap::new();
    for (timestamp, key, value) in events {
        let last_start = timestamp - timestamp.rem_euclid(slide);
        let mut start = last_start;
        while start > timestamp - size {
            let entry = groups.entry((start, key.clone())).or_default();
            entry.0 += 1;
            entry.1 += value;
            start -= slide;
        }
    }
    groups.into_iter().map(|((start, key), (count, sum))| (start, start + size, key, count, sum)).collect()
}

/// Random events in timestamp order, then shuffled so that no record is more
/// than `bound` behind the largest timestamp before it.
fn shuffled_within(bound: i64) -> impl Strategy<Value = Vec<Event>> {
    let event = (0i64..400, 0usize..4, -50i64..50);
    (prop::collection::vec(event, 1..120), any::<u64>()).prop_map(move |(mut events, seed)| {
        events.sort_by_key(|event| event.0);
        let mut events: Vec<Event> =
            events.into_iter().map(|(timestamp, key, value)| (timestamp, format!("k{key}"), value)).collect();
        // Swap neighbours while the swap keeps every record within the bound.
        let mut state = seed | 1;
        for _ in 0..events.len() * 2 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state as usize) % events.len();
            if i + 1 < events.len() {
                events.swap(i, i + 1);
                let mut max = i64::MIN;
                let fine = events.iter().all(|event| {
                    max = max.max(event.0);
                    max - event.0 <= bound
                });
                if !fine {
                    events.swap(i, i + 1);
                }
            }
        }
        events
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_and_sliding_windows_equal_a_group_by(
        events in shuffled_within(30),
        size in 5i64..60,
        slide_divisor in 1i64..4,
    ) {
        let slide = (size / slide_divisor).max(1);
        let tumbling = Job::new(WindowAssigner::tumbling_event_time(Duration::from_millis(size as u64)), 30);
        let (rows, late) = tumbling.run(&events);
        prop_assert_eq!(late, vec![]);
        prop_assert_eq!(sorted(rows), group_by(&events, size, size));
        let sliding = Job::new(
            WindowAssigner::sliding_event_time(Duration::from_millis(size as u64), Duration::from_millis(slide as u64)),
            30,
        );
        let (rows, late) = sliding.run(&events);
        prop_assert_eq!(late, vec![]);
        prop_assert_eq!(sorted(rows), group_by(&events, size, slide));
    }
}

#[test]
fn results_are_identical_at_parallelism_1_2_and_4() {
    let events: Vec<Event> = (0..3_000i64)
        .map(|i| {
            // In order up to 40 ms: every tenth record is 40 ms behind.
            let timestamp = if i % 10 == 0 { (i - 40).max(0) } else { i };
            (timestamp, format!("key-{}", i % 37), i % 11)
        })
        .collect();
    let assigners = [
        WindowAssigner::tumbling_event_time(Duration::from_millis(100)),
        WindowAssigner::sliding_event_time(Duration::from_millis(100), Duration::from_millis(25)),
        WindowAssigner::event_time_session(Duration::from_millis(3)),
    ];
    for assigner in assigners {
        let results: Vec<Vec<Row>> = [1, 2, 4]
            .into_iter()
            .map(|parallelism| {
                let job = Job { parallelism, parallel_source: true, ..Job::new(assigner, 40) };
                let (rows, late) = job.run(&events);
                assert!(late.is_empty(), "{assigner:?} at parallelism {parallelism}: {late:?}");
                sorted(rows)
            })
            .collect();
        assert!(!results[0].is_empty());
        assert_eq!(results[0], results[1], "{assigner:?}: parallelism 1 vs 2");
        assert_eq!(results[0], results[2], "{assigner:?}: parallelism 1 vs 4");
    }
}
#[test]
fn count_windows_all_windows_processing_time_and_global_windows_with_a_trigger() {
    let env = StreamEnv::new();
    env.set_parallelism(2);
    let events: Vec<Event> = (0..20).map(|i| (i, if i % 2 == 0 { "even" } else { "odd" }.to_owned(), i)).collect();
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|event: &Event, _| event.0)
        .with_emit_interval(Duration::ZERO);
    let stream =
        env.from_collection(events).set_parallelism(1).assign_timestamps_and_watermarks(strategy).set_parallelism(1);
    let keyed = stream.key_by(|event: &Event| event.1.clone());
    let sum = |a: Event, b: Event| (a.0.max(b.0), a.1, a.2 + b.2);
    // Ten per key: three full groups of three; the last one never fills.
    let counted = keyed.count_window(3).reduce(sum).collect();
    // All keys together, per 5 ms of event time.
    let all = stream
        .window_all(WindowAssigner::tumbling_event_time(Duration::from_millis(5)))
        .aggregate_with_process(CountAndSum, |_: &(), context: &WindowContext, (count, sum), out| {
            out.collect((context.window.start, count, sum));
        })
        .collect();
    // By the wall clock: every record lands in some window, fired at the latest at the end.
    let by_wall_clock = keyed
        .window(WindowAssigner::tumbling_processing_time(Duration::from_millis(50)))
        .aggregate(CountAndSum)
        .collect();
    // A global window with a non-purging count trigger: running totals every 4 records.
    let running = keyed
        .window(WindowAssigner::global())
        .trigger(weir::windows::trigger::CountTrigger::of(4))
        .reduce(sum)
        .collect();
    env.execute("more windows").expect("job runs");

    let counted: Vec<(String, i64)> = sorted(counted.take().into_iter().map(|(_, key, total)| (key, total)).collect());
    let expected_counted = vec![
        ("even".to_owned(), 2 + 4),
        ("even".to_owned(), 6 + 8 + 10),
        ("even".to_owned(), 12 + 14 + 16),
        ("odd".to_owned(), 1 + 3 + 5),
        ("odd".to_owned(), 7 + 9 + 11),
        ("odd".to_owned(), 13 + 15 + 17),
    ];
    assert_eq!(counted, sorted(expected_counted));
    assert_eq!(sorted(all.take()), vec![(0, 5, 10), (5, 5, 35), (10, 5, 60), (15, 5, 85)]);
    let wall: Vec<(u64, i64)> = by_wall_clock.take();
    assert_eq!(wall.iter().map(|(count, _)| count).sum::<u64>(), 20, "{wall:?}");
    assert_eq!(wall.iter().map(|(_, sum)| sum).sum::<i64>(), (0..20).sum::<i64>());
    let running: Vec<(String, i64)> = sorted(running.take().into_iter().map(|(_, key, total)| (key, total)).collect());
    let expected_running = vec![
        ("even".to_owned(), 2 + 4 + 6),
        ("even".to_owned(), (0..8).map(|i| 2 * i).sum()),
        ("odd".to_owned(), 1 + 3 + 5 + 7),
        ("odd".to_owned(), (0..8).map(|i| 2 * i + 1).sum()),
    ];
    assert_eq!(running, sorted(expected_running));
}

#[test]
fn session_windows_are_dropped_after_the_allowed_lateness() {
    // Gap 10, lateness 20, bound 0.
    let events = vec![
        event(0, "a", 1),
        event(5, "a", 2),   // session [0, 15)
        event(40, "a", 4),  // watermark 39: [0, 15) fires, and is dropped (14 + 20 <= 39)
        event(12, "a", 8),  // [12, 22): within lateness, fires at once, alone
        event(45, "a", 16), // joins [40, 50) -> [40, 55)
    ];
    let job = Job { lateness_ms: 20, ..Job::new(WindowAssigner::event_time_session(Duration::from_millis(10)), 0) };
    let (rows, late) = job.run(&events);
    assert_eq!(rows, vec![row(0, 15, "a", 2, 3), row(12, 22, "a", 1, 8), row(40, 55, "a", 2, 20)]);
    assert!(late.is_empty());
}
