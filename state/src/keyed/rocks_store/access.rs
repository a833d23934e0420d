//! Reads and writes of the RocksDB backend, for the current key. Point reads
//! and all writes go through the write-back cache; reads that scan RocksDB
//! (a map's entries, all values of a state) and range deletes flush it first.

use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{RocksStore, encode, rocks_error};
use crate::keyed::{StateError, StateKind};

impl RocksStore {
    /// Reads the value at `full_key`, from the cache if it knows the key.
    pub(super) fn read<T: DeserializeOwned>(&mut self, index: usize) -> Result<Option<T>, StateError> {
        if let Some(cached) = self.cache.lookup(index, &self.full_key) {
            return cached.map(|bytes| self.decode(index, bytes)).transpose();
        }
        let column = self.column(index)?;
        let stored = self.db.get_pinned_cf(column, &self.full_key).map_err(|error| rocks_error(&self.dir, error))?;
        let value = stored.as_deref().map(|bytes| self.decode(index, bytes)).transpose()?;
        self.cache.remember(index, &self.full_key, stored.as_deref());
        drop(stored);
        self.flush_cache_if_full()?;
        Ok(value)
    }

    /// Writes (or with `None` deletes) the value at `full_key`, through the cache.
    pub(super) fn write<T: Serialize>(&mut self, index: usize, value: Option<&T>) -> Result<(), StateError> {
        self.name_of(index)?;
        match value {
            Some(value) => {
                self.value_buffer.clear();
                // Field by field, so that the name can be borrowed while the buffer is written.
                encode(value, &mut self.value_buffer, &self.names[index])?;
                self.cache.write(index, &self.full_key, Some(&self.value_buffer));
            }
            None => self.cache.write(index, &self.full_key, None),
        }
        self.flush_cache_if_full()
    }

    /// Keeps the cache within its budget; runs after every access that may
    /// have grown it.
    pub(super) fn flush_cache_if_full(&mut self) -> Result<(), StateError> {
        if self.cache.is_full() { self.flush_cache() } else { Ok(()) }
    }

    /// Sends the cache's pending writes to RocksDB as one batch and empties
    /// it. Runs before anything reads RocksDB other than by point lookup.
    pub(super) fn flush_cache(&mut self) -> Result<(), StateError> {
        if self.cache.is_empty() {
            return Ok(());
        }
        let columns: Vec<_> = self.names.iter().map(|name| self.db.cf_handle(name)).collect();
        let mut batch = WriteBatch::default();
        let mut vanished = None;
        self.cache.drain_dirty(|index, key, value| match (columns.get(index).copied().flatten(), value) {
            (Some(column), Some(value)) => batch.put_cf(column, key, value),
            (Some(column), None) => batch.delete_cf(column, key),
            (None, _) => vanished = Some(index),
        });
        if let Some(index) = vanished {
            return Err(StateError::RocksDb(format!("the column family of state #{index} vanished")));
        }
        self.db.write_opt(batch, &self.write_options).map_err(|error| rocks_error(&self.dir, error))
    }

    /// The object stored for the current key in `namespace`.
    pub(in crate::keyed) fn get<N: Serialize, S: DeserializeOwned>(
        &mut self,
        index: usize,
        namespace: &N,
    ) -> Result<Option<S>, StateError> {
        self.compose::<N, ()>(namespace, None)?;
        self.read(index)
    }

    /// A blind write: stores `value` without reading the old one.
    pub(in crate::keyed) fn put<N: Serialize, S: Serialize>(
        &mut self,
        index: usize,
        namespace: &N,
        value: &S,
    ) -> Result<(), StateError> {
        self.compose::<N, ()>(namespace, None)?;
        self.write(index, Some(value))
    }

    /// Read-modify-write of the object stored for the current key in
    /// `namespace` (`None` from `update` deletes it).
    pub(in crate::keyed) fn modify<N: Serialize, S: Serialize + DeserializeOwned, R>(
        &mut self,
        index: usize,
        namespace: &N,
        update: impl FnOnce(Option<S>) -> (Option<S>, R),
    ) -> Result<R, StateError> {
        self.compose::<N, ()>(namespace, None)?;
        let (updated, result) = update(self.read(index)?);
        self.write(index, updated.as_ref())?;
        Ok(result)
    }

    /// The user value under `user_key` in the current key's map in `namespace`.
    pub(in crate::keyed) fn map_get<N: Serialize, UK: Serialize, UV: DeserializeOwned>(
        &mut self,
        index: usize,
        namespace: &N,
        user_key: &UK,
    ) -> Result<Option<UV>, StateError> {
        self.compose(namespace, Some(user_key))?;
        self.read(index)
    }

    /// Stores (or with `None` deletes) the user value under `user_key`.
    pub(in crate::keyed) fn map_put<N: Serialize, UK: Serialize, UV: Serialize>(
        &mut self,
        index: usize,
        namespace: &N,
        user_key: &UK,
        user_value: Option<&UV>,
    ) -> Result<(), StateError> {
        self.compose(namespace, Some(user_key))?;
        self.write(index, user_value)
    }

    /// Every entry of the current key's map in `namespace`: one forward scan
    /// over the keys that start with `current key | namespace`.
    pub(in crate::keyed) fn map_entries<N: Serialize, UK: DeserializeOwned, UV: DeserializeOwned>(
        &mut self,
        index: usize,
        namespace: &N,
    ) -> Result<Vec<(UK, UV)>, StateError> {
        self.compose::<N, ()>(namespace, None)?;
        self.flush_cache()?;
        let column = self.column(index)?;
        let mut entries = Vec::new();
        for entry in self.db.iterator_cf(column, IteratorMode::From(&self.full_key, Direction::Forward)) {
            let (key, value) = entry.map_err(|error| rocks_error(&self.dir, error))?;
            let Some(user_key) = key.strip_prefix(self.full_key.as_slice()) else {
                break;
            };
            entries.push((self.decode(index, user_key)?, self.decode(index, &value)?));
        }
        Ok(entries)
    }

    /// Deletes the current key's object in `namespace`; for map state, every
    /// entry under that prefix, with one range delete.
    pub(in crate::keyed) fn clear<N: Serialize>(&mut self, index: usize, namespace: &N) -> Result<(), StateError> {
        self.compose::<N, ()>(namespace, None)?;
        if self.kinds.get(index) != Some(&StateKind::Map) {
            return self.write::<()>(index, None);
        }
        // Keys start with a key group below 2^15, so a prefix is never all 0xFF.
        let end = prefix_end(&self.full_key)
            .ok_or_else(|| StateError::RocksDb("a map's key prefix has no successor".into()))?;
        // Cached entries under the prefix would outlive the range delete.
        self.flush_cache()?;
        let column = self.column(index)?;
        self.db
            .delete_range_cf_opt(column, &self.full_key, &end, &self.write_options)
            .map_err(|error| rocks_error(&self.dir, error))
    }

    /// Every stored value of a state, over all keys and namespaces.
    pub(in crate::keyed) fn values<S: DeserializeOwned>(&mut self, index: usize) -> Result<Vec<S>, StateError> {
        self.flush_cache()?;
        let column = self.column(index)?;
        let mut values = Vec::new();
        for entry in self.db.iterator_cf(column, IteratorMode::Start) {
            let (_, value) = entry.map_err(|error| rocks_error(&self.dir, error))?;
            values.push(self.decode(index, &value)?);
        }
        Ok(values)
    }
}

/// The smallest key greater than every key starting with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(&[1, 2, 3]), Some(vec![1, 2, 4]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }
}
