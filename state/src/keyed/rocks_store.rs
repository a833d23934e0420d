//! The RocksDB backend: one instance per task, a column family per state.
//!
//! Key layout: `key group (2 bytes, big-endian) | postcard(key) |
//! postcard(namespace)`, plus `| postcard(user key)` for map state, so that a
//! key group, a key, and one key's namespace are each one contiguous key
//! range. Values are `postcard` of the stored object (map state: of the user
//! value). postcard encodings are self-delimiting, so no two different
//! prefixes collide.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_common::KeyGroup;

use super::incremental::{self, IncrementalSnapshot, io_error, split_group};
use super::snapshot::SnapshotWriter;
use super::write_cache::WriteBackCache;
use super::{StateError, StateKind};
use crate::rocks::db_options;
use crate::storage::{CheckpointStorage, FileHandle, StoragePath};

pub(super) struct RocksStore {
    db: DB,
    dir: PathBuf,
    /// Column family names and kinds of registered states, by state index.
    names: Vec<String>,
    kinds: Vec<StateKind>,
    /// Whether each registered state has a time to live.
    ttl: Vec<bool>,
    /// Every state column family, registered or only restored so far: a
    /// snapshot must carry restored state that no operator registered yet.
    columns: Vec<String>,
    /// Prefix of this instance's shared SST file names, drawn at open.
    instance_id: String,
    /// `key group | key` of the current key.
    current_key: Vec<u8>,
    /// `current key | namespace [| user key]` of the access in progress.
    full_key: Vec<u8>,
    value_buffer: Vec<u8>,
    /// State is rebuilt from snapshots after a failure, never from RocksDB's
    /// own log, so writes skip the write-ahead log (as Flink does).
    write_options: WriteOptions,
    /// SST files that confirmed snapshots (or the restored one) hold in
    /// storage: an incremental snapshot refers to them instead of uploading.
    uploaded: HashMap<String, FileHandle>,
    /// Numbers the local checkpoint directories.
    checkpoints_taken: u64,
    /// Values of recently accessed keys; writes reach RocksDB in batches.
    cache: WriteBackCache,
    /// Declared last: fields drop in order, so the instance closes first.
    _remove_on_drop: RemoveOnDrop,
}

/// Budget of a task's write-back cache: enough for the working set of a
/// typical keyed operator (100k keys of ~100 bytes), small next to the block
/// cache.
const WRITE_CACHE_BYTES: usize = 32 << 20;

fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>, what: &str) -> Result<(), StateError> {
    postcard::to_io(value, out).map(|_| ()).map_err(|error| StateError::Incompatible {
        name: what.to_owned(),
        message: format!("does not serialize: {error}"),
    })
}

impl RocksStore {
    /// A fresh instance in `dir`; whatever an earlier run left there is removed.
    pub(super) fn open(dir: &Path) -> Result<Self, StateError> {
        prepare_empty(dir)?;
        let db = DB::open(&db_options(), dir).map_err(|error| rocks_error(dir, error))?;
        Ok(Self::around(db, dir, HashMap::new()))
    }

    /// An instance made of the files of `snapshot`, whose key groups are
    /// exactly this task's. Its stored SST files are remembered, so the next
    /// incremental snapshot uploads only what changed since.
    pub(super) fn open_restored(
        dir: &Path,
        storage: &dyn CheckpointStorage,
        snapshot: &IncrementalSnapshot,
    ) -> Result<Self, StateError> {
        prepare_empty(dir)?;
        incremental::download(storage, snapshot, dir)?;
        let columns = DB::list_cf(&db_options(), dir).map_err(|error| rocks_error(dir, error))?;
        let db = DB::open_cf(&db_options(), dir, &columns).map_err(|error| rocks_error(dir, error))?;
        let mut store = Self::around(db, dir, snapshot.shared.iter().cloned().collect());
        store.columns = columns.into_iter().filter(|name| name != "default").collect();
        Ok(store)
    }

    fn around(db: DB, dir: &Path, uploaded: HashMap<String, FileHandle>) -> Self {
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Self {
            db,
            dir: dir.to_path_buf(),
            names: Vec::new(),
            kinds: Vec::new(),
            ttl: Vec::new(),
            columns: Vec::new(),
            // New for every opened instance, restored ones included, so that two
            // instances never give different SST files the same stored name.
            instance_id: crate::storage::unique_id(&dir.to_string_lossy()),
            current_key: Vec::new(),
            full_key: Vec::new(),
            value_buffer: Vec::new(),
            write_options,
            uploaded,
            checkpoints_taken: 0,
            cache: WriteBackCache::new(WRITE_CACHE_BYTES),
            _remove_on_drop: RemoveOnDrop(dir.to_path_buf()),
        }
    }

