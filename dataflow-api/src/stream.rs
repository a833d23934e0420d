//! `DataStream`: the builder users chain transformations on.
//!
//! Every method adds a node to the environment's logical graph and returns a
//! handle to the new stream; nothing runs until `StreamEnv::execute`.

use std::fmt::Display;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

use weir_common::{OperatorKind, Partitioning};
use weir_worker::TaskError;

use crate::data::Key;
use crate::graph::{
    BuildFanOut, BuildInputTask, BuildOperator, BuildSideFanOut, LogicalEdge, Node, NodeBody, NodeId, SideOutputRef,
};
use crate::operators::filter::Filter;
use crate::operators::flat_map::FlatMap;
use crate::operators::map::{Map, TryMap};
use crate::operators::process::{Process, ProcessContext};
use crate::operators::timestamps::TimestampsAndWatermarks;
use crate::partition::{KeySelector, PlainWriters};
use crate::push::{ChannelInput, Discard, ErasedPush, Outputs, Push, SidePush, SideSlot, fan_out};
use crate::sinks::collect::CollectHandle;
use crate::sinks::file_sink::ExactlyOnceFileSink;
use crate::sinks::print::{PrintSink, PrintTarget};
use crate::sinks::text_file::TextFileSink;
use crate::watermarks::WatermarkStrategy;
use crate::{Data, KeyedStream, OutputTag, StreamEnv};

/// A stream of records of type `T`.
pub struct DataStream<T> {
    pub(crate) env: StreamEnv,
    pub(crate) node: NodeId,
    /// Partitioning chosen for the next edge (`rebalance`, `broadcast`).
    pub(crate) partitioning: Option<Partitioning>,
    /// The job (of `env`) this handle belongs to.
    pub(crate) generation: u64,
    /// `Some`: this stream is a side output of `node`, not its main output.
    pub(crate) side: Option<SideOutputRef>,
    pub(crate) marker: PhantomData<fn() -> T>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        Self {
            env: self.env.clone(),
            node: self.node,
            partitioning: self.partitioning,
            generation: self.generation,
            side: self.side.clone(),
            marker: PhantomData,
        }
    }
}

/// The end of a pipeline; configures the sink operator.
pub struct DataStreamSink {
    env: StreamEnv,
    node: NodeId,
    generation: u64,
}

impl<T: Data> DataStream<T> {
    pub(crate) fn new(env: StreamEnv, node: NodeId) -> Self {
        let generation = env.generation();
        Self { env, node, partitioning: None, generation, side: None, marker: PhantomData }
    }

    /// The side output `tag` of the operator that produced this stream
    /// (Flink's `getSideOutput`), e.g. the late records of a window.
    pub fn side_output<S: Data>(&self, tag: &OutputTag<S>) -> DataStream<S> {
        self.check_current();
        let side = SideOutputRef { id: tag.id(), fan_out: side_fan_out_of::<S>() };
        DataStream {
            env: self.env.clone(),
            node: self.node,
            partitioning: None,
            generation: self.generation,
            side: Some(side),
            marker: PhantomData,
        }
    }

    /// Transforms every record into one record.
    pub fn map<U, F>(&self, function: F) -> DataStream<U>
    where
        U: Data,
        F: FnMut(T) -> U + Clone + Send + Sync + 'static,
    {
        self.transform::<U>("Map", OperatorKind::Transform, vec![self.edge()], move |context, next| {
            let next = next.into_typed::<U>()?;
            let function = function.clone();
            Ok(ErasedPush::new::<T>(Box::new(Map { name: context.operator_name.clone(), function, next })))
        })
    }

    /// Transforms every record with a function that may fail; an error fails
    /// the job with the operator's name and the error (use it to reject
    /// malformed input loudly rather than drop it).
    pub fn try_map<U, E, F>(&self, function: F) -> DataStream<U>
    where
        U: Data,
        E: Display,
        F: FnMut(T) -> Result<U, E> + Clone + Send + Sync + 'static,
    {
        self.transform::<U>("Map", OperatorKind::Transform, vec![self.edge()], move |context, next| {
            let next = next.into_typed::<U>()?;
            let function = function.clone();
            Ok(ErasedPush::new::<T>(Box::new(TryMap { name: context.operator_name.clone(), function, next })))
        })
    }

