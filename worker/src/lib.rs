//! `weir-worker`: the task runtime that runs inside a job process.
//!
//! It owns what happens between operators: the events that travel on a
//! channel ([`Event`]), bounded channels with cancellation ([`channel`]), the
//! input gate that merges a task's input channels ([`InputGate`]) and their
//! watermarks ([`WatermarkValve`]), the
//! single-threaded task loop ([`task`]), and the executor that expands a
//! [`JobGraph`](weir_common::JobGraph) into tasks, wires their channels, runs
//! them on their own threads and turns the first failure into a job error that
//! names the operator and subtask ([`LocalExecutor`]).
//!
//! In a cluster, a job runs in several processes: the [`exchange`] connects
//! them (gRPC streams with credit-based flow control for channels, a control
//! line from each follower to the leader, which drives checkpoints).
//!
//! It also holds the worker daemon ([`daemon`]): registration with the
//! coordinator, heartbeats, and the job processes it launches.
//!
//! It is type-erased: records travel as opaque [`Batch`]es and tasks are trait
//! objects built by the typed layer (`weir-api`), which owns operators,
//! partitioners and record types; a batch that crosses processes is
//! serialized through the encoder its typed writer gave it. It must never depend on the user API or on
//! the coordinator; state comes from `weir-state`.

pub mod blame;
pub mod cancel;
pub mod channel;
pub mod checkpoint;
pub mod daemon;
pub mod error;
pub mod event;
pub mod exchange;
pub mod executor;
pub mod input_gate;
pub mod task;
pub mod watermark;

pub use cancel::CancelToken;
pub use channel::{InputChannel, OutputChannel};
pub use error::{JobError, TaskError};
pub use event::{Barrier, Batch, Event, NO_TIMESTAMP, Watermark};
pub use executor::{ExecutorConfig, LocalExecutor};
pub use input_gate::InputGate;
pub use task::{EdgeOutput, InputTask, SourceStep, SourceTask, TaskBody, TaskSetup, VertexFactory};
pub use watermark::WatermarkValve;
