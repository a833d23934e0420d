//! A job's checkpoints across its runs (Flink's `CompletedCheckpointStore`):
//! the completed ones it retains, the one the next run restores from, older
//! ones to fall back to, and the files they share. It outlives each run, so
//! a restarted run resumes numbering and restores from the newest one.

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::Sender;
use weir_common::CheckpointId;
use weir_state::SharedFileRegistry;
use weir_state::storage::{CheckpointStorage, StoragePath};

use super::metadata::{CheckpointMetadata, RestoredCheckpoint};

/// Where the answer to a savepoint request goes: the savepoint's directory, or why it failed.
pub type SavepointReply = Sender<Result<std::path::PathBuf, String>>;

/// What survives from one run of a job to the next.
pub struct JobCheckpoints {
    /// The job run's directory in checkpoint storage; only files below it are ever deleted.
    pub job_id: String,
    /// The checkpoint the next run starts from.
    pub restore: Option<Arc<RestoredCheckpoint>>,
    /// The highest checkpoint id used so far; the next run counts on from it.
    pub last_id: u64,
    registry: SharedFileRegistry,
    retained: BTreeMap<CheckpointId, Arc<CheckpointMetadata>>,
    /// Older checkpoints to fall back to if restoring from `restore` fails, newest first.
    fallbacks: Vec<Arc<RestoredCheckpoint>>,
    /// Savepoints asked for and not answered yet, with whether each stops the job.
    pub(crate) savepoint_requests: Vec<(bool, SavepointReply)>,
    /// A stop-with-savepoint completed: the job ends successfully.
    pub stopped: bool,
}

impl JobCheckpoints {
    /// Starts from `restore` (newest first), or from nothing.
    pub fn new(job_id: String, mut restore: Vec<Arc<RestoredCheckpoint>>) -> Self {
        let last_id = restore.first().map_or(0, |restore| restore.metadata.id.0);
        let first = (!restore.is_empty()).then(|| restore.remove(0));
        Self {
            job_id,
            restore: first,
            last_id,
            registry: SharedFileRegistry::new(),
            retained: BTreeMap::new(),
            fallbacks: restore,
            savepoint_requests: Vec::new(),
            stopped: false,
        }
    }

    /// The id of the checkpoint the next run restores from, if any.
    pub fn restore_id(&self) -> Option<u64> {
        self.restore.as_ref().map(|restore| restore.metadata.id.0)
    }

    /// Whether a retained checkpoint already holds `file`.
    pub fn is_stored(&self, file: &StoragePath) -> bool {
        self.registry.is_stored(file)
    }

    /// Checkpoint `metadata` completed with `files` (its metadata file
    /// included): it is retained and the next run restores from it.
    pub fn completed(
        &mut self,
        metadata: Arc<CheckpointMetadata>,
        files: Vec<StoragePath>,
        storage: &Arc<dyn CheckpointStorage>,
    ) {
        let id = metadata.id;
        self.registry.register(id, files);
        self.retained.insert(id, metadata.clone());
        self.restore = Some(Arc::new(RestoredCheckpoint::new((*metadata).clone(), storage.clone())));
    }

    /// Deletes a retained checkpoint's files that no other retained one
    /// needs (its metadata file is one of its files).
    pub fn discard(&mut self, storage: &dyn CheckpointStorage, id: CheckpointId) {
        self.retained.remove(&id);
        for file in self.registry.discard(id) {
            self.delete(storage, &file);
        }
    }

    /// Discards every retained checkpoint (the job finished, or was cancelled
    /// without retention).
    pub fn discard_all(&mut self, storage: &dyn CheckpointStorage) {
        for id in self.retained.keys().copied().collect::<Vec<_>>() {
            self.discard(storage, id);
        }
    }

    /// Deletes files of a checkpoint that did not complete, unless a retained one holds them.
    pub fn abandon(&self, storage: &dyn CheckpointStorage, files: &[StoragePath]) {
        for file in files.iter().filter(|file| !self.registry.is_stored(file)) {
            self.delete(storage, file);
        }
    }

