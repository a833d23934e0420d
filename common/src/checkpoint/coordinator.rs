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
//!
//! Tasks may finish while the job goes on (a bounded source, the chain behind
//! it): a finished task no longer acknowledges, and its final state (what it
//! left to commit) goes into every later checkpoint in its place, as in
//! Flink's checkpoints after tasks finish. When no source runs any more the
//! driver stops checkpointing.

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
        /// The next id: one above the last one used.
        id: CheckpointId,
        /// Whether it is a savepoint (owned by the user, never discarded).
        savepoint: bool,
    },
    /// Every task acknowledged: write the metadata atomically, then report
    /// [`CheckpointCoordinator::metadata_written`] (or `metadata_failed`).
    WriteMetadata {
        /// The checkpoint every task acknowledged.
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
        /// The pending checkpoint that is given up.
        id: CheckpointId,
        /// What the log and a waiting savepoint request are told.
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
    /// Final state of finished tasks, part of every later checkpoint.
    finished: BTreeMap<T, H>,
    /// No further checkpoint is triggered.
    stopped: bool,
}

impl<T: Ord + Clone, H: Clone> CheckpointCoordinator<T, H> {
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
            finished: BTreeMap::new(),
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
        self.complete_if_acked()
    }

    /// Asks for the metadata once every running task acknowledged.
    fn complete_if_acked(&mut self) -> Vec<Action<T, H>> {
        let Some(pending) = self.pending.as_mut().filter(|pending| !pending.writing) else {
            return Vec::new();
        };
        if !self.tasks.iter().all(|task| pending.acks.contains_key(task)) {
            return Vec::new();
        }
        pending.writing = true;
        let mut acks = std::mem::take(&mut pending.acks);
        for (task, final_state) in &self.finished {
            acks.entry(task.clone()).or_insert_with(|| final_state.clone());
        }
        vec![Action::WriteMetadata { id: pending.id, acks: acks.into_iter().collect(), savepoint: pending.savepoint }]
    }

    /// `task` could not take its snapshot of checkpoint `id`.
    pub fn decline(&mut self, id: CheckpointId, task: String, message: String, now: Instant) -> Vec<Action<T, H>> {
        let mut actions = Vec::new();
        if self.pending() == Some(id) {
            self.abort(id, AbortReason::Declined { task, message }, now, &mut actions);
        }
        actions
    }

    /// `task` finished (its input ended), leaving `final_state`: it is no
    /// longer waited for, and its final state stands in for its snapshot in
    /// this and every later checkpoint.
    pub fn task_finished(&mut self, task: T, final_state: H) -> Vec<Action<T, H>> {
        self.tasks.remove(&task);
        self.finished.insert(task, final_state);
        self.complete_if_acked()
    }

    /// No further checkpoints (no source runs any more); a pending one that
    /// still waits for acks is aborted.
    pub fn stop(&mut self, now: Instant) -> Vec<Action<T, H>> {
        self.stopped = true;
        let mut actions = Vec::new();
        if let Some(pending) = self.pending.take_if(|pending| !pending.writing) {
            self.last_ended = Some(now);
            actions.push(Action::Abort { id: pending.id, reason: AbortReason::TaskFinished });
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
    fn finished_tasks_are_not_waited_for_and_their_final_state_goes_into_later_checkpoints() {
        let start = Instant::now();
        let mut coordinator = Coordinator::new(config(), [1, 2], 0, start);
        coordinator.poll(ms(start, 100));
        assert!(coordinator.ack(CheckpointId(1), 1, "a").is_empty());
        let completed = coordinator.task_finished(2, "final-2");
        let expected = vec![(1, "a"), (2, "final-2")];
        assert_eq!(completed, vec![Action::WriteMetadata { id: CheckpointId(1), acks: expected, savepoint: false }]);
        coordinator.metadata_written(CheckpointId(1), ms(start, 110));
        coordinator.poll(ms(start, 210));
        let write = coordinator.ack(CheckpointId(2), 1, "b");
        assert!(matches!(&write[..], [Action::WriteMetadata { acks, .. }] if acks == &vec![(1, "b"), (2, "final-2")]));
        coordinator.metadata_written(CheckpointId(2), ms(start, 220));
        coordinator.poll(ms(start, 320));
        let stopped = coordinator.stop(ms(start, 330));
        assert_eq!(stopped, vec![Action::Abort { id: CheckpointId(3), reason: AbortReason::TaskFinished }]);
        assert!(coordinator.poll(ms(start, 1000)).is_empty(), "no checkpoint once stopped");
    }
}
