//! `map`: one output record per input record.

use std::sync::Arc;

use weir_worker::blame::BlameGuard;
use weir_worker::{TaskError, Watermark};

use crate::push::Push;

/// Applies a function to every record.
pub(crate) struct Map<F, Out> {
    pub(crate) name: Arc<str>,
    pub(crate) function: F,
    pub(crate) next: Box<dyn Push<Out>>,
}

impl<In, Out, F> Push<In> for Map<F, Out>
where
    F: FnMut(In) -> Out + Send,
{
    #[inline]
    fn push(&mut self, record: In) -> Result<(), TaskError> {
        let guard = BlameGuard::new(&self.name);
        let output = (self.function)(record);
        guard.disarm();
        self.next.push(output)
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.next.flush()
    }

    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError> {
        self.next.watermark(mark)
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        self.next.finish()
    }
}
