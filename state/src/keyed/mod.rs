//! Keyed state of one task: the values keyed operators keep per key, stored
//! in the memory or the RocksDB backend, snapshotted per key group and
//! restored — also at another parallelism — from any set of snapshots.
//!
//! Access follows Flink's model: the task sets the current key
//! ([`KeyedStateBackend::set_current_key`]), then reads and writes states
//! registered by name ([`KeyedStateBackend::register_value`]) for that key.
//! Both backends write the same canonical full-snapshot format
//! ([`snapshot`]), so a snapshot taken with one restores into the other.
//!
//! Built so far: value state, full snapshots, rescaling restore. List, map,
//! reducing and aggregating state, namespaces, TTL, timers and incremental
//! RocksDB snapshots are the rest of the keyed-state issue.

mod heap;
mod rocks_store;
pub mod snapshot;

use std::marker::PhantomData;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_common::{KeyEncodingError, KeyGroup, KeyGroupRange, MaxParallelism};

use crate::storage::{CheckpointStorage, StorageError, StoragePath};
pub use snapshot::KeyedSnapshot;

/// A key of keyed state.
pub trait StateKey: Serialize + DeserializeOwned + Clone + Eq + std::hash::Hash + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Eq + std::hash::Hash + Send + 'static> StateKey for T {}

/// A value kept in keyed state.
pub trait StateValue: Serialize + DeserializeOwned + Clone + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + 'static> StateValue for T {}

/// Which backend holds the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateBackendKind {
    /// Objects on the heap, one hash map per key group and state.
    Memory,
    /// One RocksDB instance per task, in a directory below `dir`.
    RocksDb {
        /// Working directory for the task's instance (deleted and recreated).
        dir: PathBuf,
    },
}

