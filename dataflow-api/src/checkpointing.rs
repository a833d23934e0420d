//! How operators take part in checkpoints: the barrier travels down a chain
//! as [`Push::checkpoint`](crate::push::ChainLink::checkpoint) calls, each operator
//! adding its state to the task's [`ChainSnapshot`] before passing the barrier
//! on, and the completion of a checkpoint as `checkpoint_complete` calls.

use std::path::Path;
use std::sync::Arc;

use weir_common::checkpoint::layout;
use weir_common::{CheckpointId, OperatorId};
use weir_state::keyed::{KeyedSnapshot, KeyedStateBackend, StateKey};
use weir_state::storage::{CheckpointStorage, LocalDirStorage, StoragePath};
use weir_worker::TaskError;
use weir_worker::checkpoint::{CheckpointMetadata, OperatorSnapshot, RestoredCheckpoint, SnapshotTarget, TaskSnapshot};

use crate::operators::OperatorContext;

/// The snapshot of one task being assembled as the barrier passes its chain.
pub struct ChainSnapshot<'a> {
    /// Where files go.
    pub target: &'a SnapshotTarget,
    pub(crate) snapshot: TaskSnapshot,
}

impl<'a> ChainSnapshot<'a> {
    pub(crate) fn new(target: &'a SnapshotTarget) -> Self {
        Self { target, snapshot: TaskSnapshot::default() }
    }

    /// The checkpoint being taken.
    pub fn id(&self) -> CheckpointId {
        self.target.id
    }

    /// Adds an operator's state.
    pub fn add(&mut self, operator: OperatorId, state: OperatorSnapshot) {
        self.snapshot.operators.push((operator, state));
    }

    pub(crate) fn into_snapshot(self) -> TaskSnapshot {
        self.snapshot
    }
}

/// The checkpoints of one keyed operator instance: snapshots its backend
/// (incrementally for RocksDB checkpoints, fully for savepoints) and confirms
/// them when their checkpoint completes, so later incremental snapshots
/// share their files.
#[derive(Default)]
pub(crate) struct KeyedCheckpoints {
    unconfirmed: Vec<(CheckpointId, KeyedSnapshot)>,
}

impl KeyedCheckpoints {
    pub(crate) fn snapshot<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        context: &OperatorContext,
        chain: &mut ChainSnapshot<'_>,
    ) -> Result<(), TaskError> {
        let target = chain.target;
        let failed = |error: &dyn std::fmt::Display| context.error(format!("cannot snapshot its keyed state: {error}"));
        let dir = target.private_dir.join(&context.operator_id.to_string()).map_err(|error| failed(&error))?;
        let snapshot = if target.savepoint {
            let path = dir.join("keyed-state").map_err(|error| failed(&error))?;
            backend.snapshot(target.storage.as_ref(), &path).map_err(|error| failed(&error))?
        } else {
            let outcome = backend
                .snapshot_incremental(target.storage.as_ref(), &dir, &target.shared_dir)
                .map_err(|error| failed(&error))?;
            self.unconfirmed.push((target.id, outcome.snapshot.clone()));
            outcome.snapshot
        };
        chain.add(context.operator_id, OperatorSnapshot { keyed: Some(snapshot), entries: Vec::new() });
        Ok(())
    }

    pub(crate) fn complete<K: StateKey>(&mut self, backend: &mut KeyedStateBackend<K>, id: CheckpointId) {
        for (_, snapshot) in self.unconfirmed.iter().filter(|(taken, _)| *taken == id) {
            backend.confirm(snapshot);
        }
        self.unconfirmed.retain(|(taken, _)| *taken > id);
    }
}

/// The checkpoint or savepoint at `path` (a `chk-<n>` or `savepoint-<n>`
/// directory holding `_metadata`), followed by the job's older completed
/// checkpoints to fall back to, newest first.
///
/// A checkpoint whose metadata is missing or corrupt, or which refers to a
/// file that is missing or has the wrong size, is skipped with a warning that
/// names the file; if none is usable the error says why for the one asked for.
pub(crate) fn load_restore(path: &Path) -> Result<Vec<Arc<RestoredCheckpoint>>, String> {
    // The job's directory, not the checkpoint's, must exist: a checkpoint
    // discarded since it was chosen leaves older ones to fall back to.
    let (Some(name), Some(job_dir)) = (path.file_name().map(|name| name.to_string_lossy().into_owned()), path.parent())
    else {
        return Err(format!("'{}' is not a checkpoint directory (chk-<n> or savepoint-<n>)", path.display()));
    };
    // `chk-3` alone names one in the working directory.
    let job_dir = if job_dir.as_os_str().is_empty() { Path::new(".") } else { job_dir };
    let job_dir = job_dir.canonicalize().map_err(|error| format!("checkpoint '{}': {error}", path.display()))?;
    let job_dir = job_dir.as_path();
    let path = job_dir.join(&name);
    let (Some(job_id), Some(root)) =
        (job_dir.file_name().map(|name| name.to_string_lossy().into_owned()), job_dir.parent())
    else {
        return Err(format!("'{}' is not inside a job's checkpoint directory", path.display()));
    };
    let storage: Arc<dyn CheckpointStorage> = Arc::new(LocalDirStorage::new(root));
    let requested = usable(&storage, &job_id, &name);
    let requested_id = checkpoint_number(&name);
    let mut older: Vec<(u64, String)> = std::fs::read_dir(job_dir)
        .map(|listing| {
            listing
                .flatten()
                .filter_map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let (CheckpointId(number), false) = layout::parse_checkpoint_dir_name(&name)? else { return None };
                    requested_id.is_some_and(|requested| number < requested).then_some((number, name))
                })
                .collect()
        })
        .unwrap_or_default();
    older.sort_by_key(|(number, _)| std::cmp::Reverse(*number));
    let mut candidates = Vec::new();
    match requested {
        Ok(restored) => candidates.push(restored),
        Err(problem) if older.is_empty() => return Err(problem),
        Err(problem) => {
            tracing::warn!(%problem, "cannot restore from the checkpoint asked for; falling back to an earlier one")
        }
    }
    for (_, name) in older {
        match usable(&storage, &job_id, &name) {
            Ok(restored) => candidates.push(restored),
            Err(problem) => tracing::warn!(%problem, "skipping an unusable earlier checkpoint"),
        }
    }
    if candidates.is_empty() {
        return Err(format!("no usable checkpoint in '{}'", job_dir.display()));
    }
    Ok(candidates)
}

fn checkpoint_number(name: &str) -> Option<u64> {
    layout::parse_checkpoint_dir_name(name).map(|(id, _)| id.0)
}

/// Reads a checkpoint's metadata and checks that every file it names is there
/// with the recorded size (contents are verified when they are read).
fn usable(storage: &Arc<dyn CheckpointStorage>, job_id: &str, name: &str) -> Result<Arc<RestoredCheckpoint>, String> {
    let dir = StoragePath::new(format!("{job_id}/{name}")).map_err(|error| error.to_string())?;
    let metadata = CheckpointMetadata::read(storage.as_ref(), &dir).map_err(|error| error.to_string())?;
    for file in metadata.files() {
        let found = storage.handle(&file.path).map_err(|error| error.to_string())?;
        if found.size != file.size {
            return Err(format!(
                "checkpoint file '{}' has {} bytes, {} expected; restore from another checkpoint",
                file.path.as_str(),
                found.size,
                file.size
            ));
        }
    }
    Ok(Arc::new(RestoredCheckpoint::new(metadata, storage.clone())))
}
