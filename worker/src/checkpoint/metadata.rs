//! The metadata file of a completed checkpoint (written last, so its
//! presence makes the checkpoint complete), and how a restored checkpoint's
//! state is handed out to the tasks of a job that may run at another
//! parallelism.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_common::checkpoint::layout::{self, METADATA_FILE};
use weir_common::{CheckpointId, OperatorId, SubtaskIndex, VertexId};
use weir_state::keyed::KeyedSnapshot;
use weir_state::storage::{CheckpointStorage, FileHandle, StorageError, StoragePath};

use super::snapshot::TaskSnapshot;

/// Magic number and version of the metadata format.
const METADATA_MAGIC: &[u8; 8] = b"WEIRMD01";
/// The directory of checkpoint `id` (or savepoint) of job run `job_id`.
pub fn checkpoint_dir(job_id: &str, id: CheckpointId, savepoint: bool) -> Result<StoragePath, StorageError> {
    StoragePath::new(layout::checkpoint_dir(job_id, id, savepoint))
}

/// One task's entry in the metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEntry {
    /// The vertex the task ran.
    pub vertex: VertexId,
    /// Which subtask, out of how many: a restore at another parallelism
    /// redistributes by it.
    pub subtask: SubtaskIndex,
    /// The state handles the task acknowledged (or its final state, if it had finished).
    pub snapshot: TaskSnapshot,
}

/// The metadata of a completed checkpoint or savepoint: everything a restore needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// The job's name, for messages when restoring.
    pub job_name: String,
    /// The job run's id (its directory in storage).
    pub job_id: String,
    /// Numbers checkpoints within the job run; a restored job counts on from it.
    pub id: CheckpointId,
    /// Whether it is a savepoint (self-contained: no shared files).
    pub savepoint: bool,
    /// The job's number of key groups.
    pub max_parallelism: u32,
    /// Every task's snapshot.
    pub tasks: Vec<TaskEntry>,
}

impl CheckpointMetadata {
    /// Serializes and writes the metadata atomically to `<dir>/_metadata`.
    pub fn write(&self, storage: &dyn CheckpointStorage, dir: &StoragePath) -> Result<FileHandle, StorageError> {
        let mut bytes = METADATA_MAGIC.to_vec();
        bytes.extend(postcard::to_allocvec(self).map_err(|error| StorageError::Corrupt {
            path: dir.as_str().to_owned(),
            reason: format!("metadata does not serialize: {error}"),
        })?);
        storage.write(&dir.join(METADATA_FILE)?, &bytes)
    }

    /// Reads and verifies the metadata at `<dir>/_metadata`.
    pub fn read(storage: &dyn CheckpointStorage, dir: &StoragePath) -> Result<Self, StorageError> {
        let path = dir.join(METADATA_FILE)?;
        let bytes = storage.read(&storage.handle(&path)?)?;
        let corrupt = |reason: String| StorageError::Corrupt { path: path.as_str().to_owned(), reason };
        let body =
            bytes.strip_prefix(METADATA_MAGIC).ok_or_else(|| corrupt("not a Weir checkpoint metadata file".into()))?;
        postcard::from_bytes(body).map_err(|error| corrupt(format!("does not decode: {error}")))
    }

    /// Every file the checkpoint refers to (the metadata file not included).
    pub fn files(&self) -> Vec<FileHandle> {
        self.tasks.iter().flat_map(|task| task.snapshot.files()).collect()
    }
}

/// The state of one operator gathered from a checkpoint, for handing out.
#[derive(Clone, Debug, Default)]
struct OperatorRestore {
    keyed: Vec<KeyedSnapshot>,
    entries: Vec<Vec<u8>>,
}

/// A completed checkpoint or savepoint being restored, at any parallelism.
pub struct RestoredCheckpoint {
    /// What was read from its `_metadata` file.
    pub metadata: CheckpointMetadata,
    /// The storage holding its files.
    pub storage: Arc<dyn CheckpointStorage>,
    by_operator: HashMap<OperatorId, OperatorRestore>,
}

impl std::fmt::Debug for RestoredCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoredCheckpoint").field("id", &self.metadata.id).finish()
    }
}

impl RestoredCheckpoint {
    /// Gathers the state in `metadata` by operator.
    pub fn new(metadata: CheckpointMetadata, storage: Arc<dyn CheckpointStorage>) -> Self {
        let mut by_operator: HashMap<OperatorId, OperatorRestore> = HashMap::new();
        let mut tasks: Vec<&TaskEntry> = metadata.tasks.iter().collect();
        tasks.sort_by_key(|task| (task.vertex, task.subtask.index));
        for task in tasks {
            for (operator, snapshot) in &task.snapshot.operators {
                let restore = by_operator.entry(*operator).or_default();
                restore.keyed.extend(snapshot.keyed.iter().cloned());
                restore.entries.extend(snapshot.entries.iter().cloned());
            }
        }
        Self { metadata, storage, by_operator }
    }

