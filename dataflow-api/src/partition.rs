//! Writers that end a chain: they spread records over the channels of one
//! output edge (forward, rebalance, broadcast, or by key group), buffering a
//! batch per channel so that a channel carries batches, not single records.

use std::marker::PhantomData;
use std::sync::Arc;

use weir_common::{KeyGroup, Partitioning};
use weir_worker::blame::BlameGuard;
use weir_worker::{Barrier, Batch, EdgeOutput, NO_TIMESTAMP, TaskError, Watermark};

use crate::checkpointing::ChainSnapshot;
use crate::operators::OperatorContext;
use crate::push::{ChainLink, ErasedPush, Push};
use crate::time::CurrentTimestamp;
use crate::{Data, data::Key};

/// Records per batch on a channel.
pub const BATCH_SIZE: usize = 1024;

/// Extracts the key of a record.
pub type KeySelector<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Builds the writer of one output edge for one task; typed on the record.
pub(crate) trait WriterFactory: Send + Sync {
    fn create(&self, output: EdgeOutput, context: &OperatorContext) -> Result<ErasedPush, TaskError>;
}

/// Writers for forward, rebalance and broadcast edges of `T` records.
pub(crate) struct PlainWriters<T>(PhantomData<fn(T)>);

impl<T> PlainWriters<T> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: Data> WriterFactory for PlainWriters<T> {
    fn create(&self, output: EdgeOutput, context: &OperatorContext) -> Result<ErasedPush, TaskError> {
        check_channels(&output, context)?;
        let partitioning = output.partitioning;
        let buffers = ChannelBuffers::new(output, context);
        Ok(match partitioning {
            Partitioning::Forward => ErasedPush::new::<T>(Box::new(ForwardWriter { buffers })),
            Partitioning::Broadcast => ErasedPush::new::<T>(Box::new(BroadcastWriter { buffers })),
            Partitioning::Rebalance => {
                let next_channel = context.subtask.index % buffers.len();
                ErasedPush::new::<T>(Box::new(RebalanceWriter { buffers, next_channel }))
            }
            Partitioning::Hash => {
                return Err(TaskError::Operator {
                    operator: context.operator_name.to_string(),
                    message: "a hash-partitioned edge has no key selector (a bug in graph construction)".into(),
                });
            }
        })
    }
}

/// Writers for edges partitioned by the key group of `K`.
pub(crate) struct HashWriters<T, K> {
    pub(crate) key: KeySelector<T, K>,
}

impl<T: Data, K: Key> WriterFactory for HashWriters<T, K> {
    fn create(&self, output: EdgeOutput, context: &OperatorContext) -> Result<ErasedPush, TaskError> {
        check_channels(&output, context)?;
        let max = context.max_parallelism;
        let channels = output.channels.len();
        let channel_of_group =
            (0..max.get()).map(|group| KeyGroup(group as u16).operator_index(max, channels)).collect();
        Ok(ErasedPush::new::<T>(Box::new(HashWriter {
            buffers: ChannelBuffers::new(output, context),
            channel_of_group,
            key: self.key.clone(),
            key_selector_name: format!("key selector after '{}'", context.operator_name),
            context: context.clone(),
            scratch: Vec::new(),
        })))
    }
}

/// An edge without channels cannot take records; the executor never builds
/// one, but the task API is public.
fn check_channels(output: &EdgeOutput, context: &OperatorContext) -> Result<(), TaskError> {
    if output.channels.is_empty() {
        return Err(context.error("an output edge has no channels"));
    }
    Ok(())
}

/// One pending batch per channel of an edge, with the records' timestamps
/// once any record of the batch has one.
struct ChannelBuffers<T> {
    output: EdgeOutput,
    buffers: Vec<Vec<T>>,
    timestamps: Vec<Vec<i64>>,
    current: CurrentTimestamp,
}

/// Seals one batch; timestamps, if any, are padded to one per record.
fn seal<T: Data>(records: Vec<T>, mut timestamps: Vec<i64>) -> Batch {
    if timestamps.is_empty() {
        return Batch::serializable(records, None);
    }
    timestamps.resize(records.len(), NO_TIMESTAMP);
    Batch::serializable(records, Some(timestamps))
}

impl<T: Data> ChannelBuffers<T> {
    fn new(output: EdgeOutput, context: &OperatorContext) -> Self {
        let buffers = output.channels.iter().map(|_| Vec::new()).collect();
        let timestamps = output.channels.iter().map(|_| Vec::new()).collect();
        Self { output, buffers, timestamps, current: context.timestamp.clone() }
    }

    fn len(&self) -> usize {
        self.buffers.len()
    }

