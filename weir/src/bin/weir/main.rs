//! `weir`: the command line of a Weir cluster.
//!
//! ```text
//! weir coordinator [--bind 127.0.0.1:6123] [--data-dir DIR] [--heartbeat-interval-ms 500] [--heartbeat-timeout-ms 3000]
//! weir worker --coordinator http://HOST:PORT [--slots N] [--data-dir DIR] [--bind ADDR]
//! weir submit JOB_BINARY [--coordinator URL] [--parallelism N] [--from-savepoint PATH] [--detached] [-- JOB_ARGS…]
//! weir list | status JOB_ID | cancel JOB_ID   [--coordinator URL]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use sha2::{Digest, Sha256};
use weir_proto::v1 as pb;
use weir_proto::v1::coordinator_client::CoordinatorClient;

const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:6123";

fn coordinator_flag() -> Arg {
    Arg::new("coordinator")
        .long("coordinator")
        .value_name("URL")
        .default_value(DEFAULT_COORDINATOR)
        .help("the coordinator's URL")
}

fn command() -> Command {
    Command::new("weir")
        .about("Weir: run a coordinator or a worker, submit and manage jobs")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(
            Command::new("coordinator")
                .about("Run the coordinator")
                .arg(
                    Arg::new("bind")
                        .long("bind")
                        .value_name("ADDR")
                        .default_value("127.0.0.1:6123")
                        .value_parser(value_parser!(SocketAddr)),
                )
                .arg(
                    Arg::new("data-dir")
                        .long("data-dir")
                        .value_name("DIR")
                        .default_value("weir-data/coordinator")
                        .value_parser(value_parser!(PathBuf)),
                )
                .arg(
                    Arg::new("heartbeat-interval-ms")
                        .long("heartbeat-interval-ms")
                        .value_name("MS")
                        .default_value("500")
                        .value_parser(value_parser!(u64).range(10..))
                        .help("how often workers heartbeat"),
                )
                .arg(
                    Arg::new("heartbeat-timeout-ms")
                        .long("heartbeat-timeout-ms")
                        .value_name("MS")
                        .default_value("3000")
                        .value_parser(value_parser!(u64).range(50..))
                        .help("a worker silent this long is lost and its jobs move"),
                ),
        )
        .subcommand(
            Command::new("worker")
                .about("Run a worker that offers slots to the coordinator")
                .arg(coordinator_flag())
                .arg(
                    Arg::new("slots")
                        .long("slots")
                        .value_name("N")
                        .default_value("2")
                        .value_parser(value_parser!(u32).range(1..)),
                )
                .arg(
                    Arg::new("data-dir")
                        .long("data-dir")
                        .value_name("DIR")
                        .default_value("weir-data/worker")
                        .value_parser(value_parser!(PathBuf)),
                )
                .arg(
                    Arg::new("bind")
                        .long("bind")
                        .value_name("ADDR")
                        .default_value("127.0.0.1:0")
                        .value_parser(value_parser!(SocketAddr)),
                ),
        )
        .subcommand(
            Command::new("submit")
                .about("Submit a compiled job binary")
                .arg(Arg::new("binary").value_name("JOB_BINARY").required(true).value_parser(value_parser!(PathBuf)))
                .arg(coordinator_flag())
                .arg(
                    Arg::new("parallelism")
                        .long("parallelism")
                        .value_name("N")
                        .value_parser(value_parser!(u32).range(1..)),
                )
                .arg(Arg::new("from-savepoint").long("from-savepoint").value_name("PATH"))
                .arg(
                    Arg::new("detached")
                        .long("detached")
                        .action(ArgAction::SetTrue)
                        .help("print the job id and return"),
                )
                .arg(Arg::new("args").value_name("JOB_ARGS").num_args(0..).last(true)),
        )
        .subcommand(
            Command::new("run")
                .about(
                    "Run a job binary on an embedded local cluster: a coordinator and a worker in this process, \
                     the job as in any cluster; prints the job's output at its end",
                )
                .arg(
                    Arg::new("binary")
                        .value_name("JOB_BINARY")
                        .required_unless_present("example")
                        .value_parser(value_parser!(PathBuf)),
                )
                .arg(
                    Arg::new("example")
                        .long("example")
                        .value_name("NAME")
                        .conflicts_with("binary")
                        .help("an example built by `cargo build --example NAME`"),
                )
                .arg(
                    Arg::new("parallelism")
                        .long("parallelism")
                        .value_name("N")
                        .value_parser(value_parser!(u32).range(1..)),
                )
                .arg(Arg::new("args").value_name("JOB_ARGS").num_args(0..).last(true)),
        )
        .subcommand(Command::new("list").about("List the jobs").arg(coordinator_flag()))
        .subcommand(
            Command::new("status").about("Show a job").arg(Arg::new("job").required(true)).arg(coordinator_flag()),
        )
        .subcommand(
            Command::new("cancel").about("Cancel a job").arg(Arg::new("job").required(true)).arg(coordinator_flag()),
        )
        .subcommand(
            Command::new("savepoint")
                .about("Take a savepoint of a running job and print its directory")
                .arg(Arg::new("job").required(true))
                .arg(
                    Arg::new("stop")
                        .long("stop")
                        .action(ArgAction::SetTrue)
                        .help("End the job once the savepoint completed (its sinks commit what it covers)"),
                )
                .arg(coordinator_flag()),
        )
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    // The daemons log what they do; `run` shows the job's output, and only
    // warnings of the embedded cluster.
    let default_level = if matches.subcommand_name() == Some("run") { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(matches)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(matches: ArgMatches) -> Result<ExitCode> {
    match matches.subcommand() {
        Some(("coordinator", args)) => {
            let bind = *args.get_one::<SocketAddr>("bind").context("--bind")?;
            let data_dir = args.get_one::<PathBuf>("data-dir").context("--data-dir")?.clone();
            let mut config = weir_coordinator::CoordinatorConfig::new(bind, data_dir);
            config.heartbeat_interval =
                Duration::from_millis(*args.get_one::<u64>("heartbeat-interval-ms").context("interval")?);
            config.heartbeat_timeout =
                Duration::from_millis(*args.get_one::<u64>("heartbeat-timeout-ms").context("timeout")?);
            let (ready, address) = tokio::sync::oneshot::channel();
            let server = tokio::spawn(weir_coordinator::serve(config, Some(ready)));
            if let Ok(address) = address.await {
                println!("coordinator listening on http://{address}");
            }
            server.await??;
            Ok(ExitCode::SUCCESS)
        }
        Some(("worker", args)) => {
            let config = weir_worker::daemon::WorkerConfig {
                coordinator: coordinator_url(args)?,
                slots: *args.get_one::<u32>("slots").context("--slots")?,
                data_dir: args.get_one::<PathBuf>("data-dir").context("--data-dir")?.clone(),
                bind: *args.get_one::<SocketAddr>("bind").context("--bind")?,
            };
            let (ready, address) = tokio::sync::oneshot::channel();
            let worker = tokio::spawn(weir_worker::daemon::run(config, Some(ready)));
            if let Ok(address) = address.await {
                println!("worker serving on http://{address}");
            }
            worker.await??;
            Ok(ExitCode::SUCCESS)
        }
        Some(("submit", args)) => submit(args).await,
        Some(("run", args)) => run_embedded(args).await,
        Some(("list", args)) => {
            let jobs = connect(args).await?.list_jobs(pb::ListJobsRequest {}).await?.into_inner().jobs;
            for job in jobs {
                println!("{}", describe(&job));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(("status", args)) => {
            let id = args.get_one::<String>("job").context("JOB_ID")?.clone();
            let job = connect(args).await?.job_status(pb::JobStatusRequest { job_id: id }).await?.into_inner().job;
            println!("{}", describe(&job.context("no job in the answer")?));
            Ok(ExitCode::SUCCESS)
        }
        Some(("cancel", args)) => {
            let id = args.get_one::<String>("job").context("JOB_ID")?.clone();
            connect(args).await?.cancel_job(pb::CancelJobRequest { job_id: id.clone() }).await?;
            println!("{id} canceled");
            Ok(ExitCode::SUCCESS)
        }
        Some(("savepoint", args)) => {
            let id = args.get_one::<String>("job").context("JOB_ID")?.clone();
            let stop = args.get_flag("stop");
            let request = pb::TriggerSavepointRequest { job_id: id.clone(), stop };
            let path = connect(args).await?.trigger_savepoint(request).await?.into_inner().path;
            println!("{path}");
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!("unknown command; see weir --help"),
    }
}

fn coordinator_url(args: &ArgMatches) -> Result<String> {
    Ok(args.get_one::<String>("coordinator").context("--coordinator")?.clone())
}

async fn connect(args: &ArgMatches) -> Result<CoordinatorClient<tonic::transport::Channel>> {
    connect_to(&coordinator_url(args)?).await
}

async fn connect_to(url: &str) -> Result<CoordinatorClient<tonic::transport::Channel>> {
    let url = url.to_owned();
    CoordinatorClient::connect(url.clone()).await.map_err(|error| {
        anyhow!("cannot reach the coordinator at {url}: {error}; start one with `weir coordinator` or pass --coordinator URL")
    })
}

fn state_name(state: i32) -> &'static str {
    match pb::JobState::try_from(state).unwrap_or(pb::JobState::Unspecified) {
        pb::JobState::Scheduling => "SCHEDULING",
        pb::JobState::Deploying => "DEPLOYING",
        pb::JobState::Running => "RUNNING",
        pb::JobState::Restarting => "RESTARTING",
        pb::JobState::Finished => "FINISHED",
        pb::JobState::Failed => "FAILED",
        pb::JobState::Canceled => "CANCELED",
        pb::JobState::Unspecified => "UNKNOWN",
    }
}

fn describe(job: &pb::JobInfo) -> String {
    let mut line = format!("{}  {}  {}  attempts={}", job.job_id, state_name(job.state), job.name, job.attempts);
    if !job.worker_id.is_empty() {
        line.push_str(&format!("  workers={}", job.worker_id));
    }
    if !job.message.is_empty() {
        line.push_str(&format!("  ({})", job.message.lines().last().unwrap_or_default()));
    }
    line
}

/// How long planning may take before the binary is given up on.
const PLAN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the binary in plan mode; returns its job graph.
async fn plan(binary: &Path, args: &[String]) -> Result<pb::JobGraph> {
    let output_dir = tempfile::tempdir().context("a temporary directory for planning")?;
    let graph_file = output_dir.path().join("job-graph.pb");
    let child = tokio::process::Command::new(binary)
        .args(args)
        .env(weir::env::PLAN_OUTPUT_ENV, &graph_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run '{}'", binary.display()))?;
    let output = tokio::time::timeout(PLAN_TIMEOUT, child.wait_with_output()).await.map_err(|_| {
        anyhow!("'{}' did not plan a job within {PLAN_TIMEOUT:?}: is it a Weir job?", binary.display())
    })??;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("'{}' failed while planning its job ({}):\n{}", binary.display(), output.status, stderr.trim_end());
    }
    let bytes = std::fs::read(&graph_file).map_err(|_| {
        anyhow!(
            "'{}' is not a Weir job: it ended without planning a job graph (it never calls StreamEnv::execute)",
            binary.display()
        )
    })?;
    let graph = weir_common::JobGraph::decode(&bytes)
        .with_context(|| format!("'{}' planned an invalid job graph", binary.display()))?;
    Ok(pb::JobGraph::from(&graph))
}

/// SHA-256 of a file, lowercase hex.
fn sha256_of(path: &Path) -> Result<(String, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read '{}'", path.display()))?;
    let (mut hasher, mut size, mut buffer) = (Sha256::new(), 0u64, vec![0u8; 256 * 1024]);
    loop {
        let read = file.read(&mut buffer).with_context(|| format!("cannot read '{}'", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect(), size))
}

/// Streams the binary to the coordinator.
async fn upload(
    client: &mut CoordinatorClient<tonic::transport::Channel>,
    binary: &Path,
    sha256: &str,
    size: u64,
) -> Result<()> {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let header = pb::UploadArtifactRequest {
        part: Some(pb::upload_artifact_request::Part::Header(pb::ArtifactHeader { sha256: sha256.to_owned(), size })),
    };
    sender.send(header).await.map_err(|_| anyhow!("the upload stream closed"))?;
    let path = binary.to_path_buf();
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::open(&path).await?;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let read = file.read(&mut buffer).await?;
            if read == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let chunk = pb::UploadArtifactRequest {
                part: Some(pb::upload_artifact_request::Part::Chunk(buffer[..read].to_vec())),
            };
            if sender.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    });
    client.upload_artifact(tokio_stream::wrappers::ReceiverStream::new(receiver)).await?;
    reader.await??;
    Ok(())
}

/// The job arguments of `submit` and `run`, with `--parallelism` in front.
fn job_arguments(args: &ArgMatches) -> Vec<String> {
    let mut job_args: Vec<String> =
        args.get_many::<String>("args").map(|values| values.cloned().collect()).unwrap_or_default();
    if let Some(parallelism) = args.get_one::<u32>("parallelism") {
        job_args.splice(0..0, ["--parallelism".to_owned(), parallelism.to_string()]);
    }
    job_args
}

async fn submit(args: &ArgMatches) -> Result<ExitCode> {
    let binary = args.get_one::<PathBuf>("binary").context("JOB_BINARY")?.clone();
    let from_savepoint = args.get_one::<String>("from-savepoint").cloned().unwrap_or_default();
    let url = coordinator_url(args)?;
    let (job_id, code) =
        submit_job(&url, &binary, job_arguments(args), from_savepoint, args.get_flag("detached")).await?;
    println!("{job_id}");
    Ok(code)
}

/// Plans, uploads and submits `binary`; unless `detached`, waits for the job's end.
async fn submit_job(
    url: &str,
    binary: &Path,
    job_args: Vec<String>,
    from_savepoint: String,
    detached: bool,
) -> Result<(String, ExitCode)> {
    let graph = plan(binary, &job_args).await?;
    let (sha256, size) = sha256_of(binary)?;
    let mut client = connect_to(url).await?;
    upload(&mut client, binary, &sha256, size).await.context("uploading the job binary")?;
    let request = pb::SubmitJobRequest { artifact_sha256: sha256, graph: Some(graph), args: job_args, from_savepoint };
    let job_id = client.submit_job(request).await?.into_inner().job_id;
    if detached {
        return Ok((job_id, ExitCode::SUCCESS));
    }
    let code = wait_for_end(&mut client, &job_id).await?;
    Ok((job_id, code))
}

/// Waits for a job to end; success when it finished.
async fn wait_for_end(client: &mut CoordinatorClient<tonic::transport::Channel>, job_id: &str) -> Result<ExitCode> {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let job = client.job_status(pb::JobStatusRequest { job_id: job_id.to_owned() }).await?.into_inner().job;
        let job = job.context("no job in the answer")?;
        match pb::JobState::try_from(job.state).unwrap_or(pb::JobState::Unspecified) {
            pb::JobState::Finished => {
                eprintln!("{}", describe(&job));
                return Ok(ExitCode::SUCCESS);
            }
            pb::JobState::Failed | pb::JobState::Canceled => {
                eprintln!("{}", describe(&job));
                eprintln!("{}", job.message);
                return Ok(ExitCode::FAILURE);
            }
            _ => {}
        }
    }
}

/// `weir run`: a coordinator and a worker in this process (on ephemeral
/// ports of 127.0.0.1, with a temporary data directory), the job submitted
/// to them as to any cluster; its standard output is printed at its end.
async fn run_embedded(args: &ArgMatches) -> Result<ExitCode> {
    let binary = match (args.get_one::<PathBuf>("binary"), args.get_one::<String>("example")) {
        (Some(binary), _) => binary.clone(),
        (None, Some(example)) => {
            // `cargo build --example NAME` puts it next to this binary's directory.
            let me = std::env::current_exe().context("locating the weir binary")?;
            let binary = me.parent().context("the weir binary's directory")?.join("examples").join(example);
            if !binary.exists() {
                bail!(
                    "example '{example}' is not built at {}: run `cargo build --example {example}`",
                    binary.display()
                );
            }
            binary
        }
        (None, None) => bail!("give a job binary, or --example NAME"),
    };
    let data = tempfile::tempdir().context("a temporary data directory for the embedded cluster")?;
    let loopback: SocketAddr = "127.0.0.1:0".parse().context("loopback address")?;
    let config = weir_coordinator::CoordinatorConfig::new(loopback, data.path().join("coordinator"));
    let (ready, address) = tokio::sync::oneshot::channel();
    let coordinator = tokio::spawn(weir_coordinator::serve(config, Some(ready)));
    let url = format!("http://{}", address.await.context("the embedded coordinator did not start")?);
    let worker_data = data.path().join("worker");
    let config = weir_worker::daemon::WorkerConfig {
        coordinator: url.clone(),
        slots: EMBEDDED_SLOTS,
        data_dir: worker_data.clone(),
        bind: loopback,
    };
    let (ready, started) = tokio::sync::oneshot::channel();
    let worker = tokio::spawn(weir_worker::daemon::run(config, Some(ready)));
    started.await.context("the embedded worker did not start")?;
    let (job_id, code) = submit_job(&url, &binary, job_arguments(args), String::new(), false).await?;
    // The job's processes wrote their standard output into the worker's logs.
    let mut outputs: Vec<PathBuf> = std::fs::read_dir(worker_data.join("logs"))
        .context("the embedded worker's logs")?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "out"))
        .filter(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with(&job_id)))
        .collect();
    outputs.sort();
    if let Some(last) = outputs.last() {
        let text = std::fs::read(last).with_context(|| format!("reading {}", last.display()))?;
        std::io::Write::write_all(&mut std::io::stdout(), &text)?;
    }
    worker.abort();
    coordinator.abort();
    Ok(code)
}

/// Slots of the embedded worker: slots only count slices, so plenty.
const EMBEDDED_SLOTS: u32 = 256;
