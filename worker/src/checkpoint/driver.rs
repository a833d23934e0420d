//! Carries out the checkpoint coordinator's decisions during one run of a
//! job (Flink's `CheckpointCoordinator` side effects): sends triggers to the
//! sources and commands to every task, writes a completed checkpoint's
//! metadata, answers savepoint requests, runs the commits finished tasks left
//! and discards checkpoints that newer ones subsume. The decisions
//! themselves are pure (`weir_common::checkpoint::CheckpointCoordinator`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use weir_common::checkpoint::coordinator::AbortReason;
use weir_common::checkpoint::layout;
use weir_common::checkpoint::{Action, CheckpointConfig, CheckpointCoordinator};
use weir_common::{CheckpointId, JobGraph, SubtaskIndex, TaskKey};
use weir_state::storage::{CheckpointStorage, FileHandle, StoragePath};

use super::metadata::{CheckpointMetadata, TaskEntry, checkpoint_dir};
use super::snapshot::{CheckpointReport, FinalCommit, TaskControl, TaskReport, TaskSnapshot};
use super::store::{JobCheckpoints, SavepointReply};
use crate::{CancelToken, JobError};

/// How long tasks have to end after a stop-with-savepoint before they are cancelled.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where and how often checkpoints are taken.
#[derive(Clone)]
pub struct CheckpointSettings {
    /// Interval, timeout, pause, retention, tolerated failures.
    pub config: CheckpointConfig,
    /// Where checkpoint files go.
    pub storage: Arc<dyn CheckpointStorage>,
    /// The storage's location as users name it (a directory), for messages
    /// and the paths of savepoints.
    pub location: std::path::PathBuf,
    /// Whether the retained checkpoints stay when the job is cancelled. They
    /// always stay when it fails (to restore from), and are deleted when it
    /// finishes.
    pub retain_on_cancel: bool,
}

/// Where a task's checkpoint commands go.
pub enum ControlLine {
    /// A task of this process.
    Local(Sender<TaskControl>),
    /// A task of another process (leader only), by process index.
    Remote(usize),
}

/// How the driver reaches a task of another process: on the leader, through
/// that follower's control stream (the control module implements it for the
/// follower lines).
pub trait RemoteTaskLine: Send + Sync {
    /// Sends `command` to `task`, which runs in process `process`.
    fn send_command(&self, process: usize, task: TaskKey, command: TaskControl);
}

/// How the checkpoint driver reaches every task of the run.
#[derive(Default)]
pub struct TaskLines {
    lines: BTreeMap<TaskKey, (bool, ControlLine)>,
    followers: Option<Arc<dyn RemoteTaskLine>>,
}

impl TaskLines {
    /// Lines to tasks of this process; tasks of other processes are reached through `followers`.
    pub fn new(followers: Option<Arc<dyn RemoteTaskLine>>) -> Self {
        Self { lines: BTreeMap::new(), followers }
    }

    /// Adds `task`; triggers go to sources only.
    pub fn insert(&mut self, task: TaskKey, is_source: bool, line: ControlLine) {
        self.lines.insert(task, (is_source, line));
    }

    /// Every task, in order.
    pub fn tasks(&self) -> Vec<TaskKey> {
        self.lines.keys().copied().collect()
    }

    /// Whether `task` is a source.
    pub fn is_source(&self, task: TaskKey) -> bool {
        self.lines.get(&task).is_some_and(|(is_source, _)| *is_source)
    }

    /// Sends `command` to a task of this process (a follower relays the leader's commands).
    pub fn send_local(&self, task: TaskKey, command: TaskControl) {
        if let Some((_, ControlLine::Local(line))) = self.lines.get(&task) {
            // A task that ended no longer listens; that is fine.
            let _ = line.send(command);
        }
    }

    fn send(&self, sources_only: bool, command: TaskControl) {
        for (task, (is_source, line)) in &self.lines {
            if sources_only && !*is_source {
                continue;
            }
            match (line, &self.followers) {
                (ControlLine::Local(line), _) => drop(line.send(command)),
                (ControlLine::Remote(process), Some(followers)) => followers.send_command(*process, *task, command),
                (ControlLine::Remote(_), None) => {}
            }
        }
    }
}

/// The checkpoint driver of one run.
pub struct CheckpointDriver<'a> {
    settings: CheckpointSettings,
    coordinator: CheckpointCoordinator<TaskKey, TaskSnapshot>,
    lines: &'a TaskLines,
    graph: &'a JobGraph,
    /// Files of acks of checkpoints not complete yet.
    pending_files: BTreeMap<CheckpointId, Vec<StoragePath>>,
    /// Source tasks that have not finished; at zero nothing can inject barriers.
    running_sources: usize,
    /// Savepoints that completed without stopping the job.
    plain_savepoints: BTreeSet<CheckpointId>,
    /// The stop-with-savepoint that completed, and when.
    stop_savepoint: Option<(CheckpointId, Instant)>,
    triggered_at: BTreeMap<CheckpointId, Instant>,
    /// Commits finished tasks left, run when a checkpoint records their
    /// final state or when the job succeeds.
    final_commits: Vec<FinalCommit>,
}

