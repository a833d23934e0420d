//! `weir`: the crate Weir jobs depend on.
//!
//! It re-exports the typed user API (`weir-api`) and, through it, runs jobs
//! on the embedded local runtime. Write `use weir::prelude::*;` and build a
//! job on a [`StreamEnv`]:
//!
//! ```no_run
//! use weir::prelude::*;
//!
//! fn main() -> weir::Result<()> {
//!     let env = StreamEnv::from_args();
//!     env.from_sequence(0..1_000)
//!         .map(|n: u64| (n % 10, n))
//!         .key_by(|pair: &(u64, u64)| pair.0)
//!         .sum(|pair: &mut (u64, u64)| &mut pair.1)
//!         .map(|(digit, total)| format!("{digit}\t{total}"))
//!         .print();
//!     env.execute("sums by last digit")?;
//!     Ok(())
//! }
//! ```
//!
//! The package also holds the `weir` binary (`src/bin/weir/`): the cluster's
//! processes (`weir coordinator`, `weir worker`), the client commands
//! (`weir submit`, `list`, `status`, `cancel`, `savepoint`), `weir run` on an
//! embedded cluster and `weir plan`, which prints a job binary's job graph.
//! It must never be a dependency of the engine's own crates.

pub use weir_api::*;
pub use weir_common::{JobGraph, SubtaskIndex};

/// Everything a job usually needs, in one import.
pub mod prelude {
    pub use weir_api::env::JobExecutionResult;
    pub use weir_api::sources::Source;
    pub use weir_api::{
        CollectHandle, Collector, ConnectedStreams, Data, DataStream, Either, FileSource, GeneratorSource, JobClient,
        KeyedCoProcessFunction, KeyedContext, KeyedProcessFunction, KeyedStream, OutputTag, ProcessContext,
        ProcessError, RestartStrategy, RuntimeMode, StateBackend, StreamEnv, TimeWindow, Trigger, TriggerContext,
        TriggerResult, WatermarkGenerator, WatermarkOutput, WatermarkStrategy, WindowAssigner, WindowContext,
        WindowedStream,
    };
}

/// Keyed state and timers, for process functions and window functions.
pub mod state {
    pub use weir_state::keyed::{
        AggregateFunction, KeyedStateBackend, ListState, MapState, StateError, StateTtl, TimeDomain, ValueState,
    };
}

/// The README's Rust example, compiled (and run) as a doctest so it stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
