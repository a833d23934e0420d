//! The memory backend: objects on the heap, one hash map per key group and
//! state, keyed by `(key, namespace)`, so an access costs a hash lookup and
//! no serialization.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use hashbrown::Equivalent;
use weir_common::{KeyGroup, KeyGroupRange};

use super::snapshot::SnapshotWriter;
use super::{StateError, StateKey, StateKind, StateNamespace, StateValue};
use crate::KeyGroupedMap;

/// `(key, namespace)` borrowed, to look up `(K, N)` entries without cloning.
struct KeyNs<'a, K, N>(&'a K, &'a N);

impl<K: Hash, N: Hash> Hash for KeyNs<'_, K, N> {
    /// Hashes exactly as the tuple `(K, N)` does: field by field.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl<K: Eq, N: Eq> Equivalent<(K, N)> for KeyNs<'_, K, N> {
    fn equivalent(&self, stored: &(K, N)) -> bool {
        *self.0 == stored.0 && *self.1 == stored.1
    }
}

/// The memory backend's store: a table per registered state, and restored
/// entries waiting for their state to be registered.
pub(super) struct HeapStore<K> {
    range: KeyGroupRange,
    names: Vec<String>,
    kinds: Vec<StateKind>,
    /// Whether each state has a time to live (its values are `Expiring`).
    ttl: Vec<bool>,
    tables: Vec<Box<dyn Table<K>>>,
    /// Restored entries of states not registered yet, still encoded: they are
    /// decoded on registration, when their types are known, and written to the
    /// next snapshot unchanged if no operator registers them.
    pending: HashMap<String, Vec<EncodedEntry>>,
}

/// An entry as a snapshot stores it: key group, key bytes, value bytes.
type EncodedEntry = (KeyGroup, Vec<u8>, Vec<u8>);

/// One state's entries, with what the store needs without knowing its types.
pub(super) trait Table<K>: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Writes the entries; with `expired_at`, leaves out entries (values of
    /// time-to-live states) that have expired at that time.
    fn write_snapshot(&self, state: u32, writer: &mut SnapshotWriter, expired_at: Option<i64>) -> Result<(), String>;
    fn insert_encoded(&mut self, group: KeyGroup, key: &[u8], value: &[u8]) -> Result<(), String>;
    fn clear(&mut self, group: KeyGroup, key: &K, namespace: &dyn Any) -> Result<(), String>;
}

/// One stored object `S` per key and namespace (value, list, reducing and
/// aggregating state). Snapshot entry: `postcard(key) postcard(ns)` → `postcard(S)`.
///
/// Slots hold `Option<S>` so that a read-modify-write can take the object out,
/// hand it to the update and put the result back with one hash lookup; a
/// `None` slot (left only if an update panicked) counts as absent.
pub(super) struct SingleTable<K, N, S> {
    entries: KeyGroupedMap<(K, N), Option<S>>,
}

/// A map per key and namespace. Snapshot entries, one per map entry:
/// `postcard(key) postcard(ns) postcard(user key)` → `postcard(user value)`.
pub(super) struct MapTable<K, N, UK, UV> {
    entries: KeyGroupedMap<(K, N), hashbrown::HashMap<UK, UV>>,
}

fn encode_all(parts: &[&dyn erased::Encode], out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    parts.iter().try_for_each(|part| part.encode_into(out))
}

/// Serializing through `dyn` so that key, namespace and user key can be
/// encoded back to back into one buffer.
mod erased {
    pub(super) trait Encode {
        fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), String>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), String> {
            postcard::to_io(self, out).map(|_| ()).map_err(|error| format!("does not serialize: {error}"))
        }
    }
}

/// Decodes one value from the front of `bytes`, leaving the rest.
fn take<T: serde::de::DeserializeOwned>(bytes: &mut &[u8], what: &str) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|error| format!("a {what} does not decode as {}: {error}", std::any::type_name::<T>()))?;
    *bytes = rest;
    Ok(value)
}

/// Decodes `bytes` as exactly one `T`: leftover bytes mean another type was
/// stored, which must not pass as a wrongly decoded value.
fn whole<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    let mut rest = bytes;
    let value = take(&mut rest, what)?;
    if !rest.is_empty() {
        return Err(format!(
            "a {what} does not decode as {}: {} bytes left over",
            std::any::type_name::<T>(),
            rest.len()
        ));
    }
    Ok(value)
}

impl<K: StateKey, N: StateNamespace, S: StateValue> Table<K> for SingleTable<K, N, S> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn write_snapshot(&self, state: u32, writer: &mut SnapshotWriter, expired_at: Option<i64>) -> Result<(), String> {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for (group, (k, n), stored) in self.entries.iter() {
            let Some(stored) = stored else { continue };
            encode_all(&[stored], &mut value)?;
            if expired_at.is_some_and(|now| super::ttl::expired(&value, now)) {
                continue;
            }
            encode_all(&[k, n], &mut key)?;
            writer.add(group, state, &key, &value);
        }
        Ok(())
    }

    fn insert_encoded(&mut self, group: KeyGroup, key: &[u8], value: &[u8]) -> Result<(), String> {
        let mut rest = key;
        let k: K = take(&mut rest, "key")?;
        let n: N = whole(rest, "namespace")?;
        let stored: S = whole(value, "value")?;
        self.entries.group_mut(group).map_err(|error| error.to_string())?.insert((k, n), Some(stored));
        Ok(())
    }

    fn clear(&mut self, group: KeyGroup, key: &K, namespace: &dyn Any) -> Result<(), String> {
        let namespace = namespace.downcast_ref::<N>().ok_or("cleared with another namespace type")?;
        self.entries.group_mut(group).map_err(|error| error.to_string())?.remove(&KeyNs(key, namespace));
        Ok(())
    }
}

