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

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use weir_common::checkpoint::{Action, CheckpointConfig, CheckpointCoordinator};
use weir_common::{CheckpointId, JobGraph, JobGraphError, SubtaskIndex};
use weir_state::storage::{CheckpointStorage, StoragePath};

use crate::checkpoint::{
    CheckpointMetadata, CheckpointReport, METADATA_FILE, RestoredCheckpoint, TaskControl, TaskEntry, TaskKey,
    TaskReport, checkpoint_dir,
};
use crate::exchange::{FromFollower, FromLeader, Placement, ToFollower, ToLeader};
use crate::task::{TaskBody, TaskCheckpointing, TaskSetup, reachable_subtasks, run_input, run_source};
use crate::{CancelToken, EdgeOutput, InputChannel, InputGate, JobError, TaskError, VertexFactory, blame, channel};

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
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            channel_capacity: 8,
            flush_interval: Duration::from_millis(100),
            checkpoints: None,
            restart: RestartStrategy::None,
            placement: None,
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

/// What to do when a task fails (Flink's restart strategies).
#[derive(Clone, Debug, PartialEq)]
pub enum RestartStrategy {
    /// Fail the job at the first failure.
    None,
    /// Restart up to `attempts` times, waiting `delay` before each.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Restart up to `attempts` times, the wait growing by `multiplier` from
    /// `initial` up to `max`.
    ExponentialDelay {
        /// Wait before the first restart.
        initial: Duration,
        /// Longest wait.
        max: Duration,
        /// Growth of the wait per restart.
        multiplier: f64,
        /// Restarts allowed.
        attempts: u32,
    },
}

impl RestartStrategy {
    /// The wait before restart number `attempt` (1-based), or `None` when no
    /// restart is left.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        match *self {
            Self::None => None,
            Self::FixedDelay { attempts, delay } => (attempt <= attempts).then_some(delay),
            Self::ExponentialDelay { initial, max, multiplier, attempts } => (attempt <= attempts).then(|| {
                let factor = multiplier.max(1.0).powi(attempt.saturating_sub(1).min(64) as i32);
                initial.mul_f64(factor).min(max)
            }),
        }
    }
}

/// Executes job graphs inside the current process.
#[derive(Clone, Debug, Default)]
pub struct LocalExecutor {
    config: ExecutorConfig,
}

/// Per task: whether it is a source (triggers go to sources), and its control line.
type TaskControls = BTreeMap<TaskKey, (bool, ControlLine)>;

/// A channel from another process holds this many times a local channel's
/// events: its credits make a round trip over the network, and fewer
/// buffers in flight left the consumer waiting (keyed aggregation across two
/// workers: 9.1M records/s with 8, 9.7M with 32; see BENCHMARKS.md).
const REMOTE_CAPACITY_FACTOR: usize = 4;

/// How long tasks have to end after a stop-with-savepoint before they are cancelled.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What a running job can be asked from outside.
pub enum JobCommand {
    /// Take a savepoint; with `stop`, end the job once it completed (its
    /// sinks commit what it covers). The reply is the savepoint's directory.
    Savepoint {
        /// Stop the job after the savepoint.
        stop: bool,
        /// Where the outcome goes.
        reply: Sender<Result<std::path::PathBuf, String>>,
    },
}

/// One task, ready to start.
struct PlannedTask {
    setup: TaskSetup,
    inputs: Vec<InputChannel>,
    factory: Arc<dyn VertexFactory>,
    checkpointing: Option<TaskCheckpointing>,
}

/// How one run of the job ended.
enum RunOutcome {
    Finished,
    Failed(JobError),
}

/// The checkpoint files of a job, counted per completed checkpoint that
/// refers to them, so a discarded checkpoint deletes only what no retained
/// one needs (shared RocksDB files included). Files outside the job's own
/// directory (those of a checkpoint it was restored from) are never deleted.
struct CheckpointFiles {
    job_id: String,
    references: HashMap<StoragePath, usize>,
    by_checkpoint: BTreeMap<CheckpointId, Vec<StoragePath>>,
}

impl CheckpointFiles {
    fn new(job_id: String) -> Self {
        Self { job_id, references: HashMap::new(), by_checkpoint: BTreeMap::new() }
    }

    fn completed(&mut self, id: CheckpointId, files: Vec<StoragePath>) {
        for file in &files {
            *self.references.entry(file.clone()).or_default() += 1;
        }
        self.by_checkpoint.insert(id, files);
    }

    /// Deletes the files of `id` that no other completed checkpoint holds.
    fn discard(&mut self, storage: &dyn CheckpointStorage, id: CheckpointId) {
        for file in self.by_checkpoint.remove(&id).unwrap_or_default() {
            let count = self.references.entry(file.clone()).or_default();
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.references.remove(&file);
                self.delete(storage, &file);
            }
        }
    }

    /// Deletes files of a checkpoint that did not complete, unless a
    /// completed one holds them.
    fn abandon(&self, storage: &dyn CheckpointStorage, files: &[StoragePath]) {
        for file in files.iter().filter(|file| !self.references.contains_key(*file)) {
            self.delete(storage, file);
        }
    }

    fn delete(&self, storage: &dyn CheckpointStorage, file: &StoragePath) {
        if !file.as_str().starts_with(&format!("{}/", self.job_id)) {
            return;
        }
        if let Err(error) = storage.delete(file) {
            tracing::warn!(file = %file.as_str(), %error, "could not delete a checkpoint file");
        }
    }
}

