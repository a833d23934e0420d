//! Reading and writing the states that keep one object per key and
//! namespace: value, list, reducing and aggregating state, always for the
//! current key. With a time to live the stored object is `Expiring<_>`:
//! reads drop it once expired, writes restart its time.

use super::ttl::Expiring;
use super::{
    AggregateFunction, AggregatingState, KeyedStateBackend, ListState, ReducingState, StateError, StateHandle,
    StateKey, StateNamespace, StateTtl, StateValue, Store, ValueState, with_store,
};

impl<K: StateKey> KeyedStateBackend<K> {
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
}
