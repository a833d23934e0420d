//! `StreamEnv`: the entry point of a job. It holds the job's settings and the
//! logical graph under construction, and executes it.

use std::cell::RefCell;
use std::ops::Range;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_common::checkpoint::CheckpointConfig;
use weir_common::{JobGraph, MaxParallelism, OperatorKind};
use weir_state::storage::{CheckpointStorage, LocalDirStorage};
use weir_worker::checkpoint::CheckpointSettings;
pub use weir_worker::job::RestartStrategy;
use weir_worker::launch::{EntryError, enter_cluster, exit_for_redeployment};
use weir_worker::{CancelToken, ExecutorConfig, JobError, LocalExecutor};

use crate::args::{BackendChoice, EngineArgs};
use crate::graph::{BuildSource, JobSettings, Node, NodeBody, NodeId, compile};
use crate::operators::OperatorContext;
use crate::push::Outputs;
use crate::sources::collection::CollectionSource;
use crate::sources::{Source, SourceDriver};
use crate::stream::fan_out_of;
use crate::{DataStream, Error, FileSource, GeneratorSource, Result};
pub use weir_state::keyed::StateBackendKind as StateBackend;

pub use crate::job_client::{JobClient, JobExecutionResult};

/// Whether operators see an endless stream or a bounded input as a whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuntimeMode {
    /// Results are updated as records arrive (rolling aggregates emit every update).
    #[default]
    Streaming,
    /// Every source is bounded and results are emitted once, at the end of the
    /// input (rolling aggregates emit each key's final value only).
    Batch,
}

/// The environment a job is built in and executed by.
///
/// Cheap to clone: clones share the same job.
#[derive(Clone)]
pub struct StreamEnv {
    inner: Rc<RefCell<EnvState>>,
}

struct EnvState {
    parallelism: usize,
    max_parallelism: usize,
    mode: RuntimeMode,
    executor: ExecutorConfig,
    checkpointing: CheckpointOptions,
    restart: Option<RestartStrategy>,
    restore_from: Option<PathBuf>,
    state_backend: StateBackend,
    job_args: Vec<String>,
    nodes: Vec<Node>,
    /// Incremented by every `execute`: stream handles of earlier jobs are stale.
    generation: u64,
    /// The first misuse of the builder API, reported by `execute`/`job_graph`
    /// (the builder methods return streams, not results, as in Flink).
    misuse: Option<String>,
}

