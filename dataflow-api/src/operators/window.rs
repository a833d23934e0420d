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

use std::collections::HashMap;
use std::sync::Arc;

use weir_common::CheckpointId;
use weir_state::keyed::{
    AggregateFunction, KeyedStateBackend, ListState, StateError, StateKey, TimeDomain, Timer, TimerService, ValueState,
};
use weir_worker::blame::BlameGuard;
use weir_worker::{NO_TIMESTAMP, TaskError, Watermark};

use crate::checkpointing::{ChainSnapshot, KeyedCheckpoints};
use crate::collector::Collector;
use crate::data::Key;
use crate::operators::OperatorContext;
use crate::partition::KeySelector;
use crate::push::{Push, SideOutputs};
use crate::windows::trigger::{Trigger, TriggerBackend, TriggerContext, TriggerResult};
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
    pub(crate) allowed_lateness: i64,
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

/// What a window keeps of its records, in the keyed-state backend.
pub(crate) trait WindowContents<T>: Send {
    /// What the window function receives when the window fires.
    type Contents;
    fn register<K: StateKey>(&mut self, backend: &mut KeyedStateBackend<K>) -> Result<(), StateError>;
    /// Adds `record`; returns whether the window may have been empty before
    /// (then its cleanup timer must be set).
    fn add<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
        record: T,
    ) -> Result<bool, StateError>;
    fn get<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
    ) -> Result<Option<Self::Contents>, StateError>;
    fn clear<K: StateKey>(&mut self, backend: &mut KeyedStateBackend<K>, window: &TimeWindow)
    -> Result<(), StateError>;
    /// Moves the contents of `from` into `into` (session windows merging).
    fn merge<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        from: &[TimeWindow],
        into: &TimeWindow,
    ) -> Result<(), StateError>;
}

/// One accumulator per window (`reduce`, `aggregate`).
pub(crate) struct AggregateContents<F: AggregateFunction> {
    function: Arc<F>,
    state: Option<ValueState<TimeWindow, F::Acc>>,
}

impl<F: AggregateFunction> AggregateContents<F> {
    pub(crate) fn new(function: Arc<F>) -> Self {
        Self { function, state: None }
    }

    fn state(&self) -> Result<&ValueState<TimeWindow, F::Acc>, StateError> {
        self.state.as_ref().ok_or_else(unregistered)
    }
}

/// The contents' state was used before `register`: a bug in the operator.
fn unregistered() -> StateError {
    StateError::Incompatible { name: "window-contents".into(), message: "used before registration".into() }
}

impl<F> WindowContents<F::In> for AggregateContents<F>
where
    F: AggregateFunction,
    F::In: Send,
    F::Acc: Data,
{
    type Contents = F::Acc;

    fn register<K: StateKey>(&mut self, backend: &mut KeyedStateBackend<K>) -> Result<(), StateError> {
        self.state = Some(backend.register_value("window-contents")?);
        Ok(())
    }

    fn add<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
        record: F::In,
    ) -> Result<bool, StateError> {
        let function = &self.function;
        backend.update_value(self.state()?, window, |accumulator| {
            let created = accumulator.is_none();
            let mut accumulator = accumulator.unwrap_or_else(|| function.create_accumulator());
            function.add(&mut accumulator, record);
            (Some(accumulator), created)
        })
    }

    fn get<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
    ) -> Result<Option<F::Acc>, StateError> {
        backend.value(self.state()?, window)
    }

    fn clear<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
    ) -> Result<(), StateError> {
        backend.clear(self.state()?, window)
    }

    fn merge<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        from: &[TimeWindow],
        into: &TimeWindow,
    ) -> Result<(), StateError> {
        let state = self.state()?.clone();
        let mut merged = backend.value(&state, into)?;
        for window in from.iter().filter(|window| *window != into) {
            if let Some(accumulator) = backend.value(&state, window)? {
                merged = Some(match merged {
                    None => accumulator,
                    Some(so_far) => self.function.merge(so_far, accumulator),
                });
                backend.clear(&state, window)?;
            }
        }
        match merged {
            Some(accumulator) => backend.set_value(&state, into, accumulator),
            None => Ok(()),
        }
    }
}

/// Every record of the window (`process`).
pub(crate) struct ListContents<T> {
    state: Option<ListState<TimeWindow, T>>,
}

impl<T> ListContents<T> {
    pub(crate) fn new() -> Self {
        Self { state: None }
    }

