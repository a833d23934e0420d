//! `KeyedStream`: a stream partitioned by key, and the operators that keep
//! per-key state.

use std::ops::Add;
use std::sync::Arc;

use weir_common::{OperatorKind, Partitioning};

use crate::data::Key;
use crate::graph::LogicalEdge;
use crate::operators::keyed_process::{KeyedProcess, KeyedProcessFunction};
use crate::operators::rolling::RollingReduce;
use crate::partition::{HashWriters, KeySelector};
use crate::push::ErasedPush;
use crate::{Data, DataStream};

/// A stream whose records are routed by key: every record with a given key
/// reaches the same parallel instance of the next operator, which owns the
/// key's key group.
pub struct KeyedStream<T, K> {
    pub(crate) stream: DataStream<T>,
    pub(crate) key: KeySelector<T, K>,
}

impl<T: Data, K: Key> KeyedStream<T, K> {
    /// Folds each record into its key's aggregate with `reduce(aggregate, record)`.
    ///
    /// Streaming mode emits the updated aggregate for every record; batch mode
    /// emits each key's final aggregate when the input ends.
    pub fn reduce<F>(&self, reduce: F) -> DataStream<T>
    where
        F: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        self.rolling("Reduce", reduce)
    }

    /// Rolling sum of the field `field` selects; the other fields are those of
    /// the key's first record (as in Flink).
    pub fn sum<V, F>(&self, field: F) -> DataStream<T>
    where
        V: Copy + Add<Output = V>,
        F: Fn(&mut T) -> &mut V + Clone + Send + Sync + 'static,
    {
        self.rolling("Sum", move |mut aggregate: T, mut record: T| {
            let value = *field(&mut record);
            let slot = field(&mut aggregate);
            *slot = *slot + value;
            aggregate
        })
    }

    /// Rolling minimum of the field `field` selects; other fields as in `sum`.
    pub fn min<V, F>(&self, field: F) -> DataStream<T>
    where
        V: Copy + PartialOrd + 'static,
        F: Fn(&mut T) -> &mut V + Clone + Send + Sync + 'static,
    {
        self.extreme("Min", field, |candidate, current| candidate < current)
    }

    /// Rolling maximum of the field `field` selects; other fields as in `sum`.
    pub fn max<V, F>(&self, field: F) -> DataStream<T>
    where
        V: Copy + PartialOrd + 'static,
        F: Fn(&mut T) -> &mut V + Clone + Send + Sync + 'static,
    {
        self.extreme("Max", field, |candidate, current| candidate > current)
    }

    /// Keeps the field value for which `replaces(new, current)` holds.
    fn extreme<V, F>(&self, name: &str, field: F, replaces: fn(&V, &V) -> bool) -> DataStream<T>
    where
        V: Copy + 'static,
        F: Fn(&mut T) -> &mut V + Clone + Send + Sync + 'static,
    {
        self.rolling(name, move |mut aggregate: T, mut record: T| {
            let value = *field(&mut record);
            let slot = field(&mut aggregate);
            if replaces(&value, slot) {
                *slot = value;
            }
            aggregate
        })
    }

    /// Runs `function` on every record with the key's state and timers
    /// (Flink's `KeyedStream.process`).
    pub fn process<Out, F>(&self, function: F) -> DataStream<Out>
    where
        Out: Data,
        F: KeyedProcessFunction<K, T, Out>,
    {
        let key = self.key.clone();
        self.stream.transform::<Out>("KeyedProcess", OperatorKind::Keyed, vec![self.edge()], move |context, outputs| {
            let outputs = outputs.into_typed_with_sides::<Out>()?;
            let operator = KeyedProcess::new(context.clone(), key.clone(), function.clone(), outputs)?;
            Ok(ErasedPush::new::<T>(Box::new(operator)))
        })
    }

    fn rolling<F>(&self, name: &str, reduce: F) -> DataStream<T>
    where
        F: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        let key = self.key.clone();
        self.stream.transform::<T>(name, OperatorKind::Keyed, vec![self.edge()], move |context, next| {
            let next = next.into_typed::<T>()?;
            let operator = RollingReduce::new(context.clone(), key.clone(), reduce.clone(), next)?;
            Ok(ErasedPush::new::<T>(Box::new(operator)))
        })
    }

    /// The hash-partitioned edge into a keyed operator.
    pub(crate) fn edge(&self) -> LogicalEdge {
        self.stream.check_current();
        LogicalEdge {
            from: self.stream.node,
            partitioning: Some(Partitioning::Hash),
            writers: Arc::new(HashWriters { key: self.key.clone() }),
            side: self.stream.side.clone(),
        }
    }
}
