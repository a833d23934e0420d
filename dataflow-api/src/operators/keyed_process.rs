//! `KeyedStream::process`: a [`KeyedProcessFunction`] per record, with keyed
//! state and timers of the current key (Flink's `KeyedProcessOperator`).
//!
//! Timers are kept per key in the keyed-state backend (so checkpoints capture
//! them) and fire in timestamp order: event-time timers when the watermark
//! reaches them, processing-time timers when the wall clock does (checked at
//! every flush of the task). At the end of input every event-time timer
//! fires, as the final watermark reaches all of them; pending processing-time
//! timers do not, since their time has not come.

use weir_common::CheckpointId;
use weir_state::keyed::{KeyedStateBackend, StateError, TimeDomain, Timer, TimerService};
use weir_worker::blame::BlameGuard;
use weir_worker::{NO_TIMESTAMP, TaskError, Watermark};

use crate::Data;
use crate::OutputTag;
use crate::checkpointing::{ChainSnapshot, KeyedCheckpoints};
use crate::collector::Collector;
use crate::data::Key;
use crate::operators::OperatorContext;
use crate::operators::window::now_millis;
use crate::partition::KeySelector;
use crate::push::{ChainLink, Push, TypedOutputs, pass_on};

/// What a process function may fail with: any error; the job fails with it.
pub type ProcessError = Box<dyn std::error::Error + Send + Sync>;

/// Processes the records of a keyed stream one by one, with the key's state
/// and timers (Flink's `KeyedProcessFunction`). One clone runs per parallel
/// instance.
pub trait KeyedProcessFunction<K, In, Out>: Clone + Send + Sync + 'static {
    /// Declares the state the function uses, once per instance before any
    /// record: keep the handles `state.register_*` returns.
    fn open(&mut self, state: &mut KeyedStateBackend<K>) -> Result<(), StateError> {
        let _ = state;
        Ok(())
    }

    /// Called for every record, with the record's key current.
    fn process_element(&mut self, record: In, ctx: &mut KeyedContext<'_, K, Out>) -> Result<(), ProcessError>;

    /// Called when a timer of the current key fires; `ctx.time_domain()` says which kind.
    fn on_timer(&mut self, timestamp: i64, ctx: &mut KeyedContext<'_, K, Out>) -> Result<(), ProcessError> {
        let _ = (timestamp, ctx);
        Ok(())
    }
}

/// The key, its state and timers, the clocks, and where results go.
pub struct KeyedContext<'a, K, Out> {
    key: &'a K,
    state: &'a mut KeyedStateBackend<K>,
    timers: &'a TimerService<()>,
    watermark: i64,
    timestamp: Option<i64>,
    domain: Option<TimeDomain>,
    out: Collector<'a, Out>,
}

impl<K: Key, Out> KeyedContext<'_, K, Out> {
    /// The current key.
    pub fn key(&self) -> &K {
        self.key
    }

    /// The timestamp of the record being processed, or of the firing timer.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// `None` while processing a record; the firing timer's domain in `on_timer`.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.domain
    }

    /// The operator's current event time.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// The wall clock, in milliseconds since the epoch.
    pub fn current_processing_time(&self) -> i64 {
        now_millis()
    }

    /// The keyed state, with the current key set.
    pub fn state(&mut self) -> &mut KeyedStateBackend<K> {
        self.state
    }

    /// Calls `on_timer` for the current key once the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: i64) -> Result<(), StateError> {
        self.state.register_timer(self.timers, TimeDomain::EventTime, (), time)
    }

    /// Calls `on_timer` for the current key once the wall clock reaches `time`.
    pub fn register_processing_time_timer(&mut self, time: i64) -> Result<(), StateError> {
        self.state.register_timer(self.timers, TimeDomain::ProcessingTime, (), time)
    }

    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, time: i64) -> Result<(), StateError> {
        self.state.delete_timer(self.timers, TimeDomain::EventTime, (), time)
    }

    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, time: i64) -> Result<(), StateError> {
        self.state.delete_timer(self.timers, TimeDomain::ProcessingTime, (), time)
    }

    /// Emits a result downstream.
    pub fn collect(&mut self, record: Out) {
        self.out.collect(record);
    }

    /// Emits a result downstream with the event-time timestamp `timestamp`.
    pub fn collect_at(&mut self, record: Out, timestamp: i64) {
        self.out.collect_at(record, timestamp);
    }

    /// Emits a record to the side output `tag`.
    pub fn output<S: 'static>(&mut self, tag: &OutputTag<S>, record: S) {
        self.out.output(tag, record);
    }
}

