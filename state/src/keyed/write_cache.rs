//! A bounded write-back cache in front of a task's RocksDB instance.
//!
//! Keyed operators mostly read-modify-write the state of a working set of
//! keys (the open windows, the active accounts). Going to RocksDB for each
//! access costs a memtable lookup plus a memtable insert; keeping the encoded
//! values of recently touched keys here turns a hot update into a hash lookup
//! and a re-encode into an existing buffer, and sends writes to RocksDB as
//! one batch when the cache is full or before anything reads RocksDB
//! directly (iteration, range deletes, snapshots).
//!
//! The cache holds encoded bytes, exactly what RocksDB would hold, so it knows
//! nothing of types; entries are per state (column family) index.

use hashbrown::HashMap;

/// One cached entry: the encoded value (`None` = deleted) and whether RocksDB
/// has yet to receive it.
struct Cached {
    value: Option<Vec<u8>>,
    dirty: bool,
}

/// Fixed bookkeeping cost per entry (hash slot, vector headers), added to the
/// key and value lengths when the cache measures itself.
const ENTRY_OVERHEAD: usize = 64;

/// The cache of one RocksDB instance.
pub(super) struct WriteBackCache {
    /// Entries by state index, then by full RocksDB key.
    states: Vec<HashMap<Vec<u8>, Cached>>,
    /// Size as the budget counts it: keys, values and `ENTRY_OVERHEAD` per entry.
    bytes: usize,
    /// Number of entries RocksDB has yet to receive.
    dirty: usize,
    /// The budget: past it, `is_full` asks for a flush.
    capacity_bytes: usize,
}

impl WriteBackCache {
    pub(super) fn new(capacity_bytes: usize) -> Self {
        Self { states: Vec::new(), bytes: 0, dirty: 0, capacity_bytes }
    }

    /// The cached value of `key`: `Some(None)` if it is known to be absent,
    /// `None` if the cache does not know.
    pub(super) fn lookup(&self, state: usize, key: &[u8]) -> Option<Option<&[u8]>> {
        self.states.get(state)?.get(key).map(|cached| cached.value.as_deref())
    }

    /// Remembers what RocksDB holds for `key` (read on a miss).
    pub(super) fn remember(&mut self, state: usize, key: &[u8], value: Option<&[u8]>) {
        self.store(state, key, value, false);
    }

    /// Records a write of `key` that RocksDB will receive at the next flush.
    pub(super) fn write(&mut self, state: usize, key: &[u8], value: Option<&[u8]>) {
        self.store(state, key, value, true);
    }

    fn store(&mut self, state: usize, key: &[u8], value: Option<&[u8]>, dirty: bool) {
        if self.states.len() <= state {
            self.states.resize_with(state + 1, HashMap::new);
        }
        let new_len = value.map_or(0, <[u8]>::len);
        match self.states[state].get_mut(key) {
            Some(cached) => {
                let old_len = cached.value.as_ref().map_or(0, Vec::len);
                self.bytes = self.bytes + new_len - old_len;
                // Reuse the buffer: a hot key's update allocates nothing.
                match (&mut cached.value, value) {
                    (Some(buffer), Some(value)) => {
                        buffer.clear();
                        buffer.extend_from_slice(value);
                    }
                    (slot, value) => *slot = value.map(<[u8]>::to_vec),
                }
                if dirty && !cached.dirty {
                    self.dirty += 1;
                }
                cached.dirty |= dirty;
            }
            None => {
                self.bytes += key.len() + new_len + ENTRY_OVERHEAD;
                self.dirty += usize::from(dirty);
                self.states[state].insert(key.to_vec(), Cached { value: value.map(<[u8]>::to_vec), dirty });
            }
        }
    }

    /// Changes the cached value of `key` in place (it must be cached: call
    /// `remember` first) and marks it for RocksDB.
    pub(super) fn update<R>(
        &mut self,
        state: usize,
        key: &[u8],
        change: impl FnOnce(&mut Option<Vec<u8>>) -> R,
    ) -> Option<R> {
        let cached = self.states.get_mut(state)?.get_mut(key)?;
        let old_len = cached.value.as_ref().map_or(0, Vec::len);
        let result = change(&mut cached.value);
        let new_len = cached.value.as_ref().map_or(0, Vec::len);
        self.bytes = self.bytes + new_len - old_len;
        if !cached.dirty {
            cached.dirty = true;
            self.dirty += 1;
        }
        Some(result)
    }

    /// Whether the cache has outgrown its budget and should be flushed.
    pub(super) fn is_full(&self) -> bool {
        self.bytes > self.capacity_bytes
    }

    /// Whether the cache holds anything (dirty or not).
    pub(super) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Hands every dirty entry to `write` (state index, key, value or `None`
    /// for a delete) and empties the cache.
    pub(super) fn drain_dirty(&mut self, mut write: impl FnMut(usize, &[u8], Option<&[u8]>)) {
        if self.dirty > 0 {
            for (state, entries) in self.states.iter().enumerate() {
                for (key, cached) in entries.iter().filter(|(_, cached)| cached.dirty) {
                    write(state, key, cached.value.as_deref());
                }
            }
        }
        for entries in &mut self.states {
            entries.clear();
        }
        self.bytes = 0;
        self.dirty = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(cache: &mut WriteBackCache) -> Vec<(usize, Vec<u8>, Option<Vec<u8>>)> {
        let mut writes = Vec::new();
        cache.drain_dirty(|state, key, value| writes.push((state, key.to_vec(), value.map(<[u8]>::to_vec))));
        writes.sort();
        writes
    }

    #[test]
    fn reads_its_own_writes_and_flushes_only_dirty_entries() {
        let mut cache = WriteBackCache::new(1 << 20);
        assert_eq!(cache.lookup(0, b"a"), None);
        cache.remember(0, b"a", Some(b"old"));
        cache.remember(1, b"b", None);
        assert_eq!(cache.lookup(0, b"a"), Some(Some(&b"old"[..])));
        assert_eq!(cache.lookup(1, b"b"), Some(None));
        cache.write(0, b"a", Some(b"new, longer"));
        cache.write(2, b"c", None);
        assert_eq!(cache.lookup(0, b"a"), Some(Some(&b"new, longer"[..])));
        assert_eq!(
            drained(&mut cache),
            vec![(0, b"a".to_vec(), Some(b"new, longer".to_vec())), (2, b"c".to_vec(), None)]
        );
        assert!(cache.is_empty());
        assert_eq!(cache.lookup(0, b"a"), None, "a flush forgets, RocksDB holds the value now");
    }

    #[test]
    fn fills_up_by_bytes_and_counts_rewrites_once() {
        let mut cache = WriteBackCache::new(3 * (ENTRY_OVERHEAD + 2));
        for round in 0..10u8 {
            cache.write(0, b"k", Some(&[round]));
        }
        assert!(!cache.is_full(), "rewriting one key does not grow the cache");
        cache.write(0, b"l", Some(b"v"));
        cache.write(0, b"m", Some(b"v"));
        cache.write(0, b"n", Some(b"v"));
        assert!(cache.is_full());
        assert_eq!(drained(&mut cache).len(), 4);
    }
}
