//! The job graph: chains of operators (vertices) and the partitioned edges
//! between them, as compiled from a user program.
//!
//! It is what a client ships to the cluster and what the runtime expands into
//! tasks (`parallelism` tasks per vertex). It carries structure only; the user's
//! functions stay in the program, which rebuilds the same graph in every process.

use std::fmt;

use petgraph::dot::Dot;
use petgraph::graph::{DiGraph, NodeIndex};
use prost::Message as _;
use weir_proto::v1 as pb;

use crate::{MaxParallelism, OperatorId, VertexId};

/// How records of an edge are distributed over the downstream subtasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Partitioning {
    /// Subtask `i` sends to subtask `i` only; both sides have equal parallelism.
    Forward,
    /// Round robin over all downstream subtasks.
    Rebalance,
    /// Every record to every downstream subtask.
    Broadcast,
    /// To the subtask owning the key group of the record's key.
    Hash,
}

impl Partitioning {
    /// Whether each upstream subtask talks to one downstream subtask only.
    pub fn is_pointwise(self) -> bool {
        self == Self::Forward
    }
}

/// Flink's names for the ship strategies, as its plans show them.
impl fmt::Display for Partitioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Forward => "FORWARD",
            Self::Rebalance => "REBALANCE",
            Self::Broadcast => "BROADCAST",
            Self::Hash => "HASH",
        })
    }
}

/// What an operator does, as far as scheduling and state are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperatorKind {
    /// Produces records; has no input.
    Source,
    /// Stateless per-record transformation (map, filter, process, union…).
    Transform,
    /// Works on a keyed stream and may hold keyed state.
    Keyed,
    /// Consumes records; has no output.
    Sink,
}

impl fmt::Display for OperatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Source => "source",
            Self::Transform => "transform",
            Self::Keyed => "keyed",
            Self::Sink => "sink",
        })
    }
}

/// One operator inside a vertex's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorDescriptor {
    /// The stable id state is matched against.
    pub id: OperatorId,
    /// The user's `.uid("…")`, if any.
    pub uid: Option<String>,
    /// Human-readable name, used in logs and errors.
    pub name: String,
    /// What kind of operator this is.
    pub kind: OperatorKind,
}

/// A chain of operators that runs as `parallelism` tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobVertex {
    /// Index of the vertex in [`JobGraph::vertices`].
    pub id: VertexId,
    /// The chain's name: its operators' names joined by `" -> "`.
    pub name: String,
    /// Number of parallel tasks.
    pub parallelism: usize,
    /// The chained operators, head first.
    pub operators: Vec<OperatorDescriptor>,
}

/// A data edge between two vertices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobEdge {
    /// The producing vertex.
    pub source: VertexId,
    /// The consuming vertex.
    pub target: VertexId,
    /// How records are spread over the target's subtasks.
    pub partitioning: Partitioning,
}

/// A whole job: its vertices in topological order and its edges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobGraph {
    /// The job's name, as given to `execute`.
    pub name: String,
    /// Number of key groups; bounds every vertex's parallelism.
    pub max_parallelism: MaxParallelism,
    /// Vertices; `vertices[i].id == VertexId(i)`, sources before their consumers.
    pub vertices: Vec<JobVertex>,
    /// Edges, in the order the program declared them.
    pub edges: Vec<JobEdge>,
}

/// A job graph that is not well formed.
#[derive(Debug, thiserror::Error)]
pub enum JobGraphError {
    /// The bytes are not a protobuf `JobGraph`.
    #[error("the job graph is not valid protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The graph decoded but breaks an invariant.
    #[error("invalid job graph: {0}")]
    Invalid(String),
}

impl JobGraph {
    /// The vertex with this id.
    pub fn vertex(&self, id: VertexId) -> &JobVertex {
        &self.vertices[id.0 as usize]
    }