impl Default for StreamEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamEnv {
    /// A local environment with parallelism = the number of cores.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            inner: Rc::new(RefCell::new(EnvState {
                parallelism: cores,
                max_parallelism: MaxParallelism::default().get(),
                mode: RuntimeMode::default(),
                executor: ExecutorConfig::default(),
                checkpointing: CheckpointOptions::default(),
                restart: None,
                restore_from: None,
                state_backend: StateBackend::Memory,
                job_args: Vec::new(),
                nodes: Vec::new(),
                generation: 0,
                misuse: None,
            })),
        }
    }

    /// An environment configured from the process's command line; the job's
    /// own arguments are in [`StreamEnv::args`]. Also sets up logging to
    /// stderr (level from `RUST_LOG`, default `warn`).
    ///
    /// A malformed engine flag prints the problem and exits with status 2, as
    /// command-line parsers do.
    pub fn from_args() -> Self {
        init_logging();
        match Self::try_from_args(std::env::args().skip(1)) {
            Ok(env) => env,
            Err(error) => {
                eprintln!("error: {error}");
                std::process::exit(2);
            }
        }
    }

    /// Like [`StreamEnv::from_args`], from explicit arguments (without the
    /// program name), returning errors instead of exiting.
    pub fn try_from_args(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let parsed = EngineArgs::parse(args)?;
        let env = Self::new();
        {
            let mut state = env.inner.borrow_mut();
            if let Some(parallelism) = parsed.parallelism {
                state.parallelism = parallelism;
            }
            if let Some(max_parallelism) = parsed.max_parallelism {
                state.max_parallelism = max_parallelism;
            }
            if let Some(dir) = parsed.checkpoint_dir {
                state.checkpointing.dir = Some(dir);
            }
            if let Some(interval) = parsed.checkpoint_interval {
                state.checkpointing.interval = Some(interval);
            }
            match parsed.state_backend {
                Some(BackendChoice::Memory) => state.state_backend = StateBackend::Memory,
                Some(BackendChoice::RocksDb) => {
                    state.state_backend = StateBackend::RocksDb { dir: std::env::temp_dir().join("weir-rocksdb") };
                }
                None => {}
            }
            state.restore_from = parsed.from_checkpoint;
            state.job_args = parsed.job_args;
        }
        Ok(env)
    }

    /// The job's own arguments: the command line minus the engine's flags.
    pub fn args(&self) -> Vec<String> {
        self.inner.borrow().job_args.clone()
    }

    /// Sets the default parallelism of every operator.
    pub fn set_parallelism(&self, parallelism: usize) -> &Self {
        self.inner.borrow_mut().parallelism = parallelism;
        self
    }

    /// The default parallelism of every operator.
    pub fn parallelism(&self) -> usize {
        self.inner.borrow().parallelism
    }

    /// Sets the number of key groups, the upper bound of any parallelism (default 128).
    pub fn set_max_parallelism(&self, max_parallelism: usize) -> &Self {
        self.inner.borrow_mut().max_parallelism = max_parallelism;
        self
    }

    /// Chooses streaming (default) or batch semantics.
    pub fn set_runtime_mode(&self, mode: RuntimeMode) -> &Self {
        self.inner.borrow_mut().mode = mode;
        self
    }

    /// Chooses where keyed state lives (default: memory). With RocksDB,
    /// each run of a job works in its own directory below the given one,
    /// removed when the operators close.
    pub fn set_state_backend(&self, backend: StateBackend) -> &Self {
        self.inner.borrow_mut().state_backend = backend;
        self
    }

    /// How long tasks have to stop once the job is cancelled or fails before
    /// the run gives up on them and abandons their threads (Flink's
    /// `task.cancellation.timeout`, 180 s by default). A user function that
    /// blocks without end is what this guards against.
    pub fn set_task_cancellation_timeout(&self, timeout: Duration) -> &Self {
        self.inner.borrow_mut().executor.cancellation_timeout = timeout;
        self
    }

    /// The longest a record may wait in a partly filled batch before it is
    /// sent on (default 100 ms).
    pub fn set_buffer_timeout(&self, timeout: Duration) -> &Self {
        self.inner.borrow_mut().executor.flush_interval = timeout;
        self
    }

    /// Where keyed state lives.
    pub fn state_backend(&self) -> StateBackend {
        self.inner.borrow().state_backend.clone()
    }

    /// Takes a checkpoint every `interval` (Flink's `enableCheckpointing`);
    /// needs a checkpoint directory ([`StreamEnv::set_checkpoint_dir`]).
    pub fn enable_checkpointing(&self, interval: Duration) -> &Self {
        self.inner.borrow_mut().checkpointing.interval = Some(interval);
        self
    }

    /// Where checkpoints go: a directory path (or a `file://` URL).
    pub fn set_checkpoint_dir(&self, dir: impl Into<PathBuf>) -> &Self {
        self.inner.borrow_mut().checkpointing.dir = Some(dir.into());
        self
    }

    /// A checkpoint not complete after `timeout` is aborted (default 10 minutes).
    pub fn set_checkpoint_timeout(&self, timeout: Duration) -> &Self {
        self.inner.borrow_mut().checkpointing.config.timeout = timeout;
        self
    }

    /// The least time between the end of a checkpoint and the start of the next.
    pub fn set_min_pause_between_checkpoints(&self, pause: Duration) -> &Self {
        self.inner.borrow_mut().checkpointing.config.min_pause = pause;
        self
    }

    /// How many completed checkpoints are kept (default 1).
    pub fn set_retained_checkpoints(&self, count: usize) -> &Self {
        self.inner.borrow_mut().checkpointing.config.retained = count.max(1);
        self
    }

    /// How many checkpoints in a row may fail before the job fails (default 0).
    pub fn set_tolerable_checkpoint_failures(&self, count: u32) -> &Self {
        self.inner.borrow_mut().checkpointing.config.tolerable_failures = count;
        self
    }

    /// Keeps the retained checkpoints when the job is cancelled (default:
    /// deleted). They are always kept when the job fails, and deleted when it
    /// finishes.
    pub fn set_retain_checkpoints_on_cancel(&self, retain: bool) -> &Self {
        self.inner.borrow_mut().checkpointing.retain_on_cancel = retain;
        self
    }

    /// What happens when a task fails. Default: without checkpointing, the
    /// job fails; with it, up to 10 restarts from the latest checkpoint with
    /// a delay from 1 s growing 1.5× per restart up to 1 minute.
    pub fn set_restart_strategy(&self, strategy: RestartStrategy) -> &Self {
        self.inner.borrow_mut().restart = Some(strategy);
        self
    }

    /// Starts the job from a completed checkpoint (`…/<job-id>/chk-<n>`) or a
    /// savepoint directory, at any parallelism (`--from-checkpoint PATH`).
    pub fn restore_from_checkpoint(&self, path: impl Into<PathBuf>) -> &Self {
        self.inner.borrow_mut().restore_from = Some(path.into());
        self
    }

    /// Adds a source.
    pub fn source<S: Source>(&self, source: S) -> DataStream<S::Output> {
        let name = source.name();
        let bounded = source.is_bounded();
        let source = Arc::new(source);
        let build: BuildSource = Arc::new(move |context: &OperatorContext, next: Outputs| {
            let next = next.into_typed::<S::Output>()?;
            let reader = source.create_reader(context)?;
            Ok(Box::new(SourceDriver { context: context.clone(), reader, next }) as Box<dyn weir_worker::SourceTask>)
        });
        let node = self.add_node(Node {
            name,
            uid: None,
            kind: OperatorKind::Source,
            parallelism: None,
            chainable: true,
            inputs: Vec::new(),
            body: NodeBody::Source { build, bounded },
            fan_out: fan_out_of::<S::Output>(),
        });
        DataStream::new(self.clone(), node)
    }

    /// A bounded stream of the given records, split across subtasks.
    pub fn from_collection<T: crate::Data + Sync>(&self, records: impl IntoIterator<Item = T>) -> DataStream<T> {
        self.source(CollectionSource::new(records))
    }

    /// The lines of standard input (read by one instance; the source's
    /// parallelism is 1).
    pub fn read_stdin(&self) -> DataStream<String> {
        self.source(crate::sources::stdin::StdinSource).set_parallelism(1)
    }

    /// The numbers of `range`, in parallel.
    pub fn from_sequence(&self, range: Range<u64>) -> DataStream<u64> {
        let start = range.start;
        let count = range.end.saturating_sub(range.start);
        self.source(GeneratorSource::new(move |index| start + index).count(count).named("Source: Sequence"))
    }

    /// The lines of a text file, or of the files in a directory.
    pub fn read_text_file(&self, path: impl Into<PathBuf>) -> DataStream<String> {
        self.source(FileSource::lines(path))
    }

    /// Compiles the job built so far into its job graph, without running it.
    pub fn job_graph(&self, name: &str) -> Result<JobGraph> {
        let state = self.inner.borrow();
        Ok(compile(&state.nodes, &state.settings(name)?)?.graph)
    }

    /// Runs the job built so far and blocks until it ends. The environment is
    /// then empty, ready for another job, whether or not this one compiled.
    pub fn execute(&self, name: &str) -> Result<JobExecutionResult> {
        self.execute_async(name)?.wait()
    }

    /// Starts the job built so far on its own threads and returns at once; the
    /// [`JobClient`] takes savepoints, stops, cancels, and waits for the end.
    pub fn execute_async(&self, name: &str) -> Result<JobClient> {
        let (settings, compiled, executor, restore_from) = {
            let mut state = self.inner.borrow_mut();
            let compiled = state.settings(name).and_then(|settings| Ok((compile(&state.nodes, &settings)?, settings)));
            // Execute takes the job built so far, even when it does not compile.
            state.nodes.clear();
            state.misuse = None;
            state.generation += 1;
            let (compiled, settings) = compiled?;
            // Plan mode ends the process here, before anything else is checked.
            let placement = enter_cluster(&compiled.graph, name).map_err(|error| match error {
                EntryError::InvalidJob(message) => Error::InvalidJob(message),
                EntryError::Exchange(message) => Error::Job(JobError::Exchange { job: name.to_owned(), message }),
            })?;
            let mut config = state.executor_config(name)?;
            config.placement = placement;
            (settings, compiled, config, state.restore_from.clone())
        };
        let placement = executor.placement.clone();
        let restart = executor.restart.clone();
        let executor = LocalExecutor::new(executor);
        let restore = match &restore_from {
            Some(path) => crate::checkpointing::load_restore(path)
                .map_err(|message| Error::Job(JobError::Restore { job: name.to_owned(), message }))?,
            None => Vec::new(),
        };
        let (commands, command_rx) = crossbeam_channel::unbounded();
        if let Some(placement) = placement.as_ref().filter(|placement| placement.is_leader()) {
            placement.network.accept_commands(commands.clone());
        }
        let cancel = CancelToken::new();
        let job_cancel = cancel.clone();
        let job_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("job {name}"))
            .spawn(move || {
                let started = Instant::now();
                let outcome =
                    executor.execute(&compiled.graph, &compiled.factories, &job_cancel, restore, Some(command_rx));
                if let StateBackend::RocksDb { dir } = &settings.state_backend {
                    // Operators removed their own directories; the run's is empty now.
                    let _ = std::fs::remove_dir(dir);
                }
                if let (Some(placement), Err(error)) = (&placement, &outcome) {
                    exit_for_redeployment(placement, &restart, error);
                }
                outcome?;
                Ok(JobExecutionResult { job_name, net_runtime: started.elapsed() })
            })
            .map_err(|source| Error::Job(JobError::Spawn { task: format!("job {name}"), source }))?;
        Ok(JobClient::new(name.to_owned(), commands, cancel, thread))
    }

    pub(crate) fn add_node(&self, node: Node) -> NodeId {
        let mut state = self.inner.borrow_mut();
        state.nodes.push(node);
        state.nodes.len() - 1
    }

    /// The current job's generation, stamped on the stream handles it hands out.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.borrow().generation
    }

    /// Whether `other` is this environment (not merely a clone of its settings).
    pub(crate) fn same_as(&self, other: &StreamEnv) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// Records a misuse of the builder API; `execute` reports the first one.
    pub(crate) fn misuse(&self, message: String) {
        self.inner.borrow_mut().misuse.get_or_insert(message);
    }

    /// Applies `update` to a node of the current job; a stale handle is a misuse.
    pub(crate) fn update_node(&self, node: NodeId, generation: u64, update: impl FnOnce(&mut Node)) {
        let mut state = self.inner.borrow_mut();
        if generation != state.generation {
            state.misuse.get_or_insert_with(|| STALE_HANDLE.to_owned());
        } else if let Some(node) = state.nodes.get_mut(node) {
            update(node);
        }
    }
}

