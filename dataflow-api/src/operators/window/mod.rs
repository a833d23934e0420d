//! The window operator (Flink's `WindowOperator`): assigns each record to
//! windows, keeps their contents in the keyed-state backend under the
//! window as namespace, asks the trigger what to do, and evaluates fired
//! windows with the window function.
//!
//! Everything that must survive a failure lives in the backend: window
//! contents (one accumulator per window for `reduce`/`aggregate`, the records
//! for `process`), trigger state, timers (trigger timers and the cleanup timer
//! at `end - 1 + allowed lateness`), and, for session windows, each key's set
//! of open sessions.
//!
//! This file holds the operator and its record path; the parts live beside
//! it: `contents` (what a window keeps), `state` (the backend triggers see),
//! `triggers` (asking the trigger, firing timers, evaluating windows),
//! `lateness` (cleanup and late records) and `sessions` (merging windows).

mod contents;
mod lateness;
mod sessions;
mod state;
mod triggers;

use std::sync::Arc;

use weir_common::CheckpointId;
use weir_state::keyed::{StateError, TimeDomain};
use weir_worker::blame::BlameGuard;
use weir_worker::{NO_TIMESTAMP, TaskError, Watermark};

pub(crate) use self::contents::{AggregateContents, ListContents, WindowContents};
use self::state::WindowState;
pub(crate) use self::state::now_millis;
use crate::checkpointing::{ChainSnapshot, KeyedCheckpoints};
use crate::collector::Collector;
use crate::data::Key;
use crate::operators::OperatorContext;
use crate::partition::KeySelector;
use crate::push::{ChainLink, Push, TypedOutputs, pass_on};
use crate::windows::trigger::Trigger;
use crate::windows::{TimeWindow, WindowAssigner, WindowContext};
use crate::{Data, OutputTag};

