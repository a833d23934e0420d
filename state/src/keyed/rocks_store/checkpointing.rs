//! The RocksDB backend's snapshots: incremental ones from a RocksDB
//! checkpoint, full ones by scanning every column family, and restore by
//! writing snapshot entries back. Each begins by flushing the write-back
//! cache, so that RocksDB holds every write.

use std::path::PathBuf;

use rocksdb::IteratorMode;
use rocksdb::checkpoint::Checkpoint;
use weir_common::{KeyGroup, KeyGroupRange};

use super::{RocksStore, rocks_error};
use crate::keyed::StateError;
use crate::keyed::incremental::{self, IncrementalSnapshot, io_error, split_group};
use crate::keyed::snapshot::SnapshotWriter;
use crate::keyed::ttl::expired;
use crate::storage::{CheckpointStorage, StoragePath};

impl RocksStore {
    /// Takes a RocksDB checkpoint and uploads what storage does not hold yet.
    pub(in crate::keyed) fn snapshot_incremental(
        &mut self,
        storage: &dyn CheckpointStorage,
        private_dir: &StoragePath,
        shared_dir: &StoragePath,
        range: KeyGroupRange,
        max_parallelism: u32,
    ) -> Result<(IncrementalSnapshot, u64), StateError> {
        let local = self.create_local_checkpoint()?;
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

    /// Writes a RocksDB checkpoint of the instance (its SST files hard-linked,
    /// the small files copied) to a fresh directory next to the instance's,
    /// and returns that directory.
    fn create_local_checkpoint(&mut self) -> Result<PathBuf, StateError> {
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
        Ok(local)
    }

    /// Records that `snapshot` completed: its SST files may be referred to
    /// by later snapshots.
    pub(in crate::keyed) fn confirm(&mut self, snapshot: &IncrementalSnapshot) {
        self.uploaded.extend(snapshot.shared.iter().cloned());
    }

    /// Writes every column family; entries of time-to-live states that have
    /// expired at `now` are left out.
    pub(in crate::keyed) fn write_snapshot(&mut self, writer: &mut SnapshotWriter, now: i64) -> Result<(), StateError> {
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
                if ttl && expired(&value, now) {
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
    pub(in crate::keyed) fn restore_entry(
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