    /// The instance's working directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes a RocksDB checkpoint and uploads what storage does not hold yet.
    pub(super) fn snapshot_incremental(
        &mut self,
        storage: &dyn CheckpointStorage,
        private_dir: &StoragePath,
        shared_dir: &StoragePath,
        range: weir_common::KeyGroupRange,
        max_parallelism: u32,
    ) -> Result<(IncrementalSnapshot, u64), StateError> {
        self.checkpoints_taken += 1;
        let dir_name = self.dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let local = self.dir.with_file_name(format!("{dir_name}.checkpoint-{}", self.checkpoints_taken));
        if local.exists() {
            std::fs::remove_dir_all(&local).map_err(|error| io_error(&local, error))?;
        }
        self.flush_cache()?;
        // The write-ahead log is off: memtables must reach SST files first.
        for name in std::iter::once("default").chain(self.names.iter().map(String::as_str)) {
            if let Some(column) = self.db.cf_handle(name) {
                self.db.flush_cf(column).map_err(|error| rocks_error(&self.dir, error))?;
            }
        }
        Checkpoint::new(&self.db)
            .and_then(|checkpoint| checkpoint.create_checkpoint(&local))
            .map_err(|error| rocks_error(&self.dir, error))?;
        let result = incremental::upload_checkpoint(
            storage,
            &local,
            &self.instance_id,
            &self.uploaded,
            private_dir,
            shared_dir,
            IncrementalSnapshot { range, max_parallelism, shared: Vec::new(), private: Vec::new(), timers: None },
        );
        let _ = std::fs::remove_dir_all(&local);
        result
    }

    /// Records that `snapshot` completed: its SST files may be referred to
    /// by later snapshots.
    pub(super) fn confirm(&mut self, snapshot: &IncrementalSnapshot) {
        self.uploaded.extend(snapshot.shared.iter().cloned());
    }

    pub(super) fn register(&mut self, name: &str, kind: StateKind, ttl: bool) -> Result<usize, StateError> {
        if let Some(index) = self.names.iter().position(|known| known == name) {
            if self.kinds[index] != kind || self.ttl[index] != ttl {
                return Err(StateError::Incompatible {
                    name: name.to_owned(),
                    message: format!("registered again as another kind ({kind:?}) or with another time to live"),
                });
            }
            return Ok(index);
        }
        self.ensure_column(name)?;
        self.names.push(name.to_owned());
        self.kinds.push(kind);
        self.ttl.push(ttl);
        Ok(self.names.len() - 1)
    }

    /// Creates the column family of state `name` if it does not exist yet.
    fn ensure_column(&mut self, name: &str) -> Result<(), StateError> {
        if self.db.cf_handle(name).is_none() {
            self.db.create_cf(name, &db_options()).map_err(|error| rocks_error(&self.dir, error))?;
        }
        if !self.columns.iter().any(|known| known == name) {
            self.columns.push(name.to_owned());
        }
        Ok(())
    }

    pub(super) fn set_current_key<K: Serialize>(&mut self, group: KeyGroup, key: &K) -> Result<(), StateError> {
        self.current_key.clear();
        self.current_key.extend_from_slice(&group.0.to_be_bytes());
        encode(key, &mut self.current_key, "the current key")
    }

    /// Sets `full_key` to `current key | namespace [| user key]`.
    fn compose<N: Serialize, UK: Serialize>(&mut self, namespace: &N, user_key: Option<&UK>) -> Result<(), StateError> {
        self.full_key.clear();
        self.full_key.extend_from_slice(&self.current_key);
        encode(namespace, &mut self.full_key, "a namespace")?;
        if let Some(user_key) = user_key {
            encode(user_key, &mut self.full_key, "a map key")?;
        }
        Ok(())
    }

    /// The name of registered state `index`; an index this store never handed
    /// out (a handle of another backend, or from before a restore) is an error.
    fn name_of(&self, index: usize) -> Result<&str, StateError> {
        self.names.get(index).map(String::as_str).ok_or_else(|| StateError::Incompatible {
            name: format!("#{index}"),
            message: "this state handle was not registered with this backend (register states after restore)".into(),
        })
    }

