//! The decisions of checkpoint coordination, without I/O (facts in, actions
//! out): when to trigger, which checkpoint is pending, which acks it still
//! needs, when it completes, times out or is declined, which completed
//! checkpoints a newer one subsumes, and when too many failures fail the job.
//!
//! A driver (the local executor, later the coordinator) feeds it facts —
//! the passing of time, acks, declines, finished tasks, the metadata written —
//! and carries out the [`Action`]s it returns: sending triggers to sources,
//! writing metadata, telling tasks a checkpoint completed, deleting files.
//! One checkpoint is pending at a time (Flink's default), and a savepoint
//! requested meanwhile waits for it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::CheckpointId;

/// How checkpoints are taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// Time between the start of two checkpoints.
    pub interval: Duration,
    /// A checkpoint not complete after this long is aborted.
    pub timeout: Duration,
    /// Least time between the end of one checkpoint and the start of the next.
    pub min_pause: Duration,
    /// How many completed checkpoints are kept (at least 1).
    pub retained: usize,
    /// How many checkpoints in a row may fail before the job fails.
    pub tolerable_failures: u32,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
            min_pause: Duration::ZERO,
            retained: 1,
            tolerable_failures: 0,
        }
    }
}

/// Why a checkpoint did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// Not every task acknowledged within the timeout.
    Expired,
    /// A task could not take its snapshot.
    Declined {
        /// The task's description.
        task: String,
        /// What went wrong.
        message: String,
    },
    /// A task finished before it could take part.
    TaskFinished,
    /// Writing the checkpoint's metadata failed.
    MetadataFailed(String),
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Expired => write!(f, "not every task acknowledged it within the timeout"),
            Self::Declined { task, message } => write!(f, "task {task} declined it: {message}"),
            Self::TaskFinished => write!(f, "a task finished before acknowledging it"),
            Self::MetadataFailed(message) => write!(f, "its metadata could not be written: {message}"),
        }
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<T, H> {
    /// Send barrier `id` into the job through every source task.
    Trigger {
        /// The checkpoint.
        id: CheckpointId,
        /// Whether it is a savepoint (owned by the user, never discarded).
        savepoint: bool,
    },
    /// Every task acknowledged: write the metadata atomically, then report
    /// [`CheckpointCoordinator::metadata_written`] (or `metadata_failed`).
    WriteMetadata {
        /// The checkpoint.
        id: CheckpointId,
        /// Each task's state handles.
        acks: Vec<(T, H)>,
        /// Whether it is a savepoint.
        savepoint: bool,
    },
    /// The checkpoint is complete: tell every task (sinks commit).
    NotifyComplete(CheckpointId),
    /// The checkpoint will not complete: tell the tasks and delete its files.
    Abort {
        /// The checkpoint.
        id: CheckpointId,
        /// Why.
        reason: AbortReason,
    },
    /// A completed checkpoint that newer ones subsume: delete its files.
    Discard(CheckpointId),
    /// Too many checkpoints failed in a row.
    FailJob(String),
}

struct Pending<T, H> {
    id: CheckpointId,
    savepoint: bool,
    started: Instant,
    acks: BTreeMap<T, H>,
    /// All acks arrived; the metadata is being written.
    writing: bool,
}

/// The checkpoint state of one job run.
pub struct CheckpointCoordinator<T, H> {
    config: CheckpointConfig,
    /// Tasks that must acknowledge every checkpoint.
    tasks: BTreeSet<T>,
    next_id: u64,
    pending: Option<Pending<T, H>>,
    last_started: Option<Instant>,
    last_ended: Option<Instant>,
    /// Completed checkpoints (not savepoints), oldest first.
    completed: VecDeque<CheckpointId>,
    savepoint_requested: bool,
    consecutive_failures: u32,
    /// Set once any task has finished: no further checkpoint can complete.
    stopped: bool,
}

impl<T: Ord + Clone, H> CheckpointCoordinator<T, H> {
    /// Coordinates checkpoints of `tasks`; ids continue after `last_id` (the
    /// checkpoint the job was restored from, or 0).
    pub fn new(config: CheckpointConfig, tasks: impl IntoIterator<Item = T>, last_id: u64, now: Instant) -> Self {
        Self {
            config,
            tasks: tasks.into_iter().collect(),
            next_id: last_id + 1,
            pending: None,
            // The first checkpoint comes one interval after the start.
            last_started: Some(now),
            last_ended: None,
            completed: VecDeque::new(),
            savepoint_requested: false,
            consecutive_failures: 0,
            stopped: false,
        }
    }

    /// The pending checkpoint, if any.
    pub fn pending(&self) -> Option<CheckpointId> {
        self.pending.as_ref().map(|pending| pending.id)
    }

    /// Asks for a savepoint; it is triggered as soon as no checkpoint is pending.
    pub fn request_savepoint(&mut self) {
        self.savepoint_requested = true;
    }