impl<K, N, UK, UV> Table<K> for MapTable<K, N, UK, UV>
where
    K: StateKey,
    N: StateNamespace,
    UK: StateKey,
    UV: StateValue,
{
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn write_snapshot(&self, state: u32, writer: &mut SnapshotWriter, expired_at: Option<i64>) -> Result<(), String> {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for (group, (k, n), map) in self.entries.iter() {
            for (user_key, user_value) in map {
                encode_all(&[user_value], &mut value)?;
                if expired_at.is_some_and(|now| super::ttl::expired(&value, now)) {
                    continue;
                }
                encode_all(&[k, n, user_key], &mut key)?;
                writer.add(group, state, &key, &value);
            }
        }
        Ok(())
    }

    fn insert_encoded(&mut self, group: KeyGroup, key: &[u8], value: &[u8]) -> Result<(), String> {
        let mut rest = key;
        let k: K = take(&mut rest, "key")?;
        let n: N = take(&mut rest, "namespace")?;
        let user_key: UK = whole(rest, "map key")?;
        let user_value: UV = whole(value, "map value")?;
        let groups = self.entries.group_mut(group).map_err(|error| error.to_string())?;
        groups.entry((k, n)).or_default().insert(user_key, user_value);
        Ok(())
    }

    fn clear(&mut self, group: KeyGroup, key: &K, namespace: &dyn Any) -> Result<(), String> {
        let namespace = namespace.downcast_ref::<N>().ok_or("cleared with another namespace type")?;
        self.entries.group_mut(group).map_err(|error| error.to_string())?.remove(&KeyNs(key, namespace));
        Ok(())
    }
}

impl<K: StateKey> HeapStore<K> {
    pub(super) fn new(range: KeyGroupRange) -> Self {
        Self {
            range,
            names: Vec::new(),
            kinds: Vec::new(),
            ttl: Vec::new(),
            tables: Vec::new(),
            pending: HashMap::new(),
        }
    }

