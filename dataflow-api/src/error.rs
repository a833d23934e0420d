//! The error type of the user API.

use weir_worker::JobError;

/// Everything that can go wrong when building or executing a job.
#[derive(thiserror::Error)]
pub enum Error {
    /// The program built a graph that cannot run; the message says what to change.
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// The job ran and failed, or was cancelled.
    #[error(transparent)]
    Job(#[from] JobError),
    /// An engine flag on the command line is malformed.
    #[error(transparent)]
    Args(#[from] crate::args::ArgsError),
}

/// `Debug` prints the message, so that `fn main() -> weir::Result<()>` reports
/// failures readably.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The result type of the user API.
pub type Result<T, E = Error> = std::result::Result<T, E>;
