//! One run of a job in this process: connect the role (local, leader or
//! follower), plan and start the tasks, then a select loop whose arms each
//! call one named step, and the run's end.
//!
//! The loop reacts to four things: a task of this process returned, a task
//! reported on a checkpoint or its end, a follower spoke (leader), the leader
//! spoke (follower). Between them it takes savepoint requests and lets the
//! checkpoint driver trigger what is due.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;
use weir_common::TaskKey;

use super::follower::Follower;
use super::leader::Leader;
use super::plan::{PlanContext, PlannedRun, plan};
use super::state::RunState;
use super::tasks::{TaskEnd, spawn_tasks};
use super::{JobInputs, LocalExecutor, RunOutcome};
use crate::checkpoint::{CheckpointDriver, DriverContext, JobCheckpoints, TaskLines, TaskReport};
use crate::control::{FromFollower, FromLeader, JobCommand};
use crate::exchange::Placement;
use crate::{JobError, TaskError};

/// This process's part in the run.
enum Role {
    /// Every task runs here.
    Local,
    /// Process 0 of a job spread over processes.
    Leader(Leader),
    /// Any other process of such a job.
    Follower(Follower),
}

/// What the run loop reacts to.
enum Happening {
    TaskDone(TaskKey, Result<(), TaskError>),
    Report(TaskReport),
    Follower(usize, FromFollower),
    Leader(FromLeader),
}

/// A run in progress.
struct Run<'a> {
    state: RunState<'a>,
    role: Role,
    lines: &'a TaskLines,
    driver: Option<CheckpointDriver<'a>>,
    job: &'a mut JobCheckpoints,
    reports: Receiver<TaskReport>,
    cancellation_timeout: Duration,
}

impl LocalExecutor {
    /// One run of the job, from `job.restore` if set.
    pub(super) fn run_once(&self, inputs: &JobInputs<'_>, job: &mut JobCheckpoints) -> RunOutcome {
        let JobInputs { graph, factories, cancel, commands } = *inputs;
        let mut state = RunState::new(graph, cancel, job.restore_id());
        let role = match connect_role(self.config.placement.as_ref(), &state) {
            Ok(role) => role,
            Err(error) => return RunOutcome::Failed(error),
        };
        let (report_tx, report_rx) = crossbeam_channel::unbounded();
        let run_id: Arc<str> = match &self.config.placement {
            // Every process of the run names its files alike.
            Some(placement) => Arc::from(placement.run_id.as_str()),
            None => Arc::from(&weir_state::storage::unique_id(&job.job_id)[..12]),
        };
        let context = PlanContext {
            config: &self.config,
            factories,
            cancel: &state.cancel,
            job,
            reports: &report_tx,
            run_id: &run_id,
        };
        let PlannedRun { tasks, lines, remote_tasks } = match plan(graph, &context) {
            Ok(planned) => planned,
            Err(message) => {
                if let Role::Leader(leader) = &role {
                    let _ = leader.finish(false, &Default::default());
                }
                return RunOutcome::Failed(state.exchange_error(message));
            }
        };
        // The loop keeps a sender itself: a disconnected line would make its
        // select return at once, forever (a busy loop that took a core from
        // jobs without checkpointing).
        let _report_line = report_tx;
        tracing::info!(job = %graph.name, tasks = tasks.len(), restored_from = ?job.restore_id(), "starting job");
        let spawned = spawn_tasks(tasks, &self.config, &state.cancel);
        state.failure = spawned.failure;
        state.running = spawned.threads.len();
        state.local_tasks = spawned.threads.iter().map(|(task, _)| *task).collect();
        let mut role = role;
        if let Role::Leader(leader) = &mut role {
            state.running += leader.await_remote(remote_tasks);
        }
        let driver = match (&self.config.checkpoints, &role) {
            (Some(settings), Role::Local | Role::Leader(_)) => {
                Some(CheckpointDriver::new(settings.clone(), &lines, graph, job.last_id))
            }
            _ => None,
        };
        let timeout = self.config.cancellation_timeout;
        let mut run =
            Run { state, role, lines: &lines, driver, job, reports: report_rx, cancellation_timeout: timeout };
        run.event_loop(&spawned.ends, commands);
        run.finish(spawned.threads)
    }
}

