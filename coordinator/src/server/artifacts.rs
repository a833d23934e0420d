//! The artifact store: job binaries, content addressed, in `artifacts/` of
//! the data directory. Clients upload them in chunks, checked against the
//! SHA-256 and size they announce; workers fetch them in chunks.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use weir_common::ids::is_sha256_hex;
use weir_proto::v1 as pb;

use super::now_ms;

/// The chunks of an artifact, as the `FetchArtifact` call streams them.
pub(super) type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::FetchArtifactResponse, Status>> + Send>>;

/// The largest job binary accepted (debug builds of the examples are
/// 40-55 MB, release builds about 20 MB).
pub(super) const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// Longest time an upload may take; a stalled client does not hold a
/// temporary file and a connection forever.
const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Artifacts are fetched in chunks of this size.
const CHUNK: usize = 256 * 1024;

/// The directory of the job binaries.
pub(super) struct ArtifactStore {
    dir: PathBuf,
}

impl ArtifactStore {
    /// The store in the data directory `data_dir`.
    pub(super) fn new(data_dir: &Path) -> Self {
        Self { dir: data_dir.join("artifacts") }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the artifact `sha256` was uploaded.
    pub(super) fn contains(&self, sha256: &str) -> bool {
        is_sha256_hex(sha256) && self.path(sha256).exists()
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Stores an upload: a header, then chunks. Returns the artifact's
    /// SHA-256; an upload that does not match its header is discarded.
    pub(super) async fn store(&self, mut parts: Streaming<pb::UploadArtifactRequest>) -> Result<String, Status> {
        let header = upload_header(&mut parts).await?;
        let target = self.path(&header.sha256);
        if target.exists() {
            return Ok(header.sha256);
        }
        let temporary = target.with_extension(format!("upload-{}", now_ms()));
        let received = tokio::time::timeout(UPLOAD_TIMEOUT, receive(&mut parts, &header, &temporary))
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!("the upload took longer than {UPLOAD_TIMEOUT:?}")))
            })
            .and_then(|received| std::fs::rename(&temporary, &target).map(|()| received).map_err(io_status));
        match received {
            Ok(bytes) => {
                tracing::info!(sha256 = %header.sha256, bytes, "artifact stored");
                Ok(header.sha256)
            }
            Err(status) => {
                let _ = std::fs::remove_file(&temporary);
                Err(status)
            }
        }
    }

    /// Streams the artifact `sha256` in chunks.
    pub(super) async fn fetch(&self, sha256: &str) -> Result<FetchStream, Status> {
        if !is_sha256_hex(sha256) {
            return Err(Status::invalid_argument(format!("'{sha256}' is not a lowercase hex SHA-256")));
        }
        let file = tokio::fs::File::open(self.path(sha256))
            .await
            .map_err(|_| Status::not_found(format!("no artifact {sha256} on the coordinator")))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        tokio::spawn(send_chunks(file, sender));
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }
}

fn io_status(error: std::io::Error) -> Status {
    Status::internal(format!("cannot store the artifact: {error}"))
}

/// The header that opens an upload, naming a valid SHA-256.
async fn upload_header(parts: &mut Streaming<pb::UploadArtifactRequest>) -> Result<pb::ArtifactHeader, Status> {
    let header = match parts.message().await? {
        Some(pb::UploadArtifactRequest { part: Some(pb::upload_artifact_request::Part::Header(header)) }) => header,
        _ => return Err(Status::invalid_argument("an upload starts with a header (SHA-256 and size)")),
    };
    if !is_sha256_hex(&header.sha256) {
        return Err(Status::invalid_argument(format!("'{}' is not a lowercase hex SHA-256", header.sha256)));
    }
    if header.size > MAX_ARTIFACT_BYTES {
        return Err(Status::invalid_argument(format!(
            "a job binary of {} bytes is larger than the {MAX_ARTIFACT_BYTES} bytes the coordinator accepts",
            header.size
        )));
    }
    Ok(header)
}

/// Writes the upload's chunks to `temporary` and checks them against the
/// header; returns the number of bytes received.
async fn receive(
    parts: &mut Streaming<pb::UploadArtifactRequest>,
    header: &pb::ArtifactHeader,
    temporary: &Path,
) -> Result<u64, Status> {
    let mut file = tokio::fs::File::create(temporary).await.map_err(io_status)?;
    let (mut hasher, mut received) = (Sha256::new(), 0u64);
    while let Some(part) = parts.message().await? {
        let Some(pb::upload_artifact_request::Part::Chunk(chunk)) = part.part else {
            return Err(Status::invalid_argument("a second header in one upload"));
        };
        received += chunk.len() as u64;
        if received > header.size {
            return Err(Status::invalid_argument(format!(
                "the upload sent more than the {} bytes its header announced",
                header.size
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io_status)?;
    }
    file.flush().await.map_err(io_status)?;
    let digest: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
    if received != header.size || digest != header.sha256 {
        return Err(Status::data_loss(format!(
            "the uploaded artifact does not match its header: {received} of {} bytes, SHA-256 {digest} \
             instead of {}; upload it again",
            header.size, header.sha256
        )));
    }
    Ok(received)
}

/// Reads `file` chunk by chunk into `sender`, until the end, a read error
/// (sent on) or the receiver hanging up.
async fn send_chunks(
    mut file: tokio::fs::File,
    sender: tokio::sync::mpsc::Sender<Result<pb::FetchArtifactResponse, Status>>,
) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => {
                let chunk = pb::FetchArtifactResponse { chunk: buffer[..read].to_vec() };
                if sender.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                let _ = sender.send(Err(Status::internal(format!("cannot read the artifact: {error}")))).await;
                break;
            }
        }
    }
}
