//! How records move inside a chain: each operator pushes its output into the
//! next one (Flink's `ChainingOutput`), down to a sink or a partitioned
//! writer that ends the chain.
//!
//! A record's event-time timestamp does not travel as an argument: it sits in
//! the task's [`CurrentTimestamp`] while the record is pushed down the chain,
//! so operators that ignore time pay nothing for it.
//!
//! Everything else that travels a chain — flushes, watermarks, checkpoint
//! barriers, checkpoint completions, the end of input — is a call of
//! [`ChainLink`], the part of [`Push`] that does not depend on the record
//! type. Its defaults pass each call on to the link's [`next`](ChainLink::next),
//! so an operator implements only what it changes, as Arroyo's operators do.
//! The contract:
//!
//! - An operator that acts on a call (fires timers on a watermark, adds its
//!   state to a checkpoint, emits final results at the end) overrides it, does
//!   its work first and then passes the call on with [`pass_on`]. So what it
//!   emits reaches the next operator before the watermark or end that released
//!   it, and its state is in the snapshot before the barrier moves on.
//! - An operator may withhold a call (the timestamp assigner drops upstream
//!   watermarks), but only on purpose: forgetting to pass the end of input on
//!   leaves the tasks downstream waiting forever.
//! - The end of a chain (sinks, writers to other tasks, `Discard`) has no
//!   next link; the defaults then do nothing. Fan-outs (`Tee`, an operator's
//!   main and side outputs) have several, so they have no single `next` and
//!   override every call to pass it to each in turn.
//!
//! Records themselves stay on [`Push::push`]: one dynamic call per record per
//! operator, with no lifecycle work on that path.

use std::any::Any;

use weir_common::CheckpointId;
use weir_worker::checkpoint::{SnapshotTarget, TaskSnapshot};
use weir_worker::{NO_TIMESTAMP, TaskError, Watermark};

use crate::checkpointing::ChainSnapshot;
use crate::time::CurrentTimestamp;

/// One link of a chain as the calls that are not records see it.
pub trait ChainLink: Send {
    /// The link this one hands its output to, which the defaults below pass
    /// every call on to. `None` at the end of a chain (sinks, writers to other
    /// tasks), where the defaults do nothing, and in fan-outs, which override
    /// every call to pass it to each of their targets.
    fn next(&mut self) -> Option<&mut dyn ChainLink>;

    /// Sends records buffered for other tasks, or written to sinks, on their
    /// way. The task calls it at least once per flush interval, which makes
    /// it also the moment to look at the wall clock (processing-time timers,
    /// periodic watermarks, idleness).
    fn flush(&mut self) -> Result<(), TaskError> {
        pass_on(self, |next| next.flush())
    }

    /// Event time advanced (or the input went idle): fire what is due, then
    /// pass the watermark on.
    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError> {
        pass_on(self, |next| next.watermark(mark))
    }

    /// A checkpoint barrier: add this operator's state to `chain`, then pass
    /// the barrier on (writers send it to other tasks).
    fn checkpoint(&mut self, chain: &mut ChainSnapshot<'_>) -> Result<(), TaskError> {
        pass_on(self, |next| next.checkpoint(chain))
    }

    /// Checkpoint `id` completed: commit what it covers, then pass it on.
    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        pass_on(self, |next| next.checkpoint_complete(id))
    }

    /// The input has ended: emit final results, then finish everything downstream.
    fn finish(&mut self) -> Result<(), TaskError> {
        pass_on(self, |next| next.finish())
    }
}

/// Makes `call` on the next link of `link`, if it has one: what every default
/// of [`ChainLink`] does, and what an override calls once its own work is done.
pub fn pass_on<L: ChainLink + ?Sized>(
    link: &mut L,
    call: impl FnOnce(&mut dyn ChainLink) -> Result<(), TaskError>,
) -> Result<(), TaskError> {
    link.next().map_or(Ok(()), call)
}

/// A consumer of records of type `T`: the next operator of a chain, a sink, or
/// a writer to other tasks.
pub trait Push<T>: ChainLink {
    /// Consumes one record; its event-time timestamp, if it has one, is in
    /// the task's [`CurrentTimestamp`] meanwhile.
    fn push(&mut self, record: T) -> Result<(), TaskError>;

    /// Consumes a batch; operators may override it for per-batch work.
    fn push_batch(&mut self, records: Vec<T>) -> Result<(), TaskError> {
        records.into_iter().try_for_each(|record| self.push(record))
    }
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
}

impl<T: Send> ChainLink for Tee<T> {
    /// A fan-out: the calls below go to every target.
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        None
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.targets.iter_mut().try_for_each(|target| target.flush())
    }

    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError> {
        self.targets.iter_mut().try_for_each(|target| target.watermark(mark))
    }

    fn checkpoint(&mut self, chain: &mut ChainSnapshot<'_>) -> Result<(), TaskError> {
        self.targets.iter_mut().try_for_each(|target| target.checkpoint(chain))
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        self.targets.iter_mut().try_for_each(|target| target.checkpoint_complete(id))
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
}

impl ChainLink for Discard {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        None
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
    pub(crate) timestamp: CurrentTimestamp,
}

