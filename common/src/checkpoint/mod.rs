//! Checkpoints as every process sees them: the pure decisions of checkpoint
//! coordination ([`coordinator`]) and where a checkpoint's files live in
//! storage ([`layout`]). The runtime (`weir-worker`) carries the decisions
//! out; the coordinator finds a job's newest checkpoint through the layout.

pub mod coordinator;
pub mod layout;

pub use coordinator::{Action, CheckpointConfig, CheckpointCoordinator};