    fn column(&self, index: usize) -> Result<&rocksdb::ColumnFamily, StateError> {
        let name = self.name_of(index)?;
        self.db.cf_handle(name).ok_or_else(|| StateError::RocksDb(format!("column family '{name}' vanished")))
    }

    /// Decodes exactly one `T`; leftover bytes mean another type was stored.
    fn decode<T: DeserializeOwned>(&self, index: usize, bytes: &[u8]) -> Result<T, StateError> {
        let name = self.name_of(index)?.to_owned();
        let incompatible = |message: String| StateError::Incompatible { name: name.clone(), message };
        let type_name = std::any::type_name::<T>();
        let (value, rest) = postcard::take_from_bytes(bytes)
            .map_err(|error| incompatible(format!("a stored value does not decode as {type_name}: {error}")))?;
        if !rest.is_empty() {
            return Err(incompatible(format!(
                "a stored value does not decode as {type_name}: {} bytes left over",
                rest.len()
            )));
        }
        Ok(value)
    }

    /// Reads the value at `full_key`, from the cache if it knows the key.
    fn read<T: DeserializeOwned>(&mut self, index: usize) -> Result<Option<T>, StateError> {
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
    fn write<T: Serialize>(&mut self, index: usize, value: Option<&T>) -> Result<(), StateError> {
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

    fn flush_cache_if_full(&mut self) -> Result<(), StateError> {
        if self.cache.is_full() { self.flush_cache() } else { Ok(()) }
    }

    /// Sends the cache's pending writes to RocksDB as one batch and empties
    /// it. Runs before anything reads RocksDB other than by point lookup.
    fn flush_cache(&mut self) -> Result<(), StateError> {
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

    pub(super) fn get<N: Serialize, S: DeserializeOwned>(
        &mut self,
        index: usize,
        namespace: &N,
    ) -> Result<Option<S>, StateError> {
        self.compose::<N, ()>(namespace, None)?;
        self.read(index)
    }

    pub(super) fn put<N: Serialize, S: Serialize>(
        &mut self,
        index: usize,
        namespace: &N,
        value: &S,
    ) -> Result<(), StateError> {
        self.compose::<N, ()>(namespace, None)?;
        self.write(index, Some(value))
    }

    pub(super) fn modify<N: Serialize, S: Serialize + DeserializeOwned, R>(
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

    /// Appends `value` to the list at `namespace` without decoding the list:
    /// the stored bytes are `postcard(Vec<V>)`, a length prefix followed by
    /// the elements, so an append rewrites the prefix and adds the element's
    /// bytes. The list stays in the write-back cache while it grows.
    pub(super) fn list_append<N: Serialize, V: Serialize>(
        &mut self,
        index: usize,
        namespace: &N,
        value: &V,
    ) -> Result<(), StateError> {
        self.compose::<N, ()>(namespace, None)?;
        self.name_of(index)?;
        self.value_buffer.clear();
        encode(value, &mut self.value_buffer, &self.names[index])?;
        if self.cache.lookup(index, &self.full_key).is_none() {
            let column = self.column(index)?;
            let stored =
                self.db.get_pinned_cf(column, &self.full_key).map_err(|error| rocks_error(&self.dir, error))?;
            self.cache.remember(index, &self.full_key, stored.as_deref());
        }
        let element = &self.value_buffer;
        let appended = self.cache.update(index, &self.full_key, |list| append_encoded(list, element));
        let name = self.names[index].clone();
        match appended {
            Some(Ok(())) => self.flush_cache_if_full(),
            Some(Err(message)) => Err(StateError::Incompatible { name, message }),
            None => Err(StateError::RocksDb(format!("list '{name}' vanished from the write cache"))),
        }
    }

    pub(super) fn map_get<N: Serialize, UK: Serialize, UV: DeserializeOwned>(
        &mut self,
        index: usize,
        namespace: &N,
        user_key: &UK,
    ) -> Result<Option<UV>, StateError> {
        self.compose(namespace, Some(user_key))?;
        self.read(index)
    }

    pub(super) fn map_put<N: Serialize, UK: Serialize, UV: Serialize>(
        &mut self,
        index: usize,
        namespace: &N,
        user_key: &UK,
        user_value: Option<&UV>,
    ) -> Result<(), StateError> {
        self.compose(namespace, Some(user_key))?;
        self.write(index, user_value)
    }

    pub(super) fn map_entries<N: Serialize, UK: DeserializeOwned, UV: DeserializeOwned>(
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

    pub(super) fn clear<N: Serialize>(&mut self, index: usize, namespace: &N) -> Result<(), StateError> {
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
    pub(super) fn values<S: DeserializeOwned>(&mut self, index: usize) -> Result<Vec<S>, StateError> {
        self.flush_cache()?;
        let column = self.column(index)?;
        let mut values = Vec::new();
        for entry in self.db.iterator_cf(column, IteratorMode::Start) {
            let (_, value) = entry.map_err(|error| rocks_error(&self.dir, error))?;
            values.push(self.decode(index, &value)?);
        }
        Ok(values)
    }

    /// Writes every column family; entries of time-to-live states that have
    /// expired at `now` are left out.
    pub(super) fn write_snapshot(&mut self, writer: &mut SnapshotWriter, now: i64) -> Result<(), StateError> {
        self.flush_cache()?;
        for name in &self.columns {
            let state = writer.state_index(name);
            let ttl = self.names.iter().position(|known| known == name).is_some_and(|index| self.ttl[index]);
            let column = self
                .db
                .cf_handle(name)
                .ok_or_else(|| StateError::RocksDb(format!("column family '{name}' vanished")))?;
            for entry in self.db.iterator_cf(column, IteratorMode::Start) {
                let (key, value) = entry.map_err(|error| rocks_error(&self.dir, error))?;
                if ttl && super::ttl::expired(&value, now) {
                    continue;
                }
                let (group, key) = split_group(&key)?;
                writer.add(group, state, key, &value);
            }
        }
        Ok(())
    }

    /// Loads one snapshot entry into the state's column family (created if
    /// needed); the state's kind is recorded when an operator registers it.
    pub(super) fn restore_entry(
        &mut self,
        name: &str,
        group: KeyGroup,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError> {
        self.flush_cache()?;
        self.ensure_column(name)?;
        let column =
            self.db.cf_handle(name).ok_or_else(|| StateError::RocksDb(format!("column family '{name}' vanished")))?;
        let mut full_key = Vec::with_capacity(2 + key.len());
        full_key.extend_from_slice(&group.0.to_be_bytes());
        full_key.extend_from_slice(key);
        self.db.put_cf_opt(column, &full_key, value, &self.write_options).map_err(|error| rocks_error(&self.dir, error))
    }
}

/// Appends one encoded element to `postcard(Vec<_>)` bytes (`None`: no list yet).
fn append_encoded(list: &mut Option<Vec<u8>>, element: &[u8]) -> Result<(), String> {
    let Some(bytes) = list else {
        let mut bytes = Vec::with_capacity(1 + element.len());
        push_varint(&mut bytes, 1);
        bytes.extend_from_slice(element);
        *list = Some(bytes);
        return Ok(());
    };
    let (length, prefix_len) = read_varint(bytes).ok_or("a stored list has a malformed length prefix")?;
    let mut prefix = Vec::with_capacity(10);
    push_varint(&mut prefix, length + 1);
    bytes.splice(..prefix_len, prefix);
    bytes.extend_from_slice(element);
    Ok(())
}

/// postcard's unsigned varint (LEB128).
fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint at the start of `bytes` and its length in bytes.
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

/// Removes the working directory when the store is dropped. It is the last
/// field of `RocksStore`, so it runs after the instance has closed. The
/// directory only caches state that snapshots hold durably.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes `dir` an empty directory.
fn prepare_empty(dir: &Path) -> Result<(), StateError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|error| io_error(dir, error))?;
    }
    std::fs::create_dir_all(dir).map_err(|error| io_error(dir, error))
}

fn rocks_error(dir: &Path, error: rocksdb::Error) -> StateError {
    StateError::RocksDb(format!("instance in '{}': {error}", dir.display()))
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
    use super::{append_encoded, prefix_end};

    #[test]
    fn appending_encoded_elements_matches_encoding_the_whole_list() {
        let mut list = None;
        let mut expected: Vec<String> = Vec::new();
        for index in 0..300 {
            let element = format!("element {index}");
            append_encoded(&mut list, &postcard::to_allocvec(&element).expect("encodes")).expect("appends");
            expected.push(element);
            assert_eq!(list.as_deref(), Some(&postcard::to_allocvec(&expected).expect("encodes")[..]));
        }
        assert!(append_encoded(&mut Some(vec![0xFF]), b"x").is_err(), "a truncated prefix is an error");
    }

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(&[1, 2, 3]), Some(vec![1, 2, 4]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }
}
