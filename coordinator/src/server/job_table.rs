//! The durable job table: `jobs.json` in the data directory, the jobs as
//! JSON (readable by operators), rewritten whole and atomically (a
//! temporary file renamed over it) on every change.

use std::path::Path;

use super::CoordinatorError;
use crate::cluster::Job;

const FILE: &str = "jobs.json";

/// The jobs of the table in `data_dir`; none when there is no table yet.
pub(super) fn load(data_dir: &Path) -> Result<Vec<Job>, CoordinatorError> {
    let path = data_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|error| CoordinatorError::JobTable { path, message: error.to_string() }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CoordinatorError::DataDir { path: data_dir.to_path_buf(), source }),
    }
}

/// Replaces the table in `data_dir` with `jobs`; a failure is logged, not
/// returned: the coordinator goes on (it would forget jobs on a restart).
pub(super) fn save(data_dir: &Path, jobs: &[Job]) {
    let path = data_dir.join(FILE);
    let temporary = data_dir.join("jobs.json.tmp");
    let written = serde_json::to_vec_pretty(jobs)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&temporary, bytes))
        .and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(error) = written {
        tracing::error!(path = %path.display(), %error, "cannot save the job table");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::JobStatus;

    #[test]
    fn a_saved_table_loads_again_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(load(dir.path()).expect("no table").is_empty());
        let table = r#"[{"id":"job-1","name":"n","artifact":"sha","args":[],"graph_hash":"h","slots":1,
            "restore_from":null,"state":5,"message":"","attempts":1,"submitted_at_ms":0,"running_since_ms":0}]"#;
        std::fs::write(dir.path().join(FILE), table).expect("write");
        let jobs = load(dir.path()).expect("loads");
        save(dir.path(), &jobs);
        let again = load(dir.path()).expect("loads again");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].state, JobStatus::Finished);
    }

    #[test]
    fn a_corrupt_table_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(FILE), r#"[{"id": "job-1", "state": 99}]"#).expect("write");
        let error = load(dir.path()).expect_err("corrupt").to_string();
        assert!(error.contains("jobs.json") && error.contains("is corrupt"), "{error}");
    }
}