/// Evaluates a fired window: key, window metadata, contents, where to emit.
pub(crate) type WindowFunction<K, C, Out> = Arc<dyn Fn(&K, &WindowContext, C, &mut Collector<'_, Out>) + Send + Sync>;

/// How a window operator is configured, shared by its instances.
pub(crate) struct WindowSettings<T> {
    pub(crate) assigner: WindowAssigner,
    pub(crate) trigger: Arc<dyn Trigger<T>>,
    /// The trigger is the assigner's default [`EventTimeTrigger`](crate::windows::trigger::EventTimeTrigger),
    /// whose answer for a window that already holds records is known
    /// without asking it (its timer is set already).
    pub(crate) default_event_time_trigger: bool,
    /// How long after its end a window keeps its state and still takes
    /// records, in milliseconds of event time.
    pub(crate) allowed_lateness: i64,
    /// Where records too late for all their windows go; without it they are
    /// dropped and counted.
    pub(crate) late_data: Option<OutputTag<T>>,
}

impl<T> Clone for WindowSettings<T> {
    fn clone(&self) -> Self {
        Self {
            assigner: self.assigner,
            trigger: self.trigger.clone(),
            default_event_time_trigger: self.default_event_time_trigger,
            allowed_lateness: self.allowed_lateness,
            late_data: self.late_data.clone(),
        }
    }
}

/// One parallel instance of a window operator over records `T` keyed by `K`,
/// keeping contents `C` per window and emitting `Out`.
pub(crate) struct WindowOperator<T, K, C: WindowContents<T>, Out> {
    context: OperatorContext,
    key: KeySelector<T, K>,
    settings: WindowSettings<T>,
    contents: C,
    function: WindowFunction<K, C::Contents, Out>,
    state: WindowState<K>,
    /// Scratch for the windows of one record.
    windows: Vec<TimeWindow>,
    /// Whether windows follow event time (asked for every record).
    event_time: bool,
    outputs: TypedOutputs<Out>,
    checkpoints: KeyedCheckpoints,
    late_records_dropped: metrics::Counter,
}

impl<T, K, C, Out> WindowOperator<T, K, C, Out>
where
    T: Data,
    K: Key,
    C: WindowContents<T>,
    Out: Data,
{
    pub(crate) fn new(
        context: OperatorContext,
        key: KeySelector<T, K>,
        settings: WindowSettings<T>,
        mut contents: C,
        function: WindowFunction<K, C::Contents, Out>,
        outputs: TypedOutputs<Out>,
    ) -> Result<Self, TaskError> {
        let failed = |error: StateError| context.error(format!("cannot set up its window state: {error}"));
        let mut backend = context.keyed_state_backend::<K>()?;
        contents.register(&mut backend).map_err(failed)?;
        let timers = backend.register_timer_service("window-timers").map_err(failed)?;
        let sessions = if settings.assigner.is_merging() {
            Some(backend.register_value("session-windows").map_err(failed)?)
        } else {
            None
        };
        Ok(Self {
            event_time: settings.assigner.is_event_time(),
            context,
            key,
            settings,
            contents,
            function,
            state: WindowState::new(backend, timers, sessions),
            windows: Vec::new(),
            outputs,
            checkpoints: KeyedCheckpoints::default(),
            late_records_dropped: metrics::counter!("weir_window_late_records_dropped_total"),
        })
    }

    fn failed(&self, error: StateError) -> TaskError {
        self.context.error(format!("window state: {error}"))
    }

    /// Turns a state error stashed during a trigger call into a task error.
    fn check_trigger(&mut self) -> Result<(), TaskError> {
        match self.state.error.take() {
            Some(error) => Err(self.failed(error)),
            None => Ok(()),
        }
    }

    fn is_event_time(&self) -> bool {
        self.event_time
    }

    /// The time a record with `timestamp` is assigned to windows by: that
    /// timestamp in event time (a record must have one), else the wall clock.
    fn assign_time(&self, timestamp: i64) -> Result<i64, TaskError> {
        if !self.is_event_time() {
            return Ok(now_millis());
        }
        if timestamp == NO_TIMESTAMP {
            return Err(self.context.error(
                "event-time windows need timestamps, and this record has none: \
                 call assign_timestamps_and_watermarks before key_by",
            ));
        }
        Ok(timestamp)
    }

    /// Adds `record` to `window` of the current key and does what the trigger
    /// answers.
    fn add_to_window(&mut self, key: &K, window: &TimeWindow, record: &T, assign_time: i64) -> Result<(), TaskError> {
        let guard = BlameGuard::new(&self.context.operator_name);
        let added = self.contents.add(&mut self.state.backend, window, record.clone());
        guard.disarm();
        let created = added.map_err(|error| self.failed(error))?;
        let result = self.on_element(record, assign_time, window, created);
        self.check_trigger()?;
        self.react(key, window, result)?;
        if created {
            self.register_cleanup_timer(window)?;
        }
        Ok(())
    }
}

impl<T, K, C, Out> Push<T> for WindowOperator<T, K, C, Out>
where
    T: Data,
    K: Key,
    C: WindowContents<T>,
    Out: Data,
{
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        let timestamp = self.context.timestamp.get();
        let assign_time = self.assign_time(timestamp)?;
        let guard = BlameGuard::new(&self.context.operator_name);
        let key = (self.key)(&record);
        guard.disarm();
        self.state.backend.set_current_key(key.clone()).map_err(|error| self.failed(error))?;
        let mut windows = std::mem::take(&mut self.windows);
        self.settings.assigner.assign(assign_time, &mut windows);
        if self.settings.assigner.is_merging() {
            windows[0] = self.merge_into_sessions(windows[0])?;
        }
        let mut skipped = true;
        for window in &windows {
            if self.is_window_late(window) {
                continue;
            }
            skipped = false;
            self.add_to_window(&key, window, &record, assign_time)?;
        }
        self.windows = windows;
        if skipped {
            self.reject(record, timestamp)?;
        }
        Ok(())
    }
}

impl<T, K, C, Out> ChainLink for WindowOperator<T, K, C, Out>
where
    T: Data,
    K: Key,
    C: WindowContents<T>,
    Out: Data,
{
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        Some(&mut self.outputs)
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.fire_timers(TimeDomain::ProcessingTime, now_millis())?;
        pass_on(self, |next| next.flush())
    }

    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError> {
        if let Watermark::At(time) = mark {
            self.state.watermark = self.state.watermark.max(time);
            self.fire_timers(TimeDomain::EventTime, time)?;
        }
        pass_on(self, |next| next.watermark(mark))
    }

    fn checkpoint(&mut self, chain: &mut ChainSnapshot<'_>) -> Result<(), TaskError> {
        self.checkpoints.snapshot(&mut self.state.backend, &self.context, chain)?;
        pass_on(self, |next| next.checkpoint(chain))
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        self.checkpoints.complete(&mut self.state.backend, id);
        pass_on(self, |next| next.checkpoint_complete(id))
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        // The end of input is the end of event time: every window fires. Windows
        // on the wall clock fire too, rather than losing their contents.
        self.state.watermark = i64::MAX;
        self.fire_timers(TimeDomain::EventTime, i64::MAX)?;
        self.fire_timers(TimeDomain::ProcessingTime, i64::MAX)?;
        pass_on(self, |next| next.finish())
    }
}
