//! Runs a whole job graph in this process: one thread per task, bounded
//! channels between tasks, fail-fast cancellation, and — when checkpointing
//! is on — the checkpoint driver and restarts from the latest completed
//! checkpoint.
//!
//! A job run ends when every task has returned. The first task that fails
//! with a root cause cancels the others; the run waits for all of them, so no
//! thread of the job outlives it. Then the restart strategy decides whether
//! the job runs again from its latest completed checkpoint (sources rewind,
//! operators restore their state, sinks discard what no checkpoint covered)
//! or fails with that root cause.
//!
//! Parts: [`LocalExecutor::execute`] here (validation, restarts, cleanup);
//! one run in `run` (its loop), with the roles of a job spread over
//! processes in `leader` and `follower`; planning and wiring in `plan`; task
//! threads in `tasks`; restart strategies in [`restart`].

mod follower;
mod leader;
mod plan;
pub mod restart;
mod run;
mod state;
mod tasks;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use weir_common::{JobGraph, JobGraphError};

pub use restart::RestartStrategy;

use crate::checkpoint::{CheckpointSettings, JobCheckpoints, RestoredCheckpoint};
use crate::control::JobCommand;
use crate::exchange::Placement;
use crate::{CancelToken, JobError, VertexFactory};

/// Tuning of the local execution.
#[derive(Clone)]
pub struct ExecutorConfig {
    /// Capacity of each channel, in batches: the backpressure bound.
    pub channel_capacity: usize,
    /// Longest time a record may wait in a partly filled output buffer.
    pub flush_interval: Duration,
    /// Checkpoints, when enabled.
    pub checkpoints: Option<CheckpointSettings>,
    /// What happens when a task fails.
    pub restart: RestartStrategy,
    /// Where this process stands when the job runs in several processes of
    /// a cluster; `None` runs every task here.
    pub placement: Option<Arc<Placement>>,
    /// How long tasks have to stop once their run is cancelled before the
    /// run gives up on them (Flink's `task.cancellation.timeout`).
    pub cancellation_timeout: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            channel_capacity: 8,
            flush_interval: Duration::from_millis(100),
            checkpoints: None,
            restart: RestartStrategy::None,
            placement: None,
            cancellation_timeout: Duration::from_secs(180),
        }
    }
}

impl std::fmt::Debug for ExecutorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorConfig")
            .field("channel_capacity", &self.channel_capacity)
            .field("flush_interval", &self.flush_interval)
            .field("checkpoints", &self.checkpoints.as_ref().map(|settings| &settings.config))
            .field("restart", &self.restart)
            .field("placement", &self.placement)
            .finish()
    }
}

/// Executes job graphs inside the current process.
#[derive(Clone, Debug, Default)]
pub struct LocalExecutor {
    config: ExecutorConfig,
}

/// What every run of one `execute` works on.
struct JobInputs<'a> {
    graph: &'a JobGraph,
    factories: &'a [Arc<dyn VertexFactory>],
    /// Cancels the job, whichever run is current.
    cancel: &'a CancelToken,
    commands: Option<&'a Receiver<JobCommand>>,
}

/// How one run of the job ended.
enum RunOutcome {
    Finished,
    Failed(JobError),
}

impl LocalExecutor {
    /// An executor with the given tuning.
    pub fn new(config: ExecutorConfig) -> Self {
        Self { config }
    }

    /// Runs `graph` to completion. `factories[i]` builds the tasks of vertex
    /// `i`; `restore` is the checkpoint or savepoint to start from, followed
    /// by older ones to fall back to.
    pub fn execute(
        &self,
        graph: &JobGraph,
        factories: &[Arc<dyn VertexFactory>],
        cancel: &CancelToken,
        restore: Vec<Arc<RestoredCheckpoint>>,
        commands: Option<Receiver<JobCommand>>,
    ) -> Result<(), JobError> {
        check_job(graph, factories, &restore)?;
        let job_id = match &self.config.placement {
            Some(placement) => placement.run_id.clone(),
            None => weir_state::storage::unique_id(&graph.name),
        };
        let mut job = JobCheckpoints::new(job_id, restore);
        let inputs = JobInputs { graph, factories, cancel, commands: commands.as_ref() };
        let outcome = self.run_with_restarts(&inputs, &mut job);
        self.clean_up(&outcome, &mut job);
        outcome
    }

