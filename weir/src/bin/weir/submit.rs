//! `weir submit`: plan the job locally, upload its binary, submit it and,
//! unless detached, wait for its end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::ArgMatches;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use weir_proto::v1 as pb;
use weir_proto::v1::coordinator_client::CoordinatorClient;

use crate::jobs::{connect_to, coordinator_url, wait_for_end};
use crate::plan::plan_job;

/// Binaries are read and uploaded in chunks of this size.
const CHUNK: usize = 256 * 1024;

pub async fn submit(args: &ArgMatches) -> Result<ExitCode> {
    let binary = args.get_one::<PathBuf>("binary").context("JOB_BINARY")?.clone();
    let from_savepoint = args.get_one::<String>("from-savepoint").cloned().unwrap_or_default();
    let url = coordinator_url(args)?;
    let (job_id, code) =
        submit_job(&url, &binary, job_arguments(args), from_savepoint, args.get_flag("detached")).await?;
    println!("{job_id}");
    Ok(code)
}

/// The job arguments of `submit`, `run` and `plan`, with `--parallelism`
/// in front.
pub fn job_arguments(args: &ArgMatches) -> Vec<String> {
    let mut job_args: Vec<String> =
        args.get_many::<String>("args").map(|values| values.cloned().collect()).unwrap_or_default();
    if let Some(parallelism) = args.get_one::<u32>("parallelism") {
        job_args.splice(0..0, ["--parallelism".to_owned(), parallelism.to_string()]);
    }
    job_args
}

/// Plans, uploads and submits `binary`; unless `detached`, waits for the job's end.
pub async fn submit_job(
    url: &str,
    binary: &Path,
    job_args: Vec<String>,
    from_savepoint: String,
    detached: bool,
) -> Result<(String, ExitCode)> {
    let graph = pb::JobGraph::from(&plan_job(binary, &job_args).await?);
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

/// SHA-256 of a file, lowercase hex, and its size.
fn sha256_of(path: &Path) -> Result<(String, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read '{}'", path.display()))?;
    let (mut hasher, mut size, mut buffer) = (Sha256::new(), 0u64, vec![0u8; CHUNK]);
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

/// Streams the binary to the coordinator: its header, then its chunks.
async fn upload(client: &mut CoordinatorClient<Channel>, binary: &Path, sha256: &str, size: u64) -> Result<()> {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let header = pb::UploadArtifactRequest {
        part: Some(pb::upload_artifact_request::Part::Header(pb::ArtifactHeader { sha256: sha256.to_owned(), size })),
    };
    sender.send(header).await.map_err(|_| anyhow!("the upload stream closed"))?;
    let reader = tokio::spawn(send_chunks(binary.to_path_buf(), sender));
    client.upload_artifact(tokio_stream::wrappers::ReceiverStream::new(receiver)).await?;
    reader.await??;
    Ok(())
}

/// Reads the file at `path` chunk by chunk into `sender`, until its end or
/// the upload stream closing.
async fn send_chunks(
    path: PathBuf,
    sender: tokio::sync::mpsc::Sender<pb::UploadArtifactRequest>,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(&path).await?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        let chunk =
            pb::UploadArtifactRequest { part: Some(pb::upload_artifact_request::Part::Chunk(buffer[..read].to_vec())) };
        if sender.send(chunk).await.is_err() {
            return Ok(());
        }
    }
}
