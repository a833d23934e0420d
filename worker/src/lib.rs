//! `weir-worker`: the task runtime that runs inside a job process, and the
//! worker daemon that launches job processes.
//!
//! Modules, from the bottom up (each uses only those above it):
//! - [`event`], [`cancel`], [`error`], [`blame`], [`watermark`]: the events
//!   that travel on a channel, cancellation, errors, operator blame for
//!   panics, watermark merging;
//! - [`channel`]: bounded channels with cancellation; a channel to another
//!   process goes through a [`channel::RemoteSender`], so channels need not
//!   know the exchange; [`input_gate`] merges a task's input channels;
//! - [`checkpoint`]: snapshots, reports, metadata, a job's retained
//!   checkpoints and the driver that carries out the checkpoint
//!   coordinator's decisions;
//! - [`task`]: the single-threaded task loop;
//! - [`control`]: the control messages between the processes of a job and
//!   the lines they travel on;
//! - [`exchange`]: the gRPC exchange between the processes of a job (data
//!   channels with credit-based flow control, control streams);
//! - [`job`]: runs a job graph in this process ([`LocalExecutor`]), as the
//!   whole job or as the leader or a follower of a job spread over processes;
//! - [`launch`]: the job process's side of the launch contract (plan mode,
//!   task mode, exit codes);
//! - [`daemon`]: the worker daemon (registration with the coordinator,
//!   heartbeats, the job processes it launches).
//!
//! It is type-erased: records travel as opaque [`Batch`]es and tasks are trait
//! objects built by the typed layer (`weir-api`), which owns operators,
//! partitioners and record types; a batch that crosses processes is
//! serialized through the encoder its typed writer gave it. It must never
//! depend on the user API or on the coordinator; state comes from `weir-state`.

pub mod blame;
pub mod cancel;
pub mod channel;
pub mod checkpoint;
pub mod control;
pub mod daemon;
pub mod error;
pub mod event;
pub mod exchange;
pub mod input_gate;
pub mod job;
pub mod launch;
pub mod task;
pub mod watermark;

pub use cancel::CancelToken;
pub use channel::{InputChannel, OutputChannel};
pub use error::{JobError, TaskError};
pub use event::{Barrier, Batch, Event, NO_TIMESTAMP, Watermark};
pub use input_gate::InputGate;
pub use job::{ExecutorConfig, LocalExecutor};
pub use task::{EdgeOutput, InputTask, SourceStep, SourceTask, TaskBody, TaskSetup, VertexFactory};
pub use watermark::WatermarkValve;
