//! The layout of checkpoint storage, in one place (Flink's
//! `AbstractFsCheckpointStorageAccess`): every reader and writer of
//! checkpoint files builds its paths here.
//!
//! ```text
//! <job-run>/chk-<n>/_metadata          a completed checkpoint (written last)
//! <job-run>/chk-<n>/<task>/…           a task's private files (task: v<vertex>-<subtask>)
//! <job-run>/shared/…                   RocksDB files shared between checkpoints
//! <job-run>/savepoint-<n>/…            a savepoint, self-contained
//! ```
//!
//! Paths are relative to the storage's root and use `/`.

use crate::{CheckpointId, TaskKey};

/// Directory name prefix of a checkpoint: `chk-<n>`.
pub const CHECKPOINT_DIR_PREFIX: &str = "chk-";

/// Directory name prefix of a savepoint: `savepoint-<n>`.
pub const SAVEPOINT_DIR_PREFIX: &str = "savepoint-";

/// The file whose presence makes a checkpoint complete; written last.
pub const METADATA_FILE: &str = "_metadata";

/// The directory of a job run holding files shared between its checkpoints.
pub const SHARED_DIR: &str = "shared";

/// The name of the directory of checkpoint (or savepoint) `id`.
pub fn checkpoint_dir_name(id: CheckpointId, savepoint: bool) -> String {
    let prefix = if savepoint { SAVEPOINT_DIR_PREFIX } else { CHECKPOINT_DIR_PREFIX };
    format!("{prefix}{}", id.0)
}

/// The directory of checkpoint (or savepoint) `id` of job run `job_run`.
pub fn checkpoint_dir(job_run: &str, id: CheckpointId, savepoint: bool) -> String {
    format!("{job_run}/{}", checkpoint_dir_name(id, savepoint))
}

/// The directory of files shared between the checkpoints of `job_run`.
pub fn shared_dir(job_run: &str) -> String {
    format!("{job_run}/{SHARED_DIR}")
}

/// The name of `task`'s private directory inside a checkpoint's directory.
pub fn task_dir_name(task: TaskKey) -> String {
    task.to_string()
}

/// What a directory name says: a checkpoint or savepoint and its number, or
/// `None` for anything else (names are compared strictly: `chk-07x` is not one).
pub fn parse_checkpoint_dir_name(name: &str) -> Option<(CheckpointId, bool)> {
    let (number, savepoint) = match name.strip_prefix(CHECKPOINT_DIR_PREFIX) {
        Some(number) => (number, false),
        None => (name.strip_prefix(SAVEPOINT_DIR_PREFIX)?, true),
    };
    let valid = !number.is_empty() && number.len() <= 20 && number.bytes().all(|byte| byte.is_ascii_digit());
    valid.then(|| number.parse().ok().map(|n| (CheckpointId(n), savepoint))).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VertexId;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        for savepoint in [false, true] {
            let name = checkpoint_dir_name(CheckpointId(42), savepoint);
            assert_eq!(parse_checkpoint_dir_name(&name), Some((CheckpointId(42), savepoint)));
        }
        for stranger in ["chk-", "chk-7x", "chk--1", "chk-+1", "shared", "savepoint-99999999999999999999999"] {
            assert_eq!(parse_checkpoint_dir_name(stranger), None, "{stranger}");
        }
        assert_eq!(checkpoint_dir("run-1", CheckpointId(3), false), "run-1/chk-3");
        assert_eq!(shared_dir("run-1"), "run-1/shared");
        assert_eq!(task_dir_name(TaskKey { vertex: VertexId(2), subtask: 0 }), "v2-0");
    }
}
