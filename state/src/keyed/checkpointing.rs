//! The backend's part in a checkpoint: taking full and incremental
//! snapshots, confirming them, and restoring from any set of snapshots.
//!
//! A restore takes one of two paths (Flink's restore without and with
//! rescaling): if a single incremental snapshot holds exactly this task's key
//! groups and the backend is RocksDB, its files become the new instance;
//! otherwise every overlapping snapshot is read and this task's key groups
//! are copied out of it.

use std::path::{Path, PathBuf};

use weir_common::KeyGroup;

use super::heap::HeapStore;
use super::rocks_store::RocksStore;
use super::snapshot::{self, KeyedSnapshot, SnapshotReader, SnapshotWriter};
use super::{IncrementalSnapshot, KeyedStateBackend, SnapshotOutcome, StateError, StateKey, Store, incremental};
use crate::storage::{CheckpointStorage, FileHandle, StoragePath};

impl<K: StateKey> KeyedStateBackend<K> {
    /// Writes a full snapshot of every key group of the range to `path`.
    pub fn snapshot(
        &mut self,
        storage: &dyn CheckpointStorage,
        path: &StoragePath,
    ) -> Result<KeyedSnapshot, StateError> {
        let mut writer = SnapshotWriter::new(self.max_parallelism, self.range);
        match &mut self.store {
            Store::Heap(store) => store.write_snapshot(&mut writer, (self.clock)())?,
            Store::Rocks(store) => store.write_snapshot(&mut writer, (self.clock)())?,
        }
        self.timers.write_snapshot(&mut writer, self.max_parallelism)?;
        let file = storage.write(path, &writer.finish()?)?;
        Ok(KeyedSnapshot::Full { file, range: self.range })
    }

    /// Takes an incremental snapshot: with RocksDB, uploads only the SST files
    /// that no confirmed snapshot holds (to `shared_dir`) plus the checkpoint's
    /// small files and the timers (to `private_dir`); the memory backend writes
    /// a full snapshot to `private_dir/keyed-state`.
    pub fn snapshot_incremental(
        &mut self,
        storage: &dyn CheckpointStorage,
        private_dir: &StoragePath,
        shared_dir: &StoragePath,
    ) -> Result<SnapshotOutcome, StateError> {
        let range = self.range;
        if let Store::Rocks(store) = &mut self.store {
            let max_parallelism = self.max_parallelism.get() as u32;
            let (mut snapshot, mut uploaded_bytes) =
                store.snapshot_incremental(storage, private_dir, shared_dir, range, max_parallelism)?;
            let timers = self.snapshot_timers(storage, &private_dir.join("timers")?)?;
            uploaded_bytes += timers.size;
            snapshot.timers = Some(timers);
            return Ok(SnapshotOutcome { snapshot: KeyedSnapshot::Incremental(snapshot), uploaded_bytes });
        }
        let snapshot = self.snapshot(storage, &private_dir.join("keyed-state")?)?;
        let uploaded_bytes = match &snapshot {
            KeyedSnapshot::Full { file, .. } => file.size,
            KeyedSnapshot::Incremental(_) => 0,
        };
        Ok(SnapshotOutcome { snapshot, uploaded_bytes })
    }

    /// Writes the timers alone, in the full format: they live on the heap,
    /// outside the RocksDB instance that an incremental snapshot copies.
    fn snapshot_timers(&self, storage: &dyn CheckpointStorage, path: &StoragePath) -> Result<FileHandle, StateError> {
        let mut writer = SnapshotWriter::new(self.max_parallelism, self.range);
        self.timers.write_snapshot(&mut writer, self.max_parallelism)?;
        Ok(storage.write(path, &writer.finish()?)?)
    }

    /// Records that `snapshot` completed (its checkpoint is retained), so
    /// later incremental snapshots may share its files.
    pub fn confirm(&mut self, snapshot: &KeyedSnapshot) {
        if let (Store::Rocks(store), KeyedSnapshot::Incremental(snapshot)) = (&mut self.store, snapshot) {
            store.confirm(snapshot);
        }
    }