/// Why a handle from an earlier job cannot be used.
pub(crate) const STALE_HANDLE: &str =
    "a stream of an earlier job (built before the last execute) was used; build each job from its own sources";

/// Plan mode: the binary writes its job graph to this file and exits (see
/// `weir_common::launch`, which owns the contract between workers and job binaries).
pub use weir_common::launch::PLAN_OUTPUT_ENV;

/// Checkpoint settings as the program gives them.
#[derive(Clone, Debug, Default)]
struct CheckpointOptions {
    interval: Option<Duration>,
    dir: Option<PathBuf>,
    config: CheckpointConfig,
    retain_on_cancel: bool,
}

impl EnvState {
    fn executor_config(&self, name: &str) -> Result<ExecutorConfig> {
        let mut config = self.executor.clone();
        let checkpointing = &self.checkpointing;
        config.checkpoints = match (checkpointing.interval, &checkpointing.dir) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(Error::InvalidJob(format!(
                    "job '{name}' enables checkpointing but sets no checkpoint directory: \
                     pass --checkpoint-dir DIR or call set_checkpoint_dir"
                )));
            }
            (Some(interval), Some(dir)) => {
                let dir = dir.to_string_lossy();
                let dir = PathBuf::from(dir.strip_prefix("file://").unwrap_or(&dir));
                let storage: Arc<dyn CheckpointStorage> = Arc::new(LocalDirStorage::new(&dir));
                Some(CheckpointSettings {
                    config: CheckpointConfig { interval, ..checkpointing.config.clone() },
                    storage,
                    location: dir,
                    retain_on_cancel: checkpointing.retain_on_cancel,
                })
            }
        };
        config.restart = match (&self.restart, &config.checkpoints) {
            (Some(strategy), _) => strategy.clone(),
            (None, Some(_)) => RestartStrategy::DEFAULT_WITH_CHECKPOINTS,
            (None, None) => RestartStrategy::None,
        };
        Ok(config)
    }

    fn settings(&self, name: &str) -> Result<JobSettings> {
        if let Some(misuse) = &self.misuse {
            return Err(Error::InvalidJob(misuse.clone()));
        }
        let max_parallelism = MaxParallelism::new(self.max_parallelism).ok_or_else(|| {
            Error::InvalidJob(format!("max parallelism {} is outside 1..=32768", self.max_parallelism))
        })?;
        if self.parallelism == 0 || self.nodes.iter().any(|node| node.parallelism == Some(0)) {
            return Err(Error::InvalidJob("parallelism must be at least 1".into()));
        }
        let state_backend = match &self.state_backend {
            StateBackend::Memory => StateBackend::Memory,
            StateBackend::RocksDb { dir } => StateBackend::RocksDb { dir: dir.join(run_directory_name(name)) },
        };
        Ok(JobSettings {
            name: name.to_owned(),
            parallelism: self.parallelism,
            max_parallelism,
            mode: self.mode,
            state_backend,
        })
    }
}

/// A directory name unique to one run of a job in this process and machine.
fn run_directory_name(job: &str) -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let job: String = job.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(40).collect();
    format!("{job}-{}-{run}", std::process::id())
}

/// Logs to stderr once per process; a program that set up its own subscriber keeps it.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal: log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}