    /// Checks the invariants every consumer of a graph relies on.
    pub fn validate(&self) -> Result<(), JobGraphError> {
        let invalid = |message: String| Err(JobGraphError::Invalid(message));
        let mut operator_ids = std::collections::HashSet::new();
        for (index, vertex) in self.vertices.iter().enumerate() {
            if let Some(duplicate) = vertex.operators.iter().find(|op| !operator_ids.insert(op.id)) {
                return invalid(format!("operator id {} ('{}') appears twice", duplicate.id, duplicate.name));
            }
            if vertex.id.0 as usize != index {
                return invalid(format!("vertex at position {index} has id {}", vertex.id));
            }
            if vertex.parallelism == 0 || vertex.parallelism > self.max_parallelism.get() {
                return invalid(format!(
                    "vertex '{}' has parallelism {}, outside 1..={} (the max parallelism)",
                    vertex.name,
                    vertex.parallelism,
                    self.max_parallelism.get()
                ));
            }
            if vertex.operators.is_empty() {
                return invalid(format!("vertex '{}' has no operators", vertex.name));
            }
        }
        for edge in &self.edges {
            let count = self.vertices.len() as u32;
            if edge.source.0 >= count || edge.target.0 >= count {
                return invalid(format!("edge {} -> {} names a missing vertex", edge.source, edge.target));
            }
            if edge.source >= edge.target {
                return invalid(format!("edge {} -> {} is not in topological order", edge.source, edge.target));
            }
            let (source, target) = (self.vertex(edge.source), self.vertex(edge.target));
            if edge.partitioning.is_pointwise() && source.parallelism != target.parallelism {
                return invalid(format!(
                    "forward edge '{}' ({}) -> '{}' ({}) joins different parallelisms",
                    source.name, source.parallelism, target.name, target.parallelism
                ));
            }
        }
        Ok(())
    }

    /// The protobuf encoding of the graph.
    pub fn encode(&self) -> Vec<u8> {
        pb::JobGraph::from(self).encode_to_vec()
    }

    /// Decodes and validates a graph produced by [`JobGraph::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, JobGraphError> {
        Self::try_from(pb::JobGraph::decode(bytes)?)
    }
}

impl From<&JobGraph> for pb::JobGraph {
    fn from(graph: &JobGraph) -> Self {
        Self {
            name: graph.name.clone(),
            max_parallelism: graph.max_parallelism.get() as u32,
            vertices: graph.vertices.iter().map(pb::JobVertex::from).collect(),
            edges: graph.edges.iter().map(pb::JobEdge::from).collect(),
        }
    }
}

impl From<&JobVertex> for pb::JobVertex {
    fn from(vertex: &JobVertex) -> Self {
        Self {
            id: vertex.id.0,
            name: vertex.name.clone(),
            parallelism: vertex.parallelism as u32,
            operators: vertex
                .operators
                .iter()
                .map(|op| pb::OperatorDescriptor {
                    operator_id: op.id.to_string(),
                    uid: op.uid.clone().unwrap_or_default(),
                    name: op.name.clone(),
                    kind: pb::OperatorKind::from(op.kind) as i32,
                })
                .collect(),
        }
    }
}

impl From<&JobEdge> for pb::JobEdge {
    fn from(edge: &JobEdge) -> Self {
        Self {
            source_vertex: edge.source.0,
            target_vertex: edge.target.0,
            partitioning: pb::Partitioning::from(edge.partitioning) as i32,
        }
    }
}

impl From<OperatorKind> for pb::OperatorKind {
    fn from(kind: OperatorKind) -> Self {
        match kind {
            OperatorKind::Source => Self::Source,
            OperatorKind::Transform => Self::Transform,
            OperatorKind::Keyed => Self::Keyed,
            OperatorKind::Sink => Self::Sink,
        }
    }
}

impl From<Partitioning> for pb::Partitioning {
    fn from(partitioning: Partitioning) -> Self {
        match partitioning {
            Partitioning::Forward => Self::Forward,
            Partitioning::Rebalance => Self::Rebalance,
            Partitioning::Broadcast => Self::Broadcast,
            Partitioning::Hash => Self::Hash,
        }
    }
}

impl TryFrom<pb::JobGraph> for JobGraph {
    type Error = JobGraphError;

    fn try_from(message: pb::JobGraph) -> Result<Self, Self::Error> {
        let max_parallelism = MaxParallelism::new(message.max_parallelism as usize).ok_or_else(|| {
            JobGraphError::Invalid(format!("max parallelism {} is outside 1..=32768", message.max_parallelism))
        })?;
        let vertices = message.vertices.into_iter().map(vertex_from_proto).collect::<Result<_, _>>()?;
        let edges = message.edges.into_iter().map(edge_from_proto).collect::<Result<_, _>>()?;
        let graph = Self { name: message.name, max_parallelism, vertices, edges };
        graph.validate()?;
        Ok(graph)
    }
}

