//! A follower's part of a job spread over processes: it forwards its tasks'
//! reports and ends to the leader, relays the leader's checkpoint commands
//! to its tasks, runs a finished task's commits only when the leader says a
//! checkpoint holds its final state, and waits for the leader's word on how
//! the job ended.

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use weir_common::TaskKey;

use super::state::RunState;
use crate::TaskError;
use crate::checkpoint::{FinalCommit, TaskLines, TaskReport};
use crate::control::{FromLeader, LeaderLine, ToFollower, ToLeader};

pub(super) struct Follower {
    line: Arc<dyn LeaderLine>,
    pub inbox: Receiver<FromLeader>,
    /// Commits of finished tasks, run when the leader says so.
    held_commits: BTreeMap<TaskKey, Vec<FinalCommit>>,
    /// The leader's word on how the job ended: `Some(true)` finished.
    job_end: Option<bool>,
    leader_gone: bool,
}

impl Follower {
    pub fn new(line: Arc<dyn LeaderLine>, inbox: Receiver<FromLeader>) -> Self {
        Self { line, inbox, held_commits: BTreeMap::new(), job_end: None, leader_gone: false }
    }

    /// Whether the run must go on after its last task ended: the leader has
    /// not said how the job ended, and is still there to say it.
    pub fn awaits_job_end(&self) -> bool {
        self.job_end.is_none() && !self.leader_gone
    }

    /// Sends a task's report to the leader; the commits of a finished task
    /// stay here until the leader asks for them.
    pub fn forward(&mut self, report: TaskReport) {
        let message = match report {
            TaskReport::Checkpoint(report) => ToLeader::Checkpoint(report),
            TaskReport::Finished { task, snapshot, commits } => {
                self.held_commits.insert(task, commits);
                ToLeader::Finished { task, snapshot }
            }
        };
        self.line.send(&message);
    }

    /// A task of this process returned. It reported (its final state) before
    /// it returned, on another channel: what it reported goes first, or the
    /// leader could end the job without its commits.
    pub fn task_done(&mut self, task: TaskKey, outcome: &Result<(), TaskError>, reports: &Receiver<TaskReport>) {
        while let Ok(report) = reports.try_recv() {
            self.forward(report);
        }
        self.line.send(&ToLeader::Done { task, outcome: outcome.clone() });
    }

    /// The leader spoke or was lost.
    pub fn on_message(&mut self, item: FromLeader, lines: &TaskLines, run: &mut RunState<'_>) {
        match item {
            FromLeader::Message(ToFollower::Task { task, command }) => lines.send_local(task, command),
            FromLeader::Message(ToFollower::CommitFinished { task }) => self.commit(task, run),
            FromLeader::Message(ToFollower::Cancel) => run.cancel.cancel(),
            FromLeader::Message(ToFollower::JobEnd { success }) => self.job_end = Some(success),
            FromLeader::Lost(message) => {
                self.leader_gone = true;
                if self.job_end.is_none() {
                    run.fail(run.exchange_error(message));
                }
            }
        }
    }

    fn commit(&mut self, task: TaskKey, run: &mut RunState<'_>) {
        for commit in self.held_commits.remove(&task).unwrap_or_default() {
            if let Err(message) = commit() {
                self.line.send(&ToLeader::CommitFailed { message: message.clone() });
                run.failure.get_or_insert(run.checkpointing_error(message));
            }
        }
    }

    /// The run ends as the leader said: a finished job succeeds here too,
    /// anything else fails.
    pub fn finish(self, run: &mut RunState<'_>) {
        if self.job_end == Some(true) {
            // Every commit due ran on the leader's word already: the leader
            // asks for the commits of each finished task it heard of before
            // it ends the job. Commits still held here belong to tasks that
            // ended only because the job stopped (their inputs vanished);
            // they must not run.
            if !self.held_commits.is_empty() {
                tracing::debug!(tasks = self.held_commits.len(), "dropping commits of tasks ended by the stop");
            }
            run.failure = None;
            run.cancelled = false;
        } else {
            let failed = run.exchange_error("the job failed in another process".into());
            run.failure.get_or_insert(failed);
        }
        self.line.close();
    }
}
