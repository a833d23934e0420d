//! The runtime side of checkpoints, in one home: what tasks snapshot and
//! report ([`snapshot`]), the metadata of a completed checkpoint and how a
//! restored one is handed out at any parallelism ([`metadata`]), and the
//! driver that carries out the checkpoint coordinator's decisions during a
//! run ([`driver`]), and a job's completed checkpoints across its runs
//! ([`store`]).
//!
//! Where files go is `weir_common::checkpoint::layout` (shared with the
//! coordinator); which files a discarded checkpoint may delete is
//! `weir_state::SharedFileRegistry`.

pub mod driver;
pub mod metadata;
pub mod snapshot;
pub mod store;

pub use driver::{CheckpointDriver, CheckpointSettings, ControlLine, DriverContext, RemoteTaskLine, TaskLines};
pub use metadata::{CheckpointMetadata, RestoredCheckpoint, TaskEntry, checkpoint_dir};
pub use snapshot::{
    CheckpointReport, FinalCommit, FinishedState, OperatorSnapshot, SnapshotTarget, TaskControl, TaskReport,
    TaskSnapshot,
};
pub use store::{JobCheckpoints, SavepointReply};
pub use weir_common::checkpoint::layout::METADATA_FILE;
