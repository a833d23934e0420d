//! `weir-api`: the typed API Weir jobs are written against.
//!
//! A program builds a dataflow on a [`StreamEnv`]: sources produce
//! [`DataStream`]s, transformations derive new streams, [`KeyedStream`]s
//! partition by key, sinks consume. Nothing runs until
//! [`StreamEnv::execute`], which compiles the logical graph into a
//! [`JobGraph`](weir_common::JobGraph) (chaining forward edges between
//! operators of equal parallelism) and runs it on the local runtime.
//!
//! Module map, top-down: [`env`] (configuration, arguments, execution) →
//! [`stream`] and [`keyed`] (the user-facing builders) → [`graph`] (the logical
//! graph and its compilation into chains) → [`operators`], [`sources`],
//! [`sinks`] (one small struct per operator) → [`push`] and [`partition`] (how
//! records move inside a chain and out of it).
//!
//! User functions are plain synchronous closures: no async and no runtime types
//! appear here. This crate builds on `weir-worker` (the runtime) and
//! `weir-state`; it must never depend on the coordinator.

pub mod args;
pub mod checkpointing;
pub mod collector;
pub mod connected;
pub mod data;
pub mod env;
pub mod error;
pub mod graph;
mod job_client;
pub mod keyed;
pub mod operators;
pub mod output_tag;
pub mod partition;
pub mod push;
pub mod sinks;
pub mod sources;
pub mod stream;
pub mod time;
pub mod watermarks;
pub mod windows;

pub use collector::Collector;
pub use connected::{ConnectedStreams, Either, KeyedCoProcessFunction, KeyedConnectedStreams};
pub use data::Data;
pub use env::{JobClient, RestartStrategy, RuntimeMode, StateBackend, StreamEnv};
pub use error::{Error, Result};
pub use keyed::KeyedStream;
pub use operators::keyed_process::{KeyedContext, KeyedProcessFunction, ProcessError};
pub use operators::process::ProcessContext;
pub use output_tag::OutputTag;
pub use sinks::collect::CollectHandle;
pub use sources::generator::GeneratorSource;
pub use sources::text_file::{FileSource, NumberedFileSource};
pub use stream::{DataStream, DataStreamSink};
pub use watermarks::{WatermarkGenerator, WatermarkOutput, WatermarkStrategy};
pub use windows::trigger::{Trigger, TriggerContext, TriggerResult};
pub use windows::{TimeWindow, WindowAssigner, WindowContext, WindowedStream};