    fn state(&self) -> Result<&ListState<TimeWindow, T>, StateError> {
        self.state.as_ref().ok_or_else(unregistered)
    }
}

impl<T: Data> WindowContents<T> for ListContents<T> {
    type Contents = Vec<T>;

    fn register<K: StateKey>(&mut self, backend: &mut KeyedStateBackend<K>) -> Result<(), StateError> {
        self.state = Some(backend.register_list("window-contents")?);
        Ok(())
    }

    fn add<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
        record: T,
    ) -> Result<bool, StateError> {
        backend.list_add(self.state()?, window, record)?;
        Ok(true)
    }

    fn get<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
    ) -> Result<Option<Vec<T>>, StateError> {
        let records = backend.list(self.state()?, window)?;
        Ok(Some(records).filter(|records| !records.is_empty()))
    }

    fn clear<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
    ) -> Result<(), StateError> {
        backend.clear(self.state()?, window)
    }

    fn merge<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        from: &[TimeWindow],
        into: &TimeWindow,
    ) -> Result<(), StateError> {
        let state = self.state()?.clone();
        let mut merged = backend.list(&state, into)?;
        for window in from.iter().filter(|window| *window != into) {
            merged.extend(backend.list(&state, window)?);
            backend.clear(&state, window)?;
        }
        backend.list_set(&state, into, merged)
    }
}

/// The operator's keyed state and event time; what triggers see.
struct WindowState<K> {
    backend: KeyedStateBackend<K>,
    timers: TimerService<TimeWindow>,
    trigger_states: HashMap<String, ValueState<TimeWindow, Vec<u8>>>,
    /// Per key, its open session windows (merging assigners only).
    sessions: Option<ValueState<(), Vec<TimeWindow>>>,
    watermark: i64,
    /// The first state error met inside a trigger call, reported after it.
    error: Option<StateError>,
}

impl<K: StateKey> WindowState<K> {
    fn record<R>(&mut self, result: Result<R, StateError>) -> Option<R> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.error.get_or_insert(error);
                None
            }
        }
    }

    fn trigger_state(&mut self, name: &str) -> Option<ValueState<TimeWindow, Vec<u8>>> {
        if let Some(state) = self.trigger_states.get(name) {
            return Some(state.clone());
        }
        let registered = self.backend.register_value(&format!("trigger-{name}"));
        let state = self.record(registered)?;
        self.trigger_states.insert(name.to_owned(), state.clone());
        Some(state)
    }
}

impl<K: StateKey> TriggerBackend for WindowState<K> {
    fn current_watermark(&self) -> i64 {
        self.watermark
    }

    fn current_processing_time(&self) -> i64 {
        now_millis()
    }

    fn register_timer(&mut self, domain: TimeDomain, window: TimeWindow, time: i64) {
        let registered = self.backend.register_timer(&self.timers, domain, window, time);
        self.record(registered);
    }

    fn delete_timer(&mut self, domain: TimeDomain, window: TimeWindow, time: i64) {
        let deleted = self.backend.delete_timer(&self.timers, domain, window, time);
        self.record(deleted);
    }

    fn state_bytes(&mut self, name: &str, window: TimeWindow) -> Option<Vec<u8>> {
        let state = self.trigger_state(name)?;
        let value = self.backend.value(&state, &window);
        self.record(value).flatten()
    }

    fn set_state_bytes(&mut self, name: &str, window: TimeWindow, value: Option<Vec<u8>>) {
        let Some(state) = self.trigger_state(name) else { return };
        let written = match value {
            Some(bytes) => self.backend.set_value(&state, &window, bytes),
            None => self.backend.clear(&state, &window),
        };
        self.record(written);
    }
}

