//! The memory backend: objects on the heap, one hash map per key group and
//! state, so an update costs a hash lookup and no serialization.

use std::any::Any;
use std::collections::HashMap;

use weir_common::{KeyGroup, KeyGroupRange};

use super::snapshot::SnapshotWriter;
use super::{StateError, StateKey, StateValue};
use crate::KeyGroupedMap;

/// The states of one task, typed by their value behind `dyn Any`.
pub(super) struct HeapStore<K> {
    range: KeyGroupRange,
    names: Vec<String>,
    tables: Vec<Box<dyn Table<K>>>,
    /// Restored entries of states not registered yet, still encoded: they are
    /// decoded on registration, when their type is known, and written to the
    /// next snapshot as they are if no operator registers them.
    pending: HashMap<String, Vec<EncodedEntry>>,
}

/// An entry as a snapshot stores it: key group, `postcard(key)`, `postcard(value)`.
type EncodedEntry = (KeyGroup, Vec<u8>, Vec<u8>);

/// One state's entries, with what the store needs without knowing `V`.
trait Table<K>: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn write_snapshot(&self, state: u32, writer: &mut SnapshotWriter) -> Result<(), String>;
    fn insert_encoded(&mut self, group: KeyGroup, key: &[u8], value: &[u8]) -> Result<(), String>;
}

struct ValueTable<K, V> {
    entries: KeyGroupedMap<K, V>,
}

impl<K: StateKey, V: StateValue> Table<K> for ValueTable<K, V> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn write_snapshot(&self, state: u32, writer: &mut SnapshotWriter) -> Result<(), String> {
        let (mut key_bytes, mut value_bytes) = (Vec::new(), Vec::new());
        for (group, key, value) in self.entries.iter() {
            key_bytes.clear();
            value_bytes.clear();
            postcard::to_io(key, &mut key_bytes).map_err(|error| format!("a key does not serialize: {error}"))?;
            postcard::to_io(value, &mut value_bytes).map_err(|error| format!("a value does not serialize: {error}"))?;
            writer.add(group, state, &key_bytes, &value_bytes);
        }
        Ok(())
    }

    fn insert_encoded(&mut self, group: KeyGroup, key: &[u8], value: &[u8]) -> Result<(), String> {
        let key: K = postcard::from_bytes(key).map_err(|error| format!("a key does not decode: {error}"))?;
        let value: V = postcard::from_bytes(value)
            .map_err(|error| format!("a value does not decode as {}: {error}", std::any::type_name::<V>()))?;
        let groups = self.entries.group_mut(group).map_err(|error| error.to_string())?;
        groups.insert(key, value);
        Ok(())
    }
}

impl<K: StateKey> HeapStore<K> {
    pub(super) fn new(range: KeyGroupRange) -> Self {
        Self { range, names: Vec::new(), tables: Vec::new(), pending: HashMap::new() }
    }

    pub(super) fn register<V: StateValue>(&mut self, name: &str) -> Result<usize, StateError> {
        let incompatible = |message: String| StateError::Incompatible { name: name.to_owned(), message };
        if let Some(index) = self.names.iter().position(|known| known == name) {
            if self.tables[index].as_any_mut().downcast_mut::<ValueTable<K, V>>().is_none() {
                return Err(incompatible(format!(
                    "registered again with another type ({})",
                    std::any::type_name::<V>()
                )));
            }
            return Ok(index);
        }
        let mut table: Box<dyn Table<K>> = Box::new(ValueTable::<K, V> { entries: KeyGroupedMap::new(self.range) });
        for (group, key, value) in self.pending.remove(name).unwrap_or_default() {
            table
                .insert_encoded(group, &key, &value)
                .map_err(|message| incompatible(format!("restored state: {message}")))?;
        }
        self.names.push(name.to_owned());
        self.tables.push(table);
        Ok(self.tables.len() - 1)
    }

    fn table<V: StateValue>(&mut self, index: usize) -> Result<&mut ValueTable<K, V>, StateError> {
        let name = &self.names[index];
        self.tables[index].as_any_mut().downcast_mut::<ValueTable<K, V>>().ok_or_else(|| StateError::Incompatible {
            name: name.clone(),
            message: format!("accessed as {}", std::any::type_name::<V>()),
        })
    }

    pub(super) fn get<V: StateValue>(
        &mut self,
        index: usize,
        group: KeyGroup,
        key: &K,
    ) -> Result<Option<V>, StateError> {
        let table = self.table::<V>(index)?;
        Ok(table.entries.group_mut(group).map_err(foreign)?.get(key).cloned())
    }

    pub(super) fn put<V: StateValue>(
        &mut self,
        index: usize,
        group: KeyGroup,
        key: K,
        value: V,
    ) -> Result<(), StateError> {
        let table = self.table::<V>(index)?;
        table.entries.group_mut(group).map_err(foreign)?.insert(key, value);
        Ok(())
    }

    pub(super) fn remove<V: StateValue>(&mut self, index: usize, group: KeyGroup, key: &K) -> Result<(), StateError> {
        let table = self.table::<V>(index)?;
        table.entries.group_mut(group).map_err(foreign)?.remove(key);
        Ok(())
    }

    pub(super) fn write_snapshot(&self, writer: &mut SnapshotWriter) -> Result<(), StateError> {
        for (name, table) in self.names.iter().zip(&self.tables) {
            let state = writer.state_index(name);
            table
                .write_snapshot(state, writer)
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

fn foreign(error: crate::key_grouped_map::ForeignKeyGroup) -> StateError {
    StateError::ForeignKeyGroup(error)
}
