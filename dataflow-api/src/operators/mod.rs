//! Built-in operators, one small struct per file. Each consumes records of
//! its input type and pushes results into the next operator of its chain.

pub mod filter;
pub mod flat_map;
pub mod map;
pub mod process;
pub mod rolling;

use std::sync::Arc;

use weir_common::{KeyGroupRange, MaxParallelism, SubtaskIndex};
use weir_worker::TaskError;

use crate::RuntimeMode;

/// What an operator instance knows about where it runs (Flink's `RuntimeContext`).
#[derive(Clone, Debug)]
pub struct OperatorContext {
    /// The operator's name, used in errors.
    pub operator_name: Arc<str>,
    /// Which parallel instance this is.
    pub subtask: SubtaskIndex,
    /// The job's number of key groups.
    pub max_parallelism: MaxParallelism,
    /// The key groups this instance owns (for keyed operators).
    pub key_group_range: KeyGroupRange,
    /// Streaming or batch semantics.
    pub mode: RuntimeMode,
}

impl OperatorContext {
    /// An error of this operator with the given message.
    pub fn error(&self, message: impl Into<String>) -> TaskError {
        TaskError::Operator { operator: self.operator_name.to_string(), message: message.into() }
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
            subtask: SubtaskIndex { index, parallelism },
            max_parallelism,
            key_group_range: KeyGroupRange::for_subtask(max_parallelism, parallelism, index),
            mode: RuntimeMode::Streaming,
        }
    }
}
