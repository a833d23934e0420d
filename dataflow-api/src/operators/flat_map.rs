//! `flat_map`: any number of output records per input record.

use std::sync::Arc;

use weir_common::CheckpointId;
use weir_worker::blame::BlameGuard;
use weir_worker::{TaskError, Watermark};

use crate::checkpointing::ChainSnapshot;
use crate::push::Push;

/// Pushes every item of the iterator the function returns.
pub(crate) struct FlatMap<F, Out> {
    pub(crate) name: Arc<str>,
    pub(crate) function: F,
    pub(crate) next: Box<dyn Push<Out>>,
}

impl<In, Out, I, F> Push<In> for FlatMap<F, Out>
where
    F: FnMut(In) -> I + Send,
    I: IntoIterator<Item = Out>,
{
    #[inline]
    fn push(&mut self, record: In) -> Result<(), TaskError> {
        let guard = BlameGuard::new(&self.name);
        // The iterator may be lazy, running user code as it advances, so the
        // guard covers the loop too.
        for output in (self.function)(record) {
            self.next.push(output)?;
        }
        guard.disarm();
        Ok(())
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
