//! Reading and writing map state for the current key. Each map entry is
//! stored on its own (a heap map per key and namespace; a RocksDB key per
//! user key), so a lookup or put touches one entry, not the whole map.

use super::ttl::Expiring;
use super::{KeyedStateBackend, MapState, StateError, StateKey, StateNamespace, StateValue, with_store};

impl<K: StateKey> KeyedStateBackend<K> {
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
}
