//! Tasks: one parallel instance of a vertex, run as one loop on one thread.
//!
//! The loop takes the next event from the input gate (or, for a source, asks
//! the source for more records) and hands it to the task's operator chain, so
//! operator code is single-threaded and needs no locks. Between events it
//! flushes partly filled output buffers once the flush interval has passed, so
//! records never wait in a buffer longer than that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use weir_common::{CheckpointId, JobEdge, KeyGroupRange, MaxParallelism, Partitioning, SubtaskIndex, VertexId};
use weir_state::storage::CheckpointStorage;

use weir_common::TaskKey;
use weir_common::checkpoint::layout;

use crate::checkpoint::{
    CheckpointReport, FinishedState, RestoredCheckpoint, SnapshotTarget, TaskControl, TaskReport, TaskSnapshot,
    checkpoint_dir,
};
use crate::input_gate::GateEvent;
use crate::{Barrier, Batch, CancelToken, Event, InputGate, OutputChannel, TaskError, Watermark, WatermarkValve};

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

    /// Sends a checkpoint barrier to every downstream subtask.
    pub fn barrier(&self, barrier: Barrier) -> Result<(), TaskError> {
        self.channels.iter().try_for_each(|channel| channel.send(Event::Barrier(barrier)))
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
    /// The checkpoint the job starts from, if any.
    pub restore: Option<Arc<RestoredCheckpoint>>,
    /// Unique to this run of the job, shared by its tasks (names of files a
    /// run writes, so a restarted run can tell its own from a failed run's).
    pub run_id: Arc<str>,
    /// With checkpointing: where operators leave their final state when the
    /// task finishes.
    pub finishing: Option<Arc<FinishedState>>,
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
    /// Takes checkpoint `target.id`: snapshots the source's position and
    /// the chain's state, and sends the barrier downstream.
    fn checkpoint(&mut self, target: &SnapshotTarget) -> Result<TaskSnapshot, TaskError>;
    /// Checkpoint `id` completed: commit what it covers.
    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError>;
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
    /// Barrier `target.id` arrived on every input: snapshot the chain's
    /// state and send the barrier downstream.
    fn checkpoint(&mut self, target: &SnapshotTarget) -> Result<TaskSnapshot, TaskError>;
    /// Checkpoint `id` completed: commit what it covers.
    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError>;
}

/// A task's line to the checkpoint driver.
pub struct TaskCheckpointing {
    /// The task, as its reports name it.
    pub key: TaskKey,
    /// Commands from the driver.
    pub control: Receiver<TaskControl>,
    /// Acks and declines to the driver.
    pub reports: Sender<TaskReport>,
    /// Where snapshots go.
    pub storage: Arc<dyn CheckpointStorage>,
    /// The job run's directory in the storage.
    pub job_id: String,
    /// What the task's operators leave when it finishes.
    pub finishing: Arc<FinishedState>,
}

impl TaskCheckpointing {
    fn target(&self, id: CheckpointId, savepoint: bool) -> Result<SnapshotTarget, TaskError> {
        let storage_error = |error: weir_state::storage::StorageError| TaskError::Operator {
            operator: "checkpoint".into(),
            message: error.to_string(),
        };
        let dir = checkpoint_dir(&self.job_id, id, savepoint).map_err(storage_error)?;
        let private_dir = dir.join(&layout::task_dir_name(self.key)).map_err(storage_error)?;
        let shared_dir =
            weir_state::storage::StoragePath::new(layout::shared_dir(&self.job_id)).map_err(storage_error)?;
        Ok(SnapshotTarget { id, savepoint, storage: self.storage.clone(), private_dir, shared_dir })
    }

    /// Runs a snapshot and reports its outcome. An operator's failure to
    /// snapshot declines the checkpoint (the job goes on); cancellation ends the task.
    fn snapshot(
        &self,
        id: CheckpointId,
        savepoint: bool,
        take: impl FnOnce(&SnapshotTarget) -> Result<TaskSnapshot, TaskError>,
    ) -> Result<(), TaskError> {
        let report = match self.target(id, savepoint).and_then(|target| take(&target)) {
            Ok(snapshot) => TaskReport::Checkpoint(CheckpointReport::Ack { id, task: self.key, snapshot }),
            Err(TaskError::Cancelled) => return Err(TaskError::Cancelled),
            Err(error) => {
                tracing::warn!(checkpoint = id.0, task = ?self.key, %error, "task declined the checkpoint");
                let message = error.to_string();
                TaskReport::Checkpoint(CheckpointReport::Decline { id, task: self.key, message })
            }
        };
        // The driver outlives the tasks; a closed line means the job is ending.
        let _ = self.reports.send(report);
        Ok(())
    }

    /// The task finished: hands what its operators left to the driver.
    fn finished(&self) {
        let (snapshot, commits) = self.finishing.take();
        let _ = self.reports.send(TaskReport::Finished { task: self.key, snapshot, commits });
    }
}

