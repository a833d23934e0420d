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
//! incremental snapshots ([`incremental`]).
//!
//! States may have a time to live ([`StateTtl`]).
//!
//! Not built yet (rest of the keyed-state issue): batched RocksDB writes, and
//! a compaction filter that drops expired entries inside RocksDB.

mod handles;
mod heap;
pub mod incremental;
mod rocks_store;
pub mod snapshot;
mod timers;
mod ttl;
mod write_cache;

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_common::{KeyEncodingError, KeyGroup, KeyGroupRange, MaxParallelism};

pub use handles::{
    AggregateFunction, AggregatingState, ListState, MapState, ReduceFn, ReducingState, StateHandle, StateKind,
    StateTtl, ValueState,
};
use heap::{HeapStore, MapTable, SingleTable};
pub use incremental::{IncrementalSnapshot, SnapshotOutcome};
use rocks_store::RocksStore;
pub use snapshot::KeyedSnapshot;
use timers::Timers;
pub use timers::{TimeDomain, Timer, TimerService};
use ttl::Expiring;

use crate::storage::{CheckpointStorage, StorageError, StoragePath};

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
    /// A key of a group this task does not own: records were routed wrongly.
    #[error(transparent)]
    ForeignKeyGroup(#[from] crate::key_grouped_map::ForeignKeyGroup),
    /// A state was registered twice differently, used with other types, or
    /// restored from bytes that do not decode as its declared types.
    #[error("state '{name}': {message}")]
    Incompatible {
        /// The state's name.
        name: String,
        /// What does not fit.
        message: String,
    },
    /// RocksDB reported an error.
    #[error("RocksDB state backend: {0}")]
    RocksDb(String),
    /// Reading or writing a snapshot failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A snapshot file decoded but cannot be restored here.
    #[error("keyed-state snapshot '{path}' cannot be restored: {message}")]
    BadSnapshot {
        /// The snapshot file.
        path: String,
        /// Why not.
        message: String,
    },
}

/// The keyed state of one task (one parallel instance of a keyed operator chain).
pub struct KeyedStateBackend<K> {
    max_parallelism: MaxParallelism,
    range: KeyGroupRange,
    store: Store<K>,
    timers: Timers<K>,
    current: Option<CurrentKey<K>>,
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

struct CurrentKey<K> {
    key: K,
    group: KeyGroup,
}

enum Store<K> {
    Heap(HeapStore<K>),
    /// Boxed: the instance's buffers and handles make it several times larger.
    Rocks(Box<RocksStore>),
}

/// Dispatches one operation to the backend in use: `$heap` runs with
/// `(store, group, key)` of the current key, `$rocks` with the RocksDB store.
macro_rules! with_store {
    ($self:ident, |$heap:ident, $group:ident, $key:ident| $on_heap:expr, |$rocks:ident| $on_rocks:expr) => {{
        let current = $self.current.as_ref().ok_or(StateError::NoCurrentKey)?;
        match &mut $self.store {
            Store::Heap($heap) => {
                let ($group, $key) = (current.group, &current.key);
                $on_heap
            }
            Store::Rocks($rocks) => $on_rocks,
        }
    }};
}

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

    /// The current key.
    pub fn current_key(&self) -> Option<&K> {
        self.current.as_ref().map(|current| &current.key)
    }

    /// Refuses names the backends reserve.
    fn check_name(name: &str) -> Result<(), StateError> {
        if name.is_empty() || name == "default" || name.starts_with('\u{1}') {
            return Err(StateError::Incompatible {
                name: name.to_owned(),
                message: "the name is reserved (empty, \"default\", or starting with \\u{1}); choose another".into(),
            });
        }
        Ok(())
    }

    fn register_single<N: StateNamespace, S: StateValue>(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<StateTtl>,
    ) -> Result<usize, StateError> {
        Self::check_name(name)?;
        let ttl = ttl.is_some();
        match (&mut self.store, ttl) {
            (Store::Heap(store), false) => store.register(name, kind, ttl, SingleTable::<K, N, S>::new),
            (Store::Heap(store), true) => store.register(name, kind, ttl, SingleTable::<K, N, Expiring<S>>::new),
            (Store::Rocks(store), _) => store.register(name, kind, ttl),
        }
    }