/// What survives from one run of the job to the next.
struct JobProgress {
    job_id: String,
    /// The checkpoint the next run starts from.
    restore: Option<Arc<RestoredCheckpoint>>,
    /// The highest checkpoint id used so far.
    last_id: u64,
    files: CheckpointFiles,
    /// Completed checkpoints retained, with their metadata.
    retained: BTreeMap<CheckpointId, Arc<CheckpointMetadata>>,
    /// Older checkpoints to fall back to if restoring from `restore` fails,
    /// newest first.
    fallbacks: Vec<Arc<RestoredCheckpoint>>,
    /// Savepoints asked for and not answered yet.
    savepoint_requests: Vec<(bool, Sender<Result<std::path::PathBuf, String>>)>,
    /// A stop-with-savepoint completed: the job ends successfully.
    stopped: bool,
}

impl JobProgress {
    /// Gives up the checkpoint the last run failed to restore from; returns
    /// whether an older one is left to try.
    fn fall_back(&mut self, storage: Option<&Arc<dyn CheckpointStorage>>) -> bool {
        let Some(failed) = self.restore.take() else { return false };
        let failed_id = failed.metadata.id;
        self.retained.remove(&failed_id);
        let older_retained = self.retained.range(..failed_id).next_back().map(|(_, metadata)| metadata.clone());
        self.restore = match (older_retained, storage) {
            (Some(metadata), Some(storage)) => {
                Some(Arc::new(RestoredCheckpoint::new((*metadata).clone(), storage.clone())))
            }
            _ => {
                self.fallbacks.retain(|candidate| candidate.metadata.id < failed_id);
                (!self.fallbacks.is_empty()).then(|| self.fallbacks.remove(0))
            }
        };
        self.restore.is_some()
    }
}

impl LocalExecutor {
    /// An executor with the given tuning.
    pub fn new(config: ExecutorConfig) -> Self {
        Self { config }
    }

    /// Runs `graph` to completion. `factories[i]` builds the tasks of vertex
    /// `i`; `restore` is the checkpoint or savepoint to start from.
    pub fn execute(
        &self,
        graph: &JobGraph,
        factories: &[Arc<dyn VertexFactory>],
        cancel: &CancelToken,
        mut restore: Vec<Arc<RestoredCheckpoint>>,
        commands: Option<Receiver<JobCommand>>,
    ) -> Result<(), JobError> {
        graph.validate()?;
        if factories.len() != graph.vertices.len() {
            return Err(JobError::InvalidGraph(JobGraphError::Invalid(format!(
                "{} vertices but {} task factories",
                graph.vertices.len(),
                factories.len()
            ))));
        }
        for candidate in &restore {
            check_restore(graph, candidate)?;
        }
        let job_id = match &self.config.placement {
            Some(placement) => placement.run_id.clone(),
            None => weir_state::storage::unique_id(&graph.name),
        };
        let last_id = restore.first().map_or(0, |restore| restore.metadata.id.0);
        let first = (!restore.is_empty()).then(|| restore.remove(0));
        let mut progress = JobProgress {
            files: CheckpointFiles::new(job_id.clone()),
            job_id,
            restore: first,
            last_id,
            retained: BTreeMap::new(),
            fallbacks: restore,
            savepoint_requests: Vec::new(),
            stopped: false,
        };
        let mut attempt = 0u32;
        let outcome = loop {
            match self.run_once(graph, factories, cancel, &mut progress, commands.as_ref()) {
                RunOutcome::Finished => break Ok(()),
                RunOutcome::Failed(_) if progress.stopped => break Ok(()),
                // The processes of a cluster job run once: the coordinator
                // deploys the whole job again (see `exchange::EXIT_RESTART`).
                RunOutcome::Failed(error) if self.config.placement.is_some() => break Err(error),
                RunOutcome::Failed(error @ (JobError::Cancelled(_) | JobError::Spawn { .. })) => break Err(error),
                RunOutcome::Failed(error) if cancel.is_cancelled() => break Err(error),
                RunOutcome::Failed(error @ JobError::RestoreFailed { .. }) => {
                    let storage = self.config.checkpoints.as_ref().map(|settings| &settings.storage);
                    if !progress.fall_back(storage) {
                        break Err(error);
                    }
                    let to = progress.restore.as_ref().map(|restore| restore.metadata.id.0);
                    tracing::warn!(job = %graph.name, %error, fallback = ?to, "falling back to an earlier checkpoint");
                }
                RunOutcome::Failed(error) => {
                    attempt += 1;
                    let Some(delay) = self.config.restart.delay(attempt) else {
                        if attempt > 1 {
                            tracing::error!(job = %graph.name, restarts = attempt - 1, "no restart left");
                        }
                        break Err(error);
                    };
                    let from = progress.restore.as_ref().map(|restore| restore.metadata.id.0);
                    tracing::warn!(job = %graph.name, %error, attempt, ?delay, from_checkpoint = ?from, "restarting the job");
                    metrics::counter!("weir_job_restarts_total").increment(1);
                    std::thread::sleep(delay);
                }
            }
        };
        let delete_checkpoints = match &outcome {
            Ok(()) => true,
            Err(JobError::Cancelled(_)) => self.config.checkpoints.as_ref().is_some_and(|s| !s.retain_on_cancel),
            Err(_) => false,
        };
        if let Some(settings) = &self.config.checkpoints
            && delete_checkpoints
        {
            for id in progress.retained.keys().copied().collect::<Vec<_>>() {
                discard_checkpoint(settings.storage.as_ref(), &mut progress, id);
            }
        }
        outcome
    }

