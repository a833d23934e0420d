//! Expands a job graph into the tasks of one run in this process and wires
//! their channels: local channels between tasks here, exchange channels to
//! and from tasks of other processes, and the control lines the checkpoint
//! driver reaches every task by.

use std::collections::BTreeSet;
use std::sync::Arc;

use crossbeam_channel::Sender;
use weir_common::{ChannelKey, JobGraph, SubtaskIndex, TaskKey};

use crate::checkpoint::{ControlLine, JobCheckpoints, RemoteTaskLine, TaskLines, TaskReport};
use crate::exchange::Placement;
use crate::task::{TaskCheckpointing, TaskSetup, reachable_subtasks};
use crate::{CancelToken, EdgeOutput, ExecutorConfig, InputChannel, VertexFactory, channel};

/// A channel from another process holds this many times a local channel's
/// events: its credits make a round trip over the network, and fewer
/// buffers in flight left the consumer waiting (keyed aggregation across two
/// workers: 9.1M records/s with 8, 9.7M with 32; see BENCHMARKS.md).
const REMOTE_CAPACITY_FACTOR: usize = 4;

/// One task, ready to start.
pub(super) struct PlannedTask {
    pub setup: TaskSetup,
    pub inputs: Vec<InputChannel>,
    pub factory: Arc<dyn VertexFactory>,
    pub checkpointing: Option<TaskCheckpointing>,
}

/// The tasks of one run in this process, and how to reach every task.
pub(super) struct PlannedRun {
    pub tasks: Vec<PlannedTask>,
    pub lines: TaskLines,
    /// Leader: the tasks other processes run, awaited until they report their end.
    pub remote_tasks: BTreeSet<TaskKey>,
}

/// What planning a run needs besides the graph.
pub(super) struct PlanContext<'a> {
    pub config: &'a ExecutorConfig,
    pub factories: &'a [Arc<dyn VertexFactory>],
    pub cancel: &'a CancelToken,
    pub job: &'a JobCheckpoints,
    pub reports: &'a Sender<TaskReport>,
    pub run_id: &'a Arc<str>,
}

/// Per vertex, per subtask: its input channels and its output edges.
type Wiring = (Vec<Vec<Vec<InputChannel>>>, Vec<Vec<Vec<EdgeOutput>>>);

pub(super) fn plan(graph: &JobGraph, context: &PlanContext<'_>) -> Result<PlannedRun, String> {
    let placement = context.config.placement.as_deref();
    let (inputs, outputs) = wire_channels(graph, placement, context)?;
    let followers = context.config.placement.clone().filter(|placement| placement.is_leader());
    let followers = followers.map(|placement| placement as Arc<dyn RemoteTaskLine>);
    let mut planned = PlannedRun { tasks: Vec::new(), lines: TaskLines::new(followers), remote_tasks: BTreeSet::new() };
    let has_inputs: Vec<bool> =
        graph.vertices.iter().map(|vertex| graph.edges.iter().any(|edge| edge.target == vertex.id)).collect();
    for ((vertex, vertex_inputs), vertex_outputs) in graph.vertices.iter().zip(inputs).zip(outputs) {
        let task_name: Arc<str> = Arc::from(vertex.name.as_str());
        let is_source = !has_inputs[vertex.id.0 as usize];
        for (index, (inputs, outputs)) in vertex_inputs.into_iter().zip(vertex_outputs).enumerate() {
            let task = TaskKey { vertex: vertex.id, subtask: index };
            if let Some(placement) = placement.filter(|placement| !placement.is_local(index)) {
                // The leader drives and awaits every task; a follower only its own.
                if placement.is_leader() {
                    planned.remote_tasks.insert(task);
                    if context.config.checkpoints.is_some() {
                        planned.lines.insert(task, is_source, ControlLine::Remote(placement.process_of(index)));
                    }
                }
                continue;
            }
            let checkpointing = task_checkpointing(task, is_source, context, &mut planned.lines);
            let setup = TaskSetup {
                vertex: vertex.id,
                task_name: task_name.clone(),
                subtask: SubtaskIndex { index, parallelism: vertex.parallelism },
                max_parallelism: graph.max_parallelism,
                outputs,
                cancel: context.cancel.clone(),
                restore: context.job.restore.clone(),
                run_id: context.run_id.clone(),
                finishing: checkpointing.as_ref().map(|checkpointing| checkpointing.finishing.clone()),
            };
            let factory = context.factories[vertex.id.0 as usize].clone();
            planned.tasks.push(PlannedTask { setup, inputs, factory, checkpointing });
        }
    }
    Ok(planned)
}

/// With checkpointing on: the task's line to the driver, and the driver's to the task.
fn task_checkpointing(
    task: TaskKey,
    is_source: bool,
    context: &PlanContext<'_>,
    lines: &mut TaskLines,
) -> Option<TaskCheckpointing> {
    let settings = context.config.checkpoints.as_ref()?;
    let (control_tx, control) = crossbeam_channel::unbounded();
    lines.insert(task, is_source, ControlLine::Local(control_tx));
    Some(TaskCheckpointing {
        key: task,
        control,
        reports: context.reports.clone(),
        storage: settings.storage.clone(),
        job_id: context.job.job_id.clone(),
        finishing: Arc::default(),
    })
}

/// An empty list per subtask of every vertex.
fn per_subtask<T>(graph: &JobGraph) -> Vec<Vec<Vec<T>>> {
    graph.vertices.iter().map(|vertex| (0..vertex.parallelism).map(|_| Vec::new()).collect()).collect()
}

/// Creates every channel of the run that touches this process.
fn wire_channels(graph: &JobGraph, placement: Option<&Placement>, context: &PlanContext<'_>) -> Result<Wiring, String> {
    let is_local = |index: usize| placement.is_none_or(|placement| placement.is_local(index));
    let (mut inputs, mut outputs): Wiring = (per_subtask(graph), per_subtask(graph));
    let capacity = context.config.channel_capacity;
    for (edge_index, edge) in graph.edges.iter().enumerate() {
        let (source, target) = (graph.vertex(edge.source), graph.vertex(edge.target));
        for (upstream, upstream_outputs) in outputs[source.id.0 as usize].iter_mut().enumerate() {
            let mut channels = Vec::new();
            for downstream in reachable_subtasks(edge, upstream, target.parallelism) {
                let key =
                    ChannelKey { edge: edge_index as u32, upstream: upstream as u32, downstream: downstream as u32 };
                let inputs = &mut inputs[target.id.0 as usize][downstream];
                match (is_local(upstream), is_local(downstream), placement) {
                    (true, false, Some(placement)) => channels.push(placement.network.remote_output(
                        key,
                        placement.process_of(downstream),
                        context.cancel.clone(),
                    )?),
                    (false, true, Some(placement)) => {
                        inputs.push(placement.network.remote_input(key, capacity * REMOTE_CAPACITY_FACTOR));
                    }
                    (false, false, _) => {}
                    _ => {
                        let (sender, receiver) = channel::bounded(capacity, context.cancel.clone());
                        channels.push(sender);
                        inputs.push(receiver);
                    }
                }
            }
            upstream_outputs.push(EdgeOutput { partitioning: edge.partitioning, channels });
        }
    }
    Ok((inputs, outputs))
}
