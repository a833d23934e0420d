//! The logical graph a program builds, and its compilation into a
//! [`JobGraph`] of chains plus the factories that build each chain's tasks.
//!
//! Nodes are added in program order, and a node only ever consumes nodes added
//! before it, so node order is a topological order. Compilation (Flink's
//! `StreamingJobGraphGenerator`):
//! 1. resolves each node's parallelism and each edge's partitioning (forward
//!    between equal parallelisms, rebalance otherwise, unless the program chose);
//! 2. chains a node into its input's vertex when the edge is forward, the node
//!    has that one input, and chaining is not disabled;
//! 3. assigns stable operator ids (from `uid`, else from the position).

use std::collections::HashSet;
use std::sync::Arc;

use weir_common::{
    JobEdge, JobGraph, JobVertex, KeyGroupRange, MaxParallelism, OperatorDescriptor, OperatorId, OperatorKind,
    Partitioning, VertexId,
};
use weir_worker::{EdgeOutput, InputTask, SourceTask, TaskBody, TaskError, TaskSetup, VertexFactory};

use crate::operators::OperatorContext;
use crate::partition::WriterFactory;
use crate::push::{ErasedPush, Outputs, SideOutputs, SidePush};
use crate::time::CurrentTimestamp;
use crate::{Error, Result, RuntimeMode};

/// Index of a node in the logical graph.
pub(crate) type NodeId = usize;

/// Builds an operator instance in front of its downstream consumers.
pub(crate) type BuildOperator = Arc<dyn Fn(&OperatorContext, Outputs) -> Result<ErasedPush, TaskError> + Send + Sync>;
/// Builds a source instance in front of its downstream consumers.
pub(crate) type BuildSource =
    Arc<dyn Fn(&OperatorContext, Outputs) -> Result<Box<dyn SourceTask>, TaskError> + Send + Sync>;
/// Wraps an operator that heads a chain into a task fed by channels (typed on its input).
pub(crate) type BuildInputTask =
    Arc<dyn Fn(ErasedPush, &OperatorContext) -> Result<Box<dyn InputTask>, TaskError> + Send + Sync>;
/// Joins a node's consumers into one (typed on its output).
pub(crate) type BuildFanOut = Arc<dyn Fn(Vec<ErasedPush>) -> Result<ErasedPush, TaskError> + Send + Sync>;
/// Joins the consumers of one side output into one (typed on the side output).
pub(crate) type BuildSideFanOut = Arc<dyn Fn(Vec<ErasedPush>) -> Result<Box<dyn SidePush>, TaskError> + Send + Sync>;

/// A job edge fed by a node: its output slot in the task, the writers that
/// fill it, and which of the node's outputs feeds it.
type EdgeFeed = (usize, Arc<dyn WriterFactory>, Option<SideOutputRef>);

/// Which side output of the upstream node an edge consumes.
#[derive(Clone)]
pub(crate) struct SideOutputRef {
    pub(crate) id: u64,
    pub(crate) fan_out: BuildSideFanOut,
}

/// What a node is.
#[derive(Clone)]
pub(crate) enum NodeBody {
    Source { build: BuildSource, bounded: bool },
    Operator { build: BuildOperator, input_task: BuildInputTask },
}

/// An input of a node.
#[derive(Clone)]
pub(crate) struct LogicalEdge {
    pub(crate) from: NodeId,
    /// `None`: forward when parallelisms match, rebalance otherwise.
    pub(crate) partitioning: Option<Partitioning>,
    /// Writes the upstream node's records to this edge's channels.
    pub(crate) writers: Arc<dyn WriterFactory>,
    /// `None`: the main output of `from`; else one of its side outputs.
    pub(crate) side: Option<SideOutputRef>,
}

/// One operator of the logical graph.
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) uid: Option<String>,
    pub(crate) kind: OperatorKind,
    pub(crate) parallelism: Option<usize>,
    pub(crate) chainable: bool,
    pub(crate) inputs: Vec<LogicalEdge>,
    pub(crate) body: NodeBody,
    pub(crate) fan_out: BuildFanOut,
}

/// Job-wide settings compilation needs.
#[derive(Clone, Debug)]
pub(crate) struct JobSettings {
    pub(crate) name: String,
    pub(crate) parallelism: usize,
    pub(crate) max_parallelism: MaxParallelism,
    pub(crate) mode: RuntimeMode,
    /// For RocksDB: the directory of this job run.
    pub(crate) state_backend: weir_state::keyed::StateBackendKind,
}

