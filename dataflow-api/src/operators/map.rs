//! `map`: one output record per input record.

use std::sync::Arc;

use weir_worker::TaskError;
use weir_worker::blame::BlameGuard;

use crate::push::{ChainLink, Push};

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
}

impl<F: Send, Out> ChainLink for Map<F, Out> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(self.next.as_mut())
    }
}

/// Applies a fallible function to every record; an error fails the task
/// with the operator's name and the error's message.
pub(crate) struct TryMap<F, Out> {
    pub(crate) name: Arc<str>,
    pub(crate) function: F,
    pub(crate) next: Box<dyn Push<Out>>,
}

impl<In, Out, E, F> Push<In> for TryMap<F, Out>
where
    F: FnMut(In) -> Result<Out, E> + Send,
    E: std::fmt::Display,
{
    #[inline]
    fn push(&mut self, record: In) -> Result<(), TaskError> {
        let guard = BlameGuard::new(&self.name);
        let output = (self.function)(record);
        guard.disarm();
        match output {
            Ok(output) => self.next.push(output),
            Err(error) => Err(TaskError::Operator { operator: self.name.to_string(), message: error.to_string() }),
        }
    }
}

impl<F: Send, Out> ChainLink for TryMap<F, Out> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(self.next.as_mut())
    }
}
