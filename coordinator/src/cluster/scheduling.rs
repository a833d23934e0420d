//! Slot assignment: which waiting job is deployed where.

use super::{Cluster, Command, JobStatus};

/// Where the slices of one deployment run.
#[derive(Debug, PartialEq, Eq)]
struct Placement {
    /// The worker of each process, by process index.
    workers: Vec<String>,
    /// The process hosting each slice.
    slice_process: Vec<u32>,
}

impl Cluster {
    /// Deploys the waiting jobs that fit into the free slots, oldest
    /// submission first.
    pub fn schedule(&mut self) -> Vec<Command> {
        let mut commands = Vec::new();
        for id in self.waiting_jobs() {
            let Some(needed) = self.jobs.get(&id).map(|job| job.slots) else { continue };
            let free = self.free_slots_by_worker();
            // Summed wide: slot counts come from the workers.
            let total: u64 = free.iter().map(|(_, free)| u64::from(*free)).sum();
            if total < u64::from(needed) {
                self.wait_for_slots(&id, needed, total);
                continue;
            }
            let placement = deal_slices(needed, free);
            commands.extend(self.start_deployment(&id, placement));
        }
        commands
    }

    /// The ids of the jobs waiting for slots, oldest submission first.
    fn waiting_jobs(&self) -> Vec<String> {
        let mut waiting: Vec<(u64, String)> = self
            .jobs
            .values()
            .filter(|job| job.state == JobStatus::WaitingForResources)
            .map(|job| (job.submitted_at_ms, job.id.clone()))
            .collect();
        waiting.sort();
        waiting.into_iter().map(|(_, id)| id).collect()
    }

    /// The workers with free slots and how many, emptiest first (a stable
    /// order among equals).
    fn free_slots_by_worker(&self) -> Vec<(String, u32)> {
        let mut free: Vec<(String, u32)> = self
            .workers
            .keys()
            .map(|worker| (worker.clone(), self.free_slots(worker)))
            .filter(|(_, free)| *free > 0)
            .collect();
        free.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        free
    }

    /// Slots of `worker` that no deployed job holds.
    fn free_slots(&self, worker: &str) -> u32 {
        let used: usize = self.jobs.values().filter(|job| !job.is_terminal()).map(|job| job.slices_on(worker)).sum();
        self.workers.get(worker).map_or(0, |entry| entry.slots.saturating_sub(used as u32))
    }

    /// Tells, in the job's message, why it still waits.
    fn wait_for_slots(&mut self, id: &str, needed: u32, free: u64) {
        let slots: u64 = self.workers.values().map(|entry| u64::from(entry.slots)).sum();
        let workers = self.workers.len();
        if let Some(job) = self.jobs.get_mut(id) {
            job.message =
                format!("waiting for {needed} free slots ({free} free; {workers} workers, {slots} slots in all)");
        }
    }

    /// Starts the job's next deployment on `placement`; returns its
    /// deployments, one per process.
    fn start_deployment(&mut self, id: &str, placement: Placement) -> Vec<Command> {
        let Some(job) = self.jobs.get_mut(id) else { return Vec::new() };
        let Placement { workers, slice_process } = placement;
        job.attempts += 1;
        job.joined = vec![None; workers.len()];
        job.started = 0;
        job.slice_process = slice_process;
        job.set(JobStatus::Deploying, format!("deploying on {}", workers.join(", ")));
        let attempt = job.attempts;
        let commands = workers
            .iter()
            .enumerate()
            .map(|(process, worker)| Command::Deploy {
                job: id.to_owned(),
                process: process as u32,
                worker: worker.clone(),
                attempt,
            })
            .collect();
        job.workers = workers;
        commands
    }
}

/// Deals `needed` slices round robin over the workers with room left (`free`
/// holds at least `needed` slots); the first slice a worker gets makes it
/// the next process.
fn deal_slices(needed: u32, mut free: Vec<(String, u32)>) -> Placement {
    let mut workers: Vec<String> = Vec::new();
    let mut slice_process = Vec::with_capacity(needed as usize);
    let mut next = 0;
    let count = free.len();
    for _ in 0..needed {
        while free[next % count].1 == 0 {
            next += 1;
        }
        let (worker, left) = &mut free[next % count];
        *left -= 1;
        next += 1;
        let process = match workers.iter().position(|known| known == worker) {
            Some(process) => process,
            None => {
                workers.push(worker.clone());
                workers.len() - 1
            }
        };
        slice_process.push(process as u32);
    }
    Placement { workers, slice_process }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::test_support::{deployed, job};
    use super::*;

    #[test]
    fn slices_spread_evenly_and_jobs_wait_for_enough_slots() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        cluster.submit(job("a", 4));
        assert!(cluster.schedule().is_empty());
        assert!(cluster.job("a").is_some_and(|job| job.message.contains("waiting for 4 free slots")));
        let w1 = cluster.register("w1".into(), 2, now);
        let w2 = cluster.register("w2".into(), 2, now);
        let w3 = cluster.register("w3".into(), 2, now);
        let placed = cluster.schedule();
        assert_eq!(deployed(&placed), vec![(w1.clone(), 0), (w2.clone(), 1), (w3.clone(), 2)]);
        let a = cluster.job("a").expect("submitted");
        assert_eq!(a.slice_process, vec![0, 1, 2, 0], "slices dealt round robin");
        cluster.submit(job("b", 3));
        assert!(cluster.schedule().is_empty(), "two slots are left");
        cluster.submit(job("c", 2));
        assert_eq!(deployed(&cluster.schedule()), vec![(w2, 0), (w3, 1)], "the emptiest workers");
    }

    #[test]
    fn slices_are_dealt_round_robin_over_the_room_left() {
        let free = vec![("w1".to_owned(), 3), ("w2".to_owned(), 1)];
        let placement = deal_slices(4, free);
        assert_eq!(placement.workers, vec!["w1".to_owned(), "w2".to_owned()]);
        assert_eq!(placement.slice_process, vec![0, 1, 0, 0], "w2 is full after one slice");
    }
}
