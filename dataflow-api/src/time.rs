//! The event-time timestamp of the record being pushed down a chain.
//!
//! Flink's `StreamRecord` carries a timestamp next to every value. Here the
//! tasks of a chain share one cell per task instead: whoever hands a record to
//! the chain (the channel input, a timestamp assigner, a window that fires)
//! sets it, and whoever needs it (windows, process functions, the writers that
//! put it into batches for other tasks) reads it while the record passes by.
//! A chain runs on one thread and pushes synchronously, so the cell always
//! holds the timestamp of the record in flight; stateless operators neither
//! read nor pay for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

pub use weir_worker::NO_TIMESTAMP;

/// The timestamp of the record in flight in one task ([`NO_TIMESTAMP`] if it has none).
#[derive(Clone, Debug)]
pub struct CurrentTimestamp(Arc<AtomicI64>);

impl Default for CurrentTimestamp {
    fn default() -> Self {
        Self(Arc::new(AtomicI64::new(NO_TIMESTAMP)))
    }
}

impl CurrentTimestamp {
    /// The timestamp of the record being pushed.
    #[inline]
    pub fn get(&self) -> i64 {
        // One task's thread is the only one touching it: relaxed is enough.
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the timestamp of the record about to be pushed.
    #[inline]
    pub fn set(&self, timestamp: i64) {
        self.0.store(timestamp, Ordering::Relaxed);
    }

    /// The timestamp as an option.
    pub fn timestamp(&self) -> Option<i64> {
        Some(self.get()).filter(|&timestamp| timestamp != NO_TIMESTAMP)
    }

    /// Runs `push` with the timestamp set to `timestamp`, then puts the
    /// previous one back, so operators upstream of the caller still see
    /// their own record's timestamp.
    #[inline]
    pub fn scoped<R>(&self, timestamp: i64, push: impl FnOnce() -> R) -> R {
        let previous = self.get();
        self.set(timestamp);
        let result = push();
        self.set(previous);
        result
    }
}