    /// Keeps the records for which `predicate` returns true.
    pub fn filter<F>(&self, predicate: F) -> DataStream<T>
    where
        F: FnMut(&T) -> bool + Clone + Send + Sync + 'static,
    {
        self.transform::<T>("Filter", OperatorKind::Transform, vec![self.edge()], move |context, next| {
            let next = next.into_typed::<T>()?;
            let predicate = predicate.clone();
            Ok(ErasedPush::new::<T>(Box::new(Filter { name: context.operator_name.clone(), predicate, next })))
        })
    }

    /// Transforms every record into any number of records.
    pub fn flat_map<U, I, F>(&self, function: F) -> DataStream<U>
    where
        U: Data,
        I: IntoIterator<Item = U>,
        F: FnMut(T) -> I + Clone + Send + Sync + 'static,
    {
        self.transform::<U>("FlatMap", OperatorKind::Transform, vec![self.edge()], move |context, next| {
            let next = next.into_typed::<U>()?;
            let function = function.clone();
            Ok(ErasedPush::new::<T>(Box::new(FlatMap { name: context.operator_name.clone(), function, next })))
        })
    }

    /// Calls `function` for every record with a context that emits results
    /// (and side outputs, see [`DataStream::side_output`]).
    pub fn process<U, F>(&self, function: F) -> DataStream<U>
    where
        U: Data,
        F: FnMut(T, &mut ProcessContext<'_, U>) + Clone + Send + Sync + 'static,
    {
        self.transform::<U>("Process", OperatorKind::Transform, vec![self.edge()], move |context, next| {
            let outputs = next.into_typed_with_sides::<U>()?;
            let function = function.clone();
            let name = context.operator_name.clone();
            let (subtask, timestamp) = (context.subtask, context.timestamp.clone());
            Ok(ErasedPush::new::<T>(Box::new(Process { name, subtask, function, timestamp, outputs })))
        })
    }

    /// Gives records event-time timestamps and generates watermarks, per
    /// parallel instance, as `strategy` says (Flink's
    /// `assignTimestampsAndWatermarks`). Watermarks that reach it from
    /// upstream are dropped, except the end of input.
    pub fn assign_timestamps_and_watermarks(&self, strategy: WatermarkStrategy<T>) -> DataStream<T> {
        let name = "Timestamps/Watermarks";
        self.transform::<T>(name, OperatorKind::Transform, vec![self.edge()], move |context, next| {
            let next = next.into_typed::<T>()?;
            let operator = TimestampsAndWatermarks::new(context.clone(), strategy.clone(), next);
            Ok(ErasedPush::new::<T>(Box::new(operator)))
        })
    }

    /// Partitions the stream by key: records with equal keys go to the same
    /// parallel instance of the next operator.
    pub fn key_by<K, F>(&self, key: F) -> KeyedStream<T, K>
    where
        K: Key,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        let key: KeySelector<T, K> = Arc::new(key);
        KeyedStream { stream: self.clone(), key }
    }

    /// Merges this stream with others of the same type.
    pub fn union(&self, others: &[DataStream<T>]) -> DataStream<T> {
        for other in others {
            if !other.env.same_as(&self.env) {
                self.env.misuse("union of streams from different environments".into());
            }
        }
        let inputs = std::iter::once(self).chain(others).map(DataStream::edge).collect();
        self.transform::<T>("Union", OperatorKind::Transform, inputs, |context, next| {
            let next = next.into_typed::<T>()?;
            let pass = |record: T| record;
            Ok(ErasedPush::new::<T>(Box::new(Map { name: context.operator_name.clone(), function: pass, next })))
        })
    }