    /// One run of the job, from `progress.restore` if set.
    ///
    /// In a job spread over processes (`config.placement`), this process
    /// runs its own slices; the leader also drives checkpoints and collects
    /// the other processes' task ends, and a follower forwards its tasks'
    /// reports to the leader and obeys its commands.
    fn run_once(
        &self,
        graph: &JobGraph,
        factories: &[Arc<dyn VertexFactory>],
        cancel: &CancelToken,
        progress: &mut JobProgress,
        commands: Option<&Receiver<JobCommand>>,
    ) -> RunOutcome {
        // Each run has its own cancel token, so a failed run can be replaced;
        // cancelling the job cancels the run.
        let run_cancel = cancel.child();
        let placement = self.config.placement.clone();
        let exchange_failed =
            |message: String| RunOutcome::Failed(JobError::Exchange { job: graph.name.clone(), message });
        let mut leader_line = None;
        if let Some(placement) = &placement {
            placement.network.attach_run(&run_cancel);
            if placement.is_leader() {
                if let Err(message) = placement.network.await_followers(&placement.followers()) {
                    // Those that came learn the run failed here (the leader decides).
                    let missing = placement.followers().difference(&placement.network.connected()).copied().collect();
                    let _ = finish_followers(placement, false, &missing);
                    return exchange_failed(message);
                }
            } else {
                match placement.network.connect_leader(placement.process) {
                    Ok(line) => leader_line = Some(line),
                    Err(message) => return exchange_failed(message),
                }
            }
        }
        let is_follower = leader_line.is_some();
        let (report_tx, report_rx) = crossbeam_channel::unbounded();
        let run_id: Arc<str> = match &placement {
            // Every process of the run names its files alike.
            Some(placement) => Arc::from(placement.run_id.as_str()),
            None => Arc::from(&weir_state::storage::unique_id(&progress.job_id)[..12]),
        };
        let PlannedRun { tasks, controls, mut remote_tasks } =
            match self.plan(graph, factories, &run_cancel, progress, &report_tx, &run_id) {
                Ok(planned) => planned,
                Err(message) => {
                    if let Some(placement) = placement.as_ref().filter(|placement| placement.is_leader()) {
                        let _ = finish_followers(placement, false, &std::collections::BTreeSet::new());
                    }
                    return exchange_failed(message);
                }
            };
        // The driver keeps a sender itself: a disconnected line would make
        // the select below return at once, forever (a busy loop that took a
        // core from jobs without checkpointing).
        let _report_line = report_tx;
        tracing::info!(job = %graph.name, tasks = tasks.len(), restored_from = ?progress.restore.as_ref().map(|r| r.metadata.id.0), "starting job");
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut threads = Vec::with_capacity(tasks.len());
        let mut failure = None;
        for task in tasks {
            let name = format!("{} ({})", task.setup.task_name, task.setup.subtask);
            let (done_tx, config, task_cancel) = (done_tx.clone(), self.config.clone(), run_cancel.clone());
            let spawned = std::thread::Builder::new().name(name.clone()).spawn(move || {
                let key: TaskKey = (task.setup.vertex, task.setup.subtask.index);
                let result = run_task(task, &config, &task_cancel);
                if result.is_err() {
                    task_cancel.cancel();
                }
                // The receiver outlives every task thread, so this cannot fail.
                let _ = done_tx.send((key, result));
            });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(source) => {
                    run_cancel.cancel();
                    failure = Some(JobError::Spawn { task: name, source });
                    break;
                }
            }
        }
        drop(done_tx);
        // Leader: the tasks other processes run, until they report their end.
        let mut driver = (self.config.checkpoints.as_ref().filter(|_| !is_follower)).map(|settings| {
            let tasks = controls.keys().copied().collect::<Vec<_>>();
            CheckpointDriver {
                settings: settings.clone(),
                coordinator: CheckpointCoordinator::new(
                    settings.config.clone(),
                    tasks,
                    progress.last_id,
                    Instant::now(),
                ),
                running_sources: controls.values().filter(|(is_source, _)| *is_source).count(),
                controls: &controls,
                placement: placement.as_deref(),
                pending_files: BTreeMap::new(),
                final_commits: Vec::new(),
                plain_savepoints: std::collections::BTreeSet::new(),
                stop_savepoint: None,
                triggered_at: BTreeMap::new(),
                graph,
            }
        });
        let follower_inbox = match &placement {
            Some(placement) if placement.is_leader() => placement.network.inbox(),
            _ => crossbeam_channel::never(),
        };
        let leader_inbox = leader_line.clone().unwrap_or_else(crossbeam_channel::never);
        // Follower: commits of finished tasks, run when the leader says so.
        let mut held_commits: BTreeMap<TaskKey, Vec<crate::checkpoint::FinalCommit>> = BTreeMap::new();
        let mut job_end: Option<bool> = None;
        let mut leader_gone = false;
        let mut cancel_sent = false;
        let mut lost_followers = std::collections::BTreeSet::new();
        let mut cancelled = false;
        let mut running = threads.len() + remote_tasks.len();
        while running > 0 || (is_follower && job_end.is_none() && !leader_gone) {
            let happening = crossbeam_channel::select! {
                recv(done_rx) -> done => done.ok().map(Happening::Done),
                recv(report_rx) -> report => report.ok().map(Happening::Report),
                recv(follower_inbox) -> item => item.ok().map(|(process, item)| Happening::Follower(process, item)),
                recv(leader_inbox) -> item => item.ok().map(Happening::Leader),
                default(Duration::from_millis(5)) => None,
            };
            match happening {
                Some(Happening::Done((task, result))) => {
                    running -= 1;
                    if let (true, Some(placement)) = (is_follower, &placement) {
                        // A task reports (its final state) before it returns, on
                        // another channel: what it reported goes first, or the
                        // leader could end the job without its commits.
                        while let Ok(report) = report_rx.try_recv() {
                            forward_report(placement, report, &mut held_commits);
                        }
                        placement.network.to_leader(&ToLeader::Done { task, outcome: result.clone() });
                    }
                    record_task_end(graph, progress, task, result, &mut failure, &mut cancelled);
                }
                Some(Happening::Report(report)) => match (&placement, &mut driver) {
                    (Some(placement), _) if is_follower => forward_report(placement, report, &mut held_commits),
                    (_, Some(driver)) => {
                        let actions = driver.report(report);
                        driver.carry_out(actions, progress, &run_cancel, &mut failure);
                    }
                    _ => {}
                },
                Some(Happening::Follower(process, item)) => {
                    let placement = placement.as_ref().expect("only a leader has followers");
                    match item {
                        FromFollower::Message(ToLeader::Done { task, outcome }) => {
                            if remote_tasks.remove(&task) {
                                running -= 1;
                                record_task_end(graph, progress, task, outcome, &mut failure, &mut cancelled);
                            }
                        }
                        FromFollower::Message(message) => {
                            let report = match message {
                                ToLeader::Checkpoint(report) => Some(TaskReport::Checkpoint(report)),
                                ToLeader::Finished { task, snapshot } => {
                                    let placement = placement.clone();
                                    let commit: crate::checkpoint::FinalCommit = Box::new(move || {
                                        placement.network.to_follower(process, &ToFollower::CommitFinished { task });
                                        Ok(())
                                    });
                                    Some(TaskReport::Finished { task, snapshot, commits: vec![commit] })
                                }
                                ToLeader::CommitFailed { message } => {
                                    failure.get_or_insert(JobError::Checkpointing { job: graph.name.clone(), message });
                                    run_cancel.cancel();
                                    None
                                }
                                ToLeader::Hello { .. } | ToLeader::Done { .. } => None,
                            };
                            if let (Some(report), Some(driver)) = (report, &mut driver) {
                                let actions = driver.report(report);
                                driver.carry_out(actions, progress, &run_cancel, &mut failure);
                            }
                        }
                        FromFollower::Lost(message) => {
                            lost_followers.insert(process);
                            failure.get_or_insert(JobError::Exchange { job: graph.name.clone(), message });
                            run_cancel.cancel();
                            // Its tasks will not report any more.
                            let lost: Vec<TaskKey> = remote_tasks
                                .iter()
                                .filter(|(_, index)| placement.process_of(*index) == process)
                                .copied()
                                .collect();
                            for task in lost {
                                remote_tasks.remove(&task);
                                running -= 1;
                            }
                        }
                    }
                }
                Some(Happening::Leader(item)) => match item {
                    FromLeader::Message(ToFollower::Task { task, command }) => {
                        if let Some((_, ControlLine::Local(line))) = controls.get(&task) {
                            // A task that ended no longer listens; that is fine.
                            let _ = line.send(command);
                        }
                    }
                    FromLeader::Message(ToFollower::CommitFinished { task }) => {
                        for commit in held_commits.remove(&task).unwrap_or_default() {
                            if let Err(message) = commit() {
                                if let Some(placement) = &placement {
                                    placement.network.to_leader(&ToLeader::CommitFailed { message: message.clone() });
                                }
                                failure.get_or_insert(JobError::Checkpointing { job: graph.name.clone(), message });
                            }
                        }
                    }
                    FromLeader::Message(ToFollower::Cancel) => run_cancel.cancel(),
                    FromLeader::Message(ToFollower::JobEnd { success }) => job_end = Some(success),
                    FromLeader::Lost(message) => {
                        leader_gone = true;
                        if job_end.is_none() {
                            failure.get_or_insert(JobError::Exchange { job: graph.name.clone(), message });
                            run_cancel.cancel();
                        }
                    }
                },
                None => {}
            }
            while let Some(JobCommand::Savepoint { stop, reply }) =
                commands.and_then(|commands| commands.try_recv().ok())
            {
                match &mut driver {
                    Some(driver) if failure.is_none() => {
                        driver.coordinator.request_savepoint();
                        progress.savepoint_requests.push((stop, reply));
                    }
                    Some(_) => {
                        let _ = reply.send(Err("the job is failing".into()));
                    }
                    None => {
                        let _ = reply
                            .send(Err("savepoints need checkpointing: set a checkpoint directory and interval".into()));
                    }
                }
            }
            if let Some(driver) = &mut driver
                && failure.is_none()
                && !run_cancel.is_cancelled()
            {
                if let Some((_, since)) = driver.stop_savepoint {
                    // Tasks stuck where they cannot see the stop are cancelled.
                    if since.elapsed() > STOP_GRACE {
                        run_cancel.cancel();
                    }
                } else {
                    let actions = driver.coordinator.poll(Instant::now());
                    driver.carry_out(actions, progress, &run_cancel, &mut failure);
                }
            }
            if let Some(placement) = placement.as_ref().filter(|placement| placement.is_leader())
                && !cancel_sent
                && (failure.is_some() || run_cancel.is_cancelled())
            {
                cancel_sent = true;
                for follower in placement.followers() {
                    placement.network.to_follower(follower, &ToFollower::Cancel);
                }
            }
        }
        // A task reports before it returns, but the two lines are separate:
        // what the last tasks reported may still wait here.
        if let Some(driver) = &mut driver {
            while let Ok(report) = report_rx.try_recv() {
                let actions = driver.report(report);
                driver.carry_out(actions, progress, &run_cancel, &mut failure);
            }
        }
        if cancel.is_cancelled() && failure.is_none() {
            failure = Some(JobError::Cancelled(graph.name.clone()));
        }
        if let Some(driver) = &mut driver
            && failure.is_none()
            && !cancelled
            && let Err(message) = driver.run_final_commits()
        {
            failure = Some(JobError::Checkpointing { job: graph.name.clone(), message });
        }
        if let Some(placement) = &placement {
            if is_follower {
                match job_end {
                    // Every commit due ran on the leader's word already: the
                    // leader asks for the commits of each finished task it
                    // heard of before it ends the job. Commits still held
                    // here belong to tasks that ended only because the job
                    // stopped (their inputs vanished); they must not run.
                    Some(true) => {
                        if !held_commits.is_empty() {
                            tracing::debug!(tasks = held_commits.len(), "dropping commits of tasks ended by the stop");
                        }
                        failure = None;
                        cancelled = false;
                    }
                    _ => {
                        failure.get_or_insert(JobError::Exchange {
                            job: graph.name.clone(),
                            message: "the job failed in another process".into(),
                        });
                    }
                }
                placement.network.close_leader();
            } else {
                if failure.is_none()
                    && let Some(message) = placement.network.failure()
                {
                    failure = Some(JobError::Exchange { job: graph.name.clone(), message });
                }
                let success = (failure.is_none() && !cancelled) || progress.stopped;
                if let Err(message) = finish_followers(placement, success, &lost_followers) {
                    failure = Some(JobError::Checkpointing { job: graph.name.clone(), message });
                    progress.stopped = false;
                }
            }
        }
        if cancelled && failure.is_none() {
            failure = Some(JobError::Cancelled(graph.name.clone()));
        }
        for thread in threads {
            // Task threads catch their own panics; a join error cannot carry news.
            let _ = thread.join();
        }
        match failure {
            Some(error) => RunOutcome::Failed(error),
            None => {
                tracing::info!(job = %graph.name, "job finished");
                RunOutcome::Finished
            }
        }
    }

    /// Expands the graph into tasks and wires their channels.
    fn plan(
        &self,
        graph: &JobGraph,
        factories: &[Arc<dyn VertexFactory>],
        cancel: &CancelToken,
        progress: &JobProgress,
        reports: &Sender<TaskReport>,
        run_id: &Arc<str>,
    ) -> Result<PlannedRun, String> {
        let placement = self.config.placement.as_deref();
        let is_local = |index: usize| placement.is_none_or(|placement| placement.is_local(index));
        let mut inputs: Vec<Vec<Vec<InputChannel>>> =
            graph.vertices.iter().map(|v| (0..v.parallelism).map(|_| Vec::new()).collect()).collect();
        let mut outputs: Vec<Vec<Vec<EdgeOutput>>> =
            graph.vertices.iter().map(|v| (0..v.parallelism).map(|_| Vec::new()).collect()).collect();
        let capacity = self.config.channel_capacity;
        for (edge_index, edge) in graph.edges.iter().enumerate() {
            let (source, target) = (graph.vertex(edge.source), graph.vertex(edge.target));
            for (upstream, upstream_outputs) in outputs[source.id.0 as usize].iter_mut().enumerate() {
                let mut channels = Vec::new();
                for downstream in reachable_subtasks(edge, upstream, target.parallelism) {
                    let key = (edge_index as u32, upstream as u32, downstream as u32);
                    let inputs = &mut inputs[target.id.0 as usize][downstream];
                    match (is_local(upstream), is_local(downstream), placement) {
                        (true, false, Some(placement)) => channels.push(placement.network.remote_output(
                            key,
                            placement.process_of(downstream),
                            cancel.clone(),
                        )?),
                        (false, true, Some(placement)) => {
                            inputs.push(placement.network.remote_input(key, capacity * REMOTE_CAPACITY_FACTOR));
                        }
                        (false, false, _) => {}
                        _ => {
                            let (sender, receiver) = channel::bounded(capacity, cancel.clone());
                            channels.push(sender);
                            inputs.push(receiver);
                        }
                    }
                }
                upstream_outputs.push(EdgeOutput { partitioning: edge.partitioning, channels });
            }
        }
        let has_inputs: Vec<bool> =
            graph.vertices.iter().map(|vertex| graph.edges.iter().any(|edge| edge.target == vertex.id)).collect();
        let mut tasks = Vec::new();
        let mut controls = BTreeMap::new();
        let mut remote_tasks = std::collections::BTreeSet::new();
        for ((vertex, vertex_inputs), vertex_outputs) in graph.vertices.iter().zip(inputs).zip(outputs) {
            let task_name: Arc<str> = Arc::from(vertex.name.as_str());
            let is_source = !has_inputs[vertex.id.0 as usize];
            for (index, (inputs, outputs)) in vertex_inputs.into_iter().zip(vertex_outputs).enumerate() {
                let key: TaskKey = (vertex.id, index);
                if let Some(placement) = placement.filter(|_| !is_local(index)) {
                    // The leader drives and awaits every task; a follower only its own.
                    if placement.is_leader() {
                        remote_tasks.insert(key);
                        if self.config.checkpoints.is_some() {
                            controls.insert(key, (is_source, ControlLine::Remote(placement.process_of(index))));
                        }
                    }
                    continue;
                }
                let checkpointing = self.config.checkpoints.as_ref().map(|settings| {
                    let (control_tx, control_rx): (Sender<TaskControl>, Receiver<TaskControl>) =
                        crossbeam_channel::unbounded();
                    controls.insert(key, (is_source, ControlLine::Local(control_tx)));
                    TaskCheckpointing {
                        key,
                        control: control_rx,
                        reports: reports.clone(),
                        storage: settings.storage.clone(),
                        job_id: progress.job_id.clone(),
                        finishing: Arc::default(),
                    }
                });
                let finishing = checkpointing.as_ref().map(|checkpointing| checkpointing.finishing.clone());
                let setup = TaskSetup {
                    vertex: vertex.id,
                    task_name: task_name.clone(),
                    subtask: SubtaskIndex { index, parallelism: vertex.parallelism },
                    max_parallelism: graph.max_parallelism,
                    outputs,
                    cancel: cancel.clone(),
                    restore: progress.restore.clone(),
                    run_id: run_id.clone(),
                    finishing,
                };
                tasks.push(PlannedTask {
                    setup,
                    inputs,
                    factory: factories[vertex.id.0 as usize].clone(),
                    checkpointing,
                });
            }
        }
        Ok(PlannedRun { tasks, controls, remote_tasks })
    }
}

