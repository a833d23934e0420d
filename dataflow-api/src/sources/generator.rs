//! A source that computes its records from their index: sequences, synthetic
//! data, load generators. Bounded or unbounded, optionally rate-limited.

use std::time::{Duration, Instant};

use weir_worker::TaskError;
use weir_worker::blame::BlameGuard;

use super::strided::StridedSplits;
use super::{ReadStatus, Source, SourceReader};
use crate::Data;
use crate::operators::OperatorContext;
use crate::push::Push;

/// Emits `generate(0), generate(1), …`; subtask `i` of `n` computes the
/// indexes `i, i + n, i + 2n, …`, so the union of all subtasks is the whole
/// sequence, each index exactly once. Replayable: a checkpoint records each
/// subtask's next index.
#[derive(Clone)]
pub struct GeneratorSource<F> {
    generate: F,
    count: Option<u64>,
    records_per_second: Option<f64>,
    name: String,
}

impl<F> GeneratorSource<F> {
    /// An unbounded generator.
    pub fn new(generate: F) -> Self {
        Self { generate, count: None, records_per_second: None, name: "Source: Generator".into() }
    }

    /// Ends after `count` records (indexes `0..count`).
    pub fn count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Emits at most this many records per second over all subtasks together.
    pub fn records_per_second(mut self, rate: f64) -> Self {
        self.records_per_second = Some(rate);
        self
    }

    /// Sets the default operator name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

impl<T, F> Source for GeneratorSource<F>
where
    T: Data,
    F: Fn(u64) -> T + Clone + Send + Sync + 'static,
{
    type Output = T;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn is_bounded(&self) -> bool {
        self.count.is_some()
    }

    fn create_reader(&self, context: &OperatorContext) -> Result<Box<dyn SourceReader<T>>, TaskError> {
        let parallelism = context.subtask.parallelism as u64;
        let rate = match self.records_per_second {
            Some(rate) if !(rate > 0.0 && rate.is_finite()) => {
                return Err(context.error(format!("records_per_second must be positive, got {rate}")));
            }
            Some(rate) => {
                Some(RateLimit { per_second: rate / parallelism as f64, started: Instant::now(), emitted: 0 })
            }
            None => None,
        };
        Ok(Box::new(GeneratorReader {
            generate: self.generate.clone(),
            name: context.operator_name.clone(),
            splits: StridedSplits::for_subtask(context, self.count.unwrap_or(u64::MAX))?,
            rate,
        }))
    }
}

struct RateLimit {
    per_second: f64,
    started: Instant,
    emitted: u64,
}

impl RateLimit {
    /// After a stall (backpressure, a slow consumer) the limiter lets at most
    /// this many seconds' worth of records catch up, not the whole backlog.
    const MAX_BURST_SECONDS: f64 = 0.1;

    /// How many records may go out now, or how long to wait for the next one.
    fn allowance(&mut self) -> Result<u64, Duration> {
        let due = (self.started.elapsed().as_secs_f64() * self.per_second) as u64;
        let burst = (self.per_second * Self::MAX_BURST_SECONDS).max(1.0) as u64;
        // Forget what is owed beyond one burst.
        self.emitted = self.emitted.max(due.saturating_sub(burst));
        if due > self.emitted {
            return Ok(due - self.emitted);
        }
        let next_due =
            Duration::try_from_secs_f64((self.emitted + 1) as f64 / self.per_second).unwrap_or(Duration::MAX);
        Err(next_due.saturating_sub(self.started.elapsed()))
    }
}

struct GeneratorReader<F> {
    generate: F,
    name: std::sync::Arc<str>,
    splits: StridedSplits,
    rate: Option<RateLimit>,
}

impl<T, F> SourceReader<T> for GeneratorReader<F>
where
    F: Fn(u64) -> T + Send,
{
    fn read(&mut self, out: &mut dyn Push<T>, max: usize) -> Result<ReadStatus, TaskError> {
        let mut budget = max as u64;
        if let Some(rate) = &mut self.rate {
            match rate.allowance() {
                Ok(allowed) => budget = budget.min(allowed),
                Err(wait) => return Ok(ReadStatus::Idle(wait)),
            }
        }
        for _ in 0..budget {
            let Some(index) = self.splits.next_index() else {
                return Ok(ReadStatus::Finished);
            };
            let guard = BlameGuard::new(&self.name);
            let record = (self.generate)(index);
            guard.disarm();
            out.push(record)?;
            if let Some(rate) = &mut self.rate {
                rate.emitted += 1;
            }
        }
        Ok(if self.splits.is_finished() { ReadStatus::Finished } else { ReadStatus::More })
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, TaskError> {
        Ok(self.splits.snapshot())
    }
}
