//! The RocksDB backend: one instance per task, a column family per state,
//! keys laid out `key group (2 bytes, big-endian) | postcard(key)`, so the
//! entries of a key group form one contiguous key range.

use std::path::{Path, PathBuf};

use rocksdb::{DB, IteratorMode, WriteOptions};
use weir_common::KeyGroup;

use super::snapshot::SnapshotWriter;
use super::{StateError, StateValue};
use crate::rocks::db_options;

pub(super) struct RocksStore {
    db: DB,
    dir: PathBuf,
    /// Column family names, by state index.
    names: Vec<String>,
    /// `key group | key` of the current key.
    current_key: Vec<u8>,
    value_buffer: Vec<u8>,
    /// State is rebuilt from snapshots after a failure, never from RocksDB's
    /// own log, so writes skip the write-ahead log (as Flink does).
    write_options: WriteOptions,
}

fn rocks_error(dir: &Path, error: rocksdb::Error) -> StateError {
    StateError::RocksDb(format!("instance in '{}': {error}", dir.display()))
}

impl RocksStore {
    /// A fresh instance in `dir`; whatever an earlier run left there is removed.
    pub(super) fn open(dir: &Path) -> Result<Self, StateError> {
        let io_error = |error: std::io::Error| {
            StateError::RocksDb(format!("cannot prepare the working directory '{}': {error}", dir.display()))
        };
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io_error)?;
        }
        std::fs::create_dir_all(dir).map_err(io_error)?;
        let db = DB::open(&db_options(), dir).map_err(|error| rocks_error(dir, error))?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
            names: Vec::new(),
            current_key: Vec::new(),
            value_buffer: Vec::new(),
            write_options,
        })
    }

    pub(super) fn register(&mut self, name: &str) -> Result<usize, StateError> {
        if let Some(index) = self.names.iter().position(|known| known == name) {
            return Ok(index);
        }
        if self.db.cf_handle(name).is_none() {
            self.db.create_cf(name, &db_options()).map_err(|error| rocks_error(&self.dir, error))?;
        }
        self.names.push(name.to_owned());
        Ok(self.names.len() - 1)
    }

    pub(super) fn set_current_key<K: serde::Serialize>(&mut self, group: KeyGroup, key: &K) -> Result<(), StateError> {
        self.current_key.clear();
        self.current_key.extend_from_slice(&group.0.to_be_bytes());
        let buffer = std::mem::take(&mut self.current_key);
        self.current_key =
            postcard::to_extend(key, buffer).map_err(|source| weir_common::KeyEncodingError { source })?;
        Ok(())
    }

    fn column(&self, index: usize) -> Result<&rocksdb::ColumnFamily, StateError> {
        self.db
            .cf_handle(&self.names[index])
            .ok_or_else(|| StateError::RocksDb(format!("column family '{}' vanished", self.names[index])))
    }

    pub(super) fn get<V: StateValue>(&mut self, index: usize) -> Result<Option<V>, StateError> {
        let column = self.column(index)?;
        let Some(bytes) = self.db.get_pinned_cf(column, &self.current_key).map_err(|e| rocks_error(&self.dir, e))?
        else {
            return Ok(None);
        };
        postcard::from_bytes(&bytes).map(Some).map_err(|error| StateError::Incompatible {
            name: self.names[index].clone(),
            message: format!("a stored value does not decode as {}: {error}", std::any::type_name::<V>()),
        })
    }

    pub(super) fn put<V: StateValue>(&mut self, index: usize, value: &V) -> Result<(), StateError> {
        self.value_buffer.clear();
        postcard::to_io(value, &mut self.value_buffer).map_err(|error| StateError::Incompatible {
            name: self.names[index].clone(),
            message: format!("a value does not serialize: {error}"),
        })?;
        let column = self.column(index)?;
        self.db
            .put_cf_opt(column, &self.current_key, &self.value_buffer, &self.write_options)
            .map_err(|error| rocks_error(&self.dir, error))
    }

    pub(super) fn delete(&mut self, index: usize) -> Result<(), StateError> {
        let column = self.column(index)?;
        self.db
            .delete_cf_opt(column, &self.current_key, &self.write_options)
            .map_err(|error| rocks_error(&self.dir, error))
    }

    pub(super) fn write_snapshot(&self, writer: &mut SnapshotWriter) -> Result<(), StateError> {
        for (index, name) in self.names.iter().enumerate() {
            let state = writer.state_index(name);
            for entry in self.db.iterator_cf(self.column(index)?, IteratorMode::Start) {
                let (key, value) = entry.map_err(|error| rocks_error(&self.dir, error))?;
                let (group, key) = split_group(&key)?;
                writer.add(group, state, key, &value);
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
        let index = self.register(name)?;
        let mut full_key = Vec::with_capacity(2 + key.len());
        full_key.extend_from_slice(&group.0.to_be_bytes());
        full_key.extend_from_slice(key);
        let column = self.column(index)?;
        self.db.put_cf_opt(column, &full_key, value, &self.write_options).map_err(|error| rocks_error(&self.dir, error))
    }
}

fn split_group(key: &[u8]) -> Result<(KeyGroup, &[u8]), StateError> {
    match key {
        [high, low, rest @ ..] => Ok((KeyGroup(u16::from_be_bytes([*high, *low])), rest)),
        _ => Err(StateError::RocksDb("a stored key is shorter than its key-group prefix".into())),
    }
}