    /// Time passed: triggers a due checkpoint, expires a late one.
    pub fn poll(&mut self, now: Instant) -> Vec<Action<T, H>> {
        let mut actions = Vec::new();
        if let Some(pending) = &self.pending
            && !pending.writing
            && now.duration_since(pending.started) >= self.config.timeout
        {
            let id = pending.id;
            self.abort(id, AbortReason::Expired, now, &mut actions);
        }
        if self.pending.is_none() && !self.stopped && self.due(now) {
            let savepoint = std::mem::take(&mut self.savepoint_requested);
            let id = CheckpointId(self.next_id);
            self.next_id += 1;
            self.pending = Some(Pending { id, savepoint, started: now, acks: BTreeMap::new(), writing: false });
            self.last_started = Some(now);
            actions.push(Action::Trigger { id, savepoint });
        }
        actions
    }

    fn due(&self, now: Instant) -> bool {
        if self.savepoint_requested {
            return true;
        }
        let interval_passed = self.last_started.is_none_or(|start| now.duration_since(start) >= self.config.interval);
        let pause_passed = self.last_ended.is_none_or(|end| now.duration_since(end) >= self.config.min_pause);
        interval_passed && pause_passed
    }

    /// `task` took its snapshot of checkpoint `id`.
    pub fn ack(&mut self, id: CheckpointId, task: T, handle: H) -> Vec<Action<T, H>> {
        let Some(pending) = self.pending.as_mut().filter(|pending| pending.id == id && !pending.writing) else {
            return Vec::new(); // Late ack of an aborted checkpoint.
        };
        if !self.tasks.contains(&task) {
            return Vec::new();
        }
        pending.acks.insert(task, handle);
        if pending.acks.len() < self.tasks.len() {
            return Vec::new();
        }
        pending.writing = true;
        let acks = std::mem::take(&mut pending.acks).into_iter().collect();
        vec![Action::WriteMetadata { id, acks, savepoint: pending.savepoint }]
    }

    /// `task` could not take its snapshot of checkpoint `id`.
    pub fn decline(&mut self, id: CheckpointId, task: String, message: String, now: Instant) -> Vec<Action<T, H>> {
        let mut actions = Vec::new();
        if self.pending() == Some(id) {
            self.abort(id, AbortReason::Declined { task, message }, now, &mut actions);
        }
        actions
    }

    /// `task` finished (its input ended). No checkpoint can complete from now
    /// on: a pending one that still waits for it is aborted.
    pub fn task_finished(&mut self, task: &T, now: Instant) -> Vec<Action<T, H>> {
        self.stopped = true;
        let mut actions = Vec::new();
        if let Some(pending) = &self.pending
            && !pending.writing
            && !pending.acks.contains_key(task)
        {
            let id = pending.id;
            // Not a failure of checkpointing: the job is ending.
            self.pending = None;
            self.last_ended = Some(now);
            actions.push(Action::Abort { id, reason: AbortReason::TaskFinished });
        }
        actions
    }

    /// The metadata of `id` is durable: the checkpoint is complete.
    pub fn metadata_written(&mut self, id: CheckpointId, now: Instant) -> Vec<Action<T, H>> {
        let Some(pending) = self.pending.take_if(|pending| pending.id == id && pending.writing) else {
            return Vec::new();
        };
        self.last_ended = Some(now);
        self.consecutive_failures = 0;
        let mut actions = vec![Action::NotifyComplete(id)];
        if !pending.savepoint {
            self.completed.push_back(id);
            while self.completed.len() > self.config.retained.max(1) {
                if let Some(old) = self.completed.pop_front() {
                    actions.push(Action::Discard(old));
                }
            }
        }
        actions
    }

    /// Writing the metadata of `id` failed.
    pub fn metadata_failed(&mut self, id: CheckpointId, message: String, now: Instant) -> Vec<Action<T, H>> {
        let mut actions = Vec::new();
        if self.pending() == Some(id) {
            self.abort(id, AbortReason::MetadataFailed(message), now, &mut actions);
        }
        actions
    }

    fn abort(&mut self, id: CheckpointId, reason: AbortReason, now: Instant, actions: &mut Vec<Action<T, H>>) {
        self.pending = None;
        self.last_ended = Some(now);
        self.consecutive_failures += 1;
        let failed_too_often = self.consecutive_failures > self.config.tolerable_failures;
        let message = format!("checkpoint {id} failed: {reason}");
        actions.push(Action::Abort { id, reason });
        if failed_too_often {
            actions.push(Action::FailJob(format!(
                "{message} ({} in a row; the job tolerates {})",
                self.consecutive_failures, self.config.tolerable_failures
            )));
        }
    }

    /// The completed checkpoints still retained, oldest first.
    pub fn retained(&self) -> impl Iterator<Item = CheckpointId> + '_ {
        self.completed.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Coordinator = CheckpointCoordinator<u32, &'static str>;

    fn config() -> CheckpointConfig {
        CheckpointConfig {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            min_pause: Duration::from_millis(20),
            retained: 2,
            tolerable_failures: 1,
        }
    }

