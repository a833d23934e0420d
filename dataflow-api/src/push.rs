//! How records move inside a chain: each operator pushes its output into the
//! next one (Flink's `ChainingOutput`), down to a sink or a partitioned
//! writer that ends the chain.

use std::any::Any;

use weir_worker::TaskError;

/// A consumer of records of type `T`: the next operator of a chain, a sink, or
/// a writer to other tasks.
pub trait Push<T>: Send {
    /// Consumes one record.
    fn push(&mut self, record: T) -> Result<(), TaskError>;

    /// Consumes a batch; operators may override it for per-batch work.
    fn push_batch(&mut self, records: Vec<T>) -> Result<(), TaskError> {
        records.into_iter().try_for_each(|record| self.push(record))
    }

    /// Sends records buffered for other tasks, or written to sinks, on their way.
    fn flush(&mut self) -> Result<(), TaskError>;

    /// The input has ended: emit final results, then finish everything downstream.
    fn finish(&mut self) -> Result<(), TaskError>;
}

/// A `Box<dyn Push<T>>` whose `T` is known only to the code that built it.
///
/// Chains are assembled from nodes of different record types at run time;
/// each node's builder knows its own types and downcasts once, at build time.
pub struct ErasedPush(Box<dyn Any + Send>);

impl ErasedPush {
    /// Erases the record type of `push`.
    pub fn new<T: 'static>(push: Box<dyn Push<T>>) -> Self {
        Self(Box::new(push))
    }

    /// Recovers the typed consumer; fails on a type mismatch, which is a bug in
    /// graph construction.
    pub fn into_typed<T: 'static>(self) -> Result<Box<dyn Push<T>>, TaskError> {
        self.0.downcast::<Box<dyn Push<T>>>().map(|push| *push).map_err(|_| TaskError::Operator {
            operator: "chain assembly".into(),
            message: format!("expected a consumer of {}", std::any::type_name::<T>()),
        })
    }
}

/// Hands every record to several consumers (a stream used more than once).
pub(crate) struct Tee<T> {
    pub(crate) targets: Vec<Box<dyn Push<T>>>,
}

impl<T: Clone + Send> Push<T> for Tee<T> {
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        let Some((last, rest)) = self.targets.split_last_mut() else {
            return Ok(());
        };
        for target in rest {
            target.push(record.clone())?;
        }
        last.push(record)
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.targets.iter_mut().try_for_each(|target| target.flush())
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        self.targets.iter_mut().try_for_each(|target| target.finish())
    }
}

/// Drops every record: the end of a stream nobody consumes, and the
/// discarding sink used by benchmarks.
pub(crate) struct Discard;

impl<T> Push<T> for Discard {
    #[inline]
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        drop(record);
        Ok(())
    }

    fn push_batch(&mut self, records: Vec<T>) -> Result<(), TaskError> {
        drop(records);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Joins the consumers of one node's output into one.
pub(crate) fn fan_out<T: Clone + Send + 'static>(mut targets: Vec<Box<dyn Push<T>>>) -> Box<dyn Push<T>> {
    match targets.len() {
        0 => Box::new(Discard),
        1 => targets.pop().unwrap_or_else(|| Box::new(Discard)),
        _ => Box::new(Tee { targets }),
    }
}

/// Feeds the batches of a task's input channels into the head of its chain.
pub(crate) struct ChannelInput<T> {
    pub(crate) head: Box<dyn Push<T>>,
    pub(crate) task_name: std::sync::Arc<str>,
}

impl<T: Send + 'static> weir_worker::InputTask for ChannelInput<T> {
    fn process(&mut self, _channel: usize, batch: weir_worker::Batch) -> Result<(), TaskError> {
        match batch.into_records::<T>() {
            Ok(records) => self.head.push_batch(records),
            Err(batch) => Err(TaskError::Operator {
                operator: self.task_name.to_string(),
                message: format!("received {batch:?} of an unexpected type; expected {}", std::any::type_name::<T>()),
            }),
        }
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.head.flush()
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        self.head.finish()
    }
}