    #[inline]
    fn add(&mut self, channel: usize, record: T) -> Result<(), TaskError> {
        let buffer = &mut self.buffers[channel];
        if buffer.capacity() == 0 {
            buffer.reserve_exact(BATCH_SIZE);
        }
        let timestamp = self.current.get();
        let timestamps = &mut self.timestamps[channel];
        if timestamp != NO_TIMESTAMP || !timestamps.is_empty() {
            timestamps.resize(buffer.len(), NO_TIMESTAMP);
            timestamps.push(timestamp);
        }
        buffer.push(record);
        if buffer.len() >= BATCH_SIZE {
            let full = seal(std::mem::take(buffer), std::mem::take(timestamps));
            self.output.send_batch(channel, full)?;
        }
        Ok(())
    }

    /// Appends a whole batch for one channel; a large batch without
    /// timestamps meeting an empty buffer is passed on as it is, without
    /// copying its records.
    fn add_batch(&mut self, channel: usize, records: Vec<T>) -> Result<(), TaskError> {
        if self.buffers[channel].is_empty() && records.len() >= BATCH_SIZE / 2 && self.current.get() == NO_TIMESTAMP {
            return self.output.send_batch(channel, Batch::serializable(records, None));
        }
        records.into_iter().try_for_each(|record| self.add(channel, record))
    }
}

/// The end of a chain: what follows is in other tasks, reached through the
/// edge's channels.
impl<T: Data> ChainLink for ChannelBuffers<T> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        None
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        for (channel, buffer) in self.buffers.iter_mut().enumerate() {
            if !buffer.is_empty() {
                let batch = seal(std::mem::take(buffer), std::mem::take(&mut self.timestamps[channel]));
                self.output.send_batch(channel, batch)?;
            }
        }
        Ok(())
    }

    /// Sends what is buffered, then the watermark, on every channel: records
    /// before a watermark must not arrive after it.
    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError> {
        self.flush()?;
        self.output.watermark(mark)
    }

    /// Sends what is buffered, then the barrier, on every channel: the
    /// records before the barrier belong to its checkpoint.
    fn checkpoint(&mut self, chain: &mut ChainSnapshot<'_>) -> Result<(), TaskError> {
        self.flush()?;
        self.output.barrier(Barrier { id: chain.id(), savepoint: chain.target.savepoint })
    }

    /// Sends what is buffered, then the end of the partition, on every channel.
    fn finish(&mut self) -> Result<(), TaskError> {
        self.flush()?;
        self.output.end_of_partition()
    }
}

struct ForwardWriter<T> {
    buffers: ChannelBuffers<T>,
}

impl<T: Data> Push<T> for ForwardWriter<T> {
    #[inline]
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        self.buffers.add(0, record)
    }

    fn push_batch(&mut self, records: Vec<T>) -> Result<(), TaskError> {
        self.buffers.add_batch(0, records)
    }
}

impl<T: Data> ChainLink for ForwardWriter<T> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(&mut self.buffers)
    }
}

struct RebalanceWriter<T> {
    buffers: ChannelBuffers<T>,
    /// Where the next record goes; each instance starts at its own index, so
    /// the first records of all instances do not land on one channel.
    next_channel: usize,
}

impl<T: Data> Push<T> for RebalanceWriter<T> {
    #[inline]
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        let channel = self.next_channel;
        self.next_channel = if channel + 1 == self.buffers.len() { 0 } else { channel + 1 };
        self.buffers.add(channel, record)
    }
}

impl<T: Data> ChainLink for RebalanceWriter<T> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(&mut self.buffers)
    }
}

struct BroadcastWriter<T> {
    buffers: ChannelBuffers<T>,
}

impl<T: Data> Push<T> for BroadcastWriter<T> {
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        let last = self.buffers.len() - 1;
        for channel in 0..last {
            self.buffers.add(channel, record.clone())?;
        }
        self.buffers.add(last, record)
    }
}

impl<T: Data> ChainLink for BroadcastWriter<T> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(&mut self.buffers)
    }
}

struct HashWriter<T, K> {
    buffers: ChannelBuffers<T>,
    /// The downstream subtask of every key group, computed once instead of a
    /// division per record.
    channel_of_group: Vec<usize>,
    key: KeySelector<T, K>,
    key_selector_name: String,
    context: OperatorContext,
    scratch: Vec<u8>,
}

impl<T: Data, K: Key> Push<T> for HashWriter<T, K> {
    #[inline]
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        let max = self.context.max_parallelism;
        let guard = BlameGuard::new(&self.key_selector_name);
        let key = (self.key)(&record);
        guard.disarm();
        let group = KeyGroup::of_key(&key, max, &mut self.scratch)
            .map_err(|error| TaskError::operator(self.context.operator_name.as_ref(), &error))?;
        let channel = self.channel_of_group[usize::from(group.0)];
        self.buffers.add(channel, record)
    }
}

impl<T: Data, K: Key> ChainLink for HashWriter<T, K> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(&mut self.buffers)
    }
}
