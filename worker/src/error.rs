//! Errors of tasks and of whole job executions.

use weir_common::{JobGraphError, SubtaskIndex};

/// Why one task stopped early.
#[derive(Clone, Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum TaskError {
    /// An operator failed: user code panicked or returned an error, or a source
    /// or sink hit an I/O error. This is a root cause.
    #[error("operator '{operator}' failed: {message}")]
    Operator {
        /// The name of the operator that failed.
        operator: String,
        /// What went wrong, with its causes.
        message: String,
    },
    /// An operator could not restore its state from the checkpoint the job
    /// started from (a corrupt or missing file): the job may fall back to an
    /// earlier checkpoint.
    #[error("operator '{operator}' could not restore its state: {message}")]
    Restore {
        /// The name of the operator.
        operator: String,
        /// What went wrong, naming the file.
        message: String,
    },
    /// The task was stopped because the job is being cancelled, usually since
    /// another task failed. Never a root cause.
    #[error("the task was cancelled")]
    Cancelled,
}

impl TaskError {
    /// An operator failure from an error and its chain of sources.
    pub fn operator(operator: impl Into<String>, error: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Operator { operator: operator.into(), message }
    }
}

/// Why a job execution did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A task failed; the first failure is the root cause, the rest were cancelled.
    #[error("job '{job}' failed: operator '{operator}' in task '{task}' (subtask {subtask}): {message}")]
    TaskFailed {
        /// The job's name, as given to `execute`.
        job: String,
        /// The name of the failed task's chain.
        task: String,
        /// Which parallel instance failed.
        subtask: SubtaskIndex,
        /// The operator that failed.
        operator: String,
        /// What went wrong.
        message: String,
    },
    /// The job was cancelled before it finished.
    #[error("job '{0}' was cancelled")]
    Cancelled(String),
    /// The job graph is not well formed.
    #[error(transparent)]
    InvalidGraph(#[from] JobGraphError),
    /// The checkpoint to start from cannot be used.
    #[error("cannot restore job '{job}' from checkpoint: {message}")]
    Restore {
        /// The job's name, as given to `execute`.
        job: String,
        /// What is wrong, naming the checkpoint or file.
        message: String,
    },
    /// An operator failed to restore its state from checkpoint `checkpoint`.
    #[error("job '{job}' could not restore from checkpoint {checkpoint}: operator '{operator}': {message}")]
    RestoreFailed {
        /// The job's name, as given to `execute`.
        job: String,
        /// The id of the checkpoint restored from (0 when none).
        checkpoint: u64,
        /// The operator whose state did not restore.
        operator: String,
        /// What went wrong, naming the file.
        message: String,
    },
    /// Checkpoints failed more often in a row than the job tolerates.
    #[error("job '{job}' failed: {message}")]
    Checkpointing {
        /// The job's name, as given to `execute`.
        job: String,
        /// Which checkpoint failed and why.
        message: String,
    },
    /// The processes of a job spread over a cluster lost each other.
    #[error("job '{job}' failed: {message}")]
    Exchange {
        /// The job's name, as given to `execute`.
        job: String,
        /// Which connection failed and why.
        message: String,
    },
    /// Tasks did not stop after the run was cancelled (Flink's task
    /// cancellation watchdog): their threads are abandoned.
    #[error(
        "job '{job}': tasks {tasks:?} did not stop within {timeout:?} of the run's cancellation \
         ({cause}); their threads are abandoned (a user function that blocks without end keeps them)"
    )]
    CancellationTimeout {
        /// The job's name, as given to `execute`.
        job: String,
        /// The stuck tasks, as `vertex-subtask`.
        tasks: Vec<String>,
        /// How long they had.
        timeout: std::time::Duration,
        /// What cancelled the run: its root cause, or the user's cancellation.
        cause: String,
    },
    /// The operating system refused a thread for a task.
    #[error("could not start a thread for task '{task}': {source}")]
    Spawn {
        /// The task's name.
        task: String,
        /// The OS error.
        source: std::io::Error,
    },
}
