//! What one run of a job knows while it runs, whatever this process's role:
//! its cancel tokens, how many tasks it still awaits, and its first failure.

use weir_common::{JobGraph, SubtaskIndex, TaskKey};

use crate::{CancelToken, JobError, TaskError};

/// The state of one run, shared by the run loop and its role.
pub(super) struct RunState<'g> {
    pub graph: &'g JobGraph,
    /// Cancelling the job cancels the run.
    pub job_cancel: CancelToken,
    /// Cancels this run only, so a failed run can be replaced.
    pub cancel: CancelToken,
    /// The root cause; later failures only follow it.
    pub failure: Option<JobError>,
    /// A task ended cancelled (after a failure elsewhere, or a stop).
    pub cancelled: bool,
    /// Tasks, here and (on the leader) elsewhere, that have not ended.
    pub running: usize,
    /// The checkpoint the run restored from, named when a restore fails.
    restored_from: u64,
    /// Tasks of this process that have not ended.
    pub local_tasks: std::collections::BTreeSet<TaskKey>,
    /// When the run was first seen cancelled: the watchdog counts from it.
    cancelled_at: Option<std::time::Instant>,
}

impl<'g> RunState<'g> {
    pub fn new(graph: &'g JobGraph, job_cancel: &CancelToken, restored_from: Option<u64>) -> Self {
        Self {
            graph,
            job_cancel: job_cancel.clone(),
            cancel: job_cancel.child(),
            failure: None,
            cancelled: false,
            running: 0,
            restored_from: restored_from.unwrap_or(0),
            local_tasks: Default::default(),
            cancelled_at: None,
        }
    }

    /// The tasks of this process still running `timeout` after the run was
    /// cancelled, if any (Flink's task cancellation watchdog).
    pub fn stuck_tasks(&mut self, timeout: std::time::Duration) -> Option<Vec<TaskKey>> {
        if !self.cancel.is_cancelled() || self.local_tasks.is_empty() {
            return None;
        }
        let since = *self.cancelled_at.get_or_insert_with(std::time::Instant::now);
        (since.elapsed() > timeout).then(|| self.local_tasks.iter().copied().collect())
    }

    /// Records `error` unless an earlier failure is the root cause, and cancels the run.
    pub fn fail(&mut self, error: JobError) {
        self.failure.get_or_insert(error);
        self.cancel.cancel();
    }

    pub fn exchange_error(&self, message: String) -> JobError {
        JobError::Exchange { job: self.graph.name.clone(), message }
    }

    pub fn checkpointing_error(&self, message: String) -> JobError {
        JobError::Checkpointing { job: self.graph.name.clone(), message }
    }

    /// A task ended: the first operator or restore failure is the root
    /// cause; cancellations only follow one.
    pub fn task_ended(&mut self, task: TaskKey, result: Result<(), TaskError>) {
        self.running = self.running.saturating_sub(1);
        self.local_tasks.remove(&task);
        let vertex = self.graph.vertex(task.vertex);
        let (name, subtask) = (&vertex.name, SubtaskIndex { index: task.subtask, parallelism: vertex.parallelism });
        let job = &self.graph.name;
        match result {
            // Tasks cancelled because of a failure may report before the failed one does: the
            // operator failure wins, whatever the order.
            Err(TaskError::Operator { operator, message }) if self.failure.is_none() => {
                tracing::error!(%job, task = %name, %subtask, %operator, %message, "task failed");
                let task = name.clone();
                self.failure = Some(JobError::TaskFailed { job: job.clone(), task, subtask, operator, message });
            }
            Err(TaskError::Restore { operator, message }) if self.failure.is_none() => {
                tracing::error!(%job, task = %name, %subtask, %operator, %message, "restore failed");
                let checkpoint = self.restored_from;
                self.failure = Some(JobError::RestoreFailed { job: job.clone(), checkpoint, operator, message });
            }
            Err(TaskError::Cancelled) => self.cancelled = true,
            // A finishing task reports to the checkpoint driver itself.
            Ok(()) => {}
            Err(TaskError::Operator { .. } | TaskError::Restore { .. }) => {}
        }
    }
}