    /// Spreads records round robin over the next operator's instances.
    pub fn rebalance(&self) -> DataStream<T> {
        Self { partitioning: Some(Partitioning::Rebalance), ..self.clone() }
    }

    /// Sends every record to every instance of the next operator.
    pub fn broadcast(&self) -> DataStream<T> {
        Self { partitioning: Some(Partitioning::Broadcast), ..self.clone() }
    }

    /// Sets the stable id that state is matched against across runs.
    pub fn uid(self, uid: impl Into<String>) -> Self {
        self.configure("uid", |node| node.uid = Some(uid.into()));
        self
    }

    /// Sets the operator's name, shown in logs and errors.
    pub fn name(self, name: impl Into<String>) -> Self {
        self.configure("name", |node| node.name = name.into());
        self
    }

    /// Sets the operator's parallelism (default: the environment's).
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        self.configure("set_parallelism", |node| node.parallelism = Some(parallelism));
        self
    }

    /// Runs the operator in its own task, chained neither to its input nor to its consumers.
    pub fn disable_chaining(self) -> Self {
        self.configure("disable_chaining", |node| node.chainable = false);
        self
    }

    /// Prints every record on its own line to standard output.
    pub fn print(&self) -> DataStreamSink
    where
        T: Display,
    {
        self.sink("Sink: Print", |context| Ok(Box::new(PrintSink::new(context.clone(), PrintTarget::Stdout))))
    }

    /// Prints every record on its own line to standard error.
    pub fn print_to_err(&self) -> DataStreamSink
    where
        T: Display,
    {
        self.sink("Sink: Print to Std. Err", |context| {
            Ok(Box::new(PrintSink::new(context.clone(), PrintTarget::Stderr)))
        })
    }

    /// Writes every record as a line of text (see `sinks::text_file` for the layout).
    pub fn write_as_text(&self, path: impl Into<PathBuf>) -> DataStreamSink
    where
        T: Display,
    {
        let path = path.into();
        let name = format!("Sink: Text File {}", path.display());
        self.sink(&name, move |context| Ok(Box::new(TextFileSink::create(context.clone(), &path)?)))
    }

    /// Writes every record as a line into part files in directory `dir`,
    /// exactly once: lines become visible (files `part-…`) only when a
    /// checkpoint that covers them completes, or at the end of input; hidden
    /// `.part-…` files are in progress. See `sinks::file_sink`.
    pub fn sink_to_files(&self, dir: impl Into<PathBuf>) -> DataStreamSink
    where
        T: Display,
    {
        let dir = dir.into();
        let name = format!("Sink: Files {}", dir.display());
        self.sink(&name, move |context| Ok(Box::new(ExactlyOnceFileSink::create(context.clone(), &dir)?)))
    }

    /// Collects every record in memory; read them from the handle after `execute`.
    pub fn collect(&self) -> CollectHandle<T> {
        let handle = CollectHandle::new();
        let shared = handle.clone();
        self.sink("Sink: Collect", move |_| Ok(Box::new(shared.sink())));
        handle
    }

    /// Drops every record (for benchmarks and tests of side effects).
    pub fn discard(&self) -> DataStreamSink {
        self.sink("Sink: Discard", |_| Ok(Box::new(Discard)))
    }

    /// Changes the operator that produced this stream.
    fn configure(&self, setting: &str, update: impl FnOnce(&mut Node)) {
        if self.side.is_some() {
            self.env.misuse(format!(
                "{setting}() was called on a side output; call it on the operator that produces the side output"
            ));
            return;
        }
        if self.partitioning.is_some() {
            self.env.misuse(format!(
                "{setting}() was called after rebalance()/broadcast(); call it on the operator before the partitioning"
            ));
            return;
        }
        self.env.update_node(self.node, self.generation, update);
    }

    /// Reports a handle of an earlier job as a misuse.
    pub(crate) fn check_current(&self) {
        if self.generation != self.env.generation() {
            self.env.misuse(crate::env::STALE_HANDLE.to_owned());
        }
    }

    /// The edge from this stream to a consumer.
    pub(crate) fn edge(&self) -> LogicalEdge {
        self.check_current();
        LogicalEdge {
            from: self.node,
            partitioning: self.partitioning,
            writers: Arc::new(PlainWriters::<T>::new()),
            side: self.side.clone(),
        }
    }

    /// Adds an operator node with input `T` and output `U`.
    pub(crate) fn transform<U: Data>(
        &self,
        name: &str,
        kind: OperatorKind,
        inputs: Vec<LogicalEdge>,
        build: impl Fn(&crate::operators::OperatorContext, Outputs) -> Result<ErasedPush, TaskError> + Send + Sync + 'static,
    ) -> DataStream<U> {
        let build: BuildOperator = Arc::new(build);
        let node = self.env.add_node(operator_node::<T, U>(name, kind, inputs, build));
        DataStream::new(self.env.clone(), node)
    }

    fn sink<S>(
        &self,
        name: &str,
        create: impl Fn(&crate::operators::OperatorContext) -> Result<Box<S>, TaskError> + Send + Sync + 'static,
    ) -> DataStreamSink
    where
        S: Push<T> + 'static,
    {
        let stream = self.transform::<()>(name, OperatorKind::Sink, vec![self.edge()], move |context, _next| {
            let sink: Box<dyn Push<T>> = create(context)?;
            Ok(ErasedPush::new::<T>(sink))
        });
        DataStreamSink { env: stream.env, node: stream.node, generation: stream.generation }
    }
}

