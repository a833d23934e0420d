//! When a window's state goes, and what happens to records that come after:
//! a cleanup timer at `end - 1 + allowed lateness` (event time) or at the
//! window's end (processing time) drops the window; a record all of whose
//! windows are past that goes to the late-data side output, or is counted
//! as dropped.

use weir_state::keyed::TimeDomain;
use weir_worker::TaskError;

use super::{WindowContents, WindowOperator};
use crate::Data;
use crate::data::Key;
use crate::windows::TimeWindow;

impl<T, K, C, Out> WindowOperator<T, K, C, Out>
where
    T: Data,
    K: Key,
    C: WindowContents<T>,
    Out: Data,
{
    /// When a window's state is dropped: after the allowed lateness in event
    /// time, at its end in processing time.
    pub(super) fn cleanup_time(&self, window: &TimeWindow) -> i64 {
        if self.is_event_time() {
            window.max_timestamp().saturating_add(self.settings.allowed_lateness)
        } else {
            window.max_timestamp()
        }
    }

    /// Whether `window` was dropped already, or would be at once: records
    /// for it are late.
    pub(super) fn is_window_late(&self, window: &TimeWindow) -> bool {
        self.is_event_time() && self.cleanup_time(window) <= self.state.watermark
    }

    /// The time domain of the windows, and so of their cleanup timers.
    pub(super) fn timer_domain(&self) -> TimeDomain {
        if self.is_event_time() { TimeDomain::EventTime } else { TimeDomain::ProcessingTime }
    }

    /// Sets the timer that drops `window`; the global window is never dropped.
    pub(super) fn register_cleanup_timer(&mut self, window: &TimeWindow) -> Result<(), TaskError> {
        if *window == TimeWindow::GLOBAL {
            return Ok(());
        }
        let (domain, time) = (self.timer_domain(), self.cleanup_time(window));
        let state = &mut self.state;
        state.backend.register_timer(&state.timers, domain, *window, time).map_err(|error| self.failed(error))
    }

    /// Drops everything of `window` of the current key.
    pub(super) fn clear_window(&mut self, window: &TimeWindow) -> Result<(), TaskError> {
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

    /// A record no window took: if it is behind the watermark by more than
    /// the allowed lateness, it goes to the late-data side output or, without
    /// one, is counted as dropped.
    pub(super) fn reject(&mut self, record: T, timestamp: i64) -> Result<(), TaskError> {
        let late =
            self.is_event_time() && timestamp.saturating_add(self.settings.allowed_lateness) <= self.state.watermark;
        if !late {
            return Ok(());
        }
        match &self.settings.late_data {
            Some(tag) => self.outputs.sides.emit(tag, record),
            None => {
                self.late_records_dropped.increment(1);
                Ok(())
            }
        }
    }
}