/// The tasks of one run in this process, and how to reach every task.
struct PlannedRun {
    tasks: Vec<PlannedTask>,
    controls: TaskControls,
    /// Leader: the tasks other processes run.
    remote_tasks: std::collections::BTreeSet<TaskKey>,
}

/// What the run loop of [`LocalExecutor::run_once`] reacts to.
enum Happening {
    /// A task of this process returned.
    Done((TaskKey, Result<(), TaskError>)),
    /// A task of this process reported on a checkpoint or its end.
    Report(TaskReport),
    /// Leader: a follower process spoke, or was lost.
    Follower(usize, FromFollower),
    /// Follower: the leader spoke, or was lost.
    Leader(FromLeader),
}

/// Where a task's checkpoint commands go.
enum ControlLine {
    /// A task of this process.
    Local(Sender<TaskControl>),
    /// A task of another process (leader only), by process index.
    Remote(usize),
}

/// Follower: sends a task's report to the leader; the commits of a finished
/// task stay here until the leader asks for them.
fn forward_report(
    placement: &Placement,
    report: TaskReport,
    held_commits: &mut BTreeMap<TaskKey, Vec<crate::checkpoint::FinalCommit>>,
) {
    let message = match report {
        TaskReport::Checkpoint(report) => ToLeader::Checkpoint(report),
        TaskReport::Finished { task, snapshot, commits } => {
            held_commits.insert(task, commits);
            ToLeader::Finished { task, snapshot }
        }
    };
    placement.network.to_leader(&message);
}

