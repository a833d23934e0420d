//! Triggers decide when a window's contents are evaluated and when they are
//! dropped (Flink's `Trigger`). Their timers and their small per-window state
//! live in the keyed-state backend, in the window's namespace, so they are
//! snapshotted with everything else.

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_state::keyed::TimeDomain;

use super::TimeWindow;

/// What a trigger decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerResult {
    /// Nothing happens.
    Continue,
    /// Evaluate the window and emit its result; keep its contents.
    Fire,
    /// Drop the window's contents without evaluating them.
    Purge,
    /// Evaluate, emit, then drop the contents.
    FireAndPurge,
}

impl TriggerResult {
    /// Whether the window is evaluated.
    pub fn fires(self) -> bool {
        matches!(self, Self::Fire | Self::FireAndPurge)
    }

    /// Whether the window's contents are dropped.
    pub fn purges(self) -> bool {
        matches!(self, Self::Purge | Self::FireAndPurge)
    }
}

/// What the window operator offers a trigger; implemented by the operator.
pub(crate) trait TriggerBackend {
    fn current_watermark(&self) -> i64;
    fn current_processing_time(&self) -> i64;
    fn register_timer(&mut self, domain: TimeDomain, window: TimeWindow, time: i64);
    fn delete_timer(&mut self, domain: TimeDomain, window: TimeWindow, time: i64);
    fn state_bytes(&mut self, name: &str, window: TimeWindow) -> Option<Vec<u8>>;
    fn set_state_bytes(&mut self, name: &str, window: TimeWindow, value: Option<Vec<u8>>);
}

/// A trigger's view of time, timers and its per-window state, for the
/// current key.
pub struct TriggerContext<'a> {
    pub(crate) backend: &'a mut dyn TriggerBackend,
}

impl TriggerContext<'_> {
    /// The operator's current event time.
    pub fn current_watermark(&self) -> i64 {
        self.backend.current_watermark()
    }

    /// The wall clock, in milliseconds since the epoch.
    pub fn current_processing_time(&self) -> i64 {
        self.backend.current_processing_time()
    }

    /// Calls `on_event_time` for `window` once the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, window: &TimeWindow, time: i64) {
        self.backend.register_timer(TimeDomain::EventTime, *window, time);
    }

    /// Calls `on_processing_time` for `window` once the wall clock reaches `time`.
    pub fn register_processing_time_timer(&mut self, window: &TimeWindow, time: i64) {
        self.backend.register_timer(TimeDomain::ProcessingTime, *window, time);
    }

    /// Deletes an event-time timer set earlier.
    pub fn delete_event_time_timer(&mut self, window: &TimeWindow, time: i64) {
        self.backend.delete_timer(TimeDomain::EventTime, *window, time);
    }

    /// Deletes a processing-time timer set earlier.
    pub fn delete_processing_time_timer(&mut self, window: &TimeWindow, time: i64) {
        self.backend.delete_timer(TimeDomain::ProcessingTime, *window, time);
    }

    /// The trigger's state `name` for the current key and `window`.
    pub fn state<S: DeserializeOwned>(&mut self, name: &str, window: &TimeWindow) -> Option<S> {
        let bytes = self.backend.state_bytes(name, *window)?;
        postcard::from_bytes(&bytes).ok()
    }

    /// Sets the trigger's state `name` for the current key and `window`.
    pub fn set_state<S: Serialize>(&mut self, name: &str, window: &TimeWindow, value: &S) {
        let bytes = postcard::to_allocvec(value).ok();
        self.backend.set_state_bytes(name, *window, bytes);
    }

    /// Removes the trigger's state `name` for the current key and `window`.
    pub fn clear_state(&mut self, name: &str, window: &TimeWindow) {
        self.backend.set_state_bytes(name, *window, None);
    }
}

