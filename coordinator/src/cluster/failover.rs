//! Failover: what a lost worker, a failed deployment or an ended job
//! process does to its job. A deployment is one unit: when any of its
//! processes is lost, the rest is stopped and the job deployed again from
//! its latest checkpoint, at most [`MAX_LOSSES`](super::MAX_LOSSES) times.

use std::time::{Duration, Instant};

use weir_common::launch::{EXIT_ENDED_BY_LEADER, EXIT_RESTART, EXIT_RESTORE_FAILED, LEASE_DURATION};

use super::{Cluster, Command, Job, JobStatus};

impl Cluster {
    /// Forgets workers silent for longer than `timeout`; their jobs are
    /// stopped everywhere and deployed again. Returns the lost workers and
    /// the cancellations to carry out.
    pub fn expire_workers(&mut self, now: Instant, timeout: Duration) -> (Vec<String>, Vec<Command>) {
        let lost: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, entry)| now.duration_since(entry.last_seen) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        let mut commands = Vec::new();
        for worker in &lost {
            self.workers.remove(worker);
            for job in self.jobs.values_mut().filter(|job| !job.is_terminal() && job.workers.contains(worker)) {
                let cancels = job.lost(format!("worker {worker} was lost"));
                // Its processes there may live until their lease lapses.
                job.not_before = Some(now + LEASE_DURATION);
                commands.extend(cancels.into_iter().filter(|command| !command.targets(worker)));
            }
        }
        (lost, commands)
    }

    /// Jobs waiting to be deployed again go back to scheduling; after a
    /// restart, those whose last deployment's end is unknown wait for the
    /// recovery hold to pass.
    pub fn requeue_restarting(&mut self, now: Instant) {
        let holding = self.recovery_hold.is_some_and(|until| now < until);
        for job in self.jobs.values_mut().filter(|job| job.state == JobStatus::Restarting) {
            if (holding && job.unconfirmed.is_some()) || job.not_before.is_some_and(|not_before| now < not_before) {
                continue;
            }
            job.not_before = None;
            job.unconfirmed = None;
            job.set(JobStatus::WaitingForResources, "restarting from its latest checkpoint");
        }
    }

    /// A deployment that was running when the coordinator restarted ended:
    /// its leader finished the job (it ends now), or anything else (it is
    /// deployed again once the recovery hold passed).
    fn unconfirmed_exited(&mut self, job: &str, attempt: u32, process: u32, code: i32) -> bool {
        let awaited =
            |job: &&mut Job| job.unconfirmed.as_ref().is_some_and(|unconfirmed| unconfirmed.attempt == attempt);
        let Some(job) = self.jobs.get_mut(job).filter(awaited) else { return false };
        if (process, code) == (0, 0) && job.state == JobStatus::Restarting {
            job.unconfirmed = None;
            job.set(JobStatus::Finished, "finished while the coordinator was away");
        }
        true
    }

    /// A job process ended with `code` (-1: killed by a signal). The leader's
    /// end decides: 0 finished, [`EXIT_RESTART`] deploy again (the job's
    /// restart strategy allowed it), anything else failed. A follower that
    /// lost its leader or was killed ends the deployment (deployed again
    /// while attempts are left); one that fails otherwise fails the job. Returns the cancellations of the rest of it.
    pub fn process_exited(
        &mut self,
        job: &str,
        attempt: u32,
        process: u32,
        code: i32,
        message: &str,
        now_ms: u64,
    ) -> Vec<Command> {
        if self.unconfirmed_exited(job, attempt, process, code) {
            return Vec::new();
        }
        let Some(job) = self.jobs.get_mut(job).filter(|entry| entry.is_deployment(attempt)) else {
            return Vec::new(); // A process of a deployment already given up.
        };
        let worker = job.workers.get(process as usize).cloned().unwrap_or_default();
        let others = |commands: Vec<Command>| -> Vec<Command> {
            commands.into_iter().filter(|command| !command.targets(&worker)).collect()
        };
        match (process, code) {
            (0, 0) => {
                job.set(JobStatus::Finished, "");
                others(job.undeploy())
            }
            // A follower leaves once the leader told it the job ended.
            (_, 0) | (1.., EXIT_ENDED_BY_LEADER) => Vec::new(),
            (1.., EXIT_RESTART) => others(job.lost(format!("process {process} lost the job's leader"))),
            (0, EXIT_RESTORE_FAILED) => {
                job.record_failure(now_ms);
                match job.restoring_from.take() {
                    Some(bad) => {
                        let why = format!("could not restore from {bad}; restarting from an older checkpoint");
                        job.set(JobStatus::Restarting, why);
                        job.bad_checkpoints.push(bad);
                    }
                    // The savepoint it was submitted with: nothing older to try.
                    None => job.set(JobStatus::Failed, message.to_owned()),
                }
                others(job.undeploy())
            }
            (0, EXIT_RESTART) => {
                job.record_failure(now_ms);
                job.set(JobStatus::Restarting, format!("the run failed and is restarted: {}", message.trim()));
                others(job.undeploy())
            }
            (_, -1) => others(job.lost(format!("process {process} on {worker} was killed: {}", message.trim()))),
            // A process that ends before the deployment is whole never ran
            // the job: the deployment failed, not the job.
            _ if job.joined.iter().any(Option::is_none) => {
                others(job.lost(format!("process {process} on {worker} ended while joining: {}", message.trim())))
            }
            _ => {
                job.set(JobStatus::Failed, message.to_owned());
                others(job.undeploy())
            }
        }
    }

    /// A deployment onto `worker` could not be carried out: the worker is
    /// forgotten (if it lives, its next heartbeat registers it again) and the
    /// job waits again (its other processes are stopped). A worker that
    /// refuses the deployment (it cannot start the process) counts as a
    /// loss of the job.
    pub fn deploy_failed(
        &mut self,
        id: &str,
        attempt: u32,
        worker: &str,
        unreachable: bool,
        message: String,
    ) -> Vec<Command> {
        if unreachable {
            self.workers.remove(worker);
        }
        let Some(job) = self.jobs.get_mut(id).filter(|job| job.is_deployment(attempt)) else {
            return Vec::new();
        };
        let mut cancels = if unreachable {
            job.set(JobStatus::WaitingForResources, message);
            job.undeploy()
        } else {
            job.lost(message)
        };
        cancels.retain(|command| !command.targets(worker));
        cancels
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{deployed, job};
    use super::*;

    fn state(cluster: &Cluster, id: &str) -> Option<JobStatus> {
        cluster.job(id).map(|job| job.state)
    }

    #[test]
    fn a_lost_worker_stops_the_whole_deployment_and_the_job_moves() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        let first = cluster.register("w1".into(), 1, now);
        let second = cluster.register("w2".into(), 1, now);
        cluster.submit(job("a", 2));
        cluster.schedule();
        let third = cluster.register("w3".into(), 2, now + Duration::from_secs(4));
        cluster.heartbeat(&second, now + Duration::from_secs(4));
        let (lost, cancels) = cluster.expire_workers(now + Duration::from_secs(4), Duration::from_secs(3));
        assert_eq!(lost, vec![first]);
        assert_eq!(cancels, vec![Command::Cancel { job: "a".into(), worker: second.clone(), attempt: 1 }]);
        // The lost worker's processes may run until their lease lapses.
        cluster.requeue_restarting(now + Duration::from_secs(4));
        assert!(cluster.schedule().is_empty(), "not deployed again while the old lease may hold");
        cluster.requeue_restarting(now + Duration::from_secs(4) + LEASE_DURATION);
        let placed = cluster.schedule();
        assert_eq!(deployed(&placed), vec![(third, 0), (second, 1)]);
        assert!(cluster.process_exited("a", 1, 0, -1, "late report of the lost deployment", 0).is_empty());
        assert_eq!(state(&cluster, "a"), Some(JobStatus::Deploying), "stale reports are ignored");
        cluster.process_exited("a", 2, 1, 0, "", 0);
        assert_eq!(state(&cluster, "a"), Some(JobStatus::Deploying), "followers do not decide");
        cluster.process_exited("a", 2, 0, 0, "", 0);
        assert_eq!(state(&cluster, "a"), Some(JobStatus::Finished));
    }

    #[test]
    fn a_follower_that_lost_its_leader_ends_the_deployment() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        let first = cluster.register("w1".into(), 1, now);
        cluster.register("w2".into(), 1, now);
        cluster.submit(job("a", 2));
        cluster.schedule();
        assert!(cluster.process_exited("a", 1, 1, EXIT_ENDED_BY_LEADER, "", 0).is_empty());
        assert_eq!(state(&cluster, "a"), Some(JobStatus::Deploying), "the leader decides");
        let cancels = cluster.process_exited("a", 1, 1, EXIT_RESTART, "lost the leader", 0);
        assert_eq!(cancels, vec![Command::Cancel { job: "a".into(), worker: first, attempt: 1 }]);
        assert_eq!(state(&cluster, "a"), Some(JobStatus::Restarting));
    }

    #[test]
    fn processes_of_a_deployment_given_up_change_nothing() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        let w1 = cluster.register("w1".into(), 1, now);
        cluster.register("w2".into(), 1, now);
        cluster.submit(job("a", 2));
        cluster.schedule();
        // Process 0's worker cannot be reached: the deployment is given up
        // while process 1 already runs; its late join and exit are ignored.
        cluster.deploy_failed("a", 1, &w1, true, "unreachable".into());
        assert!(cluster.join("a", 1, 1, "h:2".into()).is_err());
        assert!(cluster.process_exited("a", 1, 1, 1, "joining failed", 0).is_empty());
        assert_eq!(state(&cluster, "a"), Some(JobStatus::WaitingForResources));
    }

    #[test]
    fn the_leader_decides_between_failing_and_restarting() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        cluster.register("w1".into(), 4, now);
        cluster.submit(job("bad", 1));
        cluster.submit(job("retry", 1));
        cluster.submit(job("killed", 1));
        cluster.submit(job("unjoined", 1));
        cluster.schedule();
        for id in ["bad", "retry", "killed"] {
            cluster.join(id, 1, 0, "h:1".into()).expect("deployed");
        }
        cluster.process_exited("unjoined", 1, 0, 1, "cannot reach the coordinator", 0);
        assert_eq!(
            state(&cluster, "unjoined"),
            Some(JobStatus::Restarting),
            "a process that never joined failed its deployment, not the job"
        );
        cluster.process_exited("bad", 1, 0, 1, "operator 'Map' failed", 0);
        assert_eq!(state(&cluster, "bad"), Some(JobStatus::Failed));
        cluster.process_exited("retry", 1, 0, EXIT_RESTART, "operator 'Map' failed", 1_234);
        assert_eq!(state(&cluster, "retry"), Some(JobStatus::Restarting));
        let history = cluster.job("retry").map(|job| job.failure_times_ms.clone());
        assert_eq!(history, Some(vec![1_234]), "the next leader decides with this failure");
        cluster.process_exited("killed", 1, 0, -1, "signal 9", 0);
        assert_eq!(state(&cluster, "killed"), Some(JobStatus::Restarting));
        assert!(cluster.cancel("killed").is_empty(), "not running: nothing to stop");
        assert_eq!(state(&cluster, "killed"), Some(JobStatus::Canceled));
    }

    #[test]
    fn a_job_that_finished_while_the_coordinator_was_away_ends_instead_of_running_again() {
        let now = Instant::now();
        let running = |id: &str| {
            let mut entry = job(id, 1);
            (entry.state, entry.attempts) = (JobStatus::Running, 3);
            entry
        };
        let hold_until = now + Duration::from_secs(6);
        let mut cluster = Cluster::recovered(vec![running("finished"), running("lost")], hold_until);
        cluster.register("w1".into(), 2, now);
        // The leader of deployment 3 reports its clean exit after the restart.
        assert!(cluster.process_exited("finished", 3, 0, 0, "", 0).is_empty());
        assert_eq!(state(&cluster, "finished"), Some(JobStatus::Finished));
        // Nothing deploys the other job before the hold passes.
        cluster.requeue_restarting(now + Duration::from_secs(1));
        assert!(cluster.schedule().is_empty());
        assert_eq!(state(&cluster, "lost"), Some(JobStatus::Restarting));
        cluster.requeue_restarting(hold_until);
        assert_eq!(deployed(&cluster.schedule()).len(), 1, "deployed again from its checkpoint");
        assert_eq!(state(&cluster, "finished"), Some(JobStatus::Finished), "and the finished one not");
    }

    #[test]
    fn a_checkpoint_the_leader_cannot_restore_from_is_never_used_again() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        cluster.register("w1".into(), 1, now);
        cluster.submit(job("a", 1));
        cluster.schedule();
        let chosen = cluster.restore_source("a", 1, |_| Some("/data/checkpoints/a/a-1/chk-9".into()));
        assert_eq!(chosen, Some(Some("/data/checkpoints/a/a-1/chk-9".to_owned())));
        let again = cluster.restore_source("a", 1, |_| Some("/data/checkpoints/a/a-1/chk-10".into()));
        assert_eq!(again, chosen, "every process of a deployment restores the same checkpoint");
        cluster.process_exited("a", 1, 0, EXIT_RESTORE_FAILED, "chk-9's file is corrupt", 5);
        let entry = cluster.job("a").expect("known");
        assert_eq!(entry.state, JobStatus::Restarting);
        assert_eq!(entry.bad_checkpoints, vec!["/data/checkpoints/a/a-1/chk-9".to_owned()]);
        // Without a checkpoint of its own, the savepoint it started from is to blame: the job fails.
        cluster.requeue_restarting(now + LEASE_DURATION);
        cluster.schedule();
        cluster.process_exited("a", 2, 0, EXIT_RESTORE_FAILED, "the savepoint is corrupt", 6);
        assert_eq!(state(&cluster, "a"), Some(JobStatus::Failed));
    }
}
