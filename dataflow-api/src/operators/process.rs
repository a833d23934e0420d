//! `process`: a function that sees each record with a context through which it
//! emits any number of results.

use std::sync::Arc;

use weir_common::SubtaskIndex;
use weir_worker::blame::BlameGuard;
use weir_worker::{TaskError, Watermark};

use crate::push::Push;

/// Where a process function emits its results.
pub struct ProcessContext<'a, Out> {
    next: &'a mut dyn Push<Out>,
    subtask: SubtaskIndex,
    error: Option<TaskError>,
}

impl<Out> ProcessContext<'_, Out> {
    /// Emits one record downstream.
    ///
    /// If downstream fails (a sink error, or the job is being cancelled), the
    /// failure is kept and reported when the function returns; later records
    /// of this call are dropped because the task is stopping anyway.
    pub fn collect(&mut self, record: Out) {
        if self.error.is_none()
            && let Err(error) = self.next.push(record)
        {
            self.error = Some(error);
        }
    }

    /// Which parallel instance of the operator runs this call.
    pub fn subtask(&self) -> SubtaskIndex {
        self.subtask
    }
}

/// Calls the process function for every record.
pub(crate) struct Process<F, Out> {
    pub(crate) name: Arc<str>,
    pub(crate) subtask: SubtaskIndex,
    pub(crate) function: F,
    pub(crate) next: Box<dyn Push<Out>>,
}

impl<In, Out, F> Push<In> for Process<F, Out>
where
    F: FnMut(In, &mut ProcessContext<'_, Out>) + Send,
{
    fn push(&mut self, record: In) -> Result<(), TaskError> {
        let mut context = ProcessContext { next: self.next.as_mut(), subtask: self.subtask, error: None };
        let guard = BlameGuard::new(&self.name);
        (self.function)(record, &mut context);
        guard.disarm();
        context.error.map_or(Ok(()), Err)
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
