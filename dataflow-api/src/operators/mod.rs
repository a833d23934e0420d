//! Built-in operators, one small struct per file. Each consumes records of
//! its input type and pushes results into the next operator of its chain.

pub mod filter;
pub mod flat_map;
pub mod keyed_process;
pub mod map;
pub mod process;
pub mod rolling;
pub mod timestamps;
pub mod window;

use std::sync::Arc;

use weir_common::{KeyGroupRange, MaxParallelism, OperatorId, SubtaskIndex};
use weir_state::keyed::{KeyedStateBackend, StateBackendKind, StateKey};
use weir_worker::TaskError;
use weir_worker::checkpoint::{FinishedState, RestoredCheckpoint};

use crate::RuntimeMode;
use crate::time::CurrentTimestamp;

/// What an operator instance knows about where it runs (Flink's `RuntimeContext`).
#[derive(Clone, Debug)]
pub struct OperatorContext {
    /// The operator's name, used in errors.
    pub operator_name: Arc<str>,
    /// The operator's stable id.
    pub operator_id: OperatorId,
    /// Which parallel instance this is.
    pub subtask: SubtaskIndex,
    /// The job's number of key groups.
    pub max_parallelism: MaxParallelism,
    /// The key groups this instance owns (for keyed operators).
    pub key_group_range: KeyGroupRange,
    /// Streaming or batch semantics.
    pub mode: RuntimeMode,
    /// Where keyed state lives; for RocksDB, the job's working directory.
    pub state_backend: StateBackendKind,
    /// The event-time timestamp of the record in flight (shared by the chain).
    pub timestamp: CurrentTimestamp,
    /// The checkpoint the job starts from, if any.
    pub restore: Option<Arc<RestoredCheckpoint>>,
    /// Unique to this run of the job (a restart is a new run).
    pub run_id: Arc<str>,
    /// With checkpointing: where operators leave what they could not commit
    /// yet when their task finishes.
    pub finishing: Option<Arc<FinishedState>>,
}

impl OperatorContext {
    /// An error of this operator with the given message.
    pub fn error(&self, message: impl Into<String>) -> TaskError {
        TaskError::Operator { operator: self.operator_name.to_string(), message: message.into() }
    }

    /// A failure to restore from the checkpoint the job starts from: the job
    /// may fall back to an earlier checkpoint.
    pub fn restore_error(&self, message: impl Into<String>) -> TaskError {
        TaskError::Restore { operator: self.operator_name.to_string(), message: message.into() }
    }

    /// The keyed state of this operator instance, in the configured backend
    /// (a RocksDB instance gets its own directory per operator and subtask).
    pub fn keyed_state_backend<K: StateKey>(&self) -> Result<KeyedStateBackend<K>, TaskError> {
        let kind = match &self.state_backend {
            StateBackendKind::Memory => StateBackendKind::Memory,
            StateBackendKind::RocksDb { dir } => {
                StateBackendKind::RocksDb { dir: dir.join(format!("{}-{}", self.operator_id, self.subtask.index)) }
            }
        };
        let mut backend = KeyedStateBackend::new(&kind, self.max_parallelism, self.key_group_range)
            .map_err(|error| self.error(format!("cannot create its keyed state: {error}")))?;
        if let Some(restore) = &self.restore {
            let snapshots = restore.keyed(self.operator_id);
            if !snapshots.is_empty() {
                backend.restore(restore.storage.as_ref(), snapshots).map_err(|error| {
                    self.restore_error(format!("keyed state of checkpoint {}: {error}", restore.metadata.id))
                })?;
            }
        }
        Ok(backend)
    }

    /// The entries (source splits, sink transactions) this instance gets from
    /// the checkpoint the job starts from; `None` when there is none, or it
    /// holds nothing of this operator.
    pub fn restored_entries(&self) -> Option<Vec<Vec<u8>>> {
        let restore = self.restore.as_ref().filter(|restore| restore.has(self.operator_id))?;
        Some(restore.entries(self.operator_id, self.subtask))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The context of subtask `index` of `parallelism` of an operator named "test".
    pub(crate) fn context(index: usize, parallelism: usize) -> OperatorContext {
        let max_parallelism = MaxParallelism::default();
        OperatorContext {
            operator_name: Arc::from("test"),
            operator_id: OperatorId::from_uid("test"),
            subtask: SubtaskIndex { index, parallelism },
            max_parallelism,
            key_group_range: KeyGroupRange::for_subtask(max_parallelism, parallelism, index),
            mode: RuntimeMode::Streaming,
            state_backend: StateBackendKind::Memory,
            timestamp: CurrentTimestamp::default(),
            restore: None,
            run_id: Arc::from("test-run"),
            finishing: None,
        }
    }
}
