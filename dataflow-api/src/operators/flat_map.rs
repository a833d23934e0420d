//! `flat_map`: any number of output records per input record.

use std::sync::Arc;

use weir_worker::TaskError;
use weir_worker::blame::BlameGuard;

use crate::push::{ChainLink, Push};

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
}

impl<F: Send, Out> ChainLink for FlatMap<F, Out> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(self.next.as_mut())
    }
}