    /// Gives up the checkpoint the last run failed to restore from; returns
    /// whether an older one is left to try.
    pub fn fall_back(&mut self, storage: Option<&Arc<dyn CheckpointStorage>>) -> bool {
        let Some(failed) = self.restore.take() else { return false };
        let failed_id = failed.metadata.id;
        self.retained.remove(&failed_id);
        let older_retained = self.retained.range(..failed_id).next_back().map(|(_, metadata)| metadata.clone());
        self.restore = match (older_retained, storage) {
            (Some(metadata), Some(storage)) => {
                Some(Arc::new(RestoredCheckpoint::new((*metadata).clone(), storage.clone())))
            }
            _ => {
                self.fallbacks.retain(|candidate| candidate.metadata.id < failed_id);
                (!self.fallbacks.is_empty()).then(|| self.fallbacks.remove(0))
            }
        };
        self.restore.is_some()
    }

    /// Files outside the job run's own directory (those of a checkpoint it
    /// was restored from, perhaps another job's) are never deleted.
    fn delete(&self, storage: &dyn CheckpointStorage, file: &StoragePath) {
        if !file.as_str().starts_with(&format!("{}/", self.job_id)) {
            return;
        }
        if let Err(error) = storage.delete(file) {
            tracing::warn!(file = %file.as_str(), %error, "could not delete a checkpoint file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_state::storage::LocalDirStorage;

    fn metadata(id: u64) -> Arc<CheckpointMetadata> {
        Arc::new(CheckpointMetadata {
            job_name: "job".into(),
            job_id: "run".into(),
            id: CheckpointId(id),
            savepoint: false,
            max_parallelism: 128,
            tasks: Vec::new(),
        })
    }

    fn path(text: &str) -> StoragePath {
        StoragePath::new(text).expect("valid path")
    }

    #[test]
    fn a_discarded_checkpoint_deletes_only_what_no_retained_one_needs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage: Arc<dyn CheckpointStorage> = Arc::new(LocalDirStorage::new(dir.path()));
        let mut job = JobCheckpoints::new("run".into(), Vec::new());
        for name in ["run/shared/a.sst", "run/shared/b.sst", "elsewhere/c.sst", "run/chk-1/_metadata"] {
            storage.write(&path(name), b"x").expect("written");
        }
        let first = vec![path("run/shared/a.sst"), path("elsewhere/c.sst"), path("run/chk-1/_metadata")];
        job.completed(metadata(1), first, &storage);
        job.completed(metadata(2), vec![path("run/shared/a.sst"), path("run/shared/b.sst")], &storage);
        assert_eq!(job.restore_id(), Some(2));
        job.discard(storage.as_ref(), CheckpointId(1));
        assert!(dir.path().join("run/shared/a.sst").exists(), "checkpoint 2 still needs it");
        assert!(dir.path().join("elsewhere/c.sst").exists(), "outside the run's directory");
        assert!(!dir.path().join("run/chk-1/_metadata").exists(), "its metadata goes with it");
        job.discard(storage.as_ref(), CheckpointId(2));
        assert!(!dir.path().join("run/shared/a.sst").exists());
        assert!(!dir.path().join("run/shared/b.sst").exists());
    }

    #[test]
    fn a_failed_restore_falls_back_to_the_next_older_retained_checkpoint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage: Arc<dyn CheckpointStorage> = Arc::new(LocalDirStorage::new(dir.path()));
        let mut job = JobCheckpoints::new("run".into(), Vec::new());
        job.completed(metadata(3), Vec::new(), &storage);
        job.completed(metadata(5), Vec::new(), &storage);
        assert!(job.fall_back(Some(&storage)));
        assert_eq!(job.restore_id(), Some(3));
        assert!(!job.fall_back(Some(&storage)), "nothing older is left");
        assert_eq!(job.restore_id(), None);
    }
}