/// Decides when a window fires (Flink's `Trigger`). One instance serves every
/// key and window of an operator instance: keep state in the context.
pub trait Trigger<T>: Send + Sync + 'static {
    /// A record was added to `window`.
    fn on_element(
        &self,
        record: &T,
        timestamp: i64,
        window: &TimeWindow,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult;

    /// An event-time timer of `window` is due.
    fn on_event_time(&self, time: i64, window: &TimeWindow, ctx: &mut TriggerContext<'_>) -> TriggerResult;

    /// A processing-time timer of `window` is due.
    fn on_processing_time(&self, time: i64, window: &TimeWindow, ctx: &mut TriggerContext<'_>) -> TriggerResult;

    /// Whether the trigger works with merging (session) windows.
    fn can_merge(&self) -> bool {
        false
    }

    /// `merged_from` became `window`; their timers were cleared already.
    fn on_merge(&self, _window: &TimeWindow, _merged_from: &[TimeWindow], _ctx: &mut TriggerContext<'_>) {}

    /// The window is gone: delete its timers and state.
    fn clear(&self, window: &TimeWindow, ctx: &mut TriggerContext<'_>);
}

/// Fires when the watermark passes the end of the window, and again for
/// every late record within the allowed lateness (Flink's `EventTimeTrigger`).
#[derive(Clone, Copy, Debug, Default)]
pub struct EventTimeTrigger;

impl<T> Trigger<T> for EventTimeTrigger {
    fn on_element(&self, _: &T, _: i64, window: &TimeWindow, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        if window.max_timestamp() <= ctx.current_watermark() {
            // Late but within the allowed lateness: an updated result now.
            return TriggerResult::Fire;
        }
        ctx.register_event_time_timer(window, window.max_timestamp());
        TriggerResult::Continue
    }

    fn on_event_time(&self, time: i64, window: &TimeWindow, _: &mut TriggerContext<'_>) -> TriggerResult {
        if time == window.max_timestamp() { TriggerResult::Fire } else { TriggerResult::Continue }
    }

    fn on_processing_time(&self, _: i64, _: &TimeWindow, _: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, window: &TimeWindow, _: &[TimeWindow], ctx: &mut TriggerContext<'_>) {
        if window.max_timestamp() > ctx.current_watermark() {
            ctx.register_event_time_timer(window, window.max_timestamp());
        }
    }

    fn clear(&self, window: &TimeWindow, ctx: &mut TriggerContext<'_>) {
        ctx.delete_event_time_timer(window, window.max_timestamp());
    }
}

/// Fires when the wall clock passes the end of the window (Flink's `ProcessingTimeTrigger`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessingTimeTrigger;

impl<T> Trigger<T> for ProcessingTimeTrigger {
    fn on_element(&self, _: &T, _: i64, window: &TimeWindow, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        ctx.register_processing_time_timer(window, window.max_timestamp());
        TriggerResult::Continue
    }

    fn on_event_time(&self, _: i64, _: &TimeWindow, _: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(&self, _: i64, _: &TimeWindow, _: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Fire
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, window: &TimeWindow, _: &[TimeWindow], ctx: &mut TriggerContext<'_>) {
        if window.max_timestamp() > ctx.current_processing_time() {
            ctx.register_processing_time_timer(window, window.max_timestamp());
        }
    }

    fn clear(&self, window: &TimeWindow, ctx: &mut TriggerContext<'_>) {
        ctx.delete_processing_time_timer(window, window.max_timestamp());
    }
}

/// Fires once a window holds `count` records, then starts counting again
/// (Flink's `CountTrigger`).
#[derive(Clone, Copy, Debug)]
pub struct CountTrigger {
    count: u64,
}

impl CountTrigger {
    const STATE: &'static str = "count";

    /// Fires every `count` records (at least 1).
    pub fn of(count: u64) -> Self {
        Self { count: count.max(1) }
    }
}

impl<T> Trigger<T> for CountTrigger {
    fn on_element(&self, _: &T, _: i64, window: &TimeWindow, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        let seen = ctx.state::<u64>(Self::STATE, window).unwrap_or(0) + 1;
        if seen >= self.count {
            ctx.clear_state(Self::STATE, window);
            return TriggerResult::Fire;
        }
        ctx.set_state(Self::STATE, window, &seen);
        TriggerResult::Continue
    }

    fn on_event_time(&self, _: i64, _: &TimeWindow, _: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(&self, _: i64, _: &TimeWindow, _: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, window: &TimeWindow, merged_from: &[TimeWindow], ctx: &mut TriggerContext<'_>) {
        let total: u64 = merged_from.iter().map(|old| ctx.state::<u64>(Self::STATE, old).unwrap_or(0)).sum();
        for old in merged_from {
            ctx.clear_state(Self::STATE, old);
        }
        ctx.set_state(Self::STATE, window, &total);
    }

    fn clear(&self, window: &TimeWindow, ctx: &mut TriggerContext<'_>) {
        ctx.clear_state(Self::STATE, window);
    }
}

/// Turns every firing of the wrapped trigger into fire-and-purge (Flink's `PurgingTrigger`).
#[derive(Clone, Copy, Debug)]
pub struct PurgingTrigger<Tr>(pub Tr);

impl<Tr> PurgingTrigger<Tr> {
    /// Purges whenever `trigger` fires.
    pub fn of(trigger: Tr) -> Self {
        Self(trigger)
    }
}

fn purging(result: TriggerResult) -> TriggerResult {
    if result.fires() { TriggerResult::FireAndPurge } else { result }
}

impl<T, Tr: Trigger<T>> Trigger<T> for PurgingTrigger<Tr> {
    fn on_element(
        &self,
        record: &T,
        timestamp: i64,
        window: &TimeWindow,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        purging(self.0.on_element(record, timestamp, window, ctx))
    }

    fn on_event_time(&self, time: i64, window: &TimeWindow, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        purging(self.0.on_event_time(time, window, ctx))
    }

    fn on_processing_time(&self, time: i64, window: &TimeWindow, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        purging(self.0.on_processing_time(time, window, ctx))
    }

    fn can_merge(&self) -> bool {
        self.0.can_merge()
    }

    fn on_merge(&self, window: &TimeWindow, merged_from: &[TimeWindow], ctx: &mut TriggerContext<'_>) {
        self.0.on_merge(window, merged_from, ctx);
    }

    fn clear(&self, window: &TimeWindow, ctx: &mut TriggerContext<'_>) {
        self.0.clear(window, ctx);
    }
}

/// Never fires: the default of global windows, which need a trigger of their own.
#[derive(Clone, Copy, Debug, Default)]
pub struct NeverTrigger;

impl<T> Trigger<T> for NeverTrigger {
    fn on_element(&self, _: &T, _: i64, _: &TimeWindow, _: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_event_time(&self, _: i64, _: &TimeWindow, _: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(&self, _: i64, _: &TimeWindow, _: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn clear(&self, _: &TimeWindow, _: &mut TriggerContext<'_>) {}
}