fn vertex_from_proto(vertex: pb::JobVertex) -> Result<JobVertex, JobGraphError> {
    let operators = vertex
        .operators
        .into_iter()
        .map(|op| {
            let id = OperatorId::parse_hex(&op.operator_id).ok_or_else(|| {
                JobGraphError::Invalid(format!("operator '{}' has a malformed id '{}'", op.name, op.operator_id))
            })?;
            let kind = match pb::OperatorKind::try_from(op.kind) {
                Ok(pb::OperatorKind::Source) => OperatorKind::Source,
                Ok(pb::OperatorKind::Transform) => OperatorKind::Transform,
                Ok(pb::OperatorKind::Keyed) => OperatorKind::Keyed,
                Ok(pb::OperatorKind::Sink) => OperatorKind::Sink,
                _ => {
                    return Err(JobGraphError::Invalid(format!("operator '{}' has unknown kind {}", op.name, op.kind)));
                }
            };
            let uid = (!op.uid.is_empty()).then_some(op.uid);
            Ok(OperatorDescriptor { id, uid, name: op.name, kind })
        })
        .collect::<Result<_, _>>()?;
    Ok(JobVertex { id: VertexId(vertex.id), name: vertex.name, parallelism: vertex.parallelism as usize, operators })
}

fn edge_from_proto(edge: pb::JobEdge) -> Result<JobEdge, JobGraphError> {
    let partitioning = match pb::Partitioning::try_from(edge.partitioning) {
        Ok(pb::Partitioning::Forward) => Partitioning::Forward,
        Ok(pb::Partitioning::Rebalance) => Partitioning::Rebalance,
        Ok(pb::Partitioning::Broadcast) => Partitioning::Broadcast,
        Ok(pb::Partitioning::Hash) => Partitioning::Hash,
        _ => return Err(JobGraphError::Invalid(format!("edge has unknown partitioning {}", edge.partitioning))),
    };
    Ok(JobEdge { source: VertexId(edge.source_vertex), target: VertexId(edge.target_vertex), partitioning })
}

/// A fingerprint of a job graph as it travels (hex XXH3-128 of its protobuf
/// encoding): a job binary in task mode compares the graph it rebuilds with
/// the one that was submitted.
pub fn fingerprint(graph: &pb::JobGraph) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&graph.encode_to_vec()))
}

impl JobGraph {
    /// The fingerprint of this graph's wire form (see [`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(&pb::JobGraph::from(self))
    }

    /// The graph for petgraph's algorithms and output: node `i` is
    /// `vertices[i]`, and every edge carries its partitioning, in
    /// declaration order. Edges naming a missing vertex (which
    /// [`JobGraph::validate`] rejects) are left out.
    pub fn to_petgraph(&self) -> DiGraph<&JobVertex, Partitioning> {
        let mut graph = DiGraph::with_capacity(self.vertices.len(), self.edges.len());
        let nodes: Vec<NodeIndex> = self.vertices.iter().map(|vertex| graph.add_node(vertex)).collect();
        for edge in &self.edges {
            let (source, target) = (nodes.get(edge.source.0 as usize), nodes.get(edge.target.0 as usize));
            if let (Some(&source), Some(&target)) = (source, target) {
                graph.add_edge(source, target, edge.partitioning);
            }
        }
        graph
    }

    /// The graph in Graphviz DOT: a box per vertex listing its parallelism
    /// and its chained operators, head first; an arrow per edge, labeled
    /// with its partitioning.
    pub fn to_dot(&self) -> String {
        let graph = self.to_petgraph().map(|_, vertex| VertexLabel(vertex), |_, partitioning| *partitioning);
        let dot = Dot::with_attr_getters(&graph, &[], &|_, _| String::new(), &|_, _| "shape = box ".to_owned());
        dot.to_string()
    }
}

/// A vertex as its DOT box shows it; [`Dot`] escapes it and left-justifies
/// its lines.
struct VertexLabel<'a>(&'a JobVertex);

impl fmt::Display for VertexLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}, parallelism {}", self.0.id, self.0.parallelism)?;
        self.0.operators.iter().try_for_each(|operator| writeln!(f, "{}", operator.name))
    }
}