    /// Runs the job until it finishes, or fails with no restart left.
    fn run_with_restarts(&self, inputs: &JobInputs<'_>, job: &mut JobCheckpoints) -> Result<(), JobError> {
        let (graph, cancel) = (inputs.graph, inputs.cancel);
        let mut failures: Vec<u64> = Vec::new();
        loop {
            let error = match self.run_once(inputs, job) {
                RunOutcome::Finished => return Ok(()),
                RunOutcome::Failed(_) if job.stopped => return Ok(()),
                RunOutcome::Failed(error) => error,
            };
            match error {
                // The processes of a cluster job run once: the coordinator
                // deploys the whole job again (see `launch::EXIT_RESTART`).
                _ if self.config.placement.is_some() => return Err(error),
                // Abandoned threads may still hold what a new run needs.
                JobError::Cancelled(_) | JobError::Spawn { .. } | JobError::CancellationTimeout { .. } => {
                    return Err(error);
                }
                _ if cancel.is_cancelled() => return Err(error),
                JobError::RestoreFailed { .. } => {
                    let storage = self.config.checkpoints.as_ref().map(|settings| &settings.storage);
                    if !job.fall_back(storage) {
                        return Err(error);
                    }
                    tracing::warn!(job = %graph.name, %error, fallback = ?job.restore_id(), "falling back to an earlier checkpoint");
                }
                _ => {
                    failures.push(weir_common::launch::epoch_ms());
                    let attempt = failures.len();
                    let Some(delay) = self.config.restart.delay_after(&failures) else {
                        if attempt > 1 {
                            tracing::error!(job = %graph.name, failures = attempt, "no restart left");
                        }
                        return Err(error);
                    };
                    let from = job.restore_id();
                    tracing::warn!(job = %graph.name, %error, attempt, ?delay, from_checkpoint = ?from, "restarting the job");
                    metrics::counter!("weir_job_restarts_total").increment(1);
                    std::thread::sleep(delay);
                }
            }
        }
    }

    /// A finished job leaves no checkpoint behind; a cancelled one keeps them
    /// only when asked to; a failed one keeps them to restore from.
    fn clean_up(&self, outcome: &Result<(), JobError>, job: &mut JobCheckpoints) {
        let Some(settings) = &self.config.checkpoints else { return };
        if self.config.placement.is_some() {
            // In a cluster the coordinator deletes them once it recorded the
            // job's end: until then they are what a redeployment resumes from.
            return;
        }
        let delete = match outcome {
            Ok(()) => true,
            Err(JobError::Cancelled(_)) => !settings.retain_on_cancel,
            Err(_) => false,
        };
        if delete {
            job.discard_all(settings.storage.as_ref());
        }
    }
}

/// The graph is valid, has a factory per vertex, and every checkpoint to
/// restore from fits it.
fn check_job(
    graph: &JobGraph,
    factories: &[Arc<dyn VertexFactory>],
    restore: &[Arc<RestoredCheckpoint>],
) -> Result<(), JobError> {
    graph.validate()?;
    if factories.len() != graph.vertices.len() {
        return Err(JobError::InvalidGraph(JobGraphError::Invalid(format!(
            "{} vertices but {} task factories",
            graph.vertices.len(),
            factories.len()
        ))));
    }
    restore.iter().try_for_each(|candidate| check_restore(graph, candidate))
}

/// Every operator with state in the checkpoint must exist in the job, and the
/// number of key groups must match.
fn check_restore(graph: &JobGraph, restore: &RestoredCheckpoint) -> Result<(), JobError> {
    let failed = |message: String| JobError::Restore { job: graph.name.clone(), message };
    let max = graph.max_parallelism.get() as u32;
    if restore.metadata.max_parallelism != max {
        return Err(failed(format!(
            "checkpoint {} was taken with max parallelism {}, the job has {max}; the number of key groups \
             cannot change (set --max-parallelism {})",
            restore.metadata.id, restore.metadata.max_parallelism, restore.metadata.max_parallelism
        )));
    }
    let known: std::collections::HashSet<_> =
        graph.vertices.iter().flat_map(|vertex| vertex.operators.iter().map(|operator| operator.id)).collect();
    if let Some(unknown) = restore.operators().find(|operator| !known.contains(*operator)) {
        return Err(failed(format!(
            "checkpoint {} holds state of operator {unknown}, which this job does not have; \
             give operators stable uids (.uid(\"...\")) so that their state finds them again",
            restore.metadata.id
        )));
    }
    Ok(())
}
