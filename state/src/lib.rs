//! `weir-state`: keyed state for Weir tasks and the backends that hold it.
//!
//! Today it owns the heap backend's core, [`KeyGroupedMap`] (one map per key
//! group of a task's range, so a snapshot or a rescale moves whole key groups),
//! the RocksDB options every embedded instance is opened with
//! ([`rocks::db_options`]), checkpoint storage ([`storage`]: atomic,
//! checksummed files on a directory) and the registry of shared snapshot files
//! ([`SharedFileRegistry`]). State handles, timers, snapshots and restore come
//! with the keyed-state issue and build on these.
//!
//! It depends on `weir-common` only. It must never depend on the runtime
//! (`weir-worker`), the user API, the coordinator, or any async runtime: tasks
//! call it synchronously from their own thread.

pub mod key_grouped_map;
pub mod keyed;
pub mod rocks;
pub mod shared_files;
pub mod storage;

pub use key_grouped_map::KeyGroupedMap;
pub use shared_files::SharedFileRegistry;
