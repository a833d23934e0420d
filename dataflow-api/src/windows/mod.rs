//! Windows on keyed streams (and `window_all` on plain ones): which windows a
//! record belongs to ([`WindowAssigner`]), when they fire ([`trigger`]), and
//! the builder users call ([`WindowedStream`]). The operator that runs them
//! is `operators::window`.
//!
//! Time windows are aligned to the epoch (plus an optional offset), start
//! inclusive and end exclusive, as in Flink; a window's results carry the
//! timestamp `end - 1`.

pub mod trigger;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_common::OperatorKind;
use weir_state::keyed::{AggregateFunction, TimeDomain};

use crate::collector::Collector;
use crate::data::Key;
use crate::operators::window::{AggregateContents, ListContents, WindowFunction, WindowOperator, WindowSettings};
use crate::push::ErasedPush;
use crate::{Data, DataStream, KeyedStream, OutputTag};
use trigger::{CountTrigger, EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, PurgingTrigger, Trigger};

/// A window of time `[start, end)` in milliseconds; the global window spans all time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl TimeWindow {
    /// The one window of global windows.
    pub const GLOBAL: Self = Self { start: i64::MIN, end: i64::MAX };

    /// The window `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    /// The largest timestamp that belongs to the window.
    pub fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }

    /// Whether the windows overlap or touch (session windows then merge).
    pub fn intersects(&self, other: &Self) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &Self) -> Self {
        Self { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AssignerKind {
    Tumbling { size: i64, offset: i64 },
    Sliding { size: i64, slide: i64, offset: i64 },
    Session { gap: i64 },
    Global,
}

/// Assigns each record to windows: tumbling, sliding or session windows in
/// event time or processing time, or the global window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowAssigner {
    pub(crate) kind: AssignerKind,
    pub(crate) domain: TimeDomain,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl WindowAssigner {
    /// Consecutive, non-overlapping windows of `size` in event time.
    pub fn tumbling_event_time(size: Duration) -> Self {
        Self { kind: AssignerKind::Tumbling { size: millis(size), offset: 0 }, domain: TimeDomain::EventTime }
    }

    /// Windows of `size` starting every `slide`, in event time.
    pub fn sliding_event_time(size: Duration, slide: Duration) -> Self {
        let kind = AssignerKind::Sliding { size: millis(size), slide: millis(slide), offset: 0 };
        Self { kind, domain: TimeDomain::EventTime }
    }

    /// Windows that close after `gap` without records for the key, in event time.
    pub fn event_time_session(gap: Duration) -> Self {
        Self { kind: AssignerKind::Session { gap: millis(gap) }, domain: TimeDomain::EventTime }
    }

    /// Tumbling windows by the wall clock of the operator.
    pub fn tumbling_processing_time(size: Duration) -> Self {
        Self { domain: TimeDomain::ProcessingTime, ..Self::tumbling_event_time(size) }
    }

    /// Sliding windows by the wall clock of the operator.
    pub fn sliding_processing_time(size: Duration, slide: Duration) -> Self {
        Self { domain: TimeDomain::ProcessingTime, ..Self::sliding_event_time(size, slide) }
    }

    /// Session windows by the wall clock of the operator.
    pub fn processing_time_session(gap: Duration) -> Self {
        Self { domain: TimeDomain::ProcessingTime, ..Self::event_time_session(gap) }
    }

    /// One window per key spanning all time; it needs a trigger to ever fire.
    pub fn global() -> Self {
        Self { kind: AssignerKind::Global, domain: TimeDomain::EventTime }
    }

    /// Shifts the alignment of tumbling and sliding windows (e.g. time zones).
    pub fn with_offset(mut self, offset: Duration) -> Self {
        match &mut self.kind {
            AssignerKind::Tumbling { offset: slot, .. } | AssignerKind::Sliding { offset: slot, .. } => {
                *slot = millis(offset);
            }
            AssignerKind::Session { .. } | AssignerKind::Global => {}
        }
        self
    }

    /// Whether windows are defined on event time (as opposed to the wall clock).
    pub fn is_event_time(&self) -> bool {
        self.domain == TimeDomain::EventTime && self.kind != AssignerKind::Global
    }

    pub(crate) fn is_merging(&self) -> bool {
        matches!(self.kind, AssignerKind::Session { .. })
    }

    /// What is wrong with the assigner's sizes, if anything.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self.kind {
            AssignerKind::Tumbling { size, .. } if size <= 0 => Err("a tumbling window needs a size above 0".into()),
            AssignerKind::Sliding { size, slide, .. } if size <= 0 || slide <= 0 => {
                Err("a sliding window needs a size and a slide above 0".into())
            }
            AssignerKind::Session { gap } if gap <= 0 => Err("a session window needs a gap above 0".into()),
            _ => Ok(()),
        }
    }

    /// The windows a record at `timestamp` (event time, or the wall clock for
    /// processing-time assigners) belongs to, latest start first.
    pub(crate) fn assign(&self, timestamp: i64, out: &mut Vec<TimeWindow>) {
        out.clear();
        match self.kind {
            AssignerKind::Tumbling { size, offset } => {
                let start = window_start(timestamp, offset, size);
                out.push(TimeWindow::new(start, start.saturating_add(size)));
            }
            AssignerKind::Sliding { size, slide, offset } => {
                let mut start = window_start(timestamp, offset, slide);
                while start > timestamp.saturating_sub(size) {
                    out.push(TimeWindow::new(start, start.saturating_add(size)));
                    start -= slide;
                }
            }
            AssignerKind::Session { gap } => out.push(TimeWindow::new(timestamp, timestamp.saturating_add(gap))),
            AssignerKind::Global => out.push(TimeWindow::GLOBAL),
        }
    }

    fn default_trigger<T: 'static>(&self) -> Arc<dyn Trigger<T>> {
        match (self.kind, self.domain) {
            (AssignerKind::Global, _) => Arc::new(NeverTrigger),
            (_, TimeDomain::EventTime) => Arc::new(EventTimeTrigger),
            (_, TimeDomain::ProcessingTime) => Arc::new(ProcessingTimeTrigger),
        }
    }
}