pub(crate) struct KeyedProcess<F, K, In, Out> {
    context: OperatorContext,
    key: KeySelector<In, K>,
    function: F,
    state: KeyedStateBackend<K>,
    timers: TimerService<()>,
    watermark: i64,
    checkpoints: KeyedCheckpoints,
    outputs: TypedOutputs<Out>,
}

impl<F, K, In, Out> KeyedProcess<F, K, In, Out>
where
    F: KeyedProcessFunction<K, In, Out>,
    K: Key,
    In: Data,
    Out: Data,
{
    pub(crate) fn new(
        context: OperatorContext,
        key: KeySelector<In, K>,
        mut function: F,
        outputs: TypedOutputs<Out>,
    ) -> Result<Self, TaskError> {
        let mut state = context.keyed_state_backend::<K>()?;
        let failed = |error: StateError| context.error(format!("cannot set up its state: {error}"));
        let timers = state.register_timer_service("process-timers").map_err(failed)?;
        let guard = BlameGuard::new(&context.operator_name);
        let opened = function.open(&mut state);
        guard.disarm();
        opened.map_err(failed)?;
        Ok(Self {
            context,
            key,
            function,
            state,
            timers,
            watermark: i64::MIN,
            checkpoints: KeyedCheckpoints::default(),
            outputs,
        })
    }

    fn failed(&self, error: impl std::fmt::Display) -> TaskError {
        self.context.error(error.to_string())
    }

    /// Runs `call` on the function with a context for `key` whose results carry `result_timestamp`.
    fn call(
        &mut self,
        key: &K,
        timestamp: Option<i64>,
        domain: Option<TimeDomain>,
        call: impl FnOnce(&mut F, &mut KeyedContext<'_, K, Out>) -> Result<(), ProcessError>,
    ) -> Result<(), TaskError> {
        let out = Collector::new(&mut self.outputs, &self.context.timestamp, timestamp.unwrap_or(NO_TIMESTAMP));
        let mut ctx = KeyedContext {
            key,
            state: &mut self.state,
            timers: &self.timers,
            watermark: self.watermark,
            timestamp,
            domain,
            out,
        };
        let guard = BlameGuard::new(&self.context.operator_name);
        let result = call(&mut self.function, &mut ctx);
        guard.disarm();
        let emitted = ctx.out.into_result();
        result.map_err(|error| self.context.error(error.to_string()))?;
        emitted
    }

    fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<(), TaskError> {
        loop {
            let due = self.state.fire_timers(&self.timers, domain, time).map_err(|error| self.failed(error))?;
            if due.is_empty() {
                return Ok(());
            }
            for Timer { timestamp, key, .. } in due {
                self.state.set_current_key(key.clone()).map_err(|error| self.failed(error))?;
                // Results of event-time timers carry the timer's time; of
                // processing-time timers, no event time.
                let result_time = (domain == TimeDomain::EventTime).then_some(timestamp);
                self.call(&key, result_time, Some(domain), |function, ctx| function.on_timer(timestamp, ctx))?;
            }
        }
    }
}

impl<F, K, In, Out> Push<In> for KeyedProcess<F, K, In, Out>
where
    F: KeyedProcessFunction<K, In, Out>,
    K: Key,
    In: Data,
    Out: Data,
{
    fn push(&mut self, record: In) -> Result<(), TaskError> {
        let guard = BlameGuard::new(&self.context.operator_name);
        let key = (self.key)(&record);
        guard.disarm();
        self.state.set_current_key(key.clone()).map_err(|error| self.failed(error))?;
        let timestamp = self.context.timestamp.timestamp();
        self.call(&key, timestamp, None, |function, ctx| function.process_element(record, ctx))
    }
}

impl<F, K, In, Out> ChainLink for KeyedProcess<F, K, In, Out>
where
    F: KeyedProcessFunction<K, In, Out>,
    K: Key,
    In: Data,
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
            self.watermark = self.watermark.max(time);
            self.fire_timers(TimeDomain::EventTime, time)?;
        }
        pass_on(self, |next| next.watermark(mark))
    }

    fn checkpoint(&mut self, chain: &mut ChainSnapshot<'_>) -> Result<(), TaskError> {
        self.checkpoints.snapshot(&mut self.state, &self.context, chain)?;
        pass_on(self, |next| next.checkpoint(chain))
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        self.checkpoints.complete(&mut self.state, id);
        pass_on(self, |next| next.checkpoint_complete(id))
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        self.watermark = i64::MAX;
        self.fire_timers(TimeDomain::EventTime, i64::MAX)?;
        pass_on(self, |next| next.finish())
    }
}
