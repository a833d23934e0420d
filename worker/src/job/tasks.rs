//! Task threads: each task of a run gets its own thread, which builds the
//! task's chain, runs its loop and reports how it ended; a panic becomes a
//! task failure that names the operator that panicked.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use weir_common::TaskKey;

use super::plan::PlannedTask;
use crate::task::{TaskBody, run_input, run_source};
use crate::{CancelToken, ExecutorConfig, InputGate, JobError, TaskError, blame};

/// How a task of this process ended.
pub(super) type TaskEnd = (TaskKey, Result<(), TaskError>);

/// The threads started, where their ends arrive, and the failure to start
/// one (which cancels the run).
pub(super) struct Spawned {
    pub threads: Vec<(TaskKey, JoinHandle<()>)>,
    pub ends: Receiver<TaskEnd>,
    pub failure: Option<JobError>,
}

pub(super) fn spawn_tasks(tasks: Vec<PlannedTask>, config: &ExecutorConfig, cancel: &CancelToken) -> Spawned {
    let (end_tx, ends) = crossbeam_channel::unbounded();
    let mut threads = Vec::with_capacity(tasks.len());
    for task in tasks {
        let name = format!("{} ({})", task.setup.task_name, task.setup.subtask);
        let (end_tx, config, task_cancel) = (end_tx.clone(), config.clone(), cancel.clone());
        let key = TaskKey { vertex: task.setup.vertex, subtask: task.setup.subtask.index };
        let spawned = std::thread::Builder::new().name(name.clone()).spawn(move || {
            let result = run_task(task, &config, &task_cancel);
            if result.is_err() {
                task_cancel.cancel();
            }
            // The receiver outlives every task thread, so this cannot fail.
            let _ = end_tx.send((key, result));
        });
        match spawned {
            Ok(handle) => threads.push((key, handle)),
            Err(source) => {
                cancel.cancel();
                return Spawned { threads, ends, failure: Some(JobError::Spawn { task: name, source }) };
            }
        }
    }
    Spawned { threads, ends, failure: None }
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
