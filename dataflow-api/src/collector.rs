//! `Collector`: where user functions that emit any number of results put them.

use weir_worker::TaskError;

use crate::OutputTag;
use crate::push::TypedOutputs;
use crate::time::CurrentTimestamp;

/// Emits results downstream, with the timestamp the operator gives them, and
/// to side outputs.
///
/// If downstream fails (a sink error, or the job is being cancelled), the
/// failure is kept and reported when the user function returns; later
/// results of that call are dropped because the task is stopping anyway.
pub struct Collector<'a, Out> {
    outputs: &'a mut TypedOutputs<Out>,
    timestamp: &'a CurrentTimestamp,
    /// The timestamp results get.
    result_timestamp: i64,
    pub(crate) error: Option<TaskError>,
}

impl<'a, Out> Collector<'a, Out> {
    pub(crate) fn new(
        outputs: &'a mut TypedOutputs<Out>,
        timestamp: &'a CurrentTimestamp,
        result_timestamp: i64,
    ) -> Self {
        Self { outputs, timestamp, result_timestamp, error: None }
    }

    /// Emits one result downstream.
    pub fn collect(&mut self, record: Out) {
        if self.error.is_none() {
            let next = &mut self.outputs.main;
            if let Err(error) = self.timestamp.scoped(self.result_timestamp, || next.push(record)) {
                self.error = Some(error);
            }
        }
    }

    /// Emits one result downstream with the event-time timestamp `timestamp`.
    pub fn collect_at(&mut self, record: Out, timestamp: i64) {
        if self.error.is_none() {
            let next = &mut self.outputs.main;
            if let Err(error) = self.timestamp.scoped(timestamp, || next.push(record)) {
                self.error = Some(error);
            }
        }
    }

    /// Emits one record to the side output `tag`.
    pub fn output<S: 'static>(&mut self, tag: &OutputTag<S>, record: S) {
        if self.error.is_none() {
            let sides = &mut self.outputs.sides;
            if let Err(error) = self.timestamp.scoped(self.result_timestamp, || sides.emit(tag, record)) {
                self.error = Some(error);
            }
        }
    }

    /// The error of a failed emission, if any.
    pub(crate) fn into_result(self) -> Result<(), TaskError> {
        self.error.map_or(Ok(()), Err)
    }
}
