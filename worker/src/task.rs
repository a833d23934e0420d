//! Tasks: one parallel instance of a vertex, run as one loop on one thread.
//!
//! The loop takes the next event from the input gate (or, for a source, asks
//! the source for more records) and hands it to the task's operator chain, so
//! operator code is single-threaded and needs no locks. Between events it
//! flushes partly filled output buffers once the flush interval has passed, so
//! records never wait in a buffer longer than that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_common::{JobEdge, KeyGroupRange, MaxParallelism, Partitioning, SubtaskIndex, VertexId};

use crate::input_gate::GateEvent;
use crate::{Batch, CancelToken, Event, InputGate, OutputChannel, TaskError, Watermark, WatermarkValve};

/// The channels of one output edge of a task, indexed by downstream subtask
/// (a forward edge has exactly one).
#[derive(Debug)]
pub struct EdgeOutput {
    /// How records are spread over `channels`.
    pub partitioning: Partitioning,
    /// One channel per reachable downstream subtask.
    pub channels: Vec<OutputChannel>,
}

impl EdgeOutput {
    /// Sends a batch to the channel at `index`; empty batches are not sent.
    pub fn send_batch(&self, index: usize, batch: Batch) -> Result<(), TaskError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.channels[index].send(Event::Records(batch))
    }

    /// Sends a watermark to every downstream subtask.
    pub fn watermark(&self, mark: Watermark) -> Result<(), TaskError> {
        self.channels.iter().try_for_each(|channel| channel.send(Event::Watermark(mark)))
    }

    /// Tells every downstream subtask that this task has finished.
    pub fn end_of_partition(&self) -> Result<(), TaskError> {
        self.channels.iter().try_for_each(|channel| channel.send(Event::EndOfPartition))
    }
}

/// Everything a vertex factory needs to build one task.
#[derive(Debug)]
pub struct TaskSetup {
    /// The vertex this task is an instance of.
    pub vertex: VertexId,
    /// The chain's name, for errors and logs.
    pub task_name: Arc<str>,
    /// Which instance, out of how many.
    pub subtask: SubtaskIndex,
    /// The job's number of key groups.
    pub max_parallelism: MaxParallelism,
    /// The outputs, in the order of the vertex's output edges in the job graph.
    pub outputs: Vec<EdgeOutput>,
    /// The job's cancel token, for sources that block.
    pub cancel: CancelToken,
}

impl TaskSetup {
    /// The key groups this task owns.
    pub fn key_group_range(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(self.max_parallelism, self.subtask.parallelism, self.subtask.index)
    }
}

/// Builds the tasks of one vertex; implemented by the typed layer.
pub trait VertexFactory: Send + Sync {
    /// Builds the chain of subtask `setup.subtask`, wired to `setup.outputs`.
    fn create(&self, setup: TaskSetup) -> Result<TaskBody, TaskError>;
}

/// What a task runs.
pub enum TaskBody {
    /// A chain headed by a source.
    Source(Box<dyn SourceTask>),
    /// A chain fed by input channels.
    Input(Box<dyn InputTask>),
}

/// What one call of [`SourceTask::emit`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceStep {
    /// Records were emitted; call again.
    Emitted,
    /// Nothing to emit now (for example a rate limit); call again after the pause.
    Idle(Duration),
    /// The source is exhausted.
    Finished,
}

/// A chain headed by a source.
pub trait SourceTask: Send {
    /// Emits a bounded amount of records into the chain.
    fn emit(&mut self) -> Result<SourceStep, TaskError>;
    /// Sends partly filled output buffers.
    fn flush(&mut self) -> Result<(), TaskError>;
    /// The source is exhausted: flush everything and end every output.
    fn finish(&mut self) -> Result<(), TaskError>;
}

