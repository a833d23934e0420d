//! Sources: where records enter a job.
//!
//! A [`Source`] describes what to read and is shared by all parallel
//! instances; each instance creates its own [`SourceReader`] that reads its
//! share (its split), so the split assignment is a pure function of the
//! subtask index and parallelism.

pub mod collection;
pub mod generator;
pub mod stdin;
pub(crate) mod strided;
pub mod text_file;

use std::time::Duration;

use weir_common::CheckpointId;
use weir_worker::checkpoint::{OperatorSnapshot, SnapshotTarget, TaskSnapshot};
use weir_worker::{SourceStep, SourceTask, TaskError};

use crate::Data;
use crate::checkpointing::ChainSnapshot;
use crate::operators::OperatorContext;
use crate::partition::BATCH_SIZE;
use crate::push::Push;

/// A description of a source, turned into one reader per parallel instance.
pub trait Source: Send + Sync + 'static {
    /// The records it produces.
    type Output: Data;

    /// Default operator name, e.g. `Source: File input.txt`.
    fn name(&self) -> String;

    /// Whether it ends by itself.
    fn is_bounded(&self) -> bool;

    /// The reader of the share of subtask `context.subtask`; when the job
    /// starts from a checkpoint, the reader continues from the positions
    /// `context.restored_entries()` hands it.
    fn create_reader(&self, context: &OperatorContext) -> Result<Box<dyn SourceReader<Self::Output>>, TaskError>;
}

/// Reads one parallel instance's share of a source.
pub trait SourceReader<T>: Send {
    /// Pushes at most `max` records into `out`.
    fn read(&mut self, out: &mut dyn Push<T>, max: usize) -> Result<ReadStatus, TaskError>;

    /// The reader's position, as entries a restore may deal out to any
    /// subtask (one per split): reading resumes after the last record pushed.
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, TaskError>;
}

/// What a call to [`SourceReader::read`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// More records may be available right away.
    More,
    /// Nothing to read for a while (for example a rate limit).
    Idle(Duration),
    /// The share is exhausted.
    Finished,
}

/// Runs a reader as the head of a chain.
pub(crate) struct SourceDriver<T> {
    pub(crate) context: OperatorContext,
    pub(crate) reader: Box<dyn SourceReader<T>>,
    pub(crate) next: Box<dyn Push<T>>,
}

impl<T: Send> SourceTask for SourceDriver<T> {
    fn emit(&mut self) -> Result<SourceStep, TaskError> {
        Ok(match self.reader.read(self.next.as_mut(), BATCH_SIZE)? {
            ReadStatus::More => SourceStep::Emitted,
            ReadStatus::Idle(pause) => SourceStep::Idle(pause),
            ReadStatus::Finished => SourceStep::Finished,
        })
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.next.flush()
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        if let Some(finishing) = &self.context.finishing {
            // Exhausted: later checkpoints record that nothing is left to read.
            finishing.record(self.context.operator_id, OperatorSnapshot::default());
        }
        self.next.finish()
    }

    fn checkpoint(&mut self, target: &SnapshotTarget) -> Result<TaskSnapshot, TaskError> {
        let mut chain = ChainSnapshot::new(target);
        let entries = self.reader.snapshot()?;
        chain.add(self.context.operator_id, OperatorSnapshot { keyed: None, entries });
        self.next.checkpoint(&mut chain)?;
        Ok(chain.into_snapshot())
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        self.next.checkpoint_complete(id)
    }
}
