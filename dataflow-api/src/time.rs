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
pub struct CurrentTimestamp(Arc<PaddedTimestamp>);

/// The cell alone on its cache line. It is written for every record; when
/// it shared a line with memory another task's thread writes, the threads
/// took turns owning the line, and the window pipeline at parallelism 1 ran
/// 20% slower whenever the allocator happened to place it so (BENCHMARKS.md,
/// "Runtime shape"). 56 bytes on each side keep the neighbours of any
/// 16-byte-aligned allocation off the value's line, without an over-aligned
/// allocation (aligning to 128 fixed that case but moved everything
/// allocated after it, and cost 6% elsewhere).
#[derive(Debug)]
struct PaddedTimestamp {
    _before: [u8; 56],
    value: AtomicI64,
    _after: [u8; 56],
}

impl Default for CurrentTimestamp {
    fn default() -> Self {
        Self(Arc::new(PaddedTimestamp { _before: [0; 56], value: AtomicI64::new(NO_TIMESTAMP), _after: [0; 56] }))
    }
}

impl CurrentTimestamp {
    /// The timestamp of the record being pushed.
    #[inline]
    pub fn get(&self) -> i64 {
        // One task's thread is the only one touching it: relaxed is enough.
        self.0.value.load(Ordering::Relaxed)
    }

    /// Sets the timestamp of the record about to be pushed.
    #[inline]
    pub fn set(&self, timestamp: i64) {
        self.0.value.store(timestamp, Ordering::Relaxed);
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