/// Runs `finish` and, when checkpointing, reports the task finished.
fn finish_task(
    finish: impl FnOnce() -> Result<(), TaskError>,
    checkpointing: Option<&TaskCheckpointing>,
) -> Result<(), TaskError> {
    finish()?;
    if let Some(checkpointing) = checkpointing {
        checkpointing.finished();
    }
    Ok(())
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
    checkpointing: Option<&TaskCheckpointing>,
) -> Result<(), TaskError> {
    let mut deadline = FlushDeadline::new(flush_interval);
    loop {
        if cancel.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        if let Some(checkpointing) = checkpointing {
            while let Ok(command) = checkpointing.control.try_recv() {
                match command {
                    TaskControl::Trigger { id, savepoint } => {
                        checkpointing.snapshot(id, savepoint, |target| source.checkpoint(target))?;
                    }
                    TaskControl::Complete(id) => source.checkpoint_complete(id)?,
                    TaskControl::Stop => return Err(TaskError::Cancelled),
                }
            }
        }
        match source.emit()? {
            SourceStep::Emitted => {}
            SourceStep::Idle(pause) => {
                std::thread::sleep(pause.clamp(MIN_IDLE_SLEEP, crate::channel::CANCEL_POLL));
            }
            SourceStep::Finished => return finish_task(|| source.finish(), checkpointing),
        }
        if deadline.is_due() {
            source.flush()?;
            deadline.flushed();
        }
    }
}

/// Barrier alignment of one input task: which channels delivered the
/// barrier of the checkpoint being aligned (they are held back meanwhile).
struct Alignment {
    /// The checkpoint being aligned.
    current: Option<Barrier>,
    /// The newest checkpoint this task took or gave up.
    last: CheckpointId,
    /// Per channel: barrier received (or channel ended).
    arrived: Vec<bool>,
    started: Option<Instant>,
}

impl Alignment {
    fn new(channels: usize) -> Self {
        Self { current: None, last: CheckpointId(0), arrived: vec![false; channels], started: None }
    }

    /// Barrier `id` came on `channel`; returns whether every channel has it now.
    fn on_barrier(&mut self, gate: &mut InputGate, channel: usize, barrier: Barrier) -> bool {
        if barrier.id <= self.last {
            return false; // A barrier of a checkpoint given up already.
        }
        if self.current.is_some_and(|current| barrier.id > current.id) {
            // A newer checkpoint overtook the one being aligned: give that up.
            tracing::debug!(abandoned = ?self.current, newer = barrier.id.0, "barrier alignment restarted");
            gate.unblock_all();
            self.arrived.iter_mut().for_each(|arrived| *arrived = false);
            self.current = None;
        }
        if self.current.is_none() {
            self.current = Some(barrier);
            self.started = Some(Instant::now());
            for (index, arrived) in self.arrived.iter_mut().enumerate() {
                *arrived = gate.is_ended(index);
            }
        }
        self.arrived[channel] = true;
        gate.block(channel);
        self.is_complete()
    }

    /// `channel` ended; returns whether that completes an alignment.
    fn on_end(&mut self, channel: usize) -> bool {
        if self.current.is_none() {
            return false;
        }
        self.arrived[channel] = true;
        self.is_complete()
    }

    fn is_complete(&self) -> bool {
        self.arrived.iter().all(|arrived| *arrived)
    }

    /// The aligned checkpoint; channels are released.
    fn finish(&mut self, gate: &mut InputGate) -> Option<Barrier> {
        let barrier = self.current.take()?;
        gate.unblock_all();
        self.last = barrier.id;
        if let Some(started) = self.started.take() {
            let seconds = started.elapsed().as_secs_f64();
            metrics::histogram!("weir_checkpoint_alignment_seconds").record(seconds);
            tracing::debug!(checkpoint = barrier.id.0, alignment_ms = seconds * 1e3, "barriers aligned");
        }
        Some(barrier)
    }
}

/// Runs an input chain until every input has ended, it fails, or the job is cancelled.
pub(crate) fn run_input(
    task: &mut dyn InputTask,
    gate: &mut InputGate,
    flush_interval: Duration,
    checkpointing: Option<&TaskCheckpointing>,
) -> Result<(), TaskError> {
    let records_in = metrics::counter!("weir_task_records_in_total");
    let mut deadline = FlushDeadline::new(flush_interval);
    let mut valve = WatermarkValve::new(gate.channel_count());
    let mut alignment = Alignment::new(gate.channel_count());
    loop {
        if let Some(checkpointing) = checkpointing {
            while let Ok(command) = checkpointing.control.try_recv() {
                match command {
                    TaskControl::Complete(id) => task.checkpoint_complete(id)?,
                    TaskControl::Stop => return Err(TaskError::Cancelled),
                    TaskControl::Trigger { .. } => {}
                }
            }
        }
        let aligned = match gate.next(deadline.wait())? {
            GateEvent::Records { channel, batch } => {
                records_in.increment(batch.len() as u64);
                task.process(channel, batch)?;
                false
            }
            GateEvent::Control { channel, event: Event::Watermark(mark) } => {
                if let Some(combined) = valve.on_watermark(channel, mark) {
                    task.watermark(combined)?;
                }
                false
            }
            GateEvent::Control { channel, event: Event::Barrier(barrier) } => {
                alignment.on_barrier(gate, channel, barrier)
            }
            GateEvent::ChannelEnded { channel } => {
                if let Some(combined) = valve.on_end(channel) {
                    task.watermark(combined)?;
                }
                alignment.on_end(channel)
            }
            GateEvent::Control { event, .. } => {
                return Err(TaskError::Operator {
                    operator: "input gate".into(),
                    message: format!("unexpected control event {event:?}"),
                });
            }
            GateEvent::Idle => false,
            GateEvent::Finished => return finish_task(|| task.finish(), checkpointing),
        };
        if aligned && let Some(Barrier { id, savepoint }) = alignment.finish(gate) {
            match checkpointing {
                Some(checkpointing) => checkpointing.snapshot(id, savepoint, |target| task.checkpoint(target))?,
                None => {
                    return Err(TaskError::Operator {
                        operator: "input gate".into(),
                        message: format!("checkpoint barrier {id} in a job without checkpointing"),
                    });
                }
            }
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
