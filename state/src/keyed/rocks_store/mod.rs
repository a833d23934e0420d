//! The RocksDB backend: one instance per task, a column family per state.
//!
//! Key layout: `key group (2 bytes, big-endian) | postcard(key) |
//! postcard(namespace)`, plus `| postcard(user key)` for map state, so that a
//! key group, a key, and one key's namespace are each one contiguous key
//! range. Values are `postcard` of the stored object (map state: of the user
//! value). postcard encodings are self-delimiting, so no two different
//! prefixes collide.
//!
//! Point reads and writes go through a write-back cache (`write_cache`) that
//! reaches RocksDB in write batches; writes skip the write-ahead log. This
//! file opens the instance, registers states and composes keys; `access`
//! reads and writes entries, `list_append` appends to lists without decoding
//! them, `checkpointing` takes incremental and full snapshots and restores
//! entries.

mod access;
mod checkpointing;
mod list_append;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rocksdb::{DB, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_common::KeyGroup;

use super::incremental::{self, IncrementalSnapshot, io_error};
use super::write_cache::WriteBackCache;
use super::{StateError, StateKind};
use crate::rocks::db_options;
use crate::storage::{CheckpointStorage, FileHandle};

/// One task's RocksDB instance, the registered states' column families, and
/// buffers reused by every access.
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
    /// Reused for encoding each written value.
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

/// Appends `postcard(value)` to `out`; `what` names the value in the error.
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

    /// Registers state `name`, creating its column family if a restore did
    /// not. Registering it again returns the same index unless the kind or
    /// the time to live differ; value types are not recorded, so a mismatch
    /// shows when a stored value does not decode.
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

    /// Encodes `key group | key` once per record, so that each access only
    /// appends its namespace (and user key).
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

    /// The column family of registered state `index`.
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

/// A RocksDB error, naming the instance's directory.
fn rocks_error(dir: &Path, error: rocksdb::Error) -> StateError {
    StateError::RocksDb(format!("instance in '{}': {error}", dir.display()))
}
