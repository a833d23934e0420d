//! Writes records as lines of text to files (Flink's `writeAsText`).
//!
//! With parallelism 1 the path is the output file; otherwise it is a
//! directory holding one file per subtask, named `1`, `2`, … The files are
//! written as records arrive, so a failed job leaves partial output; the
//! exactly-once file sink comes with checkpoints.

use std::fmt::{Display, Write as _};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use weir_worker::TaskError;
use weir_worker::blame::BlameGuard;

use crate::operators::OperatorContext;
use crate::push::{ChainLink, Push};

pub(crate) struct TextFileSink {
    context: OperatorContext,
    path: PathBuf,
    writer: BufWriter<File>,
    line: String,
}

impl TextFileSink {
    pub(crate) fn create(context: OperatorContext, base: &Path) -> Result<Self, TaskError> {
        let path = if context.subtask.parallelism == 1 {
            base.to_path_buf()
        } else {
            base.join((context.subtask.index + 1).to_string())
        };
        let failed =
            |error: std::io::Error| context.error(format!("cannot create output file '{}': {error}", path.display()));
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        let file = File::create(&path).map_err(failed)?;
        Ok(Self { writer: BufWriter::with_capacity(256 * 1024, file), line: String::new(), path, context })
    }

    fn failed(&self, error: std::io::Error) -> TaskError {
        self.context.error(format!("cannot write output file '{}': {error}", self.path.display()))
    }
}

impl<T: Display + Send> Push<T> for TextFileSink {
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        self.line.clear();
        // `Display` is user code. Writing to a String cannot fail.
        let guard = BlameGuard::new(&self.context.operator_name);
        let _ = writeln!(self.line, "{record}");
        guard.disarm();
        self.writer.write_all(self.line.as_bytes()).map_err(|error| self.failed(error))
    }
}

impl ChainLink for TextFileSink {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        None
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.writer.flush().map_err(|error| self.failed(error))
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        self.writer.flush().map_err(|error| self.failed(error))?;
        self.writer.get_ref().sync_all().map_err(|error| self.failed(error))
    }
}
