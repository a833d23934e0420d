//! Checkpoint storage: where snapshot files go, and how they come back intact.
//!
//! Every file is written atomically (temporary name, fsync, rename, fsync of
//! the directory) and carries a trailer with a checksum of its contents, so a
//! truncated, overwritten or bit-flipped file is detected on read and reported
//! with its path, never restored as silently empty or wrong state.
//!
//! [`CheckpointStorage`] is the interface the state backends and the
//! checkpoint protocol write through; [`LocalDirStorage`] implements it on a
//! directory (local disk or a shared mount). An object-store implementation
//! fits behind the same trait.

mod checksum;
mod local;
mod path;

use std::path::Path;

pub use local::LocalDirStorage;
pub use path::StoragePath;

/// A name part unlikely to repeat anywhere: 32 hex digits hashed from the
/// process, the clock, a process-wide counter and `salt`. For temporary file
/// names and for naming RocksDB instances' shared files.
pub fn unique_id(salt: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seed = format!("{}:{nanos}:{}:{salt}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(seed.as_bytes()))
}

/// A file written to checkpoint storage, as recorded in snapshot metadata.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileHandle {
    /// Where the file is, relative to the storage root.
    pub path: StoragePath,
    /// Length of the contents, without the checksum trailer.
    pub size: u64,
}

/// Stores and retrieves checkpoint files.
pub trait CheckpointStorage: Send + Sync {
    /// Writes `contents` to `path` atomically, replacing any earlier file.
    ///
    /// Shared files are never rewritten: callers check [`CheckpointStorage::exists`]
    /// first and give every new file a new name.
    fn write(&self, path: &StoragePath, contents: &[u8]) -> Result<FileHandle, StorageError>;

    /// Copies the local file `source` to `path` atomically (for large files
    /// such as RocksDB SST files, without reading them into memory).
    fn upload(&self, path: &StoragePath, source: &Path) -> Result<FileHandle, StorageError>;

    /// Reads and verifies a whole file.
    fn read(&self, file: &FileHandle) -> Result<Vec<u8>, StorageError>;

    /// Copies a file to the local path `target`, verifying it on the way; on
    /// failure nothing is left at `target`.
    fn download(&self, file: &FileHandle, target: &Path) -> Result<(), StorageError>;

    /// Deletes a file; deleting a missing file is not an error.
    fn delete(&self, path: &StoragePath) -> Result<(), StorageError>;

    /// Whether a file exists at `path`.
    fn exists(&self, path: &StoragePath) -> Result<bool, StorageError>;

    /// The handle of the file at `path` (its contents' length), for files
    /// found by name rather than recorded in metadata.
    fn handle(&self, path: &StoragePath) -> Result<FileHandle, StorageError>;
}

/// Why a storage operation failed. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file is not there.
    #[error(
        "checkpoint file '{path}' is missing: the checkpoint is incomplete or was deleted; \
         restore from another checkpoint"
    )]
    Missing {
        /// The file.
        path: String,
    },
    /// The file is there but its contents are not what was written.
    #[error("checkpoint file '{path}' is corrupt ({reason}); restore from another checkpoint")]
    Corrupt {
        /// The file.
        path: String,
        /// What does not match.
        reason: String,
    },
    /// The operating system refused an operation.
    #[error("cannot {operation} checkpoint file '{path}': {source}")]
    Io {
        /// What was attempted ("write", "read", …).
        operation: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A path that would leave the storage root or is otherwise malformed.
    #[error("invalid checkpoint file path '{path}': {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}
