//! `filter`: keeps the records a predicate accepts.

use std::sync::Arc;

use weir_common::CheckpointId;
use weir_worker::blame::BlameGuard;
use weir_worker::{TaskError, Watermark};

use crate::checkpointing::ChainSnapshot;
use crate::push::Push;

/// Passes on the records for which the predicate is true.
pub(crate) struct Filter<F, T> {
    pub(crate) name: Arc<str>,
    pub(crate) predicate: F,
    pub(crate) next: Box<dyn Push<T>>,
}

impl<T, F> Push<T> for Filter<F, T>
where
    F: FnMut(&T) -> bool + Send,
{
    #[inline]
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        let guard = BlameGuard::new(&self.name);
        let keep = (self.predicate)(&record);
        guard.disarm();
        if keep { self.next.push(record) } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.next.flush()
    }

    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError> {
        self.next.watermark(mark)
    }

    fn checkpoint(&mut self, chain: &mut ChainSnapshot<'_>) -> Result<(), TaskError> {
        self.next.checkpoint(chain)
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        self.next.checkpoint_complete(id)
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        self.next.finish()
    }
}