/// Joins the other processes of the job: the leader waits for every
/// follower's control stream, a follower opens its own to the leader.
fn connect_role(placement: Option<&Arc<Placement>>, run: &RunState<'_>) -> Result<Role, JobError> {
    let Some(placement) = placement else { return Ok(Role::Local) };
    placement.network.attach_run(&run.cancel);
    if placement.is_leader() {
        let leader = Leader::new(placement.clone(), placement.network.inbox(), placement.slice_process.clone());
        if let Err(message) = placement.network.await_followers(&leader.followers()) {
            // Those that came learn the run failed here (the leader decides).
            let missing = leader.followers().difference(&placement.network.connected()).copied().collect();
            let _ = leader.finish(false, &missing);
            return Err(run.exchange_error(message));
        }
        return Ok(Role::Leader(leader));
    }
    match placement.network.connect_leader(placement.process) {
        Ok(inbox) => Ok(Role::Follower(Follower::new(placement.clone(), inbox))),
        Err(message) => Err(run.exchange_error(message)),
    }
}

impl Run<'_> {
    fn event_loop(&mut self, ends: &Receiver<TaskEnd>, commands: Option<&Receiver<JobCommand>>) {
        let from_followers = match &self.role {
            Role::Leader(leader) => leader.inbox.clone(),
            _ => crossbeam_channel::never(),
        };
        let from_leader = match &self.role {
            Role::Follower(follower) => follower.inbox.clone(),
            _ => crossbeam_channel::never(),
        };
        while self.state.running > 0 || matches!(&self.role, Role::Follower(f) if f.awaits_job_end()) {
            let happening = crossbeam_channel::select! {
                recv(ends) -> end => end.ok().map(|(task, result)| Happening::TaskDone(task, result)),
                recv(self.reports) -> report => report.ok().map(Happening::Report),
                recv(from_followers) -> item => item.ok().map(|(process, item)| Happening::Follower(process, item)),
                recv(from_leader) -> item => item.ok().map(Happening::Leader),
                default(Duration::from_millis(5)) => None,
            };
            match happening {
                Some(Happening::TaskDone(task, result)) => self.on_task_done(task, result),
                Some(Happening::Report(report)) => self.on_report(report),
                Some(Happening::Follower(process, item)) => self.on_follower(process, item),
                Some(Happening::Leader(item)) => self.on_leader(item),
                None => {}
            }
            if self.give_up_on_stuck_tasks() {
                break;
            }
            self.take_commands(commands);
            self.tick();
        }
    }

    fn on_task_done(&mut self, task: TaskKey, result: Result<(), TaskError>) {
        if let Role::Follower(follower) = &mut self.role {
            follower.task_done(task, &result, &self.reports);
        }
        self.state.task_ended(task, result);
    }

    fn on_report(&mut self, report: TaskReport) {
        match &mut self.role {
            Role::Follower(follower) => follower.forward(report),
            Role::Local | Role::Leader(_) => self.report_to_driver(report),
        }
    }

    fn on_follower(&mut self, process: usize, item: FromFollower) {
        let Role::Leader(leader) = &mut self.role else { return };
        if let Some(report) = leader.on_message(process, item, &mut self.state) {
            self.report_to_driver(report);
        }
    }

    fn on_leader(&mut self, item: FromLeader) {
        if let Role::Follower(follower) = &mut self.role {
            follower.on_message(item, self.lines, &mut self.state);
        }
    }

    fn report_to_driver(&mut self, report: TaskReport) {
        let Some(driver) = &mut self.driver else { return };
        let state = &mut self.state;
        driver.on_report(report, DriverContext { job: self.job, cancel: &state.cancel, failure: &mut state.failure });
    }

    /// Savepoint requests go to the checkpoint driver; without one, or while
    /// the run fails, they are refused at once.
    fn take_commands(&mut self, commands: Option<&Receiver<JobCommand>>) {
        let Some(commands) = commands else { return };
        while let Ok(JobCommand::Savepoint { stop, reply }) = commands.try_recv() {
            match &mut self.driver {
                Some(driver) if self.state.failure.is_none() => driver.request_savepoint(stop, reply, self.job),
                Some(_) => drop(reply.send(Err("the job is failing".into()))),
                None => drop(
                    reply.send(Err("savepoints need checkpointing: set a checkpoint directory and interval".into())),
                ),
            }
        }
    }

    /// Tasks that ignore their run's cancellation are given up on, so the
    /// run ends (a cluster process then exits, and its threads with it).
    fn give_up_on_stuck_tasks(&mut self) -> bool {
        let Some(stuck) = self.state.stuck_tasks(self.cancellation_timeout) else { return false };
        let tasks: Vec<String> = stuck.iter().map(TaskKey::to_string).collect();
        tracing::error!(job = %self.state.graph.name, ?tasks, "tasks did not stop after the cancellation");
        let (job, timeout) = (self.state.graph.name.clone(), self.cancellation_timeout);
        let cause = self.state.failure.take().map_or_else(|| "cancelled".to_owned(), |cause| cause.to_string());
        self.state.failure = Some(JobError::CancellationTimeout { job, tasks, timeout, cause });
        true
    }

    /// Between happenings: checkpoints fall due, and a failing leader cancels its followers.
    fn tick(&mut self) {
        let state = &mut self.state;
        if let Some(driver) = &mut self.driver
            && state.failure.is_none()
            && !state.cancel.is_cancelled()
        {
            driver.tick(DriverContext { job: self.job, cancel: &state.cancel, failure: &mut state.failure });
        }
        if let Role::Leader(leader) = &mut self.role {
            leader.cancel_followers_if_failing(&self.state);
        }
    }

    /// Every task ended: settle the run's outcome with the other processes
    /// and wait for the task threads.
    fn finish(mut self, threads: Vec<(TaskKey, JoinHandle<()>)>) -> RunOutcome {
        // A task reports before it returns, but the two lines are separate:
        // what the last tasks reported may still wait here.
        if self.driver.is_some() {
            while let Ok(report) = self.reports.try_recv() {
                self.report_to_driver(report);
            }
        }
        let state = &mut self.state;
        if state.job_cancel.is_cancelled() && state.failure.is_none() {
            state.failure = Some(JobError::Cancelled(state.graph.name.clone()));
        }
        if let Some(driver) = &mut self.driver
            && state.failure.is_none()
            && !state.cancelled
            && let Err(message) = driver.run_final_commits()
        {
            state.failure = Some(state.checkpointing_error(message));
        }
        match self.role {
            Role::Local => {}
            Role::Follower(follower) => follower.finish(state),
            Role::Leader(leader) => finish_as_leader(&leader, state, self.job),
        }
        if state.cancelled && state.failure.is_none() {
            state.failure = Some(JobError::Cancelled(state.graph.name.clone()));
        }
        // Stuck threads are left to themselves: joining them would never end.
        for (_, thread) in threads.into_iter().filter(|(task, _)| !state.local_tasks.contains(task)) {
            // Task threads catch their own panics; a join error cannot carry news.
            let _ = thread.join();
        }
        match state.failure.take() {
            Some(error) => RunOutcome::Failed(error),
            None => {
                tracing::info!(job = %state.graph.name, "job finished");
                RunOutcome::Finished
            }
        }
    }
}

/// The leader tells its followers how the job ended; a follower's failing
/// last commit fails the job, even one that stopped with a savepoint.
fn finish_as_leader(leader: &Leader, state: &mut RunState<'_>, job: &mut JobCheckpoints) {
    if state.failure.is_none()
        && let Some(message) = leader.transport_failure()
    {
        state.failure = Some(state.exchange_error(message));
    }
    let success = (state.failure.is_none() && !state.cancelled) || job.stopped;
    if let Err(message) = leader.finish(success, &Default::default()) {
        state.failure = Some(state.checkpointing_error(message));
        job.stopped = false;
    }
}
