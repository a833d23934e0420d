//! Merging windows (session windows): each key's open sessions are a value
//! state; a record's window merges with every session it touches, and so do
//! their contents, trigger state and cleanup timers.

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
    /// Adds `window` (of a merging assigner) to the key's sessions, merging
    /// it with the sessions it touches; returns the session the record joins.
    pub(super) fn merge_into_sessions(&mut self, new: TimeWindow) -> Result<TimeWindow, TaskError> {
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
}
