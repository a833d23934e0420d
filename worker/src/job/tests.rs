//! The leader and follower roles against in-memory control lines: what each
//! does with the other's messages, without processes or a network.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use weir_common::{
    CheckpointId, JobGraph, JobVertex, MaxParallelism, OperatorDescriptor, OperatorId, OperatorKind, TaskKey, VertexId,
};

use super::follower::Follower;
use super::leader::Leader;
use super::state::RunState;
use crate::checkpoint::{CheckpointReport, TaskControl, TaskLines, TaskReport, TaskSnapshot};
use crate::control::{FollowerLines, FromFollower, FromLeader, LeaderLine, ToFollower, ToLeader};
use crate::{CancelToken, JobError, TaskError};

/// Records what is sent, as text (the messages are not comparable).
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<String>>,
    closed: Mutex<bool>,
}

impl Recorder {
    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn record(&self, text: String) {
        self.sent.lock().unwrap_or_else(PoisonError::into_inner).push(text);
    }
}

impl FollowerLines for Recorder {
    fn send(&self, process: usize, message: &ToFollower) {
        self.record(format!("{process}: {message:?}"));
    }

    fn close(&self) {
        *self.closed.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }

    fn transport_failure(&self) -> Option<String> {
        None
    }
}

impl LeaderLine for Recorder {
    fn send(&self, message: &ToLeader) {
        self.record(format!("{message:?}"));
    }

    fn close(&self) {
        *self.closed.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }
}

/// One vertex at parallelism 3: slice 0 on the leader, slices 1 and 2 on followers 1 and 2.
fn graph() -> JobGraph {
    let operator = OperatorDescriptor {
        id: OperatorId::from_uid("source"),
        uid: None,
        name: "Source".into(),
        kind: OperatorKind::Source,
    };
    JobGraph {
        name: "job".into(),
        max_parallelism: MaxParallelism::new(128).expect("valid"),
        vertices: vec![JobVertex { id: VertexId(0), name: "Source".into(), parallelism: 3, operators: vec![operator] }],
        edges: Vec::new(),
    }
}

fn task(subtask: usize) -> TaskKey {
    TaskKey { vertex: VertexId(0), subtask }
}

fn leader(lines: &Arc<Recorder>) -> (Leader, crossbeam_channel::Sender<(usize, FromFollower)>) {
    let (inbox_tx, inbox) = crossbeam_channel::unbounded();
    let mut leader = Leader::new(lines.clone(), inbox, vec![0, 1, 2]);
    leader.await_remote([task(1), task(2)].into_iter().collect());
    (leader, inbox_tx)
}

#[test]
fn the_leader_counts_remote_task_ends_once_and_forwards_reports_to_the_driver() {
    let graph = graph();
    let lines = Arc::new(Recorder::default());
    let (mut leader, _inbox) = leader(&lines);
    let mut run = RunState::new(&graph, &CancelToken::new(), None);
    run.running = 3;
    let done = |subtask| FromFollower::Message(ToLeader::Done { task: task(subtask), outcome: Ok(()) });
    assert!(leader.on_message(1, done(1), &mut run).is_none());
    assert!(leader.on_message(1, done(1), &mut run).is_none(), "a repeated end is ignored");
    assert_eq!(run.running, 2);
    let ack = CheckpointReport::Ack { id: CheckpointId(4), task: task(2), snapshot: TaskSnapshot::default() };
    let report = leader.on_message(2, FromFollower::Message(ToLeader::Checkpoint(ack)), &mut run);
    assert!(matches!(report, Some(TaskReport::Checkpoint(CheckpointReport::Ack { id: CheckpointId(4), .. }))));
    assert!(run.failure.is_none() && !run.cancel.is_cancelled());
}

#[test]
fn a_report_on_a_task_the_follower_does_not_run_fails_the_run_instead_of_the_leader() {
    let graph = graph();
    let lines = Arc::new(Recorder::default());
    let (mut leader, _inbox) = leader(&lines);
    for (process, task) in [(1, TaskKey { vertex: VertexId(9), subtask: 0 }), (1, task(7)), (2, task(1))] {
        let mut run = RunState::new(&graph, &CancelToken::new(), None);
        let forged = FromFollower::Message(ToLeader::Finished { task, snapshot: TaskSnapshot::default() });
        assert!(leader.on_message(process, forged, &mut run).is_none(), "not for the driver");
        let expected = format!("process {process} reported on task {task}, which it does not run");
        assert!(matches!(&run.failure, Some(JobError::Exchange { message, .. }) if *message == expected));
        assert!(run.cancel.is_cancelled());
    }
}

#[test]
fn a_followers_finished_task_commits_there_when_the_driver_runs_the_commit() {
    let graph = graph();
    let lines = Arc::new(Recorder::default());
    let (mut leader, _inbox) = leader(&lines);
    let mut run = RunState::new(&graph, &CancelToken::new(), None);
    let finished = FromFollower::Message(ToLeader::Finished { task: task(2), snapshot: TaskSnapshot::default() });
    let Some(TaskReport::Finished { commits, .. }) = leader.on_message(2, finished, &mut run) else {
        panic!("a finished report for the driver")
    };
    assert!(lines.sent().is_empty(), "nothing is committed before a checkpoint holds the final state");
    for commit in commits {
        commit().expect("sent");
    }
    let expected = format!("2: {:?}", ToFollower::CommitFinished { task: task(2) });
    assert_eq!(lines.sent(), vec![expected]);
}

