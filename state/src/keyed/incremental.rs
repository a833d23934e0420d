//! Incremental snapshots of the RocksDB backend.
//!
//! A snapshot is a RocksDB checkpoint: the instance's SST files plus a few
//! small files describing them (MANIFEST, CURRENT, OPTIONS). SST files never
//! change once written, so a file that an earlier, confirmed snapshot already
//! uploaded is referred to, not uploaded again; only new SST files and the
//! small files cost I/O. Shared SST files are stored under names prefixed with
//! an id Weir draws for each opened instance (RocksDB's own identity survives
//! a restore, and two instances restored from one snapshot continue the same
//! file numbers), and an existing shared file is never overwritten. The
//! task's timers live on the heap, not in RocksDB: each snapshot carries them
//! as one more private file, in the full format of `snapshot`.
//!
//! Restoring a snapshot whose key-group range is exactly the task's reuses
//! its files as the new instance (and remembers which stored files they are,
//! so they are not uploaded again). Any other combination — rescaling, or a
//! restore into the memory backend — opens each snapshot read-only in a
//! temporary directory and copies out the task's own key groups.

use std::collections::HashMap;
use std::path::Path;

use rocksdb::{DB, Direction, IteratorMode};
use serde::{Deserialize, Serialize};
use weir_common::{KeyGroup, KeyGroupRange};

use super::StateError;
use crate::rocks::db_options;
use crate::storage::{CheckpointStorage, FileHandle, StoragePath};

/// The files of one incremental snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalSnapshot {
    /// The key groups the snapshot holds.
    pub range: KeyGroupRange,
    /// The job's max parallelism when it was taken.
    pub max_parallelism: u32,
    /// SST files by their name in the RocksDB directory; possibly uploaded by
    /// an earlier snapshot and shared with it.
    pub shared: Vec<(String, FileHandle)>,
    /// The other files of the checkpoint, uploaded for this snapshot alone.
    pub private: Vec<(String, FileHandle)>,
    /// The task's timers (which live on the heap), in the full format.
    #[serde(default)]
    pub timers: Option<FileHandle>,
}

/// What taking an incremental snapshot cost.
#[derive(Clone, Debug)]
pub struct SnapshotOutcome {
    /// The snapshot, to record in checkpoint metadata.
    pub snapshot: super::KeyedSnapshot,
    /// Bytes written to checkpoint storage for it.
    pub uploaded_bytes: u64,
}

/// Uploads the files of a RocksDB checkpoint in `checkpoint_dir` and lists
/// them in `snapshot` (which arrives with its range and max parallelism set).
///
/// `reusable` maps SST names to stored files that confirmed snapshots
/// already hold; every other SST goes to `shared_dir`, named
/// `<instance_id>-<name>`, and the small files to `private_dir`.
pub(super) fn upload_checkpoint(
    storage: &dyn CheckpointStorage,
    checkpoint_dir: &Path,
    instance_id: &str,
    reusable: &HashMap<String, FileHandle>,
    private_dir: &StoragePath,
    shared_dir: &StoragePath,
    mut snapshot: IncrementalSnapshot,
) -> Result<(IncrementalSnapshot, u64), StateError> {
    let mut uploaded_bytes = 0;
    for name in sorted_file_names(checkpoint_dir)? {
        let local = checkpoint_dir.join(&name);
        if name.ends_with(".sst") {
            let file = match reusable.get(&name) {
                Some(file) => file.clone(),
                None => {
                    let file = upload_new_shared(storage, &local, &shared_dir.join(&format!("{instance_id}-{name}"))?)?;
                    uploaded_bytes += file.size;
                    file
                }
            };
            snapshot.shared.push((name, file));
        } else {
            let file = storage.upload(&private_dir.join(&name)?, &local)?;
            uploaded_bytes += file.size;
            snapshot.private.push((name, file));
        }
    }
    Ok((snapshot, uploaded_bytes))
}

