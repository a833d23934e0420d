//! `assign_timestamps_and_watermarks`: gives records their event-time
//! timestamps and turns a [`WatermarkStrategy`] into in-band watermarks
//! (Flink's `TimestampsAndWatermarksOperator`).
//!
//! Watermarks from upstream are dropped, except the end of input: this
//! operator is the new authority on event time for the stream. Periodic
//! emission and idleness are checked when the task flushes, which it does at
//! least once per flush interval, so their timing is that precise.

use std::time::{Duration, Instant};

use weir_worker::blame::BlameGuard;
use weir_worker::{TaskError, Watermark};

use crate::operators::OperatorContext;
use crate::push::{ChainLink, Push, pass_on};
use crate::watermarks::{WatermarkGenerator, WatermarkOutput, WatermarkStrategy};

pub(crate) struct TimestampsAndWatermarks<T> {
    context: OperatorContext,
    strategy: WatermarkStrategy<T>,
    generator: Box<dyn WatermarkGenerator<T>>,
    /// The last watermark sent downstream.
    current: i64,
    last_emit: Instant,
    /// Whether a record came since the last idleness check.
    active_since_check: bool,
    last_active: Instant,
    idle: bool,
    next: Box<dyn Push<T>>,
}

impl<T> TimestampsAndWatermarks<T> {
    pub(crate) fn new(context: OperatorContext, strategy: WatermarkStrategy<T>, next: Box<dyn Push<T>>) -> Self {
        let generator = (strategy.generator)();
        Self {
            context,
            strategy,
            generator,
            current: i64::MIN,
            last_emit: Instant::now(),
            active_since_check: false,
            last_active: Instant::now(),
            idle: false,
            next,
        }
    }

    /// Sends what the generator put into `output`: a higher watermark, or idleness.
    fn emit(&mut self, output: WatermarkOutput) -> Result<(), TaskError> {
        match output.emitted {
            Some(watermark) if watermark > self.current => {
                self.current = watermark;
                self.idle = false;
                self.next.watermark(Watermark::At(watermark))
            }
            _ if output.idle && !self.idle => {
                self.idle = true;
                self.next.watermark(Watermark::Idle)
            }
            _ => Ok(()),
        }
    }

    fn periodic_emit(&mut self) -> Result<(), TaskError> {
        let mut output = WatermarkOutput::default();
        let guard = BlameGuard::new(&self.context.operator_name);
        self.generator.on_periodic_emit(&mut output);
        guard.disarm();
        self.emit(output)
    }

    fn check_idleness(&mut self, timeout: Duration) -> Result<(), TaskError> {
        if std::mem::take(&mut self.active_since_check) {
            self.last_active = Instant::now();
        } else if !self.idle && self.last_active.elapsed() >= timeout {
            self.idle = true;
            self.next.watermark(Watermark::Idle)?;
        }
        Ok(())
    }
}

impl<T: Send> Push<T> for TimestampsAndWatermarks<T> {
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        let timestamp = match &self.strategy.timestamps {
            Some(assign) => {
                let guard = BlameGuard::new(&self.context.operator_name);
                let timestamp = assign(&record, self.context.timestamp.get());
                guard.disarm();
                timestamp
            }
            None => self.context.timestamp.get(),
        };
        if timestamp == weir_worker::NO_TIMESTAMP {
            return Err(self.context.error(
                "a record has no timestamp: give the watermark strategy a timestamp assigner \
                 (with_timestamp_assigner)",
            ));
        }
        self.active_since_check = true;
        if self.idle {
            // Data again: announce activity before the record, at the last value.
            self.idle = false;
            self.next.watermark(Watermark::At(self.current))?;
        }
        let mut output = WatermarkOutput::default();
        let guard = BlameGuard::new(&self.context.operator_name);
        self.generator.on_event(&record, timestamp, &mut output);
        guard.disarm();
        let next = &mut self.next;
        self.context.timestamp.scoped(timestamp, || next.push(record))?;
        if self.strategy.emit_interval.is_zero() {
            let guard = BlameGuard::new(&self.context.operator_name);
            self.generator.on_periodic_emit(&mut output);
            guard.disarm();
        }
        self.emit(output)
    }
}

impl<T: Send> ChainLink for TimestampsAndWatermarks<T> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(self.next.as_mut())
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        let interval = self.strategy.emit_interval;
        if !interval.is_zero() && self.last_emit.elapsed() >= interval {
            self.last_emit = Instant::now();
            self.periodic_emit()?;
        }
        if let Some(timeout) = self.strategy.idleness {
            self.check_idleness(timeout)?;
        }
        pass_on(self, |next| next.flush())
    }

    /// Drops upstream watermarks except the end of input: this operator
    /// decides event time from here on.
    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError> {
        if mark == Watermark::END {
            self.current = i64::MAX;
            return pass_on(self, |next| next.watermark(mark));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        // A last periodic watermark, as Flink emits on close; the end of input
        // then fires everything downstream.
        self.periodic_emit()?;
        pass_on(self, |next| next.finish())
    }
}