    fn ms(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    fn complete(coordinator: &mut Coordinator, id: CheckpointId, at: Instant) -> Vec<Action<u32, &'static str>> {
        assert!(coordinator.ack(id, 1, "a").is_empty());
        let write = coordinator.ack(id, 2, "b");
        assert_eq!(write, vec![Action::WriteMetadata { id, acks: vec![(1, "a"), (2, "b")], savepoint: false }]);
        coordinator.metadata_written(id, at)
    }

    #[test]
    fn triggers_on_the_interval_and_completes_when_every_task_acked() {
        let start = Instant::now();
        let mut coordinator = Coordinator::new(config(), [1, 2], 0, start);
        assert!(coordinator.poll(ms(start, 50)).is_empty(), "not due yet");
        let first = CheckpointId(1);
        assert_eq!(coordinator.poll(ms(start, 100)), vec![Action::Trigger { id: first, savepoint: false }]);
        assert!(coordinator.poll(ms(start, 250)).is_empty(), "one pending at a time");
        assert_eq!(complete(&mut coordinator, first, ms(start, 260)), vec![Action::NotifyComplete(first)]);
        assert!(coordinator.poll(ms(start, 270)).is_empty(), "minimum pause after the end");
        assert_eq!(coordinator.poll(ms(start, 280)), vec![Action::Trigger { id: CheckpointId(2), savepoint: false }]);
    }

    #[test]
    fn keeps_the_retained_number_and_discards_the_subsumed() {
        let start = Instant::now();
        let mut coordinator = Coordinator::new(config(), [1, 2], 6, start);
        let mut discarded = Vec::new();
        for round in 0..4u64 {
            let at = ms(start, 100 + round * 200);
            let [Action::Trigger { id, .. }] = coordinator.poll(at)[..] else { panic!("no trigger") };
            assert_eq!(id, CheckpointId(7 + round), "ids continue after the restored one");
            for action in complete(&mut coordinator, id, ms(at, 10)) {
                if let Action::Discard(old) = action {
                    discarded.push(old);
                }
            }
        }
        assert_eq!(discarded, vec![CheckpointId(7), CheckpointId(8)]);
        assert_eq!(coordinator.retained().collect::<Vec<_>>(), vec![CheckpointId(9), CheckpointId(10)]);
    }

    #[test]
    fn expiry_and_declines_abort_and_too_many_fail_the_job() {
        let start = Instant::now();
        let mut coordinator = Coordinator::new(config(), [1, 2], 0, start);
        coordinator.poll(ms(start, 100));
        assert!(coordinator.ack(CheckpointId(1), 1, "a").is_empty());
        let expired = coordinator.poll(ms(start, 600));
        assert_eq!(expired, vec![Action::Abort { id: CheckpointId(1), reason: AbortReason::Expired }]);
        assert!(coordinator.ack(CheckpointId(1), 2, "b").is_empty(), "a late ack is ignored");
        let [Action::Trigger { id, .. }] = coordinator.poll(ms(start, 700))[..] else { panic!("no trigger") };
        let declined = coordinator.decline(id, "map (1/2)".into(), "disk full".into(), ms(start, 710));
        assert!(
            matches!(&declined[..], [Action::Abort { .. }, Action::FailJob(message)] if message.contains("disk full"))
        );
    }

    #[test]
    fn a_savepoint_waits_for_the_pending_checkpoint_and_is_never_discarded() {
        let start = Instant::now();
        let mut coordinator = Coordinator::new(config(), [1, 2], 0, start);
        coordinator.poll(ms(start, 100));
        coordinator.request_savepoint();
        assert!(coordinator.poll(ms(start, 110)).is_empty());
        complete(&mut coordinator, CheckpointId(1), ms(start, 120));
        let savepoint = CheckpointId(2);
        assert_eq!(coordinator.poll(ms(start, 121)), vec![Action::Trigger { id: savepoint, savepoint: true }]);
        coordinator.ack(savepoint, 1, "a");
        assert!(matches!(&coordinator.ack(savepoint, 2, "b")[..], [Action::WriteMetadata { savepoint: true, .. }]));
        assert_eq!(coordinator.metadata_written(savepoint, ms(start, 130)), vec![Action::NotifyComplete(savepoint)]);
        assert_eq!(coordinator.retained().collect::<Vec<_>>(), vec![CheckpointId(1)]);
    }

    #[test]
    fn a_finished_task_stops_checkpointing() {
        let start = Instant::now();
        let mut coordinator = Coordinator::new(config(), [1, 2], 0, start);
        coordinator.poll(ms(start, 100));
        coordinator.ack(CheckpointId(1), 1, "a");
        assert!(coordinator.task_finished(&1, ms(start, 105)).is_empty(), "task 1 acked already");
        let aborted = coordinator.task_finished(&2, ms(start, 110));
        assert_eq!(aborted, vec![Action::Abort { id: CheckpointId(1), reason: AbortReason::TaskFinished }]);
        assert!(coordinator.poll(ms(start, 1000)).is_empty(), "no checkpoint once tasks finish");
    }
}