/// Takes note of a task's end: the first operator or restore failure is the
/// root cause; cancellations only follow one.
fn record_task_end(
    graph: &JobGraph,
    progress: &JobProgress,
    (vertex, index): TaskKey,
    result: Result<(), TaskError>,
    failure: &mut Option<JobError>,
    cancelled: &mut bool,
) {
    let vertex = graph.vertex(vertex);
    let (task, subtask) = (&vertex.name, SubtaskIndex { index, parallelism: vertex.parallelism });
    match result {
        // Tasks cancelled because of a failure may report before the failed one does: the
        // operator failure wins, whatever the order.
        Err(TaskError::Operator { operator, message }) if failure.is_none() => {
            tracing::error!(job = %graph.name, %task, %subtask, %operator, %message, "task failed");
            *failure =
                Some(JobError::TaskFailed { job: graph.name.clone(), task: task.clone(), subtask, operator, message });
        }
        Err(TaskError::Restore { operator, message }) if failure.is_none() => {
            let checkpoint = progress.restore.as_ref().map_or(0, |restore| restore.metadata.id.0);
            tracing::error!(job = %graph.name, %task, %subtask, %operator, %message, "restore failed");
            *failure = Some(JobError::RestoreFailed { job: graph.name.clone(), checkpoint, operator, message });
        }
        Err(TaskError::Cancelled) => *cancelled = true,
        // A finishing task reports to the checkpoint driver itself.
        Ok(()) => {}
        Err(TaskError::Operator { .. } | TaskError::Restore { .. }) => {}
    }
}

