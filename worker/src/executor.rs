//! Runs a whole job graph in this process: one thread per task, bounded
//! channels between tasks, and fail-fast cancellation.
//!
//! A job ends when every task has returned. The first task that fails with a
//! root cause cancels the others; `execute` waits for all of them before it
//! returns that failure, so no thread of the job outlives the call.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use weir_common::{JobGraph, JobGraphError, SubtaskIndex};

use crate::task::{TaskBody, TaskSetup, reachable_subtasks, run_input, run_source};
use crate::{CancelToken, EdgeOutput, InputChannel, InputGate, JobError, TaskError, VertexFactory, blame, channel};

/// Tuning of the local execution.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// Capacity of each channel, in batches: the backpressure bound.
    pub channel_capacity: usize,
    /// Longest time a record may wait in a partly filled output buffer.
    pub flush_interval: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self { channel_capacity: 8, flush_interval: Duration::from_millis(100) }
    }
}

/// Executes job graphs inside the current process.
#[derive(Clone, Debug, Default)]
pub struct LocalExecutor {
    config: ExecutorConfig,
}

/// One task, ready to start.
struct PlannedTask {
    setup: TaskSetup,
    inputs: Vec<InputChannel>,
    factory: Arc<dyn VertexFactory>,
}

impl LocalExecutor {
    /// An executor with the given tuning.
    pub fn new(config: ExecutorConfig) -> Self {
        Self { config }
    }

    /// Runs `graph` to completion. `factories[i]` builds the tasks of vertex `i`.
    pub fn execute(
        &self,
        graph: &JobGraph,
        factories: &[Arc<dyn VertexFactory>],
        cancel: &CancelToken,
    ) -> Result<(), JobError> {
        graph.validate()?;
        if factories.len() != graph.vertices.len() {
            return Err(JobError::InvalidGraph(JobGraphError::Invalid(format!(
                "{} vertices but {} task factories",
                graph.vertices.len(),
                factories.len()
            ))));
        }
        let tasks = self.plan(graph, factories, cancel);
        tracing::info!(job = %graph.name, tasks = tasks.len(), "starting job");
        let (done_tx, done_rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(tasks.len());
        let mut failure = None;
        for task in tasks {
            let name = format!("{} ({})", task.setup.task_name, task.setup.subtask);
            let (done_tx, config, task_cancel) = (done_tx.clone(), self.config.clone(), cancel.clone());
            let spawned = std::thread::Builder::new().name(name.clone()).spawn(move || {
                let identity = (task.setup.task_name.clone(), task.setup.subtask);
                let result = run_task(task, &config, &task_cancel);
                if result.is_err() {
                    task_cancel.cancel();
                }
                // The receiver outlives every task thread, so this cannot fail.
                let _ = done_tx.send((identity, result));
            });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(source) => {
                    cancel.cancel();
                    failure = Some(JobError::Spawn { task: name, source });
                    break;
                }
            }
        }
        drop(done_tx);
        let mut cancelled = false;
        for ((task, subtask), result) in done_rx {
            match result {
                // Tasks cancelled because of a failure may report before the failed
                // one does: the operator failure wins, whatever the order.
                Err(TaskError::Operator { operator, message }) if failure.is_none() => {
                    tracing::error!(job = %graph.name, %task, %subtask, %operator, %message, "task failed");
                    failure = Some(JobError::TaskFailed {
                        job: graph.name.clone(),
                        task: task.to_string(),
                        subtask,
                        operator,
                        message,
                    });
                }
                Err(TaskError::Cancelled) => cancelled = true,
                _ => {}
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
            Some(error) => Err(error),
            None => {
                tracing::info!(job = %graph.name, "job finished");
                Ok(())
            }
        }
    }

    /// Expands the graph into tasks and wires their channels.
    fn plan(&self, graph: &JobGraph, factories: &[Arc<dyn VertexFactory>], cancel: &CancelToken) -> Vec<PlannedTask> {
        let mut inputs: Vec<Vec<Vec<InputChannel>>> =
            graph.vertices.iter().map(|v| (0..v.parallelism).map(|_| Vec::new()).collect()).collect();
        let mut outputs: Vec<Vec<Vec<EdgeOutput>>> =
            graph.vertices.iter().map(|v| (0..v.parallelism).map(|_| Vec::new()).collect()).collect();
        for edge in &graph.edges {
            let (source, target) = (graph.vertex(edge.source), graph.vertex(edge.target));
            for (upstream, upstream_outputs) in outputs[source.id.0 as usize].iter_mut().enumerate() {
                let mut channels = Vec::new();
                for downstream in reachable_subtasks(edge, upstream, target.parallelism) {
                    let (sender, receiver) = channel::bounded(self.config.channel_capacity, cancel.clone());
                    channels.push(sender);
                    inputs[target.id.0 as usize][downstream].push(receiver);
                }
                upstream_outputs.push(EdgeOutput { partitioning: edge.partitioning, channels });
            }
        }
        let mut tasks = Vec::new();
        for ((vertex, vertex_inputs), vertex_outputs) in graph.vertices.iter().zip(inputs).zip(outputs) {
            let task_name: Arc<str> = Arc::from(vertex.name.as_str());
            for (index, (inputs, outputs)) in vertex_inputs.into_iter().zip(vertex_outputs).enumerate() {
                let setup = TaskSetup {
                    vertex: vertex.id,
                    task_name: task_name.clone(),
                    subtask: SubtaskIndex { index, parallelism: vertex.parallelism },
                    max_parallelism: graph.max_parallelism,
                    outputs,
                    cancel: cancel.clone(),
                };
                tasks.push(PlannedTask { setup, inputs, factory: factories[vertex.id.0 as usize].clone() });
            }
        }
        tasks
    }
}

/// Builds and runs one task on the current thread, turning panics into errors.
fn run_task(task: PlannedTask, config: &ExecutorConfig, cancel: &CancelToken) -> Result<(), TaskError> {
    let task_name = task.setup.task_name.clone();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut gate = InputGate::new(task.inputs, cancel.clone());
        match task.factory.create(task.setup)? {
            TaskBody::Source(mut source) => run_source(source.as_mut(), config.flush_interval, cancel),
            TaskBody::Input(mut input) => run_input(input.as_mut(), &mut gate, config.flush_interval),
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
