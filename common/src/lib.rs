//! `weir-common`: the vocabulary every Weir crate shares.
//!
//! It owns the id newtypes ([`OperatorId`], [`VertexId`], [`SubtaskIndex`]),
//! key-group arithmetic ([`key_group`]), the job graph ([`JobGraph`]) with
//! its conversion to and from the wire format of `weir-proto`, and the pure
//! decisions of checkpoint coordination ([`checkpoint`]).
//!
//! It depends only on `weir-proto` and small utility crates. It must never
//! depend on the runtime (`weir-worker`), state backends, the user API, the
//! coordinator, or any async runtime: both the engine and the control plane
//! build on it.

pub mod checkpoint;
pub mod ids;
pub mod job_graph;
pub mod key_group;

pub use ids::{CheckpointId, OperatorId, SubtaskIndex, VertexId};
pub use job_graph::{JobEdge, JobGraph, JobGraphError, JobVertex, OperatorDescriptor, OperatorKind, Partitioning};
pub use key_group::{KeyEncodingError, KeyGroup, KeyGroupRange, MaxParallelism};
