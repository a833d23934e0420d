//! Rolling aggregation on a keyed stream: `reduce`, and `sum`/`min`/`max`
//! built on it.
//!
//! In streaming mode every input record emits the key's updated aggregate
//! (Flink's rolling reduce). In batch mode only the final aggregate of each key
//! is emitted, once the input has ended. The aggregates are a value state in
//! the configured keyed-state backend (memory or RocksDB).

use weir_common::CheckpointId;
use weir_state::keyed::{KeyedStateBackend, ValueState};
use weir_worker::TaskError;
use weir_worker::blame::BlameGuard;

use crate::checkpointing::{ChainSnapshot, KeyedCheckpoints};
use crate::data::Key;
use crate::operators::OperatorContext;
use crate::partition::KeySelector;
use crate::push::{ChainLink, Push, pass_on};
use crate::{Data, RuntimeMode};

/// Keeps one aggregate per key and folds each record into it.
pub(crate) struct RollingReduce<T, K, F> {
    context: OperatorContext,
    key: KeySelector<T, K>,
    reduce: F,
    state: KeyedStateBackend<K>,
    aggregate: ValueState<(), T>,
    checkpoints: KeyedCheckpoints,
    next: Box<dyn Push<T>>,
}

impl<T, K, F> RollingReduce<T, K, F>
where
    T: Data,
    K: Key,
    F: FnMut(T, T) -> T + Send,
{
    pub(crate) fn new(
        context: OperatorContext,
        key: KeySelector<T, K>,
        reduce: F,
        next: Box<dyn Push<T>>,
    ) -> Result<Self, TaskError> {
        let mut state = context.keyed_state_backend::<K>()?;
        let aggregate = state.register_value("aggregate").map_err(|error| context.error(error.to_string()))?;
        Ok(Self { context, key, reduce, state, aggregate, checkpoints: KeyedCheckpoints::default(), next })
    }

    /// Folds `record` into its key's aggregate; returns the new aggregate when
    /// it must be emitted now (streaming mode).
    fn fold(&mut self, record: T) -> Result<Option<T>, TaskError> {
        let guard = BlameGuard::new(&self.context.operator_name);
        let key = (self.key)(&record);
        guard.disarm();
        let failed = |error: weir_state::keyed::StateError| self.context.error(error.to_string());
        self.state.set_current_key(key).map_err(failed)?;
        let emit = self.context.mode == RuntimeMode::Streaming;
        let (reduce, name) = (&mut self.reduce, &self.context.operator_name);
        self.state
            .update_value(&self.aggregate, &(), |previous| {
                let updated = match previous {
                    None => record,
                    Some(previous) => {
                        let guard = BlameGuard::new(name);
                        let updated = reduce(previous, record);
                        guard.disarm();
                        updated
                    }
                };
                let emitted = emit.then(|| updated.clone());
                (Some(updated), emitted)
            })
            .map_err(|error| self.context.error(error.to_string()))
    }
}

impl<T, K, F> Push<T> for RollingReduce<T, K, F>
where
    T: Data,
    K: Key,
    F: FnMut(T, T) -> T + Send,
{
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        match self.fold(record)? {
            Some(update) => self.next.push(update),
            None => Ok(()),
        }
    }
}

impl<T, K, F> ChainLink for RollingReduce<T, K, F>
where
    T: Data,
    K: Key,
    F: FnMut(T, T) -> T + Send,
{
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(self.next.as_mut())
    }

    fn checkpoint(&mut self, chain: &mut ChainSnapshot<'_>) -> Result<(), TaskError> {
        self.checkpoints.snapshot(&mut self.state, &self.context, chain)?;
        pass_on(self, |next| next.checkpoint(chain))
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        self.checkpoints.complete(&mut self.state, id);
        pass_on(self, |next| next.checkpoint_complete(id))
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        if self.context.mode == RuntimeMode::Batch {
            let finals = self.state.values(&self.aggregate).map_err(|error| self.context.error(error.to_string()))?;
            self.next.push_batch(finals)?;
        }
        pass_on(self, |next| next.finish())
    }
}