/// A compiled job: the graph and, per vertex, the factory of its tasks.
pub(crate) struct CompiledJob {
    pub(crate) graph: JobGraph,
    pub(crate) factories: Vec<Arc<dyn VertexFactory>>,
}

/// Compiles the logical graph.
pub(crate) fn compile(nodes: &[Node], settings: &JobSettings) -> Result<CompiledJob> {
    if nodes.is_empty() {
        return Err(Error::InvalidJob("the job has no operators: add a source and a sink before execute".into()));
    }
    for (id, node) in nodes.iter().enumerate() {
        if node.inputs.iter().any(|input| input.from >= id) {
            return Err(Error::InvalidJob(format!("operator '{}' consumes a stream that is not before it", node.name)));
        }
    }
    let parallelism = resolve_parallelism(nodes, settings)?;
    let partitioning = resolve_partitioning(nodes, &parallelism)?;
    check_batch_sources(nodes, settings)?;
    let ids = operator_ids(nodes)?;
    let chains = Chains::assign(nodes, &partitioning);
    let wiring = Wiring::connect(nodes, &partitioning, &chains);

    let mut vertices = Vec::with_capacity(chains.members.len());
    let mut factories: Vec<Arc<dyn VertexFactory>> = Vec::with_capacity(chains.members.len());
    for (vertex, chain) in chains.members.iter().enumerate() {
        factories.push(Arc::new(ChainFactory {
            links: wiring.links(nodes, chain, &ids),
            mode: settings.mode,
            state_backend: settings.state_backend.clone(),
        }));
        let operators = chain
            .iter()
            .map(|&id| OperatorDescriptor {
                id: ids[id],
                uid: nodes[id].uid.clone(),
                name: nodes[id].name.clone(),
                kind: nodes[id].kind,
            })
            .collect();
        vertices.push(JobVertex {
            id: VertexId(vertex as u32),
            name: chain.iter().map(|&id| nodes[id].name.as_str()).collect::<Vec<_>>().join(" -> "),
            parallelism: parallelism[chain[0]],
            operators,
        });
    }
    let graph = JobGraph {
        name: settings.name.clone(),
        max_parallelism: settings.max_parallelism,
        vertices,
        edges: wiring.edges,
    };
    graph.validate().map_err(|error| Error::InvalidJob(error.to_string()))?;
    Ok(CompiledJob { graph, factories })
}

/// Which vertex (chain) every node belongs to.
struct Chains {
    vertex_of: Vec<usize>,
    /// The nodes of each vertex, head first.
    members: Vec<Vec<NodeId>>,
}

impl Chains {
    /// A node joins its input's vertex when it can be chained, else starts one.
    fn assign(nodes: &[Node], partitioning: &[Vec<Partitioning>]) -> Self {
        let mut chains = Self { vertex_of: Vec::with_capacity(nodes.len()), members: Vec::new() };
        for (id, node) in nodes.iter().enumerate() {
            let chained_to = match (node.inputs.as_slice(), partitioning[id].as_slice()) {
                // Disabling chaining cuts both sides, as Flink's `ChainingStrategy.NEVER`.
                ([input], [Partitioning::Forward]) if node.chainable && nodes[input.from].chainable => {
                    Some(chains.vertex_of[input.from])
                }
                _ => None,
            };
            let vertex = chained_to.unwrap_or_else(|| {
                chains.members.push(Vec::new());
                chains.members.len() - 1
            });
            chains.members[vertex].push(id);
            chains.vertex_of.push(vertex);
        }
        chains
    }
}

/// Where every node's output goes: chained successors in its own task, or
/// output slots of its task that feed job edges.
struct Wiring {
    edges: Vec<JobEdge>,
    /// Per node: the job edges it feeds.
    outputs_of_node: Vec<Vec<EdgeFeed>>,
    /// Per node: the nodes of its chain it feeds, and from which output.
    chained_successors: Vec<Vec<(NodeId, Option<SideOutputRef>)>>,
}