/// The names of the files in `dir`, sorted: snapshot metadata lists them in
/// the same order every time.
fn sorted_file_names(dir: &Path) -> Result<Vec<String>, StateError> {
    let listing = std::fs::read_dir(dir).map_err(|error| io_error(dir, error))?;
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|error| io_error(dir, error))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Uploads the SST file `local` to `path` among the shared files, which must
/// not exist yet: a file there may be one that other snapshots need.
fn upload_new_shared(
    storage: &dyn CheckpointStorage,
    local: &Path,
    path: &StoragePath,
) -> Result<FileHandle, StateError> {
    if storage.exists(path)? {
        return Err(StateError::RocksDb(format!(
            "shared file '{path}' exists already; refusing to overwrite a file other snapshots may need"
        )));
    }
    Ok(storage.upload(path, local)?)
}

/// Checks that `snapshot` can be restored into a job with `max_parallelism`
/// and that its file names are plain names (they come from metadata, so they
/// must not reach outside the directory they are downloaded into).
pub(super) fn validate(snapshot: &IncrementalSnapshot, max_parallelism: u32) -> Result<(), StateError> {
    let bad = |message: String| StateError::BadSnapshot { path: "incremental snapshot".into(), message };
    if snapshot.max_parallelism != max_parallelism {
        return Err(bad(format!(
            "it was taken with max parallelism {taken}, the job now has {max_parallelism}; key groups cannot be \
             remapped, so restore with max parallelism {taken}",
            taken = snapshot.max_parallelism
        )));
    }
    for (name, file) in snapshot.shared.iter().chain(&snapshot.private) {
        let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
        if !plain {
            return Err(bad(format!(
                "file '{}' has the local name '{name}', which is not a plain file name",
                file.path
            )));
        }
    }
    Ok(())
}

/// Downloads every file of `snapshot` into `dir` (which must exist).
pub(super) fn download(
    storage: &dyn CheckpointStorage,
    snapshot: &IncrementalSnapshot,
    dir: &Path,
) -> Result<(), StateError> {
    for (name, file) in snapshot.shared.iter().chain(&snapshot.private) {
        storage.download(file, &dir.join(name))?;
    }
    Ok(())
}

/// Receives restored entries: state name, key group, key without the group, value.
pub(super) type EntrySink<'a> = dyn FnMut(&str, KeyGroup, &[u8], &[u8]) -> Result<(), StateError> + 'a;

/// Calls `sink` for every entry of `snapshot` in the key groups of `range`.
pub(super) fn read_range(
    storage: &dyn CheckpointStorage,
    snapshot: &IncrementalSnapshot,
    range: KeyGroupRange,
    sink: &mut EntrySink<'_>,
) -> Result<(), StateError> {
    let temporary = tempfile::tempdir().map_err(|error| io_error(Path::new("temporary directory"), error))?;
    download(storage, snapshot, temporary.path())?;
    let rocks = |error: rocksdb::Error| StateError::RocksDb(format!("restoring a snapshot: {error}"));
    let columns = DB::list_cf(&db_options(), temporary.path()).map_err(rocks)?;
    let db = DB::open_cf_for_read_only(&db_options(), temporary.path(), &columns, false).map_err(rocks)?;
    let start = range.start.to_be_bytes();
    let end = u32::from(range.start) + u32::from(range.len);
    for name in columns.iter().filter(|name| name.as_str() != "default") {
        let column =
            db.cf_handle(name).ok_or_else(|| StateError::RocksDb(format!("column family '{name}' vanished")))?;
        for entry in db.iterator_cf(column, IteratorMode::From(&start, Direction::Forward)) {
            let (key, value) = entry.map_err(rocks)?;
            let (group, rest) = split_group(&key)?;
            if u32::from(group.0) >= end {
                break;
            }
            sink(name, group, rest, &value)?;
        }
    }
    Ok(())
}

/// The key group prefix of a stored key, and the rest.
pub(super) fn split_group(key: &[u8]) -> Result<(KeyGroup, &[u8]), StateError> {
    match key {
        [high, low, rest @ ..] => Ok((KeyGroup(u16::from_be_bytes([*high, *low])), rest)),
        _ => Err(StateError::RocksDb("a stored key is shorter than its key-group prefix".into())),
    }
}

/// An I/O error on a local file of the RocksDB backend, naming the path.
pub(super) fn io_error(path: &Path, error: std::io::Error) -> StateError {
    StateError::RocksDb(format!("'{}': {error}", path.display()))
}