impl DataStreamSink {
    /// Sets the sink's stable id, which its state (the exactly-once file
    /// sink's pending files) is matched against across runs.
    pub fn uid(self, uid: impl Into<String>) -> Self {
        self.env.update_node(self.node, self.generation, |node| node.uid = Some(uid.into()));
        self
    }

    /// Sets the sink's name, shown in logs and errors.
    pub fn name(self, name: impl Into<String>) -> Self {
        self.env.update_node(self.node, self.generation, |node| node.name = name.into());
        self
    }

    /// Sets the sink's parallelism.
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        self.env.update_node(self.node, self.generation, |node| node.parallelism = Some(parallelism));
        self
    }
}

/// A node for an operator consuming `In` and producing `Out`.
pub(crate) fn operator_node<In: Data, Out: Data>(
    name: &str,
    kind: OperatorKind,
    inputs: Vec<LogicalEdge>,
    build: BuildOperator,
) -> Node {
    Node {
        name: name.to_owned(),
        uid: None,
        kind,
        parallelism: None,
        chainable: true,
        inputs,
        body: NodeBody::Operator { build, input_task: input_task::<In>() },
        fan_out: fan_out_of::<Out>(),
    }
}

/// Wraps a chain head consuming `T` into a task fed by channels.
pub(crate) fn input_task<T: Data>() -> BuildInputTask {
    Arc::new(|head: ErasedPush, context: &crate::operators::OperatorContext| {
        let head = head.into_typed::<T>()?;
        let task_name = context.operator_name.clone();
        let timestamp = context.timestamp.clone();
        Ok(Box::new(ChannelInput { head, task_name, timestamp }) as Box<dyn weir_worker::InputTask>)
    })
}

/// Joins the consumers of a side output carrying `S`.
pub(crate) fn side_fan_out_of<S: Data>() -> BuildSideFanOut {
    Arc::new(|targets: Vec<ErasedPush>| {
        let typed = targets.into_iter().map(ErasedPush::into_typed::<S>).collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(SideSlot(fan_out(typed))) as Box<dyn SidePush>)
    })
}

/// Joins the consumers of a node producing `T`.
pub(crate) fn fan_out_of<T: Data>() -> BuildFanOut {
    Arc::new(|targets: Vec<ErasedPush>| {
        let typed = targets.into_iter().map(ErasedPush::into_typed::<T>).collect::<Result<Vec<_>, _>>()?;
        Ok(ErasedPush::new::<T>(fan_out(typed)))
    })
}