impl Wiring {
    /// Job edges in node order; a task's output slots are numbered in that
    /// order, which is the order the executor hands the task its outputs.
    fn connect(nodes: &[Node], partitioning: &[Vec<Partitioning>], chains: &Chains) -> Self {
        let mut wiring = Self {
            edges: Vec::new(),
            outputs_of_node: vec![Vec::new(); nodes.len()],
            chained_successors: vec![Vec::new(); nodes.len()],
        };
        let mut output_slots = vec![0usize; chains.members.len()];
        for (id, node) in nodes.iter().enumerate() {
            for (input, &edge_partitioning) in node.inputs.iter().zip(&partitioning[id]) {
                let (source, target) = (chains.vertex_of[input.from], chains.vertex_of[id]);
                if source == target {
                    wiring.chained_successors[input.from].push((id, input.side.clone()));
                    continue;
                }
                wiring.edges.push(JobEdge {
                    source: VertexId(source as u32),
                    target: VertexId(target as u32),
                    partitioning: edge_partitioning,
                });
                wiring.outputs_of_node[input.from].push((
                    output_slots[source],
                    input.writers.clone(),
                    input.side.clone(),
                ));
                output_slots[source] += 1;
            }
        }
        wiring
    }

    /// The links of one chain, for its task factory.
    fn links(&self, nodes: &[Node], chain: &[NodeId], ids: &[OperatorId]) -> Vec<ChainLink> {
        let position_in_chain = |node: NodeId| chain.iter().position(|&member| member == node);
        chain
            .iter()
            .map(|&id| ChainLink {
                node: nodes[id].clone(),
                operator_id: ids[id],
                successors: self.chained_successors[id]
                    .iter()
                    .filter_map(|(successor, side)| Some((position_in_chain(*successor)?, side.clone())))
                    .collect(),
                outputs: self.outputs_of_node[id].clone(),
            })
            .collect()
    }
}

fn resolve_parallelism(nodes: &[Node], settings: &JobSettings) -> Result<Vec<usize>> {
    let max = settings.max_parallelism.get();
    nodes
        .iter()
        .map(|node| {
            let parallelism = node.parallelism.unwrap_or(settings.parallelism);
            if parallelism > max {
                return Err(Error::InvalidJob(format!(
                    "operator '{}' has parallelism {parallelism}, above the max parallelism {max}; \
                     lower it or raise the max parallelism (--max-parallelism)",
                    node.name
                )));
            }
            Ok(parallelism)
        })
        .collect()
}

fn resolve_partitioning(nodes: &[Node], parallelism: &[usize]) -> Result<Vec<Vec<Partitioning>>> {
    let mut resolved = Vec::with_capacity(nodes.len());
    for (id, node) in nodes.iter().enumerate() {
        let mut per_input = Vec::with_capacity(node.inputs.len());
        for input in &node.inputs {
            let same = parallelism[input.from] == parallelism[id];
            per_input.push(match input.partitioning {
                Some(Partitioning::Forward) if !same => {
                    return Err(Error::InvalidJob(format!(
                        "forward edge from '{}' (parallelism {}) to '{}' (parallelism {}) needs equal parallelism",
                        nodes[input.from].name, parallelism[input.from], node.name, parallelism[id]
                    )));
                }
                Some(chosen) => chosen,
                None if same => Partitioning::Forward,
                None => Partitioning::Rebalance,
            });
        }
        resolved.push(per_input);
    }
    Ok(resolved)
}

fn check_batch_sources(nodes: &[Node], settings: &JobSettings) -> Result<()> {
    if settings.mode != RuntimeMode::Batch {
        return Ok(());
    }
    for node in nodes {
        if let NodeBody::Source { bounded: false, .. } = node.body {
            return Err(Error::InvalidJob(format!(
                "source '{}' is unbounded, but batch mode needs every source to end; \
                 bound it or use streaming mode",
                node.name
            )));
        }
    }
    Ok(())
}

fn operator_ids(nodes: &[Node]) -> Result<Vec<OperatorId>> {
    let mut seen_uids = HashSet::new();
    let mut ids: Vec<OperatorId> = Vec::with_capacity(nodes.len());
    for (sequence, node) in nodes.iter().enumerate() {
        let id = match &node.uid {
            Some(uid) => {
                if !seen_uids.insert(uid.as_str()) {
                    return Err(Error::InvalidJob(format!("uid '{uid}' is used by more than one operator")));
                }
                OperatorId::from_uid(uid)
            }
            None => {
                let inputs: Vec<OperatorId> = node.inputs.iter().map(|input| ids[input.from]).collect();
                OperatorId::from_position(&format!("{:?}", node.kind), &inputs, sequence)
            }
        };
        ids.push(id);
    }
    Ok(ids)
}

