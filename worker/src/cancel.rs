//! Job-wide cancellation: every blocking wait in a task polls it, so a failed
//! or cancelled job leaves no thread behind.
//!
//! A token may have a parent: one run of a job (which a failure cancels) is a
//! child of the job (which the user cancels), so a failed run can be replaced
//! by a restarted one while cancelling the job still stops every run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag shared by all tasks of one job execution (or one run of it).
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
    parent: Option<Arc<AtomicBool>>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled by its own `cancel` or by this one's.
    pub fn child(&self) -> Self {
        Self { flag: Arc::new(AtomicBool::new(false)), parent: Some(self.flag.clone()) }
    }

    /// Asks every task of the job to stop.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
    }

    /// Whether the job was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire) || self.parent.as_ref().is_some_and(|parent| parent.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_follows_its_parent_but_not_the_other_way() {
        let job = CancelToken::new();
        let run = job.child();
        run.cancel();
        assert!(run.is_cancelled() && !job.is_cancelled());
        let next_run = job.child();
        job.cancel();
        assert!(next_run.is_cancelled());
    }
}
