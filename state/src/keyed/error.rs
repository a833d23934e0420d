//! The one error type of keyed state.

use weir_common::KeyEncodingError;

use crate::key_grouped_map::ForeignKeyGroup;
use crate::storage::StorageError;

/// Why a keyed-state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// State was accessed before a key was set.
    #[error("no current key: keyed state is only accessible while processing a keyed record")]
    NoCurrentKey,
    /// The key does not serialize.
    #[error(transparent)]
    Key(#[from] KeyEncodingError),
    /// A key of a group this task does not own: records were routed wrongly.
    #[error(transparent)]
    ForeignKeyGroup(#[from] ForeignKeyGroup),
    /// A state was registered twice differently, used with other types, or
    /// restored from bytes that do not decode as its declared types.
    #[error("state '{name}': {message}")]
    Incompatible {
        /// The state as the user named it; `#<index>` for a handle this
        /// backend never issued, `timers <service>` for a timer service.
        name: String,
        /// What differs (kind, types, time to live), worded for the user.
        message: String,
    },
    /// RocksDB failed, or I/O on its local files, or (despite the name)
    /// encoding a snapshot's header; the message names what and where.
    #[error("RocksDB state backend: {0}")]
    RocksDb(String),
    /// Reading or writing a snapshot failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A snapshot file decoded but cannot be restored here.
    #[error("keyed-state snapshot '{path}' cannot be restored: {message}")]
    BadSnapshot {
        /// The file's path in checkpoint storage (`incremental snapshot` when
        /// the snapshot's metadata, not a file, is at fault).
        path: String,
        /// What stands in the way, e.g. another max parallelism.
        message: String,
    },
}
