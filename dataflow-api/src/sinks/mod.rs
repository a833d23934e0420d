//! Sinks: where records leave a job.

pub mod collect;
pub mod print;
pub mod text_file;
