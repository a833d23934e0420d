//! Declaring states: each `register_*` method returns the typed handle an
//! operator keeps. Registering a name again returns the same state; another
//! kind or time to live is refused (the memory backend also refuses other
//! types; RocksDB finds them when a stored value does not decode). Restored
//! state is reached by registering its name after the restore.

use std::marker::PhantomData;
use std::sync::Arc;

use super::heap::{MapTable, SingleTable};
use super::ttl::Expiring;
use super::{
    AggregateFunction, AggregatingState, KeyedStateBackend, ListState, MapState, ReducingState, StateError, StateKey,
    StateKind, StateNamespace, StateTtl, StateValue, Store, ValueState,
};

impl<K: StateKey> KeyedStateBackend<K> {
    /// Registers a state that keeps one object `S` per key and namespace
    /// (value, list, reducing and aggregating state).
    fn register_single<N: StateNamespace, S: StateValue>(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<StateTtl>,
    ) -> Result<usize, StateError> {
        check_name(name)?;
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

    /// Declares a list state: one list per key and namespace, stored as one object.
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

    /// Declares a map state: one map per key and namespace, stored entry by entry,
    /// so that reading or writing one user key does not touch the others.
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
        check_name(name)?;
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
}

/// Refuses names the backends reserve: RocksDB's `default` column family,
/// and the `\u{1}` prefix that marks timers in snapshots.
pub(super) fn check_name(name: &str) -> Result<(), StateError> {
    if name.is_empty() || name == "default" || name.starts_with('\u{1}') {
        return Err(StateError::Incompatible {
            name: name.to_owned(),
            message: "the name is reserved (empty, \"default\", or starting with \\u{1}); choose another".into(),
        });
    }
    Ok(())
}