impl<T: crate::Data> weir_worker::InputTask for ChannelInput<T> {
    fn process(&mut self, _channel: usize, mut batch: weir_worker::Batch) -> Result<(), TaskError> {
        let timestamps = batch.take_timestamps();
        let records = batch
            .into_data::<T>()
            .map_err(|message| TaskError::Operator { operator: self.task_name.to_string(), message })?;
        match timestamps {
            None => {
                self.timestamp.set(NO_TIMESTAMP);
                self.head.push_batch(records)
            }
            Some(timestamps) => records.into_iter().zip(timestamps).try_for_each(|(record, timestamp)| {
                self.timestamp.set(timestamp);
                self.head.push(record)
            }),
        }
    }

    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError> {
        self.head.watermark(mark)
    }

    fn checkpoint(&mut self, target: &SnapshotTarget) -> Result<TaskSnapshot, TaskError> {
        let mut chain = ChainSnapshot::new(target);
        self.head.checkpoint(&mut chain)?;
        Ok(chain.into_snapshot())
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        self.head.checkpoint_complete(id)
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.head.flush()
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        self.head.finish()
    }
}

/// The consumers of one operator instance: its main output and its side
/// outputs (see [`OutputTag`](crate::OutputTag)), handed to the operator's
/// builder.
pub struct Outputs {
    pub(crate) main: ErasedPush,
    pub(crate) sides: SideOutputs,
}

impl Outputs {
    /// The main output, typed. Side outputs the operator never writes to still
    /// follow its flushes, watermarks and end, so their consumers finish.
    pub fn into_typed<T: Send + 'static>(self) -> Result<Box<dyn Push<T>>, TaskError> {
        let main = self.main.into_typed::<T>()?;
        if self.sides.is_empty() {
            return Ok(main);
        }
        Ok(Box::new(TypedOutputs { main, sides: self.sides }))
    }

    /// The main output, typed, and the side outputs, for operators that write
    /// to both.
    pub fn into_typed_with_sides<T: 'static>(self) -> Result<TypedOutputs<T>, TaskError> {
        Ok(TypedOutputs { main: self.main.into_typed::<T>()?, sides: self.sides })
    }
}

/// A side output's consumer with its record type erased.
pub(crate) trait SidePush: ChainLink {
    /// The typed [`SideSlot`] behind it, for [`SideOutputs::emit`] to downcast.
    fn as_any(&mut self) -> &mut dyn Any;
}

/// The typed consumer behind a [`SidePush`].
pub(crate) struct SideSlot<S>(pub(crate) Box<dyn Push<S>>);

impl<S: 'static> ChainLink for SideSlot<S> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(self.0.as_mut())
    }
}

impl<S: 'static> SidePush for SideSlot<S> {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// The side outputs of one operator instance, by tag id.
#[derive(Default)]
pub struct SideOutputs {
    slots: Vec<(u64, Box<dyn SidePush>)>,
}

impl SideOutputs {
    pub(crate) fn new(slots: Vec<(u64, Box<dyn SidePush>)>) -> Self {
        Self { slots }
    }

    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Emits `record` to the side output `tag`; a side output nobody consumes
    /// drops it, as in Flink.
    pub fn emit<S: 'static>(&mut self, tag: &crate::OutputTag<S>, record: S) -> Result<(), TaskError> {
        let Some((_, slot)) = self.slots.iter_mut().find(|(id, _)| *id == tag.id()) else {
            return Ok(());
        };
        match slot.as_any().downcast_mut::<SideSlot<S>>() {
            Some(typed) => typed.0.push(record),
            None => Err(TaskError::Operator {
                operator: format!("side output '{}'", tag.name()),
                message: format!(
                    "its consumers expect another record type than {}; two output tags share the name",
                    std::any::type_name::<S>()
                ),
            }),
        }
    }
}

impl ChainLink for SideOutputs {
    /// A fan-out: the calls below go to every side output.
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        None
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.slots.iter_mut().try_for_each(|(_, slot)| slot.flush())
    }

    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError> {
        self.slots.iter_mut().try_for_each(|(_, slot)| slot.watermark(mark))
    }

    fn checkpoint(&mut self, chain: &mut ChainSnapshot<'_>) -> Result<(), TaskError> {
        self.slots.iter_mut().try_for_each(|(_, slot)| slot.checkpoint(chain))
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        self.slots.iter_mut().try_for_each(|(_, slot)| slot.checkpoint_complete(id))
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        self.slots.iter_mut().try_for_each(|(_, slot)| slot.finish())
    }
}

/// An operator's outputs with the main one typed: what operators that write
/// side outputs hold (through a [`Collector`](crate::Collector)), and the
/// main output of the others when side outputs are consumed, which must
/// still see their flushes, watermarks and end.
pub struct TypedOutputs<T> {
    pub(crate) main: Box<dyn Push<T>>,
    pub(crate) sides: SideOutputs,
}

impl<T> Push<T> for TypedOutputs<T> {
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        self.main.push(record)
    }

    fn push_batch(&mut self, records: Vec<T>) -> Result<(), TaskError> {
        self.main.push_batch(records)
    }
}

impl<T> ChainLink for TypedOutputs<T> {
    /// A fan-out: the calls below go to the main output, then to the side
    /// outputs.
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        None
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.main.flush()?;
        self.sides.flush()
    }

    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError> {
        self.main.watermark(mark)?;
        self.sides.watermark(mark)
    }

    fn checkpoint(&mut self, chain: &mut ChainSnapshot<'_>) -> Result<(), TaskError> {
        self.main.checkpoint(chain)?;
        self.sides.checkpoint(chain)
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        self.main.checkpoint_complete(id)?;
        self.sides.checkpoint_complete(id)
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        self.main.finish()?;
        self.sides.finish()
    }
}