/// The start of the window of length `size` containing `timestamp` (Flink's
/// `TimeWindow.getWindowStartWithOffset`), correct for negative timestamps.
pub(crate) fn window_start(timestamp: i64, offset: i64, size: i64) -> i64 {
    timestamp - (timestamp - offset).rem_euclid(size)
}

/// What a window function knows about the window it evaluates.
#[derive(Clone, Copy, Debug)]
pub struct WindowContext {
    /// The window that fired; results carry its `end - 1` as timestamp.
    pub window: TimeWindow,
    /// The operator's event time when it fired.
    pub current_watermark: i64,
    /// The wall clock when it fired (milliseconds since the epoch).
    pub current_processing_time: i64,
}

/// A keyed stream cut into windows; pick a window function to get a stream back.
pub struct WindowedStream<T, K> {
    keyed: KeyedStream<T, K>,
    assigner: WindowAssigner,
    trigger: Option<Arc<dyn Trigger<T>>>,
    allowed_lateness: Duration,
    late_data: Option<OutputTag<T>>,
    /// `window_all`: one window operator instance sees the whole stream.
    all: bool,
}

impl<T: Data, K: Key> KeyedStream<T, K> {
    /// Cuts each key's records into windows.
    pub fn window(&self, assigner: WindowAssigner) -> WindowedStream<T, K> {
        WindowedStream::new(self.clone(), assigner, false)
    }

    /// Tumbling count windows: each key's records in groups of `size`
    /// (a group that never fills is not emitted, as in Flink).
    pub fn count_window(&self, size: u64) -> WindowedStream<T, K> {
        self.window(WindowAssigner::global()).trigger(PurgingTrigger::of(CountTrigger::of(size)))
    }
}

impl<T: Data> DataStream<T> {
    /// Windows over the whole stream, evaluated by one instance (parallelism 1).
    pub fn window_all(&self, assigner: WindowAssigner) -> WindowedStream<T, ()> {
        WindowedStream::new(self.key_by(|_| ()), assigner, true)
    }
}