/// Leader: tells the followers how the job ended and waits (a while) for
/// them to close their control streams, so none mistakes the leader's exit
/// for a failure.
fn finish_followers(
    placement: &Placement,
    success: bool,
    lost: &std::collections::BTreeSet<usize>,
) -> Result<(), String> {
    let mut commit_failure = None;
    let mut open: std::collections::BTreeSet<usize> = placement.followers().difference(lost).copied().collect();
    for follower in &open {
        placement.network.to_follower(*follower, &ToFollower::JobEnd { success });
    }
    let inbox = placement.network.inbox();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !open.is_empty() {
        match inbox.recv_deadline(deadline) {
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
    placement.network.close_followers();
    commit_failure.map_or(Ok(()), Err)
}

/// Carries out the checkpoint coordinator's decisions during one run.
struct CheckpointDriver<'a> {
    settings: CheckpointSettings,
    coordinator: CheckpointCoordinator<TaskKey, crate::checkpoint::TaskSnapshot>,
    /// Per task: whether it is a source, and its control line.
    controls: &'a TaskControls,
    /// Where the job's processes are, when it has several.
    placement: Option<&'a Placement>,
    /// Files of acks of checkpoints not complete yet.
    pending_files: BTreeMap<CheckpointId, Vec<StoragePath>>,
    /// Source tasks that have not finished.
    running_sources: usize,
    /// Savepoints that completed without stopping the job.
    plain_savepoints: std::collections::BTreeSet<CheckpointId>,
    /// The stop-with-savepoint that completed, and when.
    stop_savepoint: Option<(CheckpointId, Instant)>,
    /// When each pending checkpoint was triggered.
    triggered_at: BTreeMap<CheckpointId, Instant>,
    /// Commits finished tasks left, run when a checkpoint records their
    /// final state or when the job succeeds.
    final_commits: Vec<crate::checkpoint::FinalCommit>,
    graph: &'a JobGraph,
}

impl CheckpointDriver<'_> {
    fn report(&mut self, report: TaskReport) -> Vec<Action<TaskKey, crate::checkpoint::TaskSnapshot>> {
        match report {
            TaskReport::Checkpoint(CheckpointReport::Ack { id, task, snapshot }) => {
                let files = snapshot.files().into_iter().map(|file| file.path);
                self.pending_files.entry(id).or_default().extend(files);
                self.coordinator.ack(id, task, snapshot)
            }
            TaskReport::Checkpoint(CheckpointReport::Decline { id, task, message }) => {
                self.coordinator.decline(id, format!("{task:?}"), message, Instant::now())
            }
            TaskReport::Finished { task, snapshot, commits } => {
                self.final_commits.extend(commits);
                let mut actions = self.coordinator.task_finished(task, snapshot);
                if self.controls.get(&task).is_some_and(|(is_source, _)| *is_source) {
                    self.running_sources = self.running_sources.saturating_sub(1);
                    if self.running_sources == 0 {
                        // Nothing can inject barriers any more.
                        actions.extend(self.coordinator.stop(Instant::now()));
                    }
                }
                actions
            }
        }
    }

    /// Answers the savepoint requests with the completed savepoint `id`; a
    /// stop request ends the job.
    fn answer_savepoint(&mut self, progress: &mut JobProgress, id: CheckpointId) {
        let path = self.settings.location.join(&progress.job_id).join(format!("savepoint-{}", id.0));
        let mut stop = false;
        for (stop_requested, reply) in progress.savepoint_requests.drain(..) {
            stop |= stop_requested;
            let _ = reply.send(Ok(path.clone()));
        }
        if stop {
            tracing::info!(savepoint = id.0, path = %path.display(), "stopping the job with a savepoint");
            progress.stopped = true;
            self.stop_savepoint = Some((id, Instant::now()));
        } else {
            self.plain_savepoints.insert(id);
        }
    }

    /// Runs the commits finished tasks left.
    fn run_final_commits(&mut self) -> Result<(), String> {
        for commit in std::mem::take(&mut self.final_commits) {
            commit()?;
        }
        Ok(())
    }

    fn send_to(&self, sources_only: bool, command: TaskControl) {
        for (task, (is_source, line)) in self.controls {
            if !*is_source && sources_only {
                continue;
            }
            match (line, self.placement) {
                // A task that ended no longer listens; that is fine.
                (ControlLine::Local(line), _) => drop(line.send(command)),
                (ControlLine::Remote(process), Some(placement)) => {
                    placement.network.to_follower(*process, &ToFollower::Task { task: *task, command });
                }
                (ControlLine::Remote(_), None) => {}
            }
        }
    }

    fn carry_out(
        &mut self,
        actions: Vec<Action<TaskKey, crate::checkpoint::TaskSnapshot>>,
        progress: &mut JobProgress,
        cancel: &CancelToken,
        failure: &mut Option<JobError>,
    ) {
        let mut queue: std::collections::VecDeque<_> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Trigger { id, savepoint } => {
                    progress.last_id = progress.last_id.max(id.0);
                    tracing::debug!(checkpoint = id.0, savepoint, "triggering checkpoint");
                    self.triggered_at.insert(id, Instant::now());
                    self.send_to(true, TaskControl::Trigger { id, savepoint });
                }
                Action::WriteMetadata { id, acks, savepoint } => {
                    let metadata = CheckpointMetadata {
                        job_name: self.graph.name.clone(),
                        job_id: progress.job_id.clone(),
                        id,
                        savepoint,
                        max_parallelism: self.graph.max_parallelism.get() as u32,
                        tasks: acks
                            .into_iter()
                            .map(|((vertex, index), snapshot)| TaskEntry {
                                vertex,
                                subtask: SubtaskIndex { index, parallelism: self.graph.vertex(vertex).parallelism },
                                snapshot,
                            })
                            .collect(),
                    };
                    let storage = self.settings.storage.as_ref();
                    let written = checkpoint_dir(&progress.job_id, id, savepoint)
                        .and_then(|dir| metadata.write(storage, &dir).map(|handle| (dir, handle)));
                    let now = Instant::now();
                    match written {
                        Ok((_, handle)) => {
                            let size_bytes: u64 =
                                metadata.files().iter().map(|file| file.size).sum::<u64>() + handle.size;
                            let new_bytes: u64 = metadata
                                .files()
                                .iter()
                                .filter(|file| !progress.files.references.contains_key(&file.path))
                                .map(|file| file.size)
                                .sum::<u64>()
                                + handle.size;
                            let duration = self.triggered_at.remove(&id).map(|started| started.elapsed());
                            let mut files = self.pending_files.remove(&id).unwrap_or_default();
                            files.push(handle.path);
                            let metadata = Arc::new(metadata);
                            if savepoint {
                                self.answer_savepoint(progress, id);
                            } else {
                                progress.files.completed(id, files);
                                progress.retained.insert(id, metadata.clone());
                                progress.restore = Some(Arc::new(RestoredCheckpoint::new(
                                    (*metadata).clone(),
                                    self.settings.storage.clone(),
                                )));
                            }
                            let duration_ms = duration.map_or(0.0, |elapsed| elapsed.as_secs_f64() * 1e3);
                            tracing::info!(
                                checkpoint = id.0,
                                savepoint,
                                duration_ms,
                                size_bytes,
                                new_bytes,
                                "checkpoint complete"
                            );
                            metrics::histogram!("weir_checkpoint_duration_seconds").record(duration_ms / 1e3);
                            metrics::counter!("weir_checkpoints_completed_total").increment(1);
                            // The finished tasks' final state is in this checkpoint now.
                            if let Err(message) = self.run_final_commits() {
                                *failure = Some(JobError::Checkpointing { job: self.graph.name.clone(), message });
                                cancel.cancel();
                            }
                            queue.extend(self.coordinator.metadata_written(id, now));
                        }
                        Err(error) => queue.extend(self.coordinator.metadata_failed(id, error.to_string(), now)),
                    }
                }
                Action::NotifyComplete(id) => {
                    // A savepoint commits side effects only when the job stops
                    // at it; a later checkpoint commits them otherwise.
                    if !self.plain_savepoints.remove(&id) {
                        self.send_to(false, TaskControl::Complete(id));
                    }
                    if self.stop_savepoint.is_some_and(|(stop_at, _)| stop_at == id) {
                        // After the commit, in order: every task ends.
                        self.send_to(false, TaskControl::Stop);
                    }
                }
                Action::Abort { id, reason } => {
                    for (_, reply) in progress.savepoint_requests.drain(..) {
                        let _ = reply.send(Err(format!("savepoint {id} failed: {reason}")));
                    }
                    tracing::warn!(checkpoint = id.0, %reason, "checkpoint aborted");
                    metrics::counter!("weir_checkpoints_aborted_total").increment(1);
                    let files = self.pending_files.remove(&id).unwrap_or_default();
                    progress.files.abandon(self.settings.storage.as_ref(), &files);
                }
                Action::Discard(id) => discard_checkpoint(self.settings.storage.as_ref(), progress, id),
                Action::FailJob(message) => {
                    if failure.is_none() {
                        *failure = Some(JobError::Checkpointing { job: self.graph.name.clone(), message });
                    }
                    cancel.cancel();
                }
            }
        }
    }
}