/// Why a keyed-state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// State was accessed before a key was set.
    #[error("no current key: keyed state is only accessible while processing a keyed record")]
    NoCurrentKey,
    /// The key does not serialize.
    #[error(transparent)]
    Key(#[from] KeyEncodingError),
    /// A state name was registered twice with different types, or a snapshot
    /// holds a state that does not decode as the registered type.
    #[error("state '{name}': {message}")]
    Incompatible {
        /// The state's name.
        name: String,
        /// What does not fit.
        message: String,
    },
    /// A key of a group this task does not own: records were routed wrongly.
    #[error(transparent)]
    ForeignKeyGroup(#[from] crate::key_grouped_map::ForeignKeyGroup),
    /// RocksDB reported an error.
    #[error("RocksDB state backend: {0}")]
    RocksDb(String),
    /// Reading or writing a snapshot failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A snapshot file decoded but is not a keyed-state snapshot of this job.
    #[error("keyed-state snapshot '{path}' cannot be restored: {message}")]
    BadSnapshot {
        /// The snapshot file.
        path: String,
        /// Why not.
        message: String,
    },
}

/// The typed name of a registered value state.
#[derive(Debug)]
pub struct ValueStateHandle<V> {
    index: usize,
    marker: PhantomData<fn() -> V>,
}

impl<V> Clone for ValueStateHandle<V> {
    fn clone(&self) -> Self {
        Self { index: self.index, marker: PhantomData }
    }
}

/// The keyed state of one task (one parallel instance of a keyed operator chain).
pub struct KeyedStateBackend<K> {
    max_parallelism: MaxParallelism,
    range: KeyGroupRange,
    store: Store<K>,
    current: Option<CurrentKey<K>>,
    scratch: Vec<u8>,
}

struct CurrentKey<K> {
    key: K,
    group: KeyGroup,
}

enum Store<K> {
    Heap(heap::HeapStore<K>),
    Rocks(rocks_store::RocksStore),
}

impl<K: StateKey> KeyedStateBackend<K> {
    /// An empty backend owning the key groups of `range`.
    pub fn new(
        kind: &StateBackendKind,
        max_parallelism: MaxParallelism,
        range: KeyGroupRange,
    ) -> Result<Self, StateError> {
        let store = match kind {
            StateBackendKind::Memory => Store::Heap(heap::HeapStore::new(range)),
            StateBackendKind::RocksDb { dir } => Store::Rocks(rocks_store::RocksStore::open(dir)?),
        };
        Ok(Self { max_parallelism, range, store, current: None, scratch: Vec::new() })
    }

    /// The key groups this backend owns.
    pub fn key_group_range(&self) -> KeyGroupRange {
        self.range
    }

    /// Declares a value state; registering the same name again returns the same state.
    pub fn register_value<V: StateValue>(&mut self, name: &str) -> Result<ValueStateHandle<V>, StateError> {
        let index = match &mut self.store {
            Store::Heap(store) => store.register::<V>(name)?,
            Store::Rocks(store) => store.register(name)?,
        };
        Ok(ValueStateHandle { index, marker: PhantomData })
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

    /// The current key's value of `state`.
    pub fn value<V: StateValue>(&mut self, state: &ValueStateHandle<V>) -> Result<Option<V>, StateError> {
        let current = self.current.as_ref().ok_or(StateError::NoCurrentKey)?;
        match &mut self.store {
            Store::Heap(store) => store.get::<V>(state.index, current.group, &current.key),
            Store::Rocks(store) => store.get::<V>(state.index),
        }
    }

    /// Sets the current key's value of `state`.
    pub fn update<V: StateValue>(&mut self, state: &ValueStateHandle<V>, value: V) -> Result<(), StateError> {
        let current = self.current.as_ref().ok_or(StateError::NoCurrentKey)?;
        match &mut self.store {
            Store::Heap(store) => store.put::<V>(state.index, current.group, current.key.clone(), value),
            Store::Rocks(store) => store.put(state.index, &value),
        }
    }

    /// Removes the current key's value of `state`.
    pub fn clear<V: StateValue>(&mut self, state: &ValueStateHandle<V>) -> Result<(), StateError> {
        let current = self.current.as_ref().ok_or(StateError::NoCurrentKey)?;
        match &mut self.store {
            Store::Heap(store) => store.remove::<V>(state.index, current.group, &current.key),
            Store::Rocks(store) => store.delete(state.index),
        }
    }

    /// Writes a full snapshot of every key group of the range to `path`.
    pub fn snapshot(
        &mut self,
        storage: &dyn CheckpointStorage,
        path: &StoragePath,
    ) -> Result<KeyedSnapshot, StateError> {
        let mut writer = snapshot::SnapshotWriter::new(self.max_parallelism, self.range);
        match &mut self.store {
            Store::Heap(store) => store.write_snapshot(&mut writer)?,
            Store::Rocks(store) => store.write_snapshot(&mut writer)?,
        }
        let file = storage.write(path, &writer.finish()?)?;
        Ok(KeyedSnapshot { file, range: self.range })
    }

    /// Loads the key groups of this backend's range from `snapshots`, which
    /// may have been taken at any parallelism; groups outside the range are
    /// not read. Call on an empty backend, before registering states.
    pub fn restore(&mut self, storage: &dyn CheckpointStorage, snapshots: &[KeyedSnapshot]) -> Result<(), StateError> {
        for snapshot in snapshots {
            if !snapshot::overlaps(snapshot.range, self.range) {
                continue;
            }
            let bytes = storage.read(&snapshot.file)?;
            let reader = snapshot::SnapshotReader::parse(&bytes, &snapshot.file.path, self.max_parallelism)?;
            for group in self.range.iter() {
                for entry in reader.entries_of(group)? {
                    let (state, key, value) = entry?;
                    match &mut self.store {
                        Store::Heap(store) => store.restore_entry(state, group, key, value)?,
                        Store::Rocks(store) => store.restore_entry(state, group, key, value)?,
                    }
                }
            }
        }
        Ok(())
    }
}
