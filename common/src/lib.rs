//! `weir-common`: the vocabulary every Weir crate shares.
//!
//! It owns the id newtypes ([`OperatorId`], [`VertexId`], [`SubtaskIndex`]),
//! key-group arithmetic ([`key_group`]), the job graph ([`JobGraph`]) with
//! its conversion to and from the wire format of `weir-proto`, the pure
//! decisions of checkpoint coordination and the checkpoint storage layout
//! ([`checkpoint`]), and the contract between a worker and the job processes
//! it launches ([`launch`]: environment and exit codes).
//!
//! It depends only on `weir-proto` and small utility crates. It must never
//! depend on the runtime (`weir-worker`), state backends, the user API, the
//! coordinator, or any async runtime: both the engine and the control plane
//! build on it.

pub mod checkpoint;
pub mod ids;
pub mod job_graph;
pub mod key_group;
pub mod launch;

pub use ids::{ChannelKey, CheckpointId, OperatorId, SubtaskIndex, TaskKey, VertexId};
pub use job_graph::{JobEdge, JobGraph, JobGraphError, JobVertex, OperatorDescriptor, OperatorKind, Partitioning};
pub use key_group::{KeyEncodingError, KeyGroup, KeyGroupRange, MaxParallelism};
