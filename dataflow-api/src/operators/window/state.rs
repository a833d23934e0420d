//! The window operator's keyed state and event time, and the backend its
//! triggers see: their timers and per-window state live in the keyed-state
//! backend too, so checkpoints capture them.

use std::collections::HashMap;

use weir_state::keyed::{KeyedStateBackend, StateError, StateKey, TimeDomain, TimerService, ValueState};

use crate::windows::TimeWindow;
use crate::windows::trigger::TriggerBackend;

/// The operator's keyed state and event time; what triggers see.
pub(super) struct WindowState<K> {
    pub(super) backend: KeyedStateBackend<K>,
    /// Trigger timers and cleanup timers, by window.
    pub(super) timers: TimerService<TimeWindow>,
    /// The value states triggers asked for, by name, registered on first use.
    trigger_states: HashMap<String, ValueState<TimeWindow, Vec<u8>>>,
    /// Per key, its open session windows (merging assigners only).
    pub(super) sessions: Option<ValueState<(), Vec<TimeWindow>>>,
    /// The operator's event time: the highest watermark received.
    pub(super) watermark: i64,
    /// The first state error met inside a trigger call, reported after it.
    pub(super) error: Option<StateError>,
}

impl<K: StateKey> WindowState<K> {
    pub(super) fn new(
        backend: KeyedStateBackend<K>,
        timers: TimerService<TimeWindow>,
        sessions: Option<ValueState<(), Vec<TimeWindow>>>,
    ) -> Self {
        Self { backend, timers, trigger_states: HashMap::new(), sessions, watermark: i64::MIN, error: None }
    }

    /// Keeps the first error for after the trigger call (a trigger's calls
    /// into its backend cannot fail), and gives the value otherwise.
    fn record<R>(&mut self, result: Result<R, StateError>) -> Option<R> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.error.get_or_insert(error);
                None
            }
        }
    }

    /// The value state of the trigger's state `name`, registered on first use.
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