/// Deletes a completed checkpoint's files that no retained one needs, and its metadata.
fn discard_checkpoint(storage: &dyn CheckpointStorage, progress: &mut JobProgress, id: CheckpointId) {
    progress.retained.remove(&id);
    progress.files.discard(storage, id);
    if let Ok(dir) = checkpoint_dir(&progress.job_id, id, false)
        && let Ok(metadata) = dir.join(METADATA_FILE)
    {
        let _ = storage.delete(&metadata);
    }
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

/// Builds and runs one task on the current thread, turning panics into errors.
fn run_task(task: PlannedTask, config: &ExecutorConfig, cancel: &CancelToken) -> Result<(), TaskError> {
    let task_name = task.setup.task_name.clone();
    let checkpointing = task.checkpointing;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut gate = InputGate::new(task.inputs, cancel.clone());
        match task.factory.create(task.setup)? {
            TaskBody::Source(mut source) => {
                run_source(source.as_mut(), config.flush_interval, cancel, checkpointing.as_ref())
            }
            TaskBody::Input(mut input) => {
                run_input(input.as_mut(), &mut gate, config.flush_interval, checkpointing.as_ref())
            }
        }
    }));
    outcome.unwrap_or_else(|payload| {
        Err(TaskError::Operator {
            operator: blame::take_blamed().unwrap_or_else(|| task_name.to_string()),
            message: format!("panicked: {}", panic_message(payload.as_ref())),
        })
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "a panic with a non-text payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_follow_the_strategy() {
        assert_eq!(RestartStrategy::None.delay(1), None);
        let fixed = RestartStrategy::FixedDelay { attempts: 2, delay: Duration::from_millis(10) };
        assert_eq!(
            (fixed.delay(1), fixed.delay(2), fixed.delay(3)),
            (Some(Duration::from_millis(10)), Some(Duration::from_millis(10)), None)
        );
        let exponential = RestartStrategy::ExponentialDelay {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(300),
            multiplier: 2.0,
            attempts: 4,
        };
        let delays: Vec<_> = (1..=5).map(|attempt| exponential.delay(attempt)).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(delays, vec![ms(100), ms(200), ms(300), ms(300), None]);
    }
}