    /// The operators that have state in the checkpoint.
    pub fn operators(&self) -> impl Iterator<Item = &OperatorId> {
        self.by_operator.keys()
    }

    /// Every keyed snapshot of `operator` (the backend reads the key groups it owns).
    pub fn keyed(&self, operator: OperatorId) -> &[KeyedSnapshot] {
        self.by_operator.get(&operator).map_or(&[], |restore| &restore.keyed)
    }

    /// The entries of `operator` that go to `subtask`: every entry of every
    /// former subtask, dealt round robin, so each lands at exactly one new subtask.
    pub fn entries(&self, operator: OperatorId, subtask: SubtaskIndex) -> Vec<Vec<u8>> {
        let Some(restore) = self.by_operator.get(&operator) else { return Vec::new() };
        restore
            .entries
            .iter()
            .enumerate()
            .filter(|(position, _)| position % subtask.parallelism.max(1) == subtask.index)
            .map(|(_, entry)| entry.clone())
            .collect()
    }

    /// Every entry of `operator`, whichever subtask it goes to.
    pub fn all_entries(&self, operator: OperatorId) -> &[Vec<u8>] {
        self.by_operator.get(&operator).map_or(&[], |restore| &restore.entries)
    }

    /// Whether `operator` has state in the checkpoint.
    pub fn has(&self, operator: OperatorId) -> bool {
        self.by_operator.contains_key(&operator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::OperatorSnapshot;

    fn task(vertex: u32, index: usize, parallelism: usize, entries: &[&str]) -> TaskEntry {
        let operator =
            OperatorSnapshot { keyed: None, entries: entries.iter().map(|e| e.as_bytes().to_vec()).collect() };
        TaskEntry {
            vertex: VertexId(vertex),
            subtask: SubtaskIndex { index, parallelism },
            snapshot: TaskSnapshot { operators: vec![(OperatorId::from_uid("source"), operator)] },
        }
    }

    #[test]
    fn metadata_round_trips_and_corruption_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = weir_state::storage::LocalDirStorage::new(dir.path());
        let metadata = CheckpointMetadata {
            job_name: "job".into(),
            job_id: "j1".into(),
            id: CheckpointId(3),
            savepoint: false,
            max_parallelism: 128,
            tasks: vec![task(0, 0, 1, &["split-a"])],
        };
        let chk = checkpoint_dir("j1", CheckpointId(3), false).expect("path");
        metadata.write(&storage, &chk).expect("written");
        assert_eq!(CheckpointMetadata::read(&storage, &chk).expect("read"), metadata);
        let file = dir.path().join("j1/chk-3/_metadata");
        let mut bytes = std::fs::read(&file).expect("file");
        bytes[10] ^= 0xFF;
        std::fs::write(&file, bytes).expect("write");
        let error = CheckpointMetadata::read(&storage, &chk).expect_err("corrupt").to_string();
        assert!(error.contains("j1/chk-3/_metadata"), "{error}");
        let missing = checkpoint_dir("j1", CheckpointId(4), false).expect("path");
        let error = CheckpointMetadata::read(&storage, &missing).expect_err("missing").to_string();
        assert!(error.contains("missing") && error.contains("chk-4"), "{error}");
    }

    #[test]
    fn entries_of_every_former_subtask_are_dealt_once_at_any_parallelism() {
        let metadata = CheckpointMetadata {
            job_name: "job".into(),
            job_id: "j".into(),
            id: CheckpointId(1),
            savepoint: false,
            max_parallelism: 128,
            tasks: vec![task(0, 1, 2, &["c", "d"]), task(0, 0, 2, &["a", "b", "e"])],
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let restored =
            RestoredCheckpoint::new(metadata, Arc::new(weir_state::storage::LocalDirStorage::new(dir.path())));
        let operator = OperatorId::from_uid("source");
        for parallelism in 1..=6 {
            let mut dealt: Vec<Vec<u8>> = (0..parallelism)
                .flat_map(|index| restored.entries(operator, SubtaskIndex { index, parallelism }))
                .collect();
            dealt.sort();
            let expected: Vec<Vec<u8>> = ["a", "b", "c", "d", "e"].iter().map(|e| e.as_bytes().to_vec()).collect();
            assert_eq!(dealt, expected, "parallelism {parallelism}");
        }
        assert!(restored.entries(OperatorId::from_uid("other"), SubtaskIndex { index: 0, parallelism: 1 }).is_empty());
    }
}