impl<T: Data, K: Key> WindowedStream<T, K> {
    fn new(keyed: KeyedStream<T, K>, assigner: WindowAssigner, all: bool) -> Self {
        Self { keyed, assigner, trigger: None, allowed_lateness: Duration::ZERO, late_data: None, all }
    }

    /// Replaces the assigner's default trigger.
    pub fn trigger(mut self, trigger: impl Trigger<T>) -> Self {
        self.trigger = Some(Arc::new(trigger));
        self
    }

    /// Keeps event-time windows for `lateness` after they fired: a late record
    /// within it updates the window and fires it again.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// Sends records too late for any of their windows to the side output
    /// `tag` instead of dropping them (they are counted in the metric
    /// `weir_window_late_records_dropped_total` otherwise).
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_data = Some(tag.clone());
        self
    }

    /// Folds each window's records with `reduce`; the window holds one value.
    pub fn reduce<F>(&self, reduce: F) -> DataStream<T>
    where
        F: Fn(T, T) -> T + Send + Sync + 'static,
    {
        self.aggregate(ReduceAggregate { reduce: Arc::new(reduce) })
    }

    /// Folds each window's records into an accumulator; emits its result.
    pub fn aggregate<F>(&self, function: F) -> DataStream<F::Out>
    where
        F: AggregateFunction<In = T>,
        F::Acc: Data,
        F::Out: Data,
    {
        let function = Arc::new(function);
        let emit: WindowFunction<K, F::Acc, F::Out> = {
            let function = function.clone();
            Arc::new(move |_key: &K, _context: &WindowContext, accumulator: F::Acc, out: &mut Collector<'_, F::Out>| {
                out.collect(function.result(&accumulator));
            })
        };
        self.build("Window(Aggregate)", move || AggregateContents::new(function.clone()), emit)
    }

    /// Folds each window's records into an accumulator and hands its result,
    /// with the key and the window, to `process`.
    pub fn aggregate_with_process<F, Out, P>(&self, function: F, process: P) -> DataStream<Out>
    where
        F: AggregateFunction<In = T>,
        F::Acc: Data,
        Out: Data,
        P: Fn(&K, &WindowContext, F::Out, &mut Collector<'_, Out>) + Send + Sync + 'static,
    {
        let function = Arc::new(function);
        let emit: WindowFunction<K, F::Acc, Out> = {
            let function = function.clone();
            Arc::new(move |key: &K, context: &WindowContext, accumulator: F::Acc, out: &mut Collector<'_, Out>| {
                process(key, context, function.result(&accumulator), out);
            })
        };
        self.build("Window(Aggregate, Process)", move || AggregateContents::new(function.clone()), emit)
    }

    /// Hands all records of each window, with the key and the window, to
    /// `process` (the window keeps every record until it fires).
    pub fn process<Out, P>(&self, process: P) -> DataStream<Out>
    where
        Out: Data,
        P: Fn(&K, &WindowContext, Vec<T>, &mut Collector<'_, Out>) + Send + Sync + 'static,
    {
        let emit: WindowFunction<K, Vec<T>, Out> = Arc::new(process);
        self.build("Window(Process)", ListContents::new, emit)
    }

    fn build<C, Out>(
        &self,
        name: &str,
        contents: impl Fn() -> C + Send + Sync + 'static,
        emit: WindowFunction<K, C::Contents, Out>,
    ) -> DataStream<Out>
    where
        C: crate::operators::window::WindowContents<T> + 'static,
        Out: Data,
    {
        let env = &self.keyed.stream.env;
        if let Err(problem) = self.assigner.validate() {
            env.misuse(problem);
        }
        let trigger = self.trigger.clone().unwrap_or_else(|| self.assigner.default_trigger());
        if self.assigner.is_merging() && !trigger.can_merge() {
            env.misuse("session windows need a trigger that can merge (can_merge)".into());
        }
        let settings = WindowSettings {
            assigner: self.assigner,
            default_event_time_trigger: self.trigger.is_none() && self.assigner.is_event_time(),
            trigger,
            allowed_lateness: millis(self.allowed_lateness),
            late_data: self.late_data.clone(),
        };
        let key = self.keyed.key.clone();
        let name = if self.all { name.replacen("Window", "WindowAll", 1) } else { name.to_owned() };
        let stream = self.keyed.stream.transform::<Out>(
            &name,
            OperatorKind::Keyed,
            vec![self.keyed.edge()],
            move |context, outputs| {
                let outputs = outputs.into_typed_with_sides::<Out>()?;
                let operator = WindowOperator::new(
                    context.clone(),
                    key.clone(),
                    settings.clone(),
                    contents(),
                    emit.clone(),
                    outputs,
                )?;
                Ok(ErasedPush::new::<T>(Box::new(operator)))
            },
        );
        if self.all { stream.set_parallelism(1) } else { stream }
    }
}