/// One operator of a chain and where its output goes.
struct ChainLink {
    node: Node,
    operator_id: OperatorId,
    /// Positions (in the chain) of the operators this one feeds directly,
    /// and which of its outputs each consumes.
    successors: Vec<(usize, Option<SideOutputRef>)>,
    /// The job edges it feeds.
    outputs: Vec<EdgeFeed>,
}

/// Builds the tasks of one vertex: its chain, back to front.
struct ChainFactory {
    links: Vec<ChainLink>,
    mode: RuntimeMode,
    state_backend: weir_state::keyed::StateBackendKind,
}

impl VertexFactory for ChainFactory {
    fn create(&self, mut setup: TaskSetup) -> Result<TaskBody, TaskError> {
        let key_group_range = setup.key_group_range();
        let timestamp = CurrentTimestamp::default();
        let mut outputs: Vec<Option<EdgeOutput>> = std::mem::take(&mut setup.outputs).into_iter().map(Some).collect();
        let mut built: Vec<Option<ErasedPush>> = (0..self.links.len()).map(|_| None).collect();
        for (position, link) in self.links.iter().enumerate().rev() {
            let context = self.context(link, &setup, key_group_range, &timestamp);
            let mut targets = ConsumerGroups::default();
            for (successor, side) in &link.successors {
                let built = built[*successor].take().ok_or_else(|| context.error("chain successor built twice"))?;
                targets.add(side, built);
            }
            for (slot, writers, side) in &link.outputs {
                let output = outputs.get_mut(*slot).and_then(Option::take);
                let output = output.ok_or_else(|| context.error(format!("output slot {slot} missing")))?;
                targets.add(side, writers.create(output, &context)?);
            }
            let next = targets.into_outputs(&link.node)?;
            match (&link.node.body, position) {
                (NodeBody::Source { build, .. }, 0) => return Ok(TaskBody::Source(build(&context, next)?)),
                (NodeBody::Operator { build, input_task }, 0) => {
                    return Ok(TaskBody::Input(input_task(build(&context, next)?, &context)?));
                }
                (NodeBody::Operator { build, .. }, _) => built[position] = Some(build(&context, next)?),
                (NodeBody::Source { .. }, _) => return Err(context.error("a source inside a chain")),
            }
        }
        Err(TaskError::Operator { operator: setup.task_name.to_string(), message: "empty chain".into() })
    }
}

impl ChainFactory {
    fn context(
        &self,
        link: &ChainLink,
        setup: &TaskSetup,
        key_group_range: KeyGroupRange,
        timestamp: &CurrentTimestamp,
    ) -> OperatorContext {
        OperatorContext {
            operator_name: Arc::from(link.node.name.as_str()),
            operator_id: link.operator_id,
            subtask: setup.subtask,
            max_parallelism: setup.max_parallelism,
            key_group_range,
            mode: self.mode,
            state_backend: self.state_backend.clone(),
            timestamp: timestamp.clone(),
            restore: setup.restore.clone(),
            run_id: setup.run_id.clone(),
            finishing: setup.finishing.clone(),
        }
    }
}

/// The built consumers of one node, grouped by the output they consume.
#[derive(Default)]
struct ConsumerGroups {
    main: Vec<ErasedPush>,
    sides: Vec<(SideOutputRef, Vec<ErasedPush>)>,
}

impl ConsumerGroups {
    fn add(&mut self, side: &Option<SideOutputRef>, consumer: ErasedPush) {
        let Some(side) = side else {
            self.main.push(consumer);
            return;
        };
        match self.sides.iter_mut().find(|(known, _)| known.id == side.id) {
            Some((_, consumers)) => consumers.push(consumer),
            None => self.sides.push((side.clone(), vec![consumer])),
        }
    }

    fn into_outputs(self, node: &Node) -> Result<Outputs, TaskError> {
        let sides = self
            .sides
            .into_iter()
            .map(|(side, consumers)| Ok((side.id, (side.fan_out)(consumers)?)))
            .collect::<Result<Vec<_>, TaskError>>()?;
        Ok(Outputs { main: (node.fan_out)(self.main)?, sides: SideOutputs::new(sides) })
    }
}