/// Milliseconds since the epoch by the wall clock.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

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
    next: Box<dyn Push<Out>>,
    sides: SideOutputs,
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
        next: Box<dyn Push<Out>>,
        sides: SideOutputs,
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
        let state =
            WindowState { backend, timers, trigger_states: HashMap::new(), sessions, watermark: i64::MIN, error: None };
        Ok(Self {
            event_time: settings.assigner.is_event_time(),
            context,
            key,
            settings,
            contents,
            function,
            state,
            windows: Vec::new(),
            next,
            sides,
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

    /// When a window's state is dropped: after the allowed lateness in event
    /// time, at its end in processing time.
    fn cleanup_time(&self, window: &TimeWindow) -> i64 {
        if self.is_event_time() {
            window.max_timestamp().saturating_add(self.settings.allowed_lateness)
        } else {
            window.max_timestamp()
        }
    }

    fn is_window_late(&self, window: &TimeWindow) -> bool {
        self.is_event_time() && self.cleanup_time(window) <= self.state.watermark
    }

    fn timer_domain(&self) -> TimeDomain {
        if self.is_event_time() { TimeDomain::EventTime } else { TimeDomain::ProcessingTime }
    }

    fn register_cleanup_timer(&mut self, window: &TimeWindow) -> Result<(), TaskError> {
        if *window == TimeWindow::GLOBAL {
            return Ok(());
        }
        let (domain, time) = (self.timer_domain(), self.cleanup_time(window));
        let state = &mut self.state;
        state.backend.register_timer(&state.timers, domain, *window, time).map_err(|error| self.failed(error))
    }

    fn trigger_context(&mut self) -> TriggerContext<'_> {
        TriggerContext { backend: &mut self.state }
    }

    /// Evaluates and/or purges `window` of the current key as `result` says.
    fn react(&mut self, key: &K, window: &TimeWindow, result: TriggerResult) -> Result<(), TaskError> {
        if result.fires()
            && let Some(contents) = self.contents.get(&mut self.state.backend, window).map_err(|e| self.failed(e))?
        {
            let window_context = WindowContext {
                window: *window,
                current_watermark: self.state.watermark,
                current_processing_time: now_millis(),
            };
            let mut out =
                Collector::new(self.next.as_mut(), &mut self.sides, &self.context.timestamp, window.max_timestamp());
            let guard = BlameGuard::new(&self.context.operator_name);
            (self.function)(key, &window_context, contents, &mut out);
            guard.disarm();
            out.into_result()?;
        }
        if result.purges() {
            self.contents.clear(&mut self.state.backend, window).map_err(|error| self.failed(error))?;
        }
        Ok(())
    }

    /// Adds `window` (of a merging assigner) to the key's sessions, merging
    /// it with the sessions it touches; returns the session the record joins.
    fn merge_into_sessions(&mut self, new: TimeWindow) -> Result<TimeWindow, TaskError> {
        let Some(sessions_state) = self.state.sessions.clone() else { return Ok(new) };
        let mut sessions =
            self.state.backend.value(&sessions_state, &()).map_err(|error| self.failed(error))?.unwrap_or_default();
        let touching: Vec<TimeWindow> = sessions.iter().filter(|session| session.intersects(&new)).copied().collect();
        let merged = touching.iter().fold(new, |cover, session| cover.cover(session));
        if touching == [merged] {
            return Ok(merged);
        }
        sessions.retain(|session| !touching.contains(session));
        sessions.push(merged);
        let state = &mut self.state;
        let stored = state.backend.set_value(&sessions_state, &(), sessions);
        stored.map_err(|error| self.failed(error))?;
        if touching.is_empty() {
            return Ok(merged);
        }
        self.contents.merge(&mut self.state.backend, &touching, &merged).map_err(|error| self.failed(error))?;
        let trigger = self.settings.trigger.clone();
        trigger.on_merge(&merged, &touching, &mut self.trigger_context());
        for old in &touching {
            trigger.clear(old, &mut self.trigger_context());
            let (domain, time) = (self.timer_domain(), self.cleanup_time(old));
            let state = &mut self.state;
            state.backend.delete_timer(&state.timers, domain, *old, time).map_err(|error| self.failed(error))?;
        }
        self.check_trigger()?;
        // The merged window holds contents now, so adding to it reports no new
        // window: its cleanup timer is set here.
        self.register_cleanup_timer(&merged)?;
        Ok(merged)
    }

    /// Drops everything of `window` of the current key.
    fn clear_window(&mut self, window: &TimeWindow) -> Result<(), TaskError> {
        self.contents.clear(&mut self.state.backend, window).map_err(|error| self.failed(error))?;
        let trigger = self.settings.trigger.clone();
        trigger.clear(window, &mut self.trigger_context());
        self.check_trigger()?;
        if let Some(sessions_state) = self.state.sessions.clone() {
            let removed = self.state.backend.update_value(&sessions_state, &(), |sessions| {
                let mut sessions: Vec<TimeWindow> = sessions.unwrap_or_default();
                sessions.retain(|session| session != window);
                (Some(sessions).filter(|sessions| !sessions.is_empty()), ())
            });
            removed.map_err(|error| self.failed(error))?;
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer<K, TimeWindow>, domain: TimeDomain) -> Result<(), TaskError> {
        let Timer { timestamp, key, namespace: window } = timer;
        self.state.backend.set_current_key(key.clone()).map_err(|error| self.failed(error))?;
        if let Some(sessions_state) = self.state.sessions.clone() {
            let sessions = self.state.backend.value(&sessions_state, &()).map_err(|error| self.failed(error))?;
            if !sessions.is_some_and(|sessions| sessions.contains(&window)) {
                return Ok(()); // The session was merged into another one.
            }
        }
        let trigger = self.settings.trigger.clone();
        let result = match domain {
            TimeDomain::EventTime => trigger.on_event_time(timestamp, &window, &mut self.trigger_context()),
            TimeDomain::ProcessingTime => trigger.on_processing_time(timestamp, &window, &mut self.trigger_context()),
        };
        self.check_trigger()?;
        self.react(&key, &window, result)?;
        if domain == self.timer_domain() && timestamp == self.cleanup_time(&window) {
            self.clear_window(&window)?;
        }
        Ok(())
    }

    /// Fires every timer of `domain` due at `time`, earliest first, including
    /// timers that firing sets at or before `time`.
    fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<(), TaskError> {
        loop {
            let state = &mut self.state;
            let due = state.backend.fire_timers(&state.timers, domain, time).map_err(|error| self.failed(error))?;
            if due.is_empty() {
                return Ok(());
            }
            for timer in due {
                self.on_timer(timer, domain)?;
            }
        }
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
        let assign_time = if self.is_event_time() {
            if timestamp == NO_TIMESTAMP {
                return Err(self.context.error(
                    "event-time windows need timestamps, and this record has none: \
                     call assign_timestamps_and_watermarks before key_by",
                ));
            }
            timestamp
        } else {
            now_millis()
        };
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
            let guard = BlameGuard::new(&self.context.operator_name);
            let added = self.contents.add(&mut self.state.backend, window, record.clone());
            guard.disarm();
            let created = added.map_err(|error| self.failed(error))?;
            let result = if self.settings.default_event_time_trigger && !created {
                // What `EventTimeTrigger::on_element` answers; its timer at the
                // window's end was set with the window's first record.
                if window.max_timestamp() <= self.state.watermark {
                    TriggerResult::Fire
                } else {
                    TriggerResult::Continue
                }
            } else {
                // Disjoint fields: the trigger is read while the state is lent to it.
                let mut context = TriggerContext { backend: &mut self.state };
                self.settings.trigger.on_element(&record, assign_time, window, &mut context)
            };
            self.check_trigger()?;
            self.react(&key, window, result)?;
            if created {
                self.register_cleanup_timer(window)?;
            }
        }
        self.windows = windows;
        let late =
            self.is_event_time() && timestamp.saturating_add(self.settings.allowed_lateness) <= self.state.watermark;
        if skipped && late {
            match &self.settings.late_data {
                Some(tag) => self.sides.emit(tag, record)?,
                None => self.late_records_dropped.increment(1),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.fire_timers(TimeDomain::ProcessingTime, now_millis())?;
        self.next.flush()?;
        self.sides.flush()
    }

    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError> {
        if let Watermark::At(time) = mark {
            self.state.watermark = self.state.watermark.max(time);
            self.fire_timers(TimeDomain::EventTime, time)?;
        }
        self.next.watermark(mark)?;
        self.sides.watermark(mark)
    }

    fn checkpoint(&mut self, chain: &mut ChainSnapshot<'_>) -> Result<(), TaskError> {
        self.checkpoints.snapshot(&mut self.state.backend, &self.context, chain)?;
        self.next.checkpoint(chain)?;
        self.sides.checkpoint(chain)
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        self.checkpoints.complete(&mut self.state.backend, id);
        self.next.checkpoint_complete(id)?;
        self.sides.checkpoint_complete(id)
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        // The end of input is the end of event time: every window fires. Windows
        // on the wall clock fire too, rather than losing their contents.
        self.state.watermark = i64::MAX;
        self.fire_timers(TimeDomain::EventTime, i64::MAX)?;
        self.fire_timers(TimeDomain::ProcessingTime, i64::MAX)?;
        self.next.finish()?;
        self.sides.finish()
    }
}
