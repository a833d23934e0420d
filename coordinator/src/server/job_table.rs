//! The durable job table: `jobs.json` in the data directory, the jobs as
//! JSON (readable by operators), rewritten whole on every change.
//!
//! One coordinator owns a data directory: it holds an exclusive lock on
//! `coordinator.lock` for as long as it runs, and a second coordinator on
//! the same directory refuses to start (two would reuse run ids and
//! overwrite each other's table). Writes are serialized and durable: each
//! goes to a temporary file of its own, is synced, renamed over the table,
//! and the directory is synced, so a crash leaves the old table or the new
//! one, never a mix, and a later snapshot never loses to an earlier one.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::CoordinatorError;
use crate::cluster::Job;

const FILE: &str = "jobs.json";
const LOCK_FILE: &str = "coordinator.lock";

/// The job table of one data directory, and the lock that makes this
/// coordinator its only writer.
pub(super) struct JobTable {
    data_dir: PathBuf,
    /// Held open for the lock's sake; the lock ends with the process.
    _lock: File,
    /// Serializes writes, so they land in the order their snapshots were taken.
    writing: Mutex<u64>,
}

impl JobTable {
    /// Locks `data_dir` for this coordinator; fails when another holds it.
    pub(super) fn open(data_dir: &Path) -> Result<Self, CoordinatorError> {
        let path = data_dir.join(LOCK_FILE);
        let data_error = |source| CoordinatorError::DataDir { path: data_dir.to_path_buf(), source };
        let lock = File::options().create(true).truncate(false).write(true).open(&path).map_err(data_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(CoordinatorError::DataDirInUse { path }),
            Err(std::fs::TryLockError::Error(source)) => return Err(data_error(source)),
        }
        Ok(Self { data_dir: data_dir.to_path_buf(), _lock: lock, writing: Mutex::new(0) })
    }

    /// The jobs of the table; none when there is no table yet.
    pub(super) fn load(&self) -> Result<Vec<Job>, CoordinatorError> {
        let path = self.data_dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|error| CoordinatorError::JobTable { path, message: error.to_string() }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(CoordinatorError::DataDir { path: self.data_dir.clone(), source }),
        }
    }

    /// Replaces the table with the jobs `snapshot` returns, taken while no
    /// other write runs. A failure is logged, not returned: the coordinator
    /// goes on (it would forget jobs on a restart).
    pub(super) fn save(&self, snapshot: impl FnOnce() -> Vec<Job>) {
        let mut writes = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        *writes += 1;
        let jobs = snapshot();
        let path = self.data_dir.join(FILE);
        let temporary = self.data_dir.join(format!("{FILE}.{}.{}.tmp", std::process::id(), *writes));
        if let Err(error) = write_durably(&self.data_dir, &temporary, &path, &jobs) {
            let _ = std::fs::remove_file(&temporary);
            tracing::error!(path = %path.display(), %error, "cannot save the job table");
        }
    }
}

fn write_durably(dir: &Path, temporary: &Path, path: &Path, jobs: &[Job]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(jobs).map_err(std::io::Error::other)?;
    let mut file = File::create_new(temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(temporary, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::JobStatus;

    #[test]
    fn a_saved_table_loads_again_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let table = JobTable::open(dir.path()).expect("unlocked");
        assert!(table.load().expect("no table").is_empty());
        let text = r#"[{"id":"job-1","name":"n","artifact":"sha","args":[],"graph_hash":"h","slots":1,
            "restore_from":null,"state":5,"message":"","attempts":1,"submitted_at_ms":0,"running_since_ms":0}]"#;
        std::fs::write(dir.path().join(FILE), text).expect("write");
        let jobs = table.load().expect("loads");
        table.save(|| jobs);
        let again = table.load().expect("loads again");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 2, "the table and the lock, no temporary file: {left:?}");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].state, JobStatus::Finished);
    }

    #[test]
    fn a_corrupt_table_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(FILE), r#"[{"id": "job-1", "state": 99}]"#).expect("write");
        let error = JobTable::open(dir.path()).expect("unlocked").load().expect_err("corrupt").to_string();
        assert!(error.contains("jobs.json") && error.contains("is corrupt"), "{error}");
    }

    #[test]
    fn a_second_owner_of_the_data_directory_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = JobTable::open(dir.path()).expect("unlocked");
        let error = JobTable::open(dir.path()).err().expect("locked").to_string();
        assert!(error.contains("coordinator.lock") && error.contains("another coordinator"), "{error}");
        drop(first);
        JobTable::open(dir.path()).expect("free again");
    }
}
