//! A job started with `execute_async`: its savepoints, stop, cancel and end.

use std::path::PathBuf;
use std::time::Duration;

use weir_worker::control::JobCommand;
use weir_worker::{CancelToken, JobError};

use crate::{Error, Result};

/// What `execute` reports about a finished job.
#[derive(Clone, Debug)]
pub struct JobExecutionResult {
    /// The name the job was executed under.
    pub job_name: String,
    /// Wall time from start to the end of the last task.
    pub net_runtime: Duration,
}

/// A running job: take savepoints, stop or cancel it, wait for its end. A
/// client dropped without `wait` leaves the job running to its end.
pub struct JobClient {
    name: String,
    commands: crossbeam_channel::Sender<JobCommand>,
    cancel: CancelToken,
    thread: Option<std::thread::JoinHandle<Result<JobExecutionResult>>>,
}

impl JobClient {
    pub(crate) fn new(
        name: String,
        commands: crossbeam_channel::Sender<JobCommand>,
        cancel: CancelToken,
        thread: std::thread::JoinHandle<Result<JobExecutionResult>>,
    ) -> Self {
        Self { name, commands, cancel, thread: Some(thread) }
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes a savepoint and returns its directory, to start a job from
    /// (also at another parallelism) with `restore_from_checkpoint`.
    pub fn trigger_savepoint(&self) -> Result<PathBuf> {
        self.savepoint(false)
    }

    /// Takes a savepoint, commits what it covers, and stops the job; `wait`
    /// then returns successfully.
    pub fn stop_with_savepoint(&self) -> Result<PathBuf> {
        self.savepoint(true)
    }

    fn savepoint(&self, stop: bool) -> Result<PathBuf> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let failed = |message: String| Error::Job(JobError::Checkpointing { job: self.name.clone(), message });
        self.commands
            .send(JobCommand::Savepoint { stop, reply })
            .map_err(|_| failed("the job has ended; no savepoint was taken".into()))?;
        answer.recv().map_err(|_| failed("the job ended before the savepoint completed".into()))?.map_err(failed)
    }

    /// Cancels the job; `wait` then reports it cancelled.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits for the job to end.
    pub fn wait(mut self) -> Result<JobExecutionResult> {
        let thread = self.thread.take().ok_or_else(|| Error::InvalidJob("the job was waited for already".into()))?;
        thread
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidJob(format!("job '{}' panicked in the executor", self.name))))
    }
}
