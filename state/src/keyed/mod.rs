//! Keyed state of one task: what keyed operators keep per key (and per
//! namespace, e.g. per window), stored in the memory or the RocksDB backend,
//! snapshotted per key group and restored — also at another parallelism —
//! from any set of snapshots.
//!
//! Access follows Flink's model: the task sets the current key
//! ([`KeyedStateBackend::set_current_key`]); operators register states by
//! name (value, list, map, reducing, aggregating) and read and write them for
//! the current key and a namespace (`&()` outside windows). Both backends
//! write the same canonical full-snapshot format ([`snapshot`]), so a snapshot
//! taken with one restores into the other.
//!
//! Timers (event and processing time, per key and namespace) are kept with
//! the state and snapshotted with it. The RocksDB backend also takes
//! incremental snapshots ([`incremental`]), and batches its writes: a
//! write-back cache keeps the encoded values of recently accessed entries and
//! sends the changes to RocksDB as one write batch when it is full, and
//! before a scan, a range delete or a snapshot.
//!
//! States may have a time to live ([`StateTtl`]): expired entries are
//! invisible to reads and left out of full snapshots, but otherwise stay
//! stored until overwritten or removed. Nothing removes them in the
//! background (there is no RocksDB compaction filter for them, as Flink has).
//!
//! This file holds the backend and the dispatch to its store. The operator
//! API is spread by concern: `registration`, `access` (value, list, reducing,
//! aggregating), `map_access`, `timers`, `checkpointing` (snapshot, restore).
//! Below them are the two stores, `heap` and `rocks_store` (with
//! `write_cache`), and the snapshot formats, `snapshot` and `incremental`.

mod access;
mod checkpointing;
mod error;
mod handles;
mod heap;
pub mod incremental;
mod map_access;
mod registration;
mod rocks_store;
pub mod snapshot;
mod timers;
mod ttl;
mod write_cache;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_common::{KeyGroup, KeyGroupRange, MaxParallelism};

pub use error::StateError;
pub use handles::{
    AggregateFunction, AggregatingState, ListState, MapState, ReduceFn, ReducingState, StateHandle, StateKind,
    StateTtl, ValueState,
};
use heap::HeapStore;
pub use incremental::{IncrementalSnapshot, SnapshotOutcome};
use rocks_store::RocksStore;
pub use snapshot::KeyedSnapshot;
use timers::Timers;
pub use timers::{TimeDomain, Timer, TimerService};

/// A key of keyed state (also a map state's user key).
pub trait StateKey: Serialize + DeserializeOwned + Clone + Eq + std::hash::Hash + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Eq + std::hash::Hash + Send + 'static> StateKey for T {}

/// A namespace: `()` outside windows, the window inside them.
pub trait StateNamespace: StateKey {}
impl<T: StateKey> StateNamespace for T {}

/// A value kept in keyed state.
pub trait StateValue: Serialize + DeserializeOwned + Clone + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + 'static> StateValue for T {}

/// Which backend holds the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateBackendKind {
    /// Objects on the heap, one hash map per key group and state.
    Memory,
    /// One RocksDB instance per task, a column family per state.
    RocksDb {
        /// Where the instance lives: a backend opens it in `dir` itself,
        /// emptied at open and removed on drop, so every task needs its own
        /// (the runtime derives one per task below the job's directory).
        dir: PathBuf,
    },
}

/// The keyed state of one task (one parallel instance of a keyed operator chain).
pub struct KeyedStateBackend<K> {
    max_parallelism: MaxParallelism,
    range: KeyGroupRange,
    store: Store<K>,
    timers: Timers<K>,
    current: Option<CurrentKey<K>>,
    /// Reused for serializing each key to find its key group.
    scratch: Vec<u8>,
    /// Processing time in milliseconds, for time-to-live.
    clock: Clock,
}

/// A source of processing time in milliseconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// The key set by `set_current_key`, with its key group computed once.
struct CurrentKey<K> {
    key: K,
    group: KeyGroup,
}

/// Where the state objects live; one per backend, chosen by `StateBackendKind`.
enum Store<K> {
    Heap(HeapStore<K>),
    /// Boxed: the instance's buffers and handles make it several times larger.
    Rocks(Box<RocksStore>),
}

/// Dispatches one operation to the backend in use: `$heap` runs with
/// `(store, group, key)` of the current key, `$rocks` with the RocksDB store.
macro_rules! with_store {
    ($self:ident, |$heap:ident, $group:ident, $key:ident| $on_heap:expr, |$rocks:ident| $on_rocks:expr) => {{
        let current = $self.current.as_ref().ok_or($crate::keyed::StateError::NoCurrentKey)?;
        match &mut $self.store {
            $crate::keyed::Store::Heap($heap) => {
                let ($group, $key) = (current.group, &current.key);
                $on_heap
            }
            $crate::keyed::Store::Rocks($rocks) => $on_rocks,
        }
    }};
}
use with_store;

impl<K: StateKey> KeyedStateBackend<K> {
    /// An empty backend owning the key groups of `range`.
    pub fn new(
        kind: &StateBackendKind,
        max_parallelism: MaxParallelism,
        range: KeyGroupRange,
    ) -> Result<Self, StateError> {
        let store = match kind {
            StateBackendKind::Memory => Store::Heap(HeapStore::new(range)),
            StateBackendKind::RocksDb { dir } => Store::Rocks(Box::new(RocksStore::open(dir)?)),
        };
        Ok(Self {
            max_parallelism,
            range,
            store,
            timers: Timers::new(),
            current: None,
            scratch: Vec::new(),
            clock: Arc::new(system_clock),
        })
    }

    /// The key groups this backend owns.
    pub fn key_group_range(&self) -> KeyGroupRange {
        self.range
    }

    /// Makes `key` the key that state accesses refer to.
    pub fn set_current_key(&mut self, key: K) -> Result<(), StateError> {
        let group = KeyGroup::of_key(&key, self.max_parallelism, &mut self.scratch)?;
        if let Store::Rocks(store) = &mut self.store {
            store.set_current_key(group, &key)?;
        }
        self.current = Some(CurrentKey { key, group });
        Ok(())
    }

    /// Replaces the processing-time clock that time-to-live uses (the system
    /// clock by default), e.g. with a manual one in tests.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// The key set by the last `set_current_key`; `None` before the first
    /// and after a restore.
    pub fn current_key(&self) -> Option<&K> {
        self.current.as_ref().map(|current| &current.key)
    }
}