/// The plan as text: a line per vertex, an indented line per chained
/// operator (its kind, name and uid), then a line per edge.
impl fmt::Display for JobGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "job {}, max parallelism {}", self.name, self.max_parallelism.get())?;
        for vertex in &self.vertices {
            writeln!(f, "vertex {}, parallelism {}", vertex.id, vertex.parallelism)?;
            for operator in &vertex.operators {
                write!(f, "    {:<9}  {}", operator.kind, operator.name)?;
                match &operator.uid {
                    Some(uid) => writeln!(f, "  [uid {uid}]")?,
                    None => writeln!(f)?,
                }
            }
        }
        for edge in &self.edges {
            writeln!(f, "edge {} -> {}, {}", edge.source, edge.target, edge.partitioning)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator(name: &str, kind: OperatorKind) -> OperatorDescriptor {
        OperatorDescriptor { id: OperatorId::from_uid(name), uid: Some(name.into()), name: name.into(), kind }
    }

    fn sample() -> JobGraph {
        JobGraph {
            name: "sample".into(),
            max_parallelism: MaxParallelism::default(),
            vertices: vec![
                JobVertex {
                    id: VertexId(0),
                    name: "source -> map".into(),
                    parallelism: 2,
                    operators: vec![operator("source", OperatorKind::Source), operator("map", OperatorKind::Transform)],
                },
                JobVertex {
                    id: VertexId(1),
                    name: "sum".into(),
                    parallelism: 3,
                    operators: vec![operator("sum", OperatorKind::Keyed)],
                },
            ],
            edges: vec![JobEdge { source: VertexId(0), target: VertexId(1), partitioning: Partitioning::Hash }],
        }
    }

    #[test]
    fn protobuf_round_trip_preserves_the_graph() {
        let graph = sample();
        assert_eq!(JobGraph::decode(&graph.encode()).expect("decodes"), graph);
    }

    #[test]
    fn duplicate_operator_ids_are_rejected() {
        let mut graph = sample();
        graph.vertices[1].operators[0].id = graph.vertices[0].operators[0].id;
        let error = graph.validate().expect_err("must be rejected").to_string();
        assert!(error.contains("appears twice"), "{error}");
    }

    #[test]
    fn garbage_bytes_are_rejected() {
        assert!(JobGraph::decode(b"\xff\xff\xff not protobuf").is_err());
    }

    #[test]
    fn forward_edge_between_different_parallelisms_is_rejected() {
        let mut graph = sample();
        graph.edges[0].partitioning = Partitioning::Forward;
        let error = graph.validate().expect_err("must be rejected").to_string();
        assert!(error.contains("forward edge"), "{error}");
    }

    #[test]
    fn the_plan_text_lists_vertices_with_their_operators_and_the_edges() {
        let mut graph = sample();
        graph.vertices[1].operators[0].uid = None;
        let expected = "\
job sample, max parallelism 128
vertex v0, parallelism 2
    source     source  [uid source]
    transform  map  [uid map]
vertex v1, parallelism 3
    keyed      sum
edge v0 -> v1, HASH
";
        assert_eq!(graph.to_string(), expected);
    }

    #[test]
    fn the_petgraph_graph_has_a_node_per_vertex_and_an_edge_per_edge() {
        let graph = sample();
        let petgraph = graph.to_petgraph();
        assert_eq!(petgraph.node_count(), 2);
        let edges: Vec<_> = petgraph
            .raw_edges()
            .iter()
            .map(|edge| (petgraph[edge.source()].name.as_str(), petgraph[edge.target()].name.as_str(), edge.weight))
            .collect();
        assert_eq!(edges, vec![("source -> map", "sum", Partitioning::Hash)]);
    }

    #[test]
    fn the_dot_output_boxes_vertices_and_labels_edges_escaping_names() {
        let mut graph = sample();
        graph.vertices[1].operators[0].name = "say \"hi\"".into();
        let dot = graph.to_dot();
        assert!(dot.starts_with("digraph {\n"), "{dot}");
        assert!(dot.contains(r#"0 [ label = "v0, parallelism 2\lsource\lmap\l" shape = box ]"#), "{dot}");
        assert!(dot.contains(r#"1 [ label = "v1, parallelism 3\lsay \"hi\"\l" shape = box ]"#), "{dot}");
        assert!(dot.contains(r#"0 -> 1 [ label = "HASH" ]"#), "{dot}");
        assert!(dot.trim_end().ends_with('}'), "{dot}");
    }
}
