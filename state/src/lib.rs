//! `weir-state`: keyed state for Weir tasks and the backends that hold it.
//!
//! Modules, top-down: [`keyed`] (one task's keyed state: typed state handles,
//! timers, the memory and RocksDB backends, full and incremental snapshots,
//! restore at any parallelism) builds on [`key_grouped_map`] (heap maps, one
//! per key group, so that snapshots and rescaling move whole key groups),
//! [`rocks`] (the RocksDB options every instance uses), [`storage`] (atomic,
//! checksummed checkpoint files) and [`shared_files`] (which snapshots still
//! need which shared files).
//!
//! Of Weir's crates it depends on `weir-common` only. It must never depend on
//! the runtime (`weir-worker`), the user API, the coordinator, or any async
//! runtime: tasks call it synchronously from their own thread.

pub mod key_grouped_map;
pub mod keyed;
pub mod rocks;
pub mod shared_files;
pub mod storage;

pub use key_grouped_map::KeyGroupedMap;
pub use shared_files::SharedFileRegistry;