/// A chain fed by input channels.
pub trait InputTask: Send {
    /// Processes one batch from input channel `channel`.
    fn process(&mut self, channel: usize, batch: Batch) -> Result<(), TaskError>;
    /// The task's event time advanced (the minimum over its input channels),
    /// or every input is idle.
    fn watermark(&mut self, mark: Watermark) -> Result<(), TaskError>;
    /// Sends partly filled output buffers.
    fn flush(&mut self) -> Result<(), TaskError>;
    /// Every input has ended: emit final results, flush, end every output.
    fn finish(&mut self) -> Result<(), TaskError>;
}

/// Shortest sleep of an idle source: shorter pauses would spin and send
/// batches of a record or two.
const MIN_IDLE_SLEEP: Duration = Duration::from_millis(1);

/// When partly filled output buffers are due to be sent.
struct FlushDeadline {
    interval: Duration,
    last: Instant,
}

impl FlushDeadline {
    fn new(interval: Duration) -> Self {
        Self { interval, last: Instant::now() }
    }

    fn is_due(&self) -> bool {
        self.last.elapsed() >= self.interval
    }

    fn flushed(&mut self) {
        self.last = Instant::now();
    }

    /// How long an idle task may wait for input before it must flush. A zero
    /// interval flushes after every batch, so waiting is only bounded by the
    /// cancel poll.
    fn wait(&self) -> Duration {
        if self.interval.is_zero() {
            crate::channel::CANCEL_POLL
        } else {
            self.interval.saturating_sub(self.last.elapsed()).max(Duration::from_micros(100))
        }
    }
}

/// Runs a source chain until it is exhausted, fails, or the job is cancelled.
pub(crate) fn run_source(
    source: &mut dyn SourceTask,
    flush_interval: Duration,
    cancel: &CancelToken,
) -> Result<(), TaskError> {
    let mut deadline = FlushDeadline::new(flush_interval);
    loop {
        if cancel.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        match source.emit()? {
            SourceStep::Emitted => {}
            SourceStep::Idle(pause) => {
                std::thread::sleep(pause.clamp(MIN_IDLE_SLEEP, crate::channel::CANCEL_POLL));
            }
            SourceStep::Finished => return source.finish(),
        }
        if deadline.is_due() {
            source.flush()?;
            deadline.flushed();
        }
    }
}

/// Runs an input chain until every input has ended, it fails, or the job is cancelled.
pub(crate) fn run_input(
    task: &mut dyn InputTask,
    gate: &mut InputGate,
    flush_interval: Duration,
) -> Result<(), TaskError> {
    let records_in = metrics::counter!("weir_task_records_in_total");
    let mut deadline = FlushDeadline::new(flush_interval);
    let mut valve = WatermarkValve::new(gate.channel_count());
    loop {
        match gate.next(deadline.wait())? {
            GateEvent::Records { channel, batch } => {
                records_in.increment(batch.len() as u64);
                task.process(channel, batch)?;
            }
            GateEvent::Control { channel, event: Event::Watermark(mark) } => {
                if let Some(combined) = valve.on_watermark(channel, mark) {
                    task.watermark(combined)?;
                }
            }
            GateEvent::ChannelEnded { channel } => {
                if let Some(combined) = valve.on_end(channel) {
                    task.watermark(combined)?;
                }
            }
            GateEvent::Control { event, .. } => {
                // Nothing emits barriers yet: receiving one means a sender and
                // this runtime disagree, which must not pass silently.
                return Err(TaskError::Operator {
                    operator: "input gate".into(),
                    message: format!("unexpected control event {event:?}: this runtime does not handle it yet"),
                });
            }
            GateEvent::Idle => {}
            GateEvent::Finished => return task.finish(),
        }
        if deadline.is_due() {
            task.flush()?;
            deadline.flushed();
        }
    }
}

/// The channels of one edge for one upstream subtask (`upstream` of `edge`).
pub(crate) fn reachable_subtasks(edge: &JobEdge, upstream: usize, downstream_parallelism: usize) -> Vec<usize> {
    if edge.partitioning.is_pointwise() { vec![upstream] } else { (0..downstream_parallelism).collect() }
}
