//! `filter`: keeps the records a predicate accepts.

use std::sync::Arc;

use weir_worker::TaskError;
use weir_worker::blame::BlameGuard;

use crate::push::{ChainLink, Push};

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
}

impl<F: Send, T> ChainLink for Filter<F, T> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(self.next.as_mut())
    }
}
