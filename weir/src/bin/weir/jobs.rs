//! The commands that ask the coordinator about jobs: `list`, `status`,
//! `cancel` and `savepoint`, and how a job is shown.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::ArgMatches;
use tonic::transport::Channel;
use weir_proto::v1 as pb;
use weir_proto::v1::coordinator_client::CoordinatorClient;

pub async fn list(args: &ArgMatches) -> Result<ExitCode> {
    let jobs = connect(args).await?.list_jobs(deadline(pb::ListJobsRequest {})).await?.into_inner().jobs;
    for job in jobs {
        println!("{}", describe(&job));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: &ArgMatches) -> Result<ExitCode> {
    let id = job_id(args)?;
    let job = connect(args).await?.job_status(deadline(pb::JobStatusRequest { job_id: id })).await?.into_inner().job;
    println!("{}", describe(&job.context("no job in the answer")?));
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(args: &ArgMatches) -> Result<ExitCode> {
    let id = job_id(args)?;
    connect(args).await?.cancel_job(deadline(pb::CancelJobRequest { job_id: id.clone() })).await?;
    println!("{id} canceled");
    Ok(ExitCode::SUCCESS)
}

pub async fn savepoint(args: &ArgMatches) -> Result<ExitCode> {
    let request = pb::TriggerSavepointRequest { job_id: job_id(args)?, stop: args.get_flag("stop") };
    let path = connect(args).await?.trigger_savepoint(request).await?.into_inner().path;
    println!("{path}");
    Ok(ExitCode::SUCCESS)
}

fn job_id(args: &ArgMatches) -> Result<String> {
    Ok(args.get_one::<String>("job").context("JOB_ID")?.clone())
}

pub fn coordinator_url(args: &ArgMatches) -> Result<String> {
    Ok(args.get_one::<String>("coordinator").context("--coordinator")?.clone())
}

/// A short control call: an unanswered one fails instead of hanging the command.
fn deadline<T>(message: T) -> tonic::Request<T> {
    weir_proto::rpc::with_deadline(message, weir_proto::rpc::CONTROL_CALL_DEADLINE)
}

async fn connect(args: &ArgMatches) -> Result<CoordinatorClient<Channel>> {
    connect_to(&coordinator_url(args)?).await
}

pub async fn connect_to(url: &str) -> Result<CoordinatorClient<Channel>> {
    let url = url.to_owned();
    let channel = weir_proto::rpc::connect(&url).await.map_err(|error| {
        anyhow!("cannot reach the coordinator at {url}: {error}; start one with `weir coordinator` or pass --coordinator URL")
    })?;
    Ok(CoordinatorClient::new(channel))
}

/// Waits for a job to end; success when it finished.
pub async fn wait_for_end(client: &mut CoordinatorClient<Channel>, job_id: &str) -> Result<ExitCode> {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let job =
            client.job_status(deadline(pb::JobStatusRequest { job_id: job_id.to_owned() })).await?.into_inner().job;
        let job = job.context("no job in the answer")?;
        match job.state() {
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

/// The name a state is shown by (unknown numbers, from a newer
/// coordinator, as `UNKNOWN`).
fn state_name(state: pb::JobState) -> &'static str {
    match state {
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

/// One line per job: id, state, name, deployments, workers and the last
/// line of its message.
fn describe(job: &pb::JobInfo) -> String {
    let mut line = format!("{}  {}  {}  attempts={}", job.job_id, state_name(job.state()), job.name, job.attempts);
    if !job.worker_id.is_empty() {
        line.push_str(&format!("  workers={}", job.worker_id));
    }
    if !job.message.is_empty() {
        line.push_str(&format!("  ({})", job.message.lines().last().unwrap_or_default()));
    }
    line
}
