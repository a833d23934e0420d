//! Rolling aggregation on a keyed stream: `reduce`, and `sum`/`min`/`max`
//! built on it.
//!
//! In streaming mode every input record emits the key's updated aggregate
//! (Flink's rolling reduce). In batch mode only the final aggregate of each key
//! is emitted, once the input has ended.

use weir_common::KeyGroup;
use weir_state::KeyGroupedMap;
use weir_worker::TaskError;
use weir_worker::blame::BlameGuard;

use crate::data::Key;
use crate::operators::OperatorContext;
use crate::partition::KeySelector;
use crate::push::Push;
use crate::{Data, RuntimeMode};

/// Keeps one aggregate per key and folds each record into it.
pub(crate) struct RollingReduce<T, K, F> {
    context: OperatorContext,
    key: KeySelector<T, K>,
    reduce: F,
    /// `None` only while `reduce` runs.
    state: KeyGroupedMap<K, Option<T>>,
    next: Box<dyn Push<T>>,
    scratch: Vec<u8>,
}

impl<T, K, F> RollingReduce<T, K, F>
where
    T: Data,
    K: Key,
    F: FnMut(T, T) -> T + Send,
{
    pub(crate) fn new(context: OperatorContext, key: KeySelector<T, K>, reduce: F, next: Box<dyn Push<T>>) -> Self {
        let state = KeyGroupedMap::new(context.key_group_range);
        Self { context, key, reduce, state, next, scratch: Vec::new() }
    }

    /// Folds `record` into its key's aggregate; returns the new aggregate when
    /// it must be emitted now (streaming mode).
    fn fold(&mut self, record: T) -> Result<Option<T>, TaskError> {
        let guard = BlameGuard::new(&self.context.operator_name);
        let key = (self.key)(&record);
        guard.disarm();
        let group = KeyGroup::of_key(&key, self.context.max_parallelism, &mut self.scratch)
            .map_err(|error| TaskError::operator(self.context.operator_name.as_ref(), &error))?;
        let groups = self.state.group_mut(group).map_err(|error| self.context.error(error.to_string()))?;
        // One hash lookup per record: the slot is emptied while `reduce` owns
        // the previous aggregate, then refilled.
        let slot = groups.entry(key).or_insert(None);
        let aggregate = match slot.take() {
            None => slot.insert(record),
            Some(previous) => {
                let guard = BlameGuard::new(&self.context.operator_name);
                let updated = (self.reduce)(previous, record);
                guard.disarm();
                slot.insert(updated)
            }
        };
        Ok((self.context.mode == RuntimeMode::Streaming).then(|| aggregate.clone()))
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

    fn flush(&mut self) -> Result<(), TaskError> {
        self.next.flush()
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        if self.context.mode == RuntimeMode::Batch {
            let finals: Vec<T> = self.state.drain().filter_map(|(_, _, aggregate)| aggregate).collect();
            self.next.push_batch(finals)?;
        }
        self.next.finish()
    }
}