    /// Loads the key groups of this backend's range from `snapshots`, which
    /// may have been taken at any parallelism and with either backend; groups
    /// outside the range are not read. Call on an empty backend, before
    /// registering states.
    pub fn restore(&mut self, storage: &dyn CheckpointStorage, snapshots: &[KeyedSnapshot]) -> Result<(), StateError> {
        let overlapping: Vec<&KeyedSnapshot> =
            snapshots.iter().filter(|snapshot| snapshot::overlaps(snapshot.range(), self.range)).collect();
        self.validate_incremental(&overlapping)?;
        // The store may be replaced or refilled: no key is current any more.
        self.current = None;
        if let Some((only, dir)) = self.reusable_instance(&overlapping) {
            return self.restore_instance(storage, only, &dir);
        }
        for snapshot in overlapping {
            self.restore_key_groups(storage, snapshot)?;
        }
        Ok(())
    }

    /// Checks the incremental snapshots among `snapshots` before anything is
    /// restored (a full snapshot's header is checked when its file is read).
    fn validate_incremental(&self, snapshots: &[&KeyedSnapshot]) -> Result<(), StateError> {
        for snapshot in snapshots {
            if let KeyedSnapshot::Incremental(snapshot) = snapshot {
                incremental::validate(snapshot, self.max_parallelism.get() as u32)?;
            }
        }
        Ok(())
    }

    /// The snapshot whose files can become this backend's RocksDB instance as
    /// they are (the only overlapping one, incremental, with exactly this
    /// backend's key groups), and the instance's directory.
    fn reusable_instance<'s>(&self, overlapping: &[&'s KeyedSnapshot]) -> Option<(&'s IncrementalSnapshot, PathBuf)> {
        match (overlapping, &self.store) {
            ([KeyedSnapshot::Incremental(only)], Store::Rocks(store)) if only.range == self.range => {
                Some((only, store.dir().to_path_buf()))
            }
            _ => None,
        }
    }

    /// Replaces the RocksDB instance in `dir` by one made of the files of
    /// `snapshot`, then restores the timers.
    fn restore_instance(
        &mut self,
        storage: &dyn CheckpointStorage,
        snapshot: &IncrementalSnapshot,
        dir: &Path,
    ) -> Result<(), StateError> {
        // Close the current instance first: RocksDB locks its directory.
        self.store = Store::Heap(HeapStore::new(self.range));
        match RocksStore::open_restored(dir, storage, snapshot) {
            Ok(restored) => {
                self.store = Store::Rocks(Box::new(restored));
                snapshot.timers.as_ref().map_or(Ok(()), |timers| self.restore_full(storage, timers))
            }
            Err(error) => {
                // Leave an empty RocksDB backend, never a different kind.
                self.store = Store::Rocks(Box::new(RocksStore::open(dir)?));
                Err(error)
            }
        }
    }

    /// Copies this backend's key groups out of `snapshot`, whatever range and
    /// backend it was taken with.
    fn restore_key_groups(
        &mut self,
        storage: &dyn CheckpointStorage,
        snapshot: &KeyedSnapshot,
    ) -> Result<(), StateError> {
        match snapshot {
            KeyedSnapshot::Full { file, .. } => self.restore_full(storage, file),
            KeyedSnapshot::Incremental(snapshot) => {
                if let Some(timers) = &snapshot.timers {
                    self.restore_full(storage, timers)?;
                }
                let store = &mut self.store;
                incremental::read_range(storage, snapshot, self.range, &mut |state, group, key, value| {
                    store.restore_entry(state, group, key, value)
                })
            }
        }
    }

    /// Loads this backend's key groups from a file in the full format, timers
    /// included.
    fn restore_full(&mut self, storage: &dyn CheckpointStorage, file: &FileHandle) -> Result<(), StateError> {
        let bytes = storage.read(file)?;
        let reader = SnapshotReader::parse(&bytes, &file.path, self.max_parallelism)?;
        for group in self.range.iter() {
            for entry in reader.entries_of(group)? {
                let (state, key, value) = entry?;
                if self.timers.restore_entry(state, group, key)? {
                    continue;
                }
                self.store.restore_entry(state, group, key, value)?;
            }
        }
        Ok(())
    }
}

impl<K: StateKey> Store<K> {
    /// Loads one snapshot entry of state `name` (key without its key group).
    fn restore_entry(&mut self, name: &str, group: KeyGroup, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        match self {
            Self::Heap(store) => store.restore_entry(name, group, key, value),
            Self::Rocks(store) => store.restore_entry(name, group, key, value),
        }
    }
}
