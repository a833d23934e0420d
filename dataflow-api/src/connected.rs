//! Two inputs: `connect` (co-map, keyed co-process), interval joins and
//! window joins (Flink's `ConnectedStreams`, `IntervalJoin`, `JoinedStreams`).
//!
//! Two-input operators are built from one-input parts: each input is tagged
//! as [`Either`] where it is produced (a chained map, no extra hop), and the
//! operator is one node with both tagged streams as inputs, hash-partitioned
//! by each side's key. Its watermark is the minimum over the channels of
//! both inputs, exactly Flink's rule for two-input operators. Window joins
//! use a union of the tagged streams, which costs one more task hop.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_common::{OperatorKind, Partitioning};
use weir_state::keyed::{KeyedStateBackend, MapState, StateError};

use crate::data::Key;
use crate::graph::LogicalEdge;
use crate::operators::keyed_process::{KeyedContext, KeyedProcess, KeyedProcessFunction, ProcessError};
use crate::operators::map::Map;
use crate::partition::{HashWriters, KeySelector};
use crate::push::ErasedPush;
use crate::stream::operator_node;
use crate::windows::{WindowAssigner, WindowContext};
use crate::{Collector, Data, DataStream, KeyedStream};

/// A stream of either input's records.
type Tagged<A, B> = DataStream<Either<A, B>>;
/// What a join makes of a pair of matching records.
type JoinFn<A, B, Out> = Arc<dyn Fn(&A, &B) -> Out + Send + Sync>;

/// A record of the first (`Left`) or the second (`Right`) input.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Either<A, B> {
    /// From the first input.
    Left(A),
    /// From the second input.
    Right(B),
}

/// Two streams of possibly different types, processed by one operator.
pub struct ConnectedStreams<A, B> {
    first: DataStream<A>,
    second: DataStream<B>,
}

impl<A: Data> DataStream<A> {
    /// Connects this stream with `other` for a two-input operator.
    pub fn connect<B: Data>(&self, other: &DataStream<B>) -> ConnectedStreams<A, B> {
        if !other.env.same_as(&self.env) {
            self.env.misuse("connect of streams from different environments".into());
        }
        ConnectedStreams { first: self.clone(), second: other.clone() }
    }
}

impl<A: Data, B: Data> ConnectedStreams<A, B> {
    /// Both inputs, tagged where they are produced.
    fn tagged(&self) -> (Tagged<A, B>, Tagged<A, B>) {
        (self.first.map(Either::Left).name("Tag first input"), self.second.map(Either::Right).name("Tag second input"))
    }

    /// Maps each input with its own function into one output type (co-map).
    pub fn map<U, F1, F2>(&self, first: F1, second: F2) -> DataStream<U>
    where
        U: Data,
        F1: Fn(A) -> U + Clone + Send + Sync + 'static,
        F2: Fn(B) -> U + Clone + Send + Sync + 'static,
    {
        let (left, right) = self.tagged();
        let inputs = vec![left.edge(), right.edge()];
        let build = move |context: &crate::operators::OperatorContext, outputs: crate::push::Outputs| {
            let next = outputs.into_typed::<U>()?;
            let (first, second) = (first.clone(), second.clone());
            let function = move |record: Either<A, B>| match record {
                Either::Left(a) => first(a),
                Either::Right(b) => second(b),
            };
            Ok(ErasedPush::new::<Either<A, B>>(Box::new(Map { name: context.operator_name.clone(), function, next })))
        };
        let node = self.first.env.add_node(operator_node::<Either<A, B>, U>(
            "CoMap",
            OperatorKind::Transform,
            inputs,
            Arc::new(build),
        ));
        DataStream::new(self.first.env.clone(), node)
    }

    /// Partitions both inputs by key, so records with equal keys meet in one
    /// instance of the next operator.
    pub fn key_by<K, K1, K2>(&self, first: K1, second: K2) -> KeyedConnectedStreams<A, B, K>
    where
        K: Key,
        K1: Fn(&A) -> K + Send + Sync + 'static,
        K2: Fn(&B) -> K + Send + Sync + 'static,
    {
        let key: KeySelector<Either<A, B>, K> = Arc::new(move |record: &Either<A, B>| match record {
            Either::Left(a) => first(a),
            Either::Right(b) => second(b),
        });
        let (left, right) = self.tagged();
        KeyedConnectedStreams { left, right, key }
    }
}

/// Two inputs partitioned by the same kind of key.
pub struct KeyedConnectedStreams<A, B, K> {
    left: DataStream<Either<A, B>>,
    right: DataStream<Either<A, B>>,
    key: KeySelector<Either<A, B>, K>,
}

