//! The leader's part of a job spread over processes (process 0, as Flink's
//! JobMaster): it awaits the other processes' tasks, feeds their checkpoint
//! reports to its checkpoint driver, asks a follower to run a finished
//! task's commits once a checkpoint holds its final state, cancels every
//! follower when the run fails, and tells them how the job ended.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use weir_common::TaskKey;

use super::state::RunState;
use crate::checkpoint::{CheckpointReport, FinalCommit, TaskReport};
use crate::control::{FollowerLines, FromFollower, ToFollower, ToLeader};

/// How long the leader waits for followers to close their control streams at the job's end.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Leader {
    lines: Arc<dyn FollowerLines>,
    pub inbox: Receiver<(usize, FromFollower)>,
    /// The process hosting each slice (subtask index).
    slice_process: Vec<usize>,
    /// Tasks other processes run that have not reported their end.
    remote_tasks: BTreeSet<TaskKey>,
    /// Followers whose control stream is gone.
    lost: BTreeSet<usize>,
    cancel_sent: bool,
}

impl Leader {
    pub fn new(
        lines: Arc<dyn FollowerLines>,
        inbox: Receiver<(usize, FromFollower)>,
        slice_process: Vec<usize>,
    ) -> Self {
        Self { lines, inbox, slice_process, remote_tasks: BTreeSet::new(), lost: BTreeSet::new(), cancel_sent: false }
    }

    pub fn followers(&self) -> BTreeSet<usize> {
        self.slice_process.iter().copied().filter(|process| *process != 0).collect()
    }

    /// The run awaits the end of `tasks`, which other processes run.
    pub fn await_remote(&mut self, tasks: BTreeSet<TaskKey>) -> usize {
        self.remote_tasks = tasks;
        self.remote_tasks.len()
    }

    /// A follower spoke or was lost; what is for the checkpoint driver comes back.
    pub fn on_message(&mut self, process: usize, item: FromFollower, run: &mut RunState<'_>) -> Option<TaskReport> {
        if let FromFollower::Message(message) = &item
            && let Some(task) = named_task(message)
            && !self.runs_in(process, task, run)
        {
            let message = format!("process {process} reported on task {task}, which it does not run");
            run.fail(run.exchange_error(message));
            return None;
        }
        match item {
            FromFollower::Message(ToLeader::Done { task, outcome }) => {
                if self.remote_tasks.remove(&task) {
                    run.task_ended(task, outcome);
                }
                None
            }
            FromFollower::Message(ToLeader::Checkpoint(report)) => Some(TaskReport::Checkpoint(report)),
            FromFollower::Message(ToLeader::Finished { task, snapshot }) => {
                Some(TaskReport::Finished { task, snapshot, commits: vec![self.commit_in(process, task)] })
            }
            FromFollower::Message(ToLeader::CommitFailed { message }) => {
                run.fail(run.checkpointing_error(message));
                None
            }
            FromFollower::Message(ToLeader::Hello { .. }) => None,
            FromFollower::Lost(message) => {
                self.lose(process, message, run);
                None
            }
        }
    }

    /// Whether `task` is a task of the job that runs in follower `process`.
    fn runs_in(&self, process: usize, task: TaskKey, run: &RunState<'_>) -> bool {
        let vertex = run.graph.vertices.get(task.vertex.0 as usize);
        vertex.is_some_and(|vertex| task.subtask < vertex.parallelism)
            && self.slice_process.get(task.subtask) == Some(&process)
    }

    /// The commits of a follower's finished task stay in the follower; this
    /// one asks it to run them.
    fn commit_in(&self, process: usize, task: TaskKey) -> FinalCommit {
        let lines = self.lines.clone();
        Box::new(move || {
            lines.send(process, &ToFollower::CommitFinished { task });
            Ok(())
        })
    }

    /// A follower is gone: the run fails, and its tasks will not report any more.
    fn lose(&mut self, process: usize, message: String, run: &mut RunState<'_>) {
        self.lost.insert(process);
        run.fail(run.exchange_error(message));
        let slice_process = &self.slice_process;
        let before = self.remote_tasks.len();
        self.remote_tasks.retain(|task| slice_process.get(task.subtask).copied().unwrap_or(0) != process);
        run.running = run.running.saturating_sub(before - self.remote_tasks.len());
    }

    /// Once the run fails, every follower is told to cancel (once).
    pub fn cancel_followers_if_failing(&mut self, run: &RunState<'_>) {
        if self.cancel_sent || (run.failure.is_none() && !run.cancel.is_cancelled()) {
            return;
        }
        self.cancel_sent = true;
        for follower in self.followers() {
            self.lines.send(follower, &ToFollower::Cancel);
        }
    }

    /// The first failure of the transport, if any.
    pub fn transport_failure(&self) -> Option<String> {
        self.lines.transport_failure()
    }

    /// Tells the followers how the job ended and waits (a while) for them to
    /// close their control streams, so none mistakes the leader's exit for a
    /// failure. A follower's failing last commit fails the job.
    pub fn finish(&self, success: bool, unreachable: &BTreeSet<usize>) -> Result<(), String> {
        let mut open: BTreeSet<usize> = self.followers().difference(unreachable).copied().collect();
        open.retain(|follower| !self.lost.contains(follower));
        for follower in &open {
            self.lines.send(*follower, &ToFollower::JobEnd { success });
        }
        let deadline = Instant::now() + FINISH_TIMEOUT;
        let mut commit_failure = None;
        while !open.is_empty() {
            match self.inbox.recv_deadline(deadline) {
                Ok((process, FromFollower::Lost(_))) => {
                    open.remove(&process);
                }
                // The last commits ran as the job ended; one failed.
                Ok((_, FromFollower::Message(ToLeader::CommitFailed { message }))) => {
                    commit_failure.get_or_insert(message);
                }
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(processes = ?open, "followers did not close their control streams");
                    break;
                }
            }
        }
        self.lines.close();
        commit_failure.map_or(Ok(()), Err)
    }
}

/// The task a follower's message is about, if any.
fn named_task(message: &ToLeader) -> Option<TaskKey> {
    match message {
        ToLeader::Checkpoint(CheckpointReport::Ack { task, .. } | CheckpointReport::Decline { task, .. })
        | ToLeader::Finished { task, .. }
        | ToLeader::Done { task, .. } => Some(*task),
        ToLeader::Hello { .. } | ToLeader::CommitFailed { .. } => None,
    }
}
