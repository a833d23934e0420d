//! Watermark strategies: how a stream's records get their event-time
//! timestamps and how event time advances (Flink's `WatermarkStrategy`).
//!
//! A watermark `t` promises that no record with a timestamp at or below `t`
//! follows (records that break the promise are *late*). Built-in generators
//! follow Flink: with an out-of-orderness bound `b` and the largest timestamp
//! seen `m`, the watermark is `m - b - 1`, so a record exactly `b` behind the
//! largest one is still on time.

use std::sync::Arc;
use std::time::Duration;

/// Where a [`WatermarkGenerator`] emits watermarks.
#[derive(Debug, Default)]
pub struct WatermarkOutput {
    pub(crate) emitted: Option<i64>,
    pub(crate) idle: bool,
}

impl WatermarkOutput {
    /// Emits a watermark; one lower than an earlier one is ignored.
    pub fn emit_watermark(&mut self, timestamp: i64) {
        self.emitted = Some(self.emitted.map_or(timestamp, |earlier| earlier.max(timestamp)));
    }

    /// Declares the stream idle until the next watermark (Flink's `markIdle`).
    pub fn mark_idle(&mut self) {
        self.idle = true;
    }
}

/// Generates watermarks from the records of one parallel instance.
pub trait WatermarkGenerator<T>: Send {
    /// Sees every record with its timestamp; may emit (per-event generators).
    fn on_event(&mut self, record: &T, timestamp: i64, output: &mut WatermarkOutput);
    /// Called every emission interval; periodic generators emit here.
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput);
}

/// Flink's `BoundedOutOfOrdernessWatermarks`: the largest timestamp seen,
/// minus the bound, minus one, emitted periodically.
#[derive(Clone, Debug)]
pub struct BoundedOutOfOrderness {
    bound: i64,
    max_timestamp: Option<i64>,
}

impl BoundedOutOfOrderness {
    /// A generator allowing records to be up to `bound` behind the largest timestamp seen.
    pub fn new(bound: Duration) -> Self {
        Self { bound: i64::try_from(bound.as_millis()).unwrap_or(i64::MAX), max_timestamp: None }
    }
}

impl<T> WatermarkGenerator<T> for BoundedOutOfOrderness {
    fn on_event(&mut self, _record: &T, timestamp: i64, _output: &mut WatermarkOutput) {
        self.max_timestamp = Some(self.max_timestamp.map_or(timestamp, |max| max.max(timestamp)));
    }

    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        if let Some(max) = self.max_timestamp {
            output.emit_watermark(max.saturating_sub(self.bound).saturating_sub(1));
        }
    }
}

type TimestampFn<T> = Arc<dyn Fn(&T, i64) -> i64 + Send + Sync>;
type GeneratorFactory<T> = Arc<dyn Fn() -> Box<dyn WatermarkGenerator<T>> + Send + Sync>;

/// How records get timestamps and how watermarks are generated, per parallel
/// instance of the stream it is applied to.
pub struct WatermarkStrategy<T> {
    pub(crate) generator: GeneratorFactory<T>,
    pub(crate) timestamps: Option<TimestampFn<T>>,
    pub(crate) idleness: Option<Duration>,
    pub(crate) emit_interval: Duration,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        Self {
            generator: self.generator.clone(),
            timestamps: self.timestamps.clone(),
            idleness: self.idleness,
            emit_interval: self.emit_interval,
        }
    }
}

/// Flink's default auto-watermark interval.
pub const DEFAULT_EMIT_INTERVAL: Duration = Duration::from_millis(200);

impl<T: 'static> WatermarkStrategy<T> {
    /// Timestamps only ever grow (a bound of zero).
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(Duration::ZERO)
    }

    /// Records arrive at most `bound` behind the largest timestamp seen.
    pub fn for_bounded_out_of_orderness(bound: Duration) -> Self {
        Self::for_generator(move || BoundedOutOfOrderness::new(bound))
    }

    /// A custom generator, created once per parallel instance.
    pub fn for_generator<G>(factory: impl Fn() -> G + Send + Sync + 'static) -> Self
    where
        G: WatermarkGenerator<T> + 'static,
    {
        Self {
            generator: Arc::new(move || Box::new(factory())),
            timestamps: None,
            idleness: None,
            emit_interval: DEFAULT_EMIT_INTERVAL,
        }
    }

    /// Takes each record's timestamp (milliseconds) from `assign(record,
    /// previous_timestamp)`; without it, records keep the timestamp they have.
    pub fn with_timestamp_assigner(mut self, assign: impl Fn(&T, i64) -> i64 + Send + Sync + 'static) -> Self {
        self.timestamps = Some(Arc::new(assign));
        self
    }

    /// A parallel instance that sees no record for `timeout` is marked idle,
    /// so it stops holding back event time downstream until data comes again.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }

    /// How often periodic generators are asked for a watermark (default
    /// 200 ms). Zero asks after every record, which makes event time, and so
    /// lateness, a function of the input order alone: deterministic results
    /// at the cost of a watermark event per advancing record.
    pub fn with_emit_interval(mut self, interval: Duration) -> Self {
        self.emit_interval = interval;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_emits_max_minus_bound_minus_one() {
        let mut generator = BoundedOutOfOrderness::new(Duration::from_millis(10));
        let mut output = WatermarkOutput::default();
        WatermarkGenerator::<()>::on_periodic_emit(&mut generator, &mut output);
        assert_eq!(output.emitted, None, "nothing seen, nothing promised");
        for timestamp in [100, 130, 120] {
            generator.on_event(&(), timestamp, &mut output);
        }
        WatermarkGenerator::<()>::on_periodic_emit(&mut generator, &mut output);
        assert_eq!(output.emitted, Some(119));
    }
}