/// Processes two keyed inputs with shared keyed state and timers (Flink's
/// `KeyedCoProcessFunction`). One clone runs per parallel instance.
pub trait KeyedCoProcessFunction<K, A, B, Out>: Clone + Send + Sync + 'static {
    /// Declares the state the function uses (see [`KeyedProcessFunction::open`]).
    fn open(&mut self, state: &mut KeyedStateBackend<K>) -> Result<(), StateError> {
        let _ = state;
        Ok(())
    }

    /// A record of the first input.
    fn process_element1(&mut self, record: A, ctx: &mut KeyedContext<'_, K, Out>) -> Result<(), ProcessError>;

    /// A record of the second input.
    fn process_element2(&mut self, record: B, ctx: &mut KeyedContext<'_, K, Out>) -> Result<(), ProcessError>;

    /// A timer of the current key fired.
    fn on_timer(&mut self, timestamp: i64, ctx: &mut KeyedContext<'_, K, Out>) -> Result<(), ProcessError> {
        let _ = (timestamp, ctx);
        Ok(())
    }
}

/// Runs a co-process function as a one-input function over [`Either`].
#[derive(Clone)]
struct CoProcess<F>(F);

impl<K, A, B, Out, F> KeyedProcessFunction<K, Either<A, B>, Out> for CoProcess<F>
where
    F: KeyedCoProcessFunction<K, A, B, Out>,
{
    fn open(&mut self, state: &mut KeyedStateBackend<K>) -> Result<(), StateError> {
        self.0.open(state)
    }

    fn process_element(
        &mut self,
        record: Either<A, B>,
        ctx: &mut KeyedContext<'_, K, Out>,
    ) -> Result<(), ProcessError> {
        match record {
            Either::Left(a) => self.0.process_element1(a, ctx),
            Either::Right(b) => self.0.process_element2(b, ctx),
        }
    }

    fn on_timer(&mut self, timestamp: i64, ctx: &mut KeyedContext<'_, K, Out>) -> Result<(), ProcessError> {
        self.0.on_timer(timestamp, ctx)
    }
}

impl<A: Data, B: Data, K: Key> KeyedConnectedStreams<A, B, K> {
    fn keyed_edge(&self, stream: &DataStream<Either<A, B>>) -> LogicalEdge {
        stream.check_current();
        LogicalEdge {
            from: stream.node,
            partitioning: Some(Partitioning::Hash),
            writers: Arc::new(HashWriters { key: self.key.clone() }),
            side: None,
        }
    }

    /// Runs `function` on the records of both inputs with the key's state and timers.
    pub fn process<Out, F>(&self, function: F) -> DataStream<Out>
    where
        Out: Data,
        F: KeyedCoProcessFunction<K, A, B, Out>,
    {
        self.process_named("KeyedCoProcess", CoProcess(function))
    }

    fn process_named<Out, F>(&self, name: &str, function: F) -> DataStream<Out>
    where
        Out: Data,
        F: KeyedProcessFunction<K, Either<A, B>, Out>,
    {
        let key = self.key.clone();
        let inputs = vec![self.keyed_edge(&self.left), self.keyed_edge(&self.right)];
        let build = move |context: &crate::operators::OperatorContext, outputs: crate::push::Outputs| {
            let outputs = outputs.into_typed_with_sides::<Out>()?;
            let operator = KeyedProcess::new(context.clone(), key.clone(), function.clone(), outputs)?;
            Ok(ErasedPush::new::<Either<A, B>>(Box::new(operator)))
        };
        let env = self.left.env.clone();
        let node = env.add_node(operator_node::<Either<A, B>, Out>(name, OperatorKind::Keyed, inputs, Arc::new(build)));
        DataStream::new(env, node)
    }
}

/// An interval join being configured: `a.interval_join(&b).between(lower, upper)`.
pub struct IntervalJoin<A, B, K> {
    connected: KeyedConnectedStreams<A, B, K>,
}

/// An interval join with its bounds, waiting for its join function.
pub struct IntervalJoined<A, B, K> {
    connected: KeyedConnectedStreams<A, B, K>,
    lower: i64,
    upper: i64,
}

impl<A: Data, K: Key> KeyedStream<A, K> {
    /// Joins records of this stream with records of `other` with the same
    /// key whose timestamps are close (Flink's `intervalJoin`).
    pub fn interval_join<B: Data>(&self, other: &KeyedStream<B, K>) -> IntervalJoin<A, B, K> {
        let (first, second) = (self.key.clone(), other.key.clone());
        let connected = self.stream.connect(&other.stream).key_by(move |a: &A| first(a), move |b: &B| second(b));
        IntervalJoin { connected }
    }
}

impl<A: Data, B: Data, K: Key> IntervalJoin<A, B, K> {
    /// A record `a` of this stream meets each `b` of the other with
    /// `a.timestamp + lower <= b.timestamp <= a.timestamp + upper` (both in
    /// milliseconds, either may be negative).
    pub fn between(self, lower_ms: i64, upper_ms: i64) -> IntervalJoined<A, B, K> {
        if lower_ms > upper_ms {
            self.connected.left.env.misuse(format!(
                "interval join bounds: the lower bound {lower_ms} ms is above the upper bound {upper_ms} ms"
            ));
        }
        IntervalJoined { connected: self.connected, lower: lower_ms, upper: upper_ms }
    }
}

impl<A: Data, B: Data, K: Key> IntervalJoined<A, B, K> {
    /// Emits `join(a, b)` for every pair that meets; results carry the larger
    /// of the two timestamps. Records later than the watermark are dropped,
    /// as in Flink.
    pub fn process<Out, F>(&self, join: F) -> DataStream<Out>
    where
        Out: Data,
        F: Fn(&A, &B) -> Out + Send + Sync + 'static,
    {
        let joiner = IntervalJoiner {
            lower: self.lower,
            upper: self.upper,
            join: Arc::new(join),
            left: None,
            right: None,
            dropped_late: metrics::counter!("weir_interval_join_late_records_dropped_total"),
        };
        self.connected.process_named("IntervalJoin", joiner)
    }
}

/// Buffers each side's records by timestamp until no future record of the
/// other side can meet them.
struct IntervalJoiner<A, B, Out> {
    lower: i64,
    upper: i64,
    join: JoinFn<A, B, Out>,
    left: Option<MapState<(), i64, Vec<A>>>,
    right: Option<MapState<(), i64, Vec<B>>>,
    dropped_late: metrics::Counter,
}

impl<A, B, Out> Clone for IntervalJoiner<A, B, Out> {
    fn clone(&self) -> Self {
        Self {
            lower: self.lower,
            upper: self.upper,
            join: self.join.clone(),
            left: self.left.clone(),
            right: self.right.clone(),
            dropped_late: self.dropped_late.clone(),
        }
    }
}

fn handle<S: Clone>(state: &Option<S>) -> Result<S, ProcessError> {
    Ok(state.clone().ok_or("interval join state used before open")?)
}

impl<A: Data, B: Data, K: Key, Out: Data> KeyedProcessFunction<K, Either<A, B>, Out> for IntervalJoiner<A, B, Out> {
    fn open(&mut self, state: &mut KeyedStateBackend<K>) -> Result<(), StateError> {
        self.left = Some(state.register_map("interval-join-left")?);
        self.right = Some(state.register_map("interval-join-right")?);
        Ok(())
    }

    fn process_element(
        &mut self,
        record: Either<A, B>,
        ctx: &mut KeyedContext<'_, K, Out>,
    ) -> Result<(), ProcessError> {
        let timestamp = ctx.timestamp().ok_or(
            "an interval join needs timestamps, and this record has none: \
             call assign_timestamps_and_watermarks on both inputs",
        )?;
        if timestamp <= ctx.current_watermark() {
            self.dropped_late.increment(1);
            return Ok(());
        }
        let (left, right) = (handle(&self.left)?, handle(&self.right)?);
        let mut results = Vec::new();
        match record {
            Either::Left(a) => {
                // b meets a when a + lower <= b <= a + upper.
                let (from, to) = (timestamp.saturating_add(self.lower), timestamp.saturating_add(self.upper));
                for (b_time, bs) in ctx.state().map_entries(&right, &())? {
                    if (from..=to).contains(&b_time) {
                        results.extend(bs.iter().map(|b| ((self.join)(&a, b), timestamp.max(b_time))));
                    }
                }
                let mut buffered = ctx.state().map_get(&left, &(), &timestamp)?.unwrap_or_default();
                buffered.push(a);
                ctx.state().map_put(&left, &(), timestamp, buffered)?;
                // No b later than a + upper can still arrive once the watermark passes it.
                ctx.register_event_time_timer(to)?;
            }
            Either::Right(b) => {
                let (from, to) = (timestamp.saturating_sub(self.upper), timestamp.saturating_sub(self.lower));
                for (a_time, as_) in ctx.state().map_entries(&left, &())? {
                    if (from..=to).contains(&a_time) {
                        results.extend(as_.iter().map(|a| ((self.join)(a, &b), timestamp.max(a_time))));
                    }
                }
                let mut buffered = ctx.state().map_get(&right, &(), &timestamp)?.unwrap_or_default();
                buffered.push(b);
                ctx.state().map_put(&right, &(), timestamp, buffered)?;
                ctx.register_event_time_timer(to)?;
            }
        }
        for (result, timestamp) in results {
            ctx.collect_at(result, timestamp);
        }
        Ok(())
    }

    fn on_timer(&mut self, timestamp: i64, ctx: &mut KeyedContext<'_, K, Out>) -> Result<(), ProcessError> {
        let (left, right) = (handle(&self.left)?, handle(&self.right)?);
        // Left records at or before `timestamp - upper`, and right records at or
        // before `timestamp + lower`, can meet no future record.
        for (a_time, _) in ctx.state().map_entries(&left, &())? {
            if a_time.saturating_add(self.upper) <= timestamp {
                ctx.state().map_remove(&left, &(), &a_time)?;
            }
        }
        for (b_time, _) in ctx.state().map_entries(&right, &())? {
            if b_time.saturating_sub(self.lower) <= timestamp {
                ctx.state().map_remove(&right, &(), &b_time)?;
            }
        }
        Ok(())
    }
}

/// A window join being configured: `a.join(&b).where_key(..).equal_to(..).window(..)`.
pub struct JoinedStreams<A, B> {
    connected: ConnectedStreams<A, B>,
}

/// A window join with the first input's key.
pub struct JoinWhere<A, B, K> {
    connected: ConnectedStreams<A, B>,
    first: KeySelector<A, K>,
}

/// A window join with both keys.
pub struct JoinEqualTo<A, B, K> {
    connected: ConnectedStreams<A, B>,
    first: KeySelector<A, K>,
    second: KeySelector<B, K>,
}

/// A window join with keys and windows, waiting for its join function.
pub struct WindowJoin<A, B, K> {
    spec: JoinEqualTo<A, B, K>,
    assigner: WindowAssigner,
}

impl<A: Data> DataStream<A> {
    /// Joins this stream with `other` per key and window (Flink's `join`):
    /// every pair of records with equal keys in the same window meets.
    pub fn join<B: Data>(&self, other: &DataStream<B>) -> JoinedStreams<A, B> {
        JoinedStreams { connected: self.connect(other) }
    }
}

impl<A: Data, B: Data> JoinedStreams<A, B> {
    /// The key of the first input.
    pub fn where_key<K: Key>(self, key: impl Fn(&A) -> K + Send + Sync + 'static) -> JoinWhere<A, B, K> {
        JoinWhere { connected: self.connected, first: Arc::new(key) }
    }
}

impl<A: Data, B: Data, K: Key> JoinWhere<A, B, K> {
    /// The key of the second input.
    pub fn equal_to(self, key: impl Fn(&B) -> K + Send + Sync + 'static) -> JoinEqualTo<A, B, K> {
        JoinEqualTo { connected: self.connected, first: self.first, second: Arc::new(key) }
    }
}

impl<A: Data, B: Data, K: Key> JoinEqualTo<A, B, K> {
    /// The windows pairs must share.
    pub fn window(self, assigner: WindowAssigner) -> WindowJoin<A, B, K> {
        WindowJoin { spec: self, assigner }
    }
}

impl<A: Data, B: Data, K: Key> WindowJoin<A, B, K> {
    /// Emits `join(a, b)` for every pair of a window, when it fires.
    pub fn apply<Out, F>(&self, join: F) -> DataStream<Out>
    where
        Out: Data,
        F: Fn(&A, &B) -> Out + Send + Sync + 'static,
    {
        let (left, right) = self.spec.connected.tagged();
        let (first, second) = (self.spec.first.clone(), self.spec.second.clone());
        left.union(&[right])
            .name("Window join input")
            .key_by(move |record: &Either<A, B>| match record {
                Either::Left(a) => first(a),
                Either::Right(b) => second(b),
            })
            .window(self.assigner)
            .process(
                move |_key: &K, _window: &WindowContext, records: Vec<Either<A, B>>, out: &mut Collector<'_, Out>| {
                    let (mut lefts, mut rights) = (Vec::new(), Vec::new());
                    for record in records {
                        match record {
                            Either::Left(a) => lefts.push(a),
                            Either::Right(b) => rights.push(b),
                        }
                    }
                    for a in &lefts {
                        for b in &rights {
                            out.collect(join(a, b));
                        }
                    }
                },
            )
    }
}
