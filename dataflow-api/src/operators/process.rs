//! `process`: a function that sees each record with a context through which it
//! emits any number of results, to the main output or to side outputs.

use std::sync::Arc;

use weir_common::SubtaskIndex;
use weir_worker::TaskError;
use weir_worker::blame::BlameGuard;

use crate::OutputTag;
use crate::collector::Collector;
use crate::push::{ChainLink, Push, TypedOutputs};
use crate::time::CurrentTimestamp;

/// Where a process function emits its results; results keep the timestamp of
/// the record being processed.
pub struct ProcessContext<'a, Out> {
    out: Collector<'a, Out>,
    subtask: SubtaskIndex,
    timestamp: Option<i64>,
}

impl<Out> ProcessContext<'_, Out> {
    /// Emits one record downstream.
    ///
    /// If downstream fails (a sink error, or the job is being cancelled), the
    /// failure is kept and reported when the function returns; later records
    /// of this call are dropped because the task is stopping anyway.
    pub fn collect(&mut self, record: Out) {
        self.out.collect(record);
    }

    /// Emits one record to the side output `tag`.
    pub fn output<S: 'static>(&mut self, tag: &OutputTag<S>, record: S) {
        self.out.output(tag, record);
    }

    /// The event-time timestamp of the record, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
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
    pub(crate) timestamp: CurrentTimestamp,
    pub(crate) outputs: TypedOutputs<Out>,
}

impl<In, Out, F> Push<In> for Process<F, Out>
where
    F: FnMut(In, &mut ProcessContext<'_, Out>) + Send,
{
    fn push(&mut self, record: In) -> Result<(), TaskError> {
        let timestamp = self.timestamp.get();
        let out = Collector::new(&mut self.outputs, &self.timestamp, timestamp);
        let mut context = ProcessContext { out, subtask: self.subtask, timestamp: self.timestamp.timestamp() };
        let guard = BlameGuard::new(&self.name);
        (self.function)(record, &mut context);
        guard.disarm();
        context.out.into_result()
    }
}

impl<F: Send, Out> ChainLink for Process<F, Out> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(&mut self.outputs)
    }
}