#[test]
fn a_lost_follower_fails_the_run_its_tasks_stop_counting_and_the_others_are_cancelled() {
    let graph = graph();
    let lines = Arc::new(Recorder::default());
    let (mut leader, _inbox) = leader(&lines);
    let mut run = RunState::new(&graph, &CancelToken::new(), None);
    run.running = 3;
    leader.on_message(1, FromFollower::Lost("process 1 closed its control stream".into()), &mut run);
    assert_eq!(run.running, 2, "the lost follower's task no longer counts");
    assert!(matches!(&run.failure, Some(JobError::Exchange { message, .. }) if message.contains("process 1")));
    assert!(run.cancel.is_cancelled());
    leader.cancel_followers_if_failing(&run);
    leader.cancel_followers_if_failing(&run);
    let cancels: Vec<String> = (1..=2).map(|process| format!("{process}: {:?}", ToFollower::Cancel)).collect();
    assert_eq!(lines.sent(), cancels, "every follower is cancelled, once");
}

#[test]
fn the_leader_ends_the_job_with_the_followers_that_are_left_and_hears_their_last_commits() {
    let graph = graph();
    let lines = Arc::new(Recorder::default());
    let (mut leader, inbox) = leader(&lines);
    let mut run = RunState::new(&graph, &CancelToken::new(), None);
    leader.on_message(2, FromFollower::Lost("gone".into()), &mut run);
    let message = "the sink could not rename its part file".to_owned();
    inbox.send((1, FromFollower::Message(ToLeader::CommitFailed { message: message.clone() }))).expect("open");
    inbox.send((1, FromFollower::Lost("closed".into()))).expect("open");
    assert_eq!(leader.finish(true, &BTreeSet::new()), Err(message));
    assert_eq!(lines.sent(), vec![format!("1: {:?}", ToFollower::JobEnd { success: true })]);
    assert!(*lines.closed.lock().unwrap_or_else(PoisonError::into_inner));
}

#[test]
fn a_follower_holds_commits_until_the_leader_asks_and_relays_task_commands() {
    let graph = graph();
    let line = Arc::new(Recorder::default());
    let (_leader_tx, inbox) = crossbeam_channel::unbounded();
    let mut follower = Follower::new(line.clone(), inbox);
    let mut run = RunState::new(&graph, &CancelToken::new(), None);
    let committed = Arc::new(Mutex::new(0));
    let counter = committed.clone();
    let commit: crate::checkpoint::FinalCommit = Box::new(move || {
        *counter.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Ok(())
    });
    follower.forward(TaskReport::Finished { task: task(1), snapshot: TaskSnapshot::default(), commits: vec![commit] });
    assert_eq!(*committed.lock().unwrap_or_else(PoisonError::into_inner), 0, "held until the leader asks");
    let (control_tx, control) = crossbeam_channel::unbounded();
    let mut lines = TaskLines::new(None);
    lines.insert(task(1), true, crate::checkpoint::ControlLine::Local(control_tx));
    let trigger = TaskControl::Trigger { id: CheckpointId(7), savepoint: false };
    follower.on_message(FromLeader::Message(ToFollower::Task { task: task(1), command: trigger }), &lines, &mut run);
    assert_eq!(control.try_recv().ok(), Some(trigger), "the command reaches the local task");
    let commit_finished = FromLeader::Message(ToFollower::CommitFinished { task: task(1) });
    follower.on_message(commit_finished, &lines, &mut run);
    assert_eq!(*committed.lock().unwrap_or_else(PoisonError::into_inner), 1);
    assert!(line.sent()[0].starts_with("Finished"), "{:?}", line.sent());
}

#[test]
fn a_follower_succeeds_only_on_the_leaders_word() {
    let graph = graph();
    for (word, succeeds) in [(Some(true), true), (Some(false), false), (None, false)] {
        let line = Arc::new(Recorder::default());
        let (_leader_tx, inbox) = crossbeam_channel::unbounded();
        let mut follower = Follower::new(line.clone(), inbox);
        let mut run = RunState::new(&graph, &CancelToken::new(), None);
        run.task_ended(task(1), Err(TaskError::Cancelled));
        let lines = TaskLines::new(None);
        if let Some(success) = word {
            follower.on_message(FromLeader::Message(ToFollower::JobEnd { success }), &lines, &mut run);
        } else {
            follower.on_message(FromLeader::Lost("the leader closed the control stream".into()), &lines, &mut run);
            assert!(run.cancel.is_cancelled(), "losing the leader before its word cancels the run");
        }
        assert!(!follower.awaits_job_end());
        follower.finish(&mut run);
        assert_eq!(run.failure.is_none() && !run.cancelled, succeeds, "leader's word {word:?}");
        if !succeeds {
            assert!(matches!(run.failure, Some(JobError::Exchange { .. })), "a failure, not a cancellation: {word:?}");
        }
        assert!(*line.closed.lock().unwrap_or_else(PoisonError::into_inner));
    }
}