    /// Declares a value state; registering a name again returns the same state.
    pub fn register_value<N: StateNamespace, V: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<ValueState<N, V>, StateError> {
        self.register_value_with_ttl(name, None)
    }

    /// Declares a value state whose entries expire (`None`: they never do).
    pub fn register_value_with_ttl<N: StateNamespace, V: StateValue>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
    ) -> Result<ValueState<N, V>, StateError> {
        let index = self.register_single::<N, V>(name, StateKind::Value, ttl)?;
        Ok(ValueState { index, ttl, marker: PhantomData })
    }

    /// Declares a list state.
    pub fn register_list<N: StateNamespace, V: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<ListState<N, V>, StateError> {
        self.register_list_with_ttl(name, None)
    }

    /// Declares a list state whose lists expire as a whole.
    pub fn register_list_with_ttl<N: StateNamespace, V: StateValue>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
    ) -> Result<ListState<N, V>, StateError> {
        let index = self.register_single::<N, Vec<V>>(name, StateKind::List, ttl)?;
        Ok(ListState { index, ttl, marker: PhantomData })
    }

    /// Declares a map state.
    pub fn register_map<N: StateNamespace, UK: StateKey, UV: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<MapState<N, UK, UV>, StateError> {
        self.register_map_with_ttl(name, None)
    }

    /// Declares a map state whose entries expire one by one.
    pub fn register_map_with_ttl<N: StateNamespace, UK: StateKey, UV: StateValue>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
    ) -> Result<MapState<N, UK, UV>, StateError> {
        Self::check_name(name)?;
        let expiring = ttl.is_some();
        let index = match (&mut self.store, expiring) {
            (Store::Heap(store), false) => {
                store.register(name, StateKind::Map, false, MapTable::<K, N, UK, UV>::new)?
            }
            (Store::Heap(store), true) => {
                store.register(name, StateKind::Map, true, MapTable::<K, N, UK, Expiring<UV>>::new)?
            }
            (Store::Rocks(store), _) => store.register(name, StateKind::Map, expiring)?,
        };
        Ok(MapState { index, ttl, marker: PhantomData })
    }

    /// Declares a reducing state folding added values with `reduce`.
    pub fn register_reducing<N: StateNamespace, V: StateValue>(
        &mut self,
        name: &str,
        reduce: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Result<ReducingState<N, V>, StateError> {
        self.register_reducing_with_ttl(name, reduce, None)
    }

    /// Declares a reducing state whose values expire.
    pub fn register_reducing_with_ttl<N: StateNamespace, V: StateValue>(
        &mut self,
        name: &str,
        reduce: impl Fn(V, V) -> V + Send + Sync + 'static,
        ttl: Option<StateTtl>,
    ) -> Result<ReducingState<N, V>, StateError> {
        let index = self.register_single::<N, V>(name, StateKind::Reducing, ttl)?;
        Ok(ReducingState { index, ttl, reduce: Arc::new(reduce), marker: PhantomData })
    }

    /// Declares an aggregating state folding added inputs with `function`.
    pub fn register_aggregating<N: StateNamespace, F>(
        &mut self,
        name: &str,
        function: F,
    ) -> Result<AggregatingState<N, F>, StateError>
    where
        F: AggregateFunction,
        F::Acc: StateValue,
    {
        self.register_aggregating_with_ttl(name, function, None)
    }

    /// Declares an aggregating state whose accumulators expire.
    pub fn register_aggregating_with_ttl<N: StateNamespace, F>(
        &mut self,
        name: &str,
        function: F,
        ttl: Option<StateTtl>,
    ) -> Result<AggregatingState<N, F>, StateError>
    where
        F: AggregateFunction,
        F::Acc: StateValue,
    {
        let index = self.register_single::<N, F::Acc>(name, StateKind::Aggregating, ttl)?;
        Ok(AggregatingState { index, ttl, function: Arc::new(function), marker: PhantomData })
    }

    /// Reads the stored object of a single-object state, honouring its time to live.
    fn get_single<N: StateNamespace, S: StateValue>(
        &mut self,
        index: usize,
        ttl: Option<StateTtl>,
        namespace: &N,
    ) -> Result<Option<S>, StateError> {
        let Some(ttl) = ttl else {
            return with_store!(self, |heap, group, key| heap.get::<N, S>(index, group, key, namespace), |rocks| rocks
                .get::<N, S>(index, namespace));
        };
        let now = (self.clock)();
        if ttl.refresh_on_read {
            return self.modify_single(index, Some(ttl), namespace, |value: Option<S>| (value.clone(), value));
        }
        let stored =
            with_store!(self, |heap, group, key| heap.get::<N, Expiring<S>>(index, group, key, namespace), |rocks| {
                rocks.get::<N, Expiring<S>>(index, namespace)
            })?;
        Ok(stored.and_then(|stored| stored.alive(now)))
    }

    /// Read-modify-write of a single-object state (`None` removes it); a write
    /// restarts the entry's time to live.
    fn modify_single<N: StateNamespace, S: StateValue, R>(
        &mut self,
        index: usize,
        ttl: Option<StateTtl>,
        namespace: &N,
        update: impl FnOnce(Option<S>) -> (Option<S>, R),
    ) -> Result<R, StateError> {
        let Some(ttl) = ttl else {
            return with_store!(self, |heap, group, key| heap.modify(index, group, key, namespace, update), |rocks| {
                rocks.modify(index, namespace, update)
            });
        };
        let now = (self.clock)();
        let expires_at = now.saturating_add(ttl.millis());
        let expiring = move |stored: Option<Expiring<S>>| {
            let (updated, result) = update(stored.and_then(|stored| stored.alive(now)));
            (updated.map(|value| Expiring { expires_at, value }), result)
        };
        with_store!(self, |heap, group, key| heap.modify(index, group, key, namespace, expiring), |rocks| rocks
            .modify(index, namespace, expiring))
    }

    /// The value of the current key in `namespace`.
    pub fn value<N: StateNamespace, V: StateValue>(
        &mut self,
        state: &ValueState<N, V>,
        namespace: &N,
    ) -> Result<Option<V>, StateError> {
        self.get_single(state.index, state.ttl, namespace)
    }

    /// Sets the value of the current key in `namespace`.
    pub fn set_value<N: StateNamespace, V: StateValue>(
        &mut self,
        state: &ValueState<N, V>,
        namespace: &N,
        value: V,
    ) -> Result<(), StateError> {
        let index = state.index;
        match state.ttl {
            // A blind write: no read of the old value.
            None => with_store!(self, |heap, group, key| heap.put(index, group, key, namespace, value), |rocks| rocks
                .put(index, namespace, &value)),
            Some(ttl) => self.modify_single(index, Some(ttl), namespace, |_: Option<V>| (Some(value), ())),
        }
    }

    /// Reads, changes and writes the value of the current key in `namespace`
    /// in one access: `update` gets the current value and returns the new one
    /// (`None` clears it) and a result passed back to the caller.
    pub fn update_value<N: StateNamespace, V: StateValue, R>(
        &mut self,
        state: &ValueState<N, V>,
        namespace: &N,
        update: impl FnOnce(Option<V>) -> (Option<V>, R),
    ) -> Result<R, StateError> {
        self.modify_single(state.index, state.ttl, namespace, update)
    }

    /// Every live value of `state` in the default namespace `()`, over all
    /// keys, in no particular order (for emitting final results at end of input).
    pub fn values<V: StateValue>(&mut self, state: &ValueState<(), V>) -> Result<Vec<V>, StateError> {
        if state.ttl.is_none() {
            return match &mut self.store {
                Store::Heap(store) => store.values::<(), V>(state.index),
                Store::Rocks(store) => store.values::<V>(state.index),
            };
        }
        let now = (self.clock)();
        let stored = match &mut self.store {
            Store::Heap(store) => store.values::<(), Expiring<V>>(state.index)?,
            Store::Rocks(store) => store.values::<Expiring<V>>(state.index)?,
        };
        Ok(stored.into_iter().filter_map(|stored| stored.alive(now)).collect())
    }

    /// The list of the current key in `namespace` (empty if none).
    pub fn list<N: StateNamespace, V: StateValue>(
        &mut self,
        state: &ListState<N, V>,
        namespace: &N,
    ) -> Result<Vec<V>, StateError> {
        Ok(self.get_single::<N, Vec<V>>(state.index, state.ttl, namespace)?.unwrap_or_default())
    }

    /// Appends to the list of the current key in `namespace`.
    pub fn list_add<N: StateNamespace, V: StateValue>(
        &mut self,
        state: &ListState<N, V>,
        namespace: &N,
        value: V,
    ) -> Result<(), StateError> {
        if let (Store::Rocks(rocks), None) = (&mut self.store, state.ttl) {
            // Appends in place instead of decoding and re-encoding the list.
            self.current.as_ref().ok_or(StateError::NoCurrentKey)?;
            return rocks.list_append(state.index, namespace, &value);
        }
        self.modify_single(state.index, state.ttl, namespace, |list: Option<Vec<V>>| {
            let mut list = list.unwrap_or_default();
            list.push(value);
            (Some(list), ())
        })
    }

    /// Replaces the list of the current key in `namespace` (empty removes it).
    pub fn list_set<N: StateNamespace, V: StateValue>(
        &mut self,
        state: &ListState<N, V>,
        namespace: &N,
        values: Vec<V>,
    ) -> Result<(), StateError> {
        self.modify_single(state.index, state.ttl, namespace, |_: Option<Vec<V>>| {
            ((!values.is_empty()).then_some(values), ())
        })
    }

    /// The stored user value `SV` under `user_key` (`UV`, or `Expiring<UV>` with a time to live).
    fn map_lookup<N: StateNamespace, UK: StateKey, SV: StateValue>(
        &mut self,
        index: usize,
        namespace: &N,
        user_key: &UK,
    ) -> Result<Option<SV>, StateError> {
        with_store!(
            self,
            |heap, group, key| heap.map(index, group, key, namespace, |map: &mut hashbrown::HashMap<UK, SV>| {
                map.get(user_key).cloned()
            }),
            |rocks| rocks.map_get(index, namespace, user_key)
        )
    }

    /// Stores (or with `None` removes) the user value under `user_key`.
    fn map_store<N: StateNamespace, UK: StateKey, SV: StateValue>(
        &mut self,
        index: usize,
        namespace: &N,
        user_key: UK,
        stored: Option<SV>,
    ) -> Result<(), StateError> {
        with_store!(
            self,
            |heap, group, key| heap.map(index, group, key, namespace, |map: &mut hashbrown::HashMap<UK, SV>| {
                match stored {
                    Some(stored) => map.insert(user_key, stored),
                    None => map.remove(&user_key),
                };
            }),
            |rocks| rocks.map_put(index, namespace, &user_key, stored.as_ref())
        )
    }

    /// Every stored entry of the current key's map in `namespace`.
    fn map_list<N: StateNamespace, UK: StateKey, SV: StateValue>(
        &mut self,
        index: usize,
        namespace: &N,
    ) -> Result<Vec<(UK, SV)>, StateError> {
        with_store!(
            self,
            |heap, group, key| heap.map(index, group, key, namespace, |map: &mut hashbrown::HashMap<UK, SV>| {
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }),
            |rocks| rocks.map_entries(index, namespace)
        )
    }

    /// The value under `user_key` in the current key's map in `namespace`.
    pub fn map_get<N: StateNamespace, UK: StateKey, UV: StateValue>(
        &mut self,
        state: &MapState<N, UK, UV>,
        namespace: &N,
        user_key: &UK,
    ) -> Result<Option<UV>, StateError> {
        if state.ttl.is_none() {
            return self.map_lookup(state.index, namespace, user_key);
        }
        let now = (self.clock)();
        let stored = self.map_lookup::<N, UK, Expiring<UV>>(state.index, namespace, user_key)?;
        Ok(stored.and_then(|stored| stored.alive(now)))
    }

    /// Puts `user_key → user_value` into the current key's map in `namespace`.
    pub fn map_put<N: StateNamespace, UK: StateKey, UV: StateValue>(
        &mut self,
        state: &MapState<N, UK, UV>,
        namespace: &N,
        user_key: UK,
        user_value: UV,
    ) -> Result<(), StateError> {
        let Some(ttl) = state.ttl else {
            return self.map_store(state.index, namespace, user_key, Some(user_value));
        };
        let stored = Expiring { expires_at: (self.clock)().saturating_add(ttl.millis()), value: user_value };
        self.map_store(state.index, namespace, user_key, Some(stored))
    }

    /// Removes `user_key` from the current key's map in `namespace`.
    pub fn map_remove<N: StateNamespace, UK: StateKey, UV: StateValue>(
        &mut self,
        state: &MapState<N, UK, UV>,
        namespace: &N,
        user_key: &UK,
    ) -> Result<(), StateError> {
        match state.ttl {
            None => self.map_store::<N, UK, UV>(state.index, namespace, user_key.clone(), None),
            Some(_) => self.map_store::<N, UK, Expiring<UV>>(state.index, namespace, user_key.clone(), None),
        }
    }

    /// Every live entry of the current key's map in `namespace`, in no particular order.
    pub fn map_entries<N: StateNamespace, UK: StateKey, UV: StateValue>(
        &mut self,
        state: &MapState<N, UK, UV>,
        namespace: &N,
    ) -> Result<Vec<(UK, UV)>, StateError> {
        if state.ttl.is_none() {
            return self.map_list(state.index, namespace);
        }
        let now = (self.clock)();
        let stored = self.map_list::<N, UK, Expiring<UV>>(state.index, namespace)?;
        Ok(stored.into_iter().filter_map(|(k, v)| v.alive(now).map(|v| (k, v))).collect())
    }

    /// The reduced value of the current key in `namespace`.
    pub fn reducing_get<N: StateNamespace, V: StateValue>(
        &mut self,
        state: &ReducingState<N, V>,
        namespace: &N,
    ) -> Result<Option<V>, StateError> {
        self.get_single(state.index, state.ttl, namespace)
    }

    /// Reduces `value` into the current key's value in `namespace`.
    pub fn reducing_add<N: StateNamespace, V: StateValue>(
        &mut self,
        state: &ReducingState<N, V>,
        namespace: &N,
        value: V,
    ) -> Result<(), StateError> {
        let reduce = state.reduce.clone();
        self.modify_single(state.index, state.ttl, namespace, move |current: Option<V>| {
            let reduced = match current {
                Some(current) => reduce(current, value),
                None => value,
            };
            (Some(reduced), ())
        })
    }

    /// The aggregate's result for the current key in `namespace`.
    pub fn aggregating_get<N: StateNamespace, F>(
        &mut self,
        state: &AggregatingState<N, F>,
        namespace: &N,
    ) -> Result<Option<F::Out>, StateError>
    where
        F: AggregateFunction,
        F::Acc: StateValue,
    {
        let accumulator = self.get_single::<N, F::Acc>(state.index, state.ttl, namespace)?;
        Ok(accumulator.map(|accumulator| state.function.result(&accumulator)))
    }

    /// Adds `input` to the current key's accumulator in `namespace`.
    pub fn aggregating_add<N: StateNamespace, F>(
        &mut self,
        state: &AggregatingState<N, F>,
        namespace: &N,
        input: F::In,
    ) -> Result<(), StateError>
    where
        F: AggregateFunction,
        F::Acc: StateValue,
    {
        let function = state.function.clone();
        self.modify_single(state.index, state.ttl, namespace, move |accumulator: Option<F::Acc>| {
            let mut accumulator = accumulator.unwrap_or_else(|| function.create_accumulator());
            function.add(&mut accumulator, input);
            (Some(accumulator), ())
        })
    }

    /// Removes the current key's entry of `state` in `namespace`.
    pub fn clear<H: StateHandle>(&mut self, state: &H, namespace: &H::Namespace) -> Result<(), StateError>
    where
        H::Namespace: StateNamespace,
    {
        let index = state.index();
        with_store!(self, |heap, group, key| heap.clear(index, group, key, namespace), |rocks| rocks
            .clear(index, namespace))
    }

    /// Declares a timer service (timers per key and namespace `N`).
    pub fn register_timer_service<N: StateNamespace>(&mut self, name: &str) -> Result<TimerService<N>, StateError> {
        Self::check_name(name)?;
        self.timers.register(name)
    }

    /// Sets a timer for the current key; setting the same one twice keeps one.
    pub fn register_timer<N: StateNamespace>(
        &mut self,
        service: &TimerService<N>,
        domain: TimeDomain,
        namespace: N,
        timestamp: i64,
    ) -> Result<(), StateError> {
        let key = self.current.as_ref().ok_or(StateError::NoCurrentKey)?.key.clone();
        self.timers.queue(service, domain)?.insert(timestamp, key, namespace);
        Ok(())
    }

    /// Deletes a timer of the current key, if set.
    pub fn delete_timer<N: StateNamespace>(
        &mut self,
        service: &TimerService<N>,
        domain: TimeDomain,
        namespace: N,
        timestamp: i64,
    ) -> Result<(), StateError> {
        let key = self.current.as_ref().ok_or(StateError::NoCurrentKey)?.key.clone();
        self.timers.queue(service, domain)?.remove(timestamp, key, namespace);
        Ok(())
    }

    /// Removes and returns every timer of `domain` due at `time` (at or
    /// before it), earliest first, across all keys.
    pub fn fire_timers<N: StateNamespace>(
        &mut self,
        service: &TimerService<N>,
        domain: TimeDomain,
        time: i64,
    ) -> Result<Vec<Timer<K, N>>, StateError> {
        Ok(self.timers.queue(service, domain)?.pop_until(time))
    }

    /// The earliest pending timer of `domain`.
    pub fn next_timer<N: StateNamespace>(
        &mut self,
        service: &TimerService<N>,
        domain: TimeDomain,
    ) -> Result<Option<i64>, StateError> {
        Ok(self.timers.queue(service, domain)?.next())
    }

    /// Writes a full snapshot of every key group of the range to `path`.
    pub fn snapshot(
        &mut self,
        storage: &dyn CheckpointStorage,
        path: &StoragePath,
    ) -> Result<KeyedSnapshot, StateError> {
        let mut writer = snapshot::SnapshotWriter::new(self.max_parallelism, self.range);
        match &mut self.store {
            Store::Heap(store) => store.write_snapshot(&mut writer, (self.clock)())?,
            Store::Rocks(store) => store.write_snapshot(&mut writer, (self.clock)())?,
        }
        self.timers.write_snapshot(&mut writer, self.max_parallelism)?;
        let file = storage.write(path, &writer.finish()?)?;
        Ok(KeyedSnapshot::Full { file, range: self.range })
    }

    /// Takes an incremental snapshot: with RocksDB, uploads only the SST files
    /// that no confirmed snapshot holds (to `shared_dir`) plus the checkpoint's
    /// small files (to `private_dir`); the memory backend writes a full
    /// snapshot to `private_dir/keyed-state`.
    pub fn snapshot_incremental(
        &mut self,
        storage: &dyn CheckpointStorage,
        private_dir: &StoragePath,
        shared_dir: &StoragePath,
    ) -> Result<SnapshotOutcome, StateError> {
        let range = self.range;
        if let Store::Rocks(store) = &mut self.store {
            let (mut snapshot, mut uploaded_bytes) = store.snapshot_incremental(
                storage,
                private_dir,
                shared_dir,
                range,
                self.max_parallelism.get() as u32,
            )?;
            let mut writer = snapshot::SnapshotWriter::new(self.max_parallelism, range);
            self.timers.write_snapshot(&mut writer, self.max_parallelism)?;
            let timers = storage.write(&private_dir.join("timers")?, &writer.finish()?)?;
            uploaded_bytes += timers.size;
            snapshot.timers = Some(timers);
            return Ok(SnapshotOutcome { snapshot: KeyedSnapshot::Incremental(snapshot), uploaded_bytes });
        }
        let snapshot = self.snapshot(storage, &private_dir.join("keyed-state")?)?;
        let uploaded_bytes = match &snapshot {
            KeyedSnapshot::Full { file, .. } => file.size,
            KeyedSnapshot::Incremental(_) => 0,
        };
        Ok(SnapshotOutcome { snapshot, uploaded_bytes })
    }

    /// Records that `snapshot` completed (its checkpoint is retained), so
    /// later incremental snapshots may share its files.
    pub fn confirm(&mut self, snapshot: &KeyedSnapshot) {
        if let (Store::Rocks(store), KeyedSnapshot::Incremental(snapshot)) = (&mut self.store, snapshot) {
            store.confirm(snapshot);
        }
    }

    /// Loads the key groups of this backend's range from `snapshots`, which
    /// may have been taken at any parallelism and with either backend; groups
    /// outside the range are not read. Call on an empty backend, before
    /// registering states.
    pub fn restore(&mut self, storage: &dyn CheckpointStorage, snapshots: &[KeyedSnapshot]) -> Result<(), StateError> {
        let range = self.range;
        let overlapping: Vec<&KeyedSnapshot> =
            snapshots.iter().filter(|snapshot| snapshot::overlaps(snapshot.range(), range)).collect();
        for snapshot in &overlapping {
            if let KeyedSnapshot::Incremental(snapshot) = snapshot {
                incremental::validate(snapshot, self.max_parallelism.get() as u32)?;
            }
        }
        // The store may be replaced or refilled: no key is current any more.
        self.current = None;
        // Same key groups, same backend: the snapshot's files become the instance.
        let reusable = match (overlapping.as_slice(), &self.store) {
            ([KeyedSnapshot::Incremental(only)], Store::Rocks(store)) if only.range == range => {
                Some((only, store.dir().to_path_buf()))
            }
            _ => None,
        };
        if let Some((only, dir)) = reusable {
            // Close the current instance first: RocksDB locks its directory.
            self.store = Store::Heap(HeapStore::new(range));
            return match RocksStore::open_restored(&dir, storage, only) {
                Ok(restored) => {
                    self.store = Store::Rocks(Box::new(restored));
                    only.timers.as_ref().map_or(Ok(()), |timers| self.restore_full(storage, timers))
                }
                Err(error) => {
                    // Leave an empty RocksDB backend, never a different kind.
                    self.store = Store::Rocks(Box::new(RocksStore::open(&dir)?));
                    Err(error)
                }
            };
        }
        for snapshot in overlapping {
            match snapshot {
                KeyedSnapshot::Full { file, .. } => self.restore_full(storage, file)?,
                KeyedSnapshot::Incremental(snapshot) => {
                    if let Some(timers) = &snapshot.timers {
                        self.restore_full(storage, timers)?;
                    }
                    let store = &mut self.store;
                    incremental::read_range(storage, snapshot, range, &mut |state, group, key, value| match store {
                        Store::Heap(store) => store.restore_entry(state, group, key, value),
                        Store::Rocks(store) => store.restore_entry(state, group, key, value),
                    })?;
                }
            }
        }
        Ok(())
    }

    fn restore_full(
        &mut self,
        storage: &dyn CheckpointStorage,
        file: &crate::storage::FileHandle,
    ) -> Result<(), StateError> {
        let bytes = storage.read(file)?;
        let reader = snapshot::SnapshotReader::parse(&bytes, &file.path, self.max_parallelism)?;
        for group in self.range.iter() {
            for entry in reader.entries_of(group)? {
                let (state, key, value) = entry?;
                if self.timers.restore_entry(state, group, key)? {
                    continue;
                }
                match &mut self.store {
                    Store::Heap(store) => store.restore_entry(state, group, key, value)?,
                    Store::Rocks(store) => store.restore_entry(state, group, key, value)?,
                }
            }
        }
        Ok(())
    }
}