/// What the run gives the driver to act on: the job's checkpoints across
/// runs, and the run's cancel token and failure slot.
pub struct DriverContext<'r> {
    /// The job's checkpoints across its runs.
    pub job: &'r mut JobCheckpoints,
    /// Cancels the run.
    pub cancel: &'r CancelToken,
    /// The run's first failure.
    pub failure: &'r mut Option<JobError>,
}

impl<'a> CheckpointDriver<'a> {
    /// A driver for the tasks of `lines`, numbering on after `last_id`.
    pub fn new(settings: CheckpointSettings, lines: &'a TaskLines, graph: &'a JobGraph, last_id: u64) -> Self {
        let coordinator = CheckpointCoordinator::new(settings.config.clone(), lines.tasks(), last_id, Instant::now());
        Self {
            settings,
            coordinator,
            running_sources: lines.lines.values().filter(|(is_source, _)| *is_source).count(),
            lines,
            graph,
            pending_files: BTreeMap::new(),
            plain_savepoints: BTreeSet::new(),
            stop_savepoint: None,
            triggered_at: BTreeMap::new(),
            final_commits: Vec::new(),
        }
    }

    /// A task reported on a checkpoint or its end.
    pub fn on_report(&mut self, report: TaskReport, context: DriverContext<'_>) {
        let actions = self.report(report);
        self.carry_out(actions, context);
    }

    /// Time passed: trigger what is due, abort what timed out. After a
    /// stop-with-savepoint, tasks that do not end in time are cancelled.
    pub fn tick(&mut self, context: DriverContext<'_>) {
        if let Some((_, since)) = self.stop_savepoint {
            if since.elapsed() > STOP_GRACE {
                context.cancel.cancel();
            }
            return;
        }
        let actions = self.coordinator.poll(Instant::now());
        self.carry_out(actions, context);
    }

    /// Asks for a savepoint; with `stop`, the job ends once it completed.
    pub fn request_savepoint(&mut self, stop: bool, reply: SavepointReply, job: &mut JobCheckpoints) {
        self.coordinator.request_savepoint();
        job.savepoint_requests.push((stop, reply));
    }

    /// Runs the commits finished tasks left (their final state is in a
    /// completed checkpoint, or the job succeeded).
    pub fn run_final_commits(&mut self) -> Result<(), String> {
        for commit in std::mem::take(&mut self.final_commits) {
            commit()?;
        }
        Ok(())
    }

    fn report(&mut self, report: TaskReport) -> Vec<Action<TaskKey, TaskSnapshot>> {
        match report {
            TaskReport::Checkpoint(CheckpointReport::Ack { id, task, snapshot }) => {
                let files = snapshot.files().into_iter().map(|file| file.path);
                self.pending_files.entry(id).or_default().extend(files);
                self.coordinator.ack(id, task, snapshot)
            }
            TaskReport::Checkpoint(CheckpointReport::Decline { id, task, message }) => {
                self.coordinator.decline(id, task.to_string(), message, Instant::now())
            }
            TaskReport::Finished { task, snapshot, commits } => {
                self.final_commits.extend(commits);
                let mut actions = self.coordinator.task_finished(task, snapshot);
                if self.lines.is_source(task) {
                    self.running_sources = self.running_sources.saturating_sub(1);
                    if self.running_sources == 0 {
                        actions.extend(self.coordinator.stop(Instant::now()));
                    }
                }
                actions
            }
        }
    }