impl<T, K: Clone> Clone for KeyedStream<T, K> {
    fn clone(&self) -> Self {
        Self { stream: self.stream.clone(), key: self.key.clone() }
    }
}

/// `reduce` as an aggregate whose accumulator is the reduced value so far.
struct ReduceAggregate<T> {
    reduce: Arc<dyn Fn(T, T) -> T + Send + Sync>,
}

impl<T: Data> AggregateFunction for ReduceAggregate<T> {
    type In = T;
    type Acc = Option<T>;
    type Out = T;

    fn create_accumulator(&self) -> Option<T> {
        None
    }

    fn add(&self, accumulator: &mut Option<T>, input: T) {
        *accumulator = Some(match accumulator.take() {
            None => input,
            Some(reduced) => (self.reduce)(reduced, input),
        });
    }

    fn result(&self, accumulator: &Option<T>) -> T {
        // A window is evaluated only once it holds a record.
        accumulator.clone().expect("a fired window holds at least one record")
    }

    fn merge(&self, a: Option<T>, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(a), Some(b)) => Some((self.reduce)(a, b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn assigned(assigner: WindowAssigner, timestamp: i64) -> Vec<TimeWindow> {
        let mut windows = Vec::new();
        assigner.assign(timestamp, &mut windows);
        windows
    }

    #[test]
    fn tumbling_windows_are_aligned_to_the_epoch_and_offset() {
        let minute = WindowAssigner::tumbling_event_time(Duration::from_secs(60));
        assert_eq!(assigned(minute, 0), vec![TimeWindow::new(0, 60_000)]);
        assert_eq!(assigned(minute, 59_999), vec![TimeWindow::new(0, 60_000)]);
        assert_eq!(assigned(minute, 60_000), vec![TimeWindow::new(60_000, 120_000)]);
        assert_eq!(assigned(minute, -1), vec![TimeWindow::new(-60_000, 0)]);
        let shifted = minute.with_offset(Duration::from_secs(15));
        assert_eq!(assigned(shifted, 10_000), vec![TimeWindow::new(-45_000, 15_000)]);
    }

    #[test]
    fn sliding_windows_cover_each_timestamp_size_over_slide_times() {
        let sliding = WindowAssigner::sliding_event_time(Duration::from_millis(10), Duration::from_millis(5));
        assert_eq!(assigned(sliding, 12), vec![TimeWindow::new(10, 20), TimeWindow::new(5, 15)]);
        assert_eq!(assigned(sliding, 10), vec![TimeWindow::new(10, 20), TimeWindow::new(5, 15)]);
    }

    proptest! {
        #[test]
        fn every_assigned_window_contains_the_timestamp(
            timestamp in -1_000_000i64..1_000_000,
            size in 1i64..1000,
            slide in 1i64..1000,
            offset in 0i64..1000,
        ) {
            let sliding = WindowAssigner {
                kind: AssignerKind::Sliding { size, slide, offset },
                domain: TimeDomain::EventTime,
            };
            let windows = assigned(sliding, timestamp);
            // A timestamp lies in ceil(size / slide) windows, or floor when the phase allows.
            prop_assert!(windows.len() as i64 >= size / slide && windows.len() as i64 <= (size + slide - 1) / slide);
            for window in windows {
                prop_assert!(window.start <= timestamp && timestamp < window.end);
                prop_assert_eq!(window.end - window.start, size);
                prop_assert_eq!((window.start - offset).rem_euclid(slide), 0);
            }
        }
    }
}
