//! Sinks: where records leave a job.

pub mod collect;
pub mod file_sink;
pub mod print;
pub mod text_file;
