//! Two timestamped inputs: interval and window joins against nested loops,
//! and connected streams sharing keyed state.

use std::collections::BTreeMap;
use std::time::Duration;

use weir::prelude::*;

use super::sorted;

/// `(timestamp ms, key)` records for the join tests, in timestamp order.
fn join_input(seed: u64, count: usize) -> Vec<(i64, u8)> {
    let mut state = seed | 1;
    let mut timestamp = 0i64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            timestamp += (state % 4) as i64;
            (timestamp, (state >> 8) as u8 % 5)
        })
        .collect()
}

fn timestamped(env: &StreamEnv, records: Vec<(i64, u8)>) -> DataStream<(i64, u8)> {
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|record: &(i64, u8), _| record.0)
        .with_emit_interval(Duration::ZERO);
    env.from_collection(records).set_parallelism(1).assign_timestamps_and_watermarks(strategy).set_parallelism(1)
}

#[test]
fn interval_join_pairs_equal_a_nested_loop() {
    let (lefts, rights) = (join_input(7, 400), join_input(11, 400));
    let (lower, upper) = (-2i64, 3i64);
    let mut expected = Vec::new();
    for a in &lefts {
        for b in &rights {
            if a.1 == b.1 && (a.0 + lower..=a.0 + upper).contains(&b.0) {
                expected.push((*a, *b));
            }
        }
    }
    assert!(expected.len() > 100);
    for parallelism in [1, 3] {
        let env = StreamEnv::new();
        env.set_parallelism(parallelism);
        let left = timestamped(&env, lefts.clone()).key_by(|record: &(i64, u8)| record.1);
        let right = timestamped(&env, rights.clone()).key_by(|record: &(i64, u8)| record.1);
        let pairs = left.interval_join(&right).between(lower, upper).process(|a, b| (*a, *b)).collect();
        env.execute("interval join").expect("job runs");
        assert_eq!(sorted(pairs.take()), sorted(expected.clone()), "parallelism {parallelism}");
    }
}

#[test]
fn window_join_pairs_equal_a_nested_loop_per_window() {
    let (lefts, rights) = (join_input(3, 300), join_input(5, 300));
    let mut expected = Vec::new();
    for a in &lefts {
        for b in &rights {
            if a.1 == b.1 && a.0.div_euclid(10) == b.0.div_euclid(10) {
                expected.push((*a, *b));
            }
        }
    }
    let env = StreamEnv::new();
    env.set_parallelism(2);
    let pairs = timestamped(&env, lefts)
        .join(&timestamped(&env, rights))
        .where_key(|record: &(i64, u8)| record.1)
        .equal_to(|record: &(i64, u8)| record.1)
        .window(WindowAssigner::tumbling_event_time(Duration::from_millis(10)))
        .apply(|a, b| (*a, *b))
        .collect();
    env.execute("window join").expect("job runs");
    assert_eq!(sorted(pairs.take()), sorted(expected));
}

/// Credits from the first input, debits from the second; the balance per
/// key is emitted when event time ends.
#[derive(Clone, Default)]
struct Balance {
    balance: Option<weir::state::ValueState<(), i64>>,
}

impl KeyedCoProcessFunction<u8, (i64, u8), (i64, u8), (u8, i64)> for Balance {
    fn open(&mut self, state: &mut weir::state::KeyedStateBackend<u8>) -> Result<(), weir::state::StateError> {
        self.balance = Some(state.register_value("balance")?);
        Ok(())
    }

    fn process_element1(
        &mut self,
        record: (i64, u8),
        ctx: &mut KeyedContext<'_, u8, (u8, i64)>,
    ) -> Result<(), ProcessError> {
        let balance = self.balance.clone().ok_or("not open")?;
        ctx.state().update_value(&balance, &(), |old| (Some(old.unwrap_or(0) + record.0), ()))?;
        ctx.register_event_time_timer(i64::MAX - 1)?;
        Ok(())
    }

    fn process_element2(
        &mut self,
        record: (i64, u8),
        ctx: &mut KeyedContext<'_, u8, (u8, i64)>,
    ) -> Result<(), ProcessError> {
        let balance = self.balance.clone().ok_or("not open")?;
        ctx.state().update_value(&balance, &(), |old| (Some(old.unwrap_or(0) - record.0), ()))?;
        ctx.register_event_time_timer(i64::MAX - 1)?;
        Ok(())
    }

    fn on_timer(&mut self, _: i64, ctx: &mut KeyedContext<'_, u8, (u8, i64)>) -> Result<(), ProcessError> {
        let balance = self.balance.clone().ok_or("not open")?;
        let value = ctx.state().value(&balance, &())?.unwrap_or(0);
        let key = *ctx.key();
        ctx.collect((key, value));
        Ok(())
    }
}

#[test]
fn connected_streams_share_keyed_state_and_co_map_both_inputs() {
    let (credits, debits) = (join_input(13, 500), join_input(17, 500));
    let mut expected: BTreeMap<u8, i64> = BTreeMap::new();
    for (amount, key) in &credits {
        *expected.entry(*key).or_default() += amount;
    }
    for (amount, key) in &debits {
        *expected.entry(*key).or_default() -= amount;
    }
    let env = StreamEnv::new();
    env.set_parallelism(3);
    let (first, second) = (timestamped(&env, credits.clone()), timestamped(&env, debits.clone()));
    let balances = first
        .connect(&second)
        .key_by(|record: &(i64, u8)| record.1, |record: &(i64, u8)| record.1)
        .process(Balance::default())
        .collect();
    let labels = first.connect(&second).map(|_| "credit".to_owned(), |_| "debit".to_owned()).collect();
    env.execute("connected").expect("job runs");
    assert_eq!(sorted(balances.take()), expected.into_iter().collect::<Vec<_>>());
    let labels = labels.take();
    assert_eq!(labels.iter().filter(|label| **label == "credit").count(), credits.len());
    assert_eq!(labels.iter().filter(|label| **label == "debit").count(), debits.len());
}