    /// Registers `name` with table type `T`, created by `create` if new.
    pub(super) fn register<T: Table<K> + 'static>(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: bool,
        create: impl FnOnce(KeyGroupRange) -> T,
    ) -> Result<usize, StateError> {
        let incompatible = |message: String| StateError::Incompatible { name: name.to_owned(), message };
        if let Some(index) = self.names.iter().position(|known| known == name) {
            let same = self.kinds[index] == kind && self.ttl[index] == ttl;
            if !same || self.tables[index].as_any_mut().downcast_mut::<T>().is_none() {
                return Err(incompatible(format!("registered again as another kind or type ({kind:?})")));
            }
            return Ok(index);
        }
        let mut table = create(self.range);
        // Restored entries leave `pending` only once all of them decoded: a
        // failed registration (wrong types) must not lose them.
        if let Some(entries) = self.pending.get(name) {
            for (group, key, value) in entries {
                table
                    .insert_encoded(*group, key, value)
                    .map_err(|message| incompatible(format!("restored state: {message}")))?;
            }
            self.pending.remove(name);
        }
        self.names.push(name.to_owned());
        self.kinds.push(kind);
        self.ttl.push(ttl);
        self.tables.push(Box::new(table));
        Ok(self.tables.len() - 1)
    }

    fn table<T: 'static>(&mut self, index: usize) -> Result<&mut T, StateError> {
        let (Some(name), Some(table)) = (self.names.get(index), self.tables.get_mut(index)) else {
            return Err(unknown_handle(index));
        };
        table.as_any_mut().downcast_mut::<T>().ok_or_else(|| StateError::Incompatible {
            name: name.clone(),
            message: "accessed with other types than it was registered with".into(),
        })
    }

    /// Applies `update` to the stored object of `(key, namespace)`: it gets
    /// the current object (if any) and returns the new one (`None` removes).
    pub(super) fn modify<N: StateNamespace, S: StateValue, R>(
        &mut self,
        index: usize,
        group: KeyGroup,
        key: &K,
        namespace: &N,
        update: impl FnOnce(Option<S>) -> (Option<S>, R),
    ) -> Result<R, StateError> {
        let table = self.table::<SingleTable<K, N, S>>(index)?;
        let entries = table.entries.group_mut(group)?;
        if let Some(slot) = entries.get_mut(&KeyNs(key, namespace)) {
            let (updated, result) = update(slot.take());
            let removed = updated.is_none();
            *slot = updated;
            if removed {
                entries.remove(&KeyNs(key, namespace));
            }
            return Ok(result);
        }
        let (updated, result) = update(None);
        if updated.is_some() {
            entries.insert((key.clone(), namespace.clone()), updated);
        }
        Ok(result)
    }

    /// Stores `value` for `(key, namespace)`, replacing any earlier one.
    pub(super) fn put<N: StateNamespace, S: StateValue>(
        &mut self,
        index: usize,
        group: KeyGroup,
        key: &K,
        namespace: &N,
        value: S,
    ) -> Result<(), StateError> {
        let table = self.table::<SingleTable<K, N, S>>(index)?;
        let entries = table.entries.group_mut(group)?;
        match entries.get_mut(&KeyNs(key, namespace)) {
            Some(slot) => *slot = Some(value),
            None => {
                entries.insert((key.clone(), namespace.clone()), Some(value));
            }
        }
        Ok(())
    }

    /// The stored object of `(key, namespace)`, cloned.
    pub(super) fn get<N: StateNamespace, S: StateValue>(
        &mut self,
        index: usize,
        group: KeyGroup,
        key: &K,
        namespace: &N,
    ) -> Result<Option<S>, StateError> {
        let table = self.table::<SingleTable<K, N, S>>(index)?;
        Ok(table.entries.group_mut(group)?.get(&KeyNs(key, namespace)).and_then(Option::clone))
    }

    /// The map of `(key, namespace)`, for reading and writing in place.
    pub(super) fn map<N: StateNamespace, UK: StateKey, UV: StateValue, R>(
        &mut self,
        index: usize,
        group: KeyGroup,
        key: &K,
        namespace: &N,
        access: impl FnOnce(&mut hashbrown::HashMap<UK, UV>) -> R,
    ) -> Result<R, StateError> {
        let table = self.table::<MapTable<K, N, UK, UV>>(index)?;
        let entries = table.entries.group_mut(group)?;
        match entries.get_mut(&KeyNs(key, namespace)) {
            Some(map) => {
                let result = access(map);
                if map.is_empty() {
                    entries.remove(&KeyNs(key, namespace));
                }
                Ok(result)
            }
            None => {
                let mut map = hashbrown::HashMap::new();
                let result = access(&mut map);
                if !map.is_empty() {
                    entries.insert((key.clone(), namespace.clone()), map);
                }
                Ok(result)
            }
        }
    }

    pub(super) fn clear(
        &mut self,
        index: usize,
        group: KeyGroup,
        key: &K,
        namespace: &dyn Any,
    ) -> Result<(), StateError> {
        let (Some(name), Some(table)) = (self.names.get(index), self.tables.get_mut(index)) else {
            return Err(unknown_handle(index));
        };
        table.clear(group, key, namespace).map_err(|message| StateError::Incompatible { name: name.clone(), message })
    }

    /// Every stored object of a single-object state, over all keys.
    pub(super) fn values<N: StateNamespace, S: StateValue>(&mut self, index: usize) -> Result<Vec<S>, StateError> {
        let table = self.table::<SingleTable<K, N, S>>(index)?;
        Ok(table.entries.iter().filter_map(|(_, _, value)| value.clone()).collect())
    }

    pub(super) fn write_snapshot(&self, writer: &mut SnapshotWriter, now: i64) -> Result<(), StateError> {
        for ((name, table), ttl) in self.names.iter().zip(&self.tables).zip(&self.ttl) {
            let state = writer.state_index(name);
            table
                .write_snapshot(state, writer, ttl.then_some(now))
                .map_err(|message| StateError::Incompatible { name: name.clone(), message })?;
        }
        for (name, entries) in &self.pending {
            let state = writer.state_index(name);
            for (group, key, value) in entries {
                writer.add(*group, state, key, value);
            }
        }
        Ok(())
    }

    pub(super) fn restore_entry(
        &mut self,
        name: &str,
        group: KeyGroup,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        match self.names.iter().position(|known| known == name) {
            Some(index) => self.tables[index]
                .insert_encoded(group, key, value)
                .map_err(|message| StateError::Incompatible { name: name.to_owned(), message }),
            None => {
                self.pending.entry(name.to_owned()).or_default().push((group, key.to_vec(), value.to_vec()));
                Ok(())
            }
        }
    }
}

/// A handle this store never handed out: from another backend, or from
/// before a restore.
fn unknown_handle(index: usize) -> StateError {
    StateError::Incompatible {
        name: format!("#{index}"),
        message: "this state handle was not registered with this backend (register states after restore)".into(),
    }
}

impl<K, N, S> SingleTable<K, N, S> {
    pub(super) fn new(range: KeyGroupRange) -> Self
    where
        K: Eq + Hash,
        N: Eq + Hash,
    {
        Self { entries: KeyGroupedMap::new(range) }
    }
}

impl<K, N, UK, UV> MapTable<K, N, UK, UV> {
    pub(super) fn new(range: KeyGroupRange) -> Self
    where
        K: Eq + Hash,
        N: Eq + Hash,
    {
        Self { entries: KeyGroupedMap::new(range) }
    }
}
