//! A deployment coming up: its processes announce their exchange addresses
//! (`join`), learn where every slice runs once all have, and report that
//! they started; the job runs once every process has.

use super::{Cluster, Job, JobStatus};

/// Where the processes of a deployment are, once all of them joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// Exchange address of each process.
    pub addresses: Vec<String>,
    /// The process hosting each slice.
    pub slice_process: Vec<u32>,
    /// Names the run's channels and checkpoints in every process.
    pub run_id: String,
}

impl Cluster {
    /// Process `process` of deployment `attempt` announced its exchange
    /// address. Returns every process's address once all have joined.
    pub fn join(&mut self, job: &str, attempt: u32, process: u32, address: String) -> Result<Option<Joined>, String> {
        let entry = self.jobs.get_mut(job).ok_or_else(|| format!("no job {job}"))?;
        if !entry.is_deployment(attempt) {
            return Err(format!("deployment {attempt} of job {job} was replaced or ended"));
        }
        let slot = entry
            .joined
            .get_mut(process as usize)
            .ok_or_else(|| format!("job {job} has no process {process} in deployment {attempt}"))?;
        *slot = Some(address);
        Ok(self.joined(job, attempt))
    }

    /// Every process's address, once all processes of deployment `attempt` joined.
    pub fn joined(&self, job: &str, attempt: u32) -> Option<Joined> {
        let entry = self.jobs.get(job).filter(|entry| entry.is_deployment(attempt))?;
        let addresses = entry.joined.iter().cloned().collect::<Option<Vec<String>>>()?;
        (!addresses.is_empty()).then(|| Joined {
            addresses,
            slice_process: entry.slice_process.clone(),
            run_id: format!("{}-{}", entry.id, attempt),
        })
    }

    /// The exchange address of the process leading `job`, once it joined.
    pub fn leader_address(&self, job: &str) -> Option<String> {
        self.jobs.get(job).filter(|entry| !entry.is_terminal()).and_then(|entry| entry.joined.first().cloned()?)
    }

    /// The checkpoint deployment `attempt` of `job` restores from: chosen
    /// once by `choose` (given the checkpoints known to be bad), so every
    /// process of the deployment restores the same one; `None` when the
    /// deployment is no longer the job's.
    pub fn restore_source(
        &mut self,
        job: &str,
        attempt: u32,
        choose: impl FnOnce(&[String]) -> Option<String>,
    ) -> Option<Option<String>> {
        let entry = self.jobs.get_mut(job).filter(|entry| entry.is_deployment(attempt))?;
        if entry.restoring_attempt != attempt {
            entry.restoring_from = choose(&entry.bad_checkpoints);
            entry.restoring_attempt = attempt;
        }
        Some(entry.restoring_from.clone())
    }

    /// Whether `worker` may report on process `process` of deployment
    /// `attempt` of `job`: only the worker that runs it may, while it is the
    /// job's deployment (or, after a restart, the deployment whose end is
    /// awaited). Reports on other deployments are harmless and ignored later.
    pub fn check_reporter(&self, job: &str, attempt: u32, process: u32, worker: &str) -> Result<(), String> {
        let Some(entry) = self.jobs.get(job) else { return Ok(()) };
        let workers = match &entry.unconfirmed {
            _ if entry.is_deployment(attempt) => &entry.workers,
            Some(unconfirmed) if unconfirmed.attempt == attempt => &unconfirmed.workers,
            _ => return Ok(()),
        };
        // A worker that registered again (the coordinator forgot it) has a
        // new id but the same address: it still runs its processes.
        let address = |id: &str| id.rsplit_once('@').map_or(id.to_owned(), |(_, address)| address.to_owned());
        match workers.get(process as usize) {
            Some(runs_it) if address(runs_it) == address(worker) => Ok(()),
            _ => Err(format!("worker {worker} does not run process {process} of deployment {attempt} of job {job}")),
        }
    }

    /// A job process started; the job runs once all of its deployment's have.
    pub fn process_started(&mut self, job: &str, attempt: u32, now_ms: u64) {
        let deploying = |entry: &&mut Job| entry.attempts == attempt && entry.state == JobStatus::Deploying;
        if let Some(job) = self.jobs.get_mut(job).filter(deploying) {
            job.started += 1;
            if job.started as usize >= job.workers.len() {
                job.running_since_ms = now_ms;
                job.set(JobStatus::Running, "");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::test_support::{deployed, job};
    use super::*;

    #[test]
    fn processes_join_and_learn_where_every_slice_runs() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        cluster.register("w1".into(), 1, now);
        cluster.register("w2".into(), 1, now);
        cluster.submit(job("a", 2));
        cluster.schedule();
        assert_eq!(cluster.join("a", 1, 1, "h:2".into()), Ok(None), "process 0 is missing");
        assert!(cluster.join("a", 2, 0, "h:1".into()).is_err(), "another deployment");
        let joined = cluster.join("a", 1, 0, "h:1".into()).expect("known").expect("complete");
        assert_eq!(joined.addresses, vec!["h:1".to_owned(), "h:2".to_owned()]);
        assert_eq!(joined.slice_process, vec![0, 1]);
        assert_eq!(cluster.leader_address("a").as_deref(), Some("h:1"));
        cluster.process_started("a", 1, 5);
        assert_eq!(cluster.job("a").map(|job| job.state), Some(JobStatus::Deploying), "one process of two");
        cluster.process_started("a", 1, 6);
        assert_eq!(cluster.job("a").map(|job| job.state), Some(JobStatus::Running));
    }

    #[test]
    fn only_the_worker_running_a_process_may_report_on_it() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        let first = cluster.register("w1".into(), 1, now);
        let second = cluster.register("w2".into(), 1, now);
        cluster.submit(job("a", 2));
        let placed = deployed(&cluster.schedule());
        let (leader, follower) = (placed[0].0.clone(), placed[1].0.clone());
        assert_eq!(cluster.check_reporter("a", 1, 0, &leader), Ok(()));
        let forged = cluster.check_reporter("a", 1, 0, &follower).expect_err("not its process");
        assert!(forged.contains("does not run process 0 of deployment 1 of job a"), "{forged}");
        assert!(cluster.check_reporter("a", 7, 0, &follower).is_ok(), "other deployments are ignored later");
        assert!([first, second].contains(&leader));
    }
}