    fn carry_out(&mut self, actions: Vec<Action<TaskKey, TaskSnapshot>>, context: DriverContext<'_>) {
        let DriverContext { job, cancel, failure } = context;
        let mut queue: VecDeque<_> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Trigger { id, savepoint } => self.trigger(id, savepoint, job),
                Action::WriteMetadata { id, acks, savepoint } => {
                    queue.extend(self.write_metadata(id, acks, savepoint, job, cancel, failure));
                }
                Action::NotifyComplete(id) => self.notify_complete(id),
                Action::Abort { id, reason } => self.abort(id, &reason, job),
                Action::Discard(id) => job.discard(self.settings.storage.as_ref(), id),
                Action::FailJob(message) => {
                    failure.get_or_insert_with(|| JobError::Checkpointing { job: self.graph.name.clone(), message });
                    cancel.cancel();
                }
            }
        }
    }

    fn trigger(&mut self, id: CheckpointId, savepoint: bool, job: &mut JobCheckpoints) {
        job.last_id = job.last_id.max(id.0);
        tracing::debug!(checkpoint = id.0, savepoint, "triggering checkpoint");
        self.triggered_at.insert(id, Instant::now());
        self.lines.send(true, TaskControl::Trigger { id, savepoint });
    }

    /// Every task acknowledged: the metadata makes the checkpoint complete.
    fn write_metadata(
        &mut self,
        id: CheckpointId,
        acks: Vec<(TaskKey, TaskSnapshot)>,
        savepoint: bool,
        job: &mut JobCheckpoints,
        cancel: &CancelToken,
        failure: &mut Option<JobError>,
    ) -> Vec<Action<TaskKey, TaskSnapshot>> {
        let metadata = self.metadata(id, acks, savepoint, &job.job_id);
        let storage = self.settings.storage.as_ref();
        let written = checkpoint_dir(&job.job_id, id, savepoint).and_then(|dir| metadata.write(storage, &dir));
        let now = Instant::now();
        let handle = match written {
            Ok(handle) => handle,
            Err(error) => return self.coordinator.metadata_failed(id, error.to_string(), now),
        };
        self.log_completed(&metadata, &handle, job);
        let mut files = self.pending_files.remove(&id).unwrap_or_default();
        files.push(handle.path);
        if savepoint {
            self.answer_savepoint(job, id);
        } else {
            job.completed(Arc::new(metadata), files, &self.settings.storage);
        }
        // The finished tasks' final state is in this checkpoint now.
        if let Err(message) = self.run_final_commits() {
            *failure = Some(JobError::Checkpointing { job: self.graph.name.clone(), message });
            cancel.cancel();
        }
        self.coordinator.metadata_written(id, now)
    }

    fn metadata(
        &self,
        id: CheckpointId,
        acks: Vec<(TaskKey, TaskSnapshot)>,
        savepoint: bool,
        job_id: &str,
    ) -> CheckpointMetadata {
        let tasks = acks
            .into_iter()
            .map(|(task, snapshot)| TaskEntry {
                vertex: task.vertex,
                subtask: SubtaskIndex { index: task.subtask, parallelism: self.graph.vertex(task.vertex).parallelism },
                snapshot,
            })
            .collect();
        CheckpointMetadata {
            job_name: self.graph.name.clone(),
            job_id: job_id.to_owned(),
            id,
            savepoint,
            max_parallelism: self.graph.max_parallelism.get() as u32,
            tasks,
        }
    }

    /// Logs and records a completed checkpoint's figures: its duration, its
    /// size, and how much of it is new (not held by a retained checkpoint).
    fn log_completed(&mut self, metadata: &CheckpointMetadata, handle: &FileHandle, job: &JobCheckpoints) {
        let files = metadata.files();
        let size_bytes = files.iter().map(|file| file.size).sum::<u64>() + handle.size;
        let new_bytes =
            files.iter().filter(|file| !job.is_stored(&file.path)).map(|file| file.size).sum::<u64>() + handle.size;
        let duration = self.triggered_at.remove(&metadata.id).map(|started| started.elapsed());
        let duration_ms = duration.map_or(0.0, |elapsed| elapsed.as_secs_f64() * 1e3);
        let (checkpoint, savepoint) = (metadata.id.0, metadata.savepoint);
        tracing::info!(checkpoint, savepoint, duration_ms, size_bytes, new_bytes, "checkpoint complete");
        metrics::histogram!("weir_checkpoint_duration_seconds").record(duration_ms / 1e3);
        metrics::counter!("weir_checkpoints_completed_total").increment(1);
    }

    /// Answers the savepoint requests with the completed savepoint `id`; a
    /// stop request ends the job.
    fn answer_savepoint(&mut self, job: &mut JobCheckpoints, id: CheckpointId) {
        let path = self.settings.location.join(layout::checkpoint_dir(&job.job_id, id, true));
        let mut stop = false;
        for (stop_requested, reply) in job.savepoint_requests.drain(..) {
            stop |= stop_requested;
            let _ = reply.send(Ok(path.clone()));
        }
        if stop {
            tracing::info!(savepoint = id.0, path = %path.display(), "stopping the job with a savepoint");
            job.stopped = true;
            self.stop_savepoint = Some((id, Instant::now()));
        } else {
            self.plain_savepoints.insert(id);
        }
    }

    fn notify_complete(&mut self, id: CheckpointId) {
        // A savepoint commits side effects only when the job stops at it; a
        // later checkpoint commits them otherwise.
        if !self.plain_savepoints.remove(&id) {
            self.lines.send(false, TaskControl::Complete(id));
        }
        if self.stop_savepoint.is_some_and(|(stop_at, _)| stop_at == id) {
            // After the commit, in order: every task ends.
            self.lines.send(false, TaskControl::Stop);
        }
    }

    fn abort(&mut self, id: CheckpointId, reason: &AbortReason, job: &mut JobCheckpoints) {
        for (_, reply) in job.savepoint_requests.drain(..) {
            let _ = reply.send(Err(format!("savepoint {id} failed: {reason}")));
        }
        tracing::warn!(checkpoint = id.0, %reason, "checkpoint aborted");
        metrics::counter!("weir_checkpoints_aborted_total").increment(1);
        let files = self.pending_files.remove(&id).unwrap_or_default();
        job.abandon(self.settings.storage.as_ref(), &files);
    }
}
