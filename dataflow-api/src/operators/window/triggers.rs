//! What the trigger is asked and what its answers do: a record added to a
//! window, timers that fire (trigger timers and cleanup timers share one
//! timer service), and the evaluation of a window that fires.

use weir_state::keyed::{TimeDomain, Timer};
use weir_worker::TaskError;
use weir_worker::blame::BlameGuard;

use super::{WindowContents, WindowOperator, now_millis};
use crate::Data;
use crate::collector::Collector;
use crate::data::Key;
use crate::windows::trigger::{TriggerContext, TriggerResult};
use crate::windows::{TimeWindow, WindowContext};

impl<T, K, C, Out> WindowOperator<T, K, C, Out>
where
    T: Data,
    K: Key,
    C: WindowContents<T>,
    Out: Data,
{
    pub(super) fn trigger_context(&mut self) -> TriggerContext<'_> {
        TriggerContext { backend: &mut self.state }
    }

    /// What the trigger answers to `record`, just added to `window`
    /// (`created`: the window may have been empty before).
    pub(super) fn on_element(&mut self, record: &T, time: i64, window: &TimeWindow, created: bool) -> TriggerResult {
        if self.settings.default_event_time_trigger && !created {
            // What `EventTimeTrigger::on_element` answers; its timer at the
            // window's end was set with the window's first record.
            return if window.max_timestamp() <= self.state.watermark {
                TriggerResult::Fire
            } else {
                TriggerResult::Continue
            };
        }
        // Disjoint fields: the trigger is read while the state is lent to it.
        let mut context = TriggerContext { backend: &mut self.state };
        self.settings.trigger.on_element(record, time, window, &mut context)
    }

    /// Evaluates and/or purges `window` of the current key as `result` says.
    pub(super) fn react(&mut self, key: &K, window: &TimeWindow, result: TriggerResult) -> Result<(), TaskError> {
        if result.fires()
            && let Some(contents) = self.contents.get(&mut self.state.backend, window).map_err(|e| self.failed(e))?
        {
            let window_context = WindowContext {
                window: *window,
                current_watermark: self.state.watermark,
                current_processing_time: now_millis(),
            };
            let mut out = Collector::new(&mut self.outputs, &self.context.timestamp, window.max_timestamp());
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

    /// Fires every timer of `domain` due at `time`, earliest first, including
    /// timers that firing sets at or before `time`.
    pub(super) fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<(), TaskError> {
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

    /// Asks the trigger about a timer of its window, then drops the window
    /// if the timer is its cleanup timer.
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
}
