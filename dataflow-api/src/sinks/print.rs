//! Prints records to standard output (or standard error), one line each.
//!
//! Delivery is at-least-once once checkpoints exist: lines printed before a
//! failure are printed again after the restart replays them.

use std::fmt::{Display, Write as _};
use std::io::Write as _;

use weir_worker::TaskError;
use weir_worker::blame::BlameGuard;

use crate::operators::OperatorContext;
use crate::push::{ChainLink, Push};

/// Buffer this many bytes before writing, so parallel subtasks interleave
/// whole lines, and stdout is locked once per buffer, not per record.
const BUFFER_BYTES: usize = 64 * 1024;

/// Where a print sink writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrintTarget {
    Stdout,
    Stderr,
}

pub(crate) struct PrintSink {
    context: OperatorContext,
    target: PrintTarget,
    buffer: String,
}

impl PrintSink {
    pub(crate) fn new(context: OperatorContext, target: PrintTarget) -> Self {
        Self { context, target, buffer: String::with_capacity(BUFFER_BYTES) }
    }

    fn write_out(&mut self) -> Result<(), TaskError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let bytes = self.buffer.as_bytes();
        let (written, name) = match self.target {
            PrintTarget::Stdout => {
                let mut stdout = std::io::stdout().lock();
                (stdout.write_all(bytes).and_then(|()| stdout.flush()), "standard output")
            }
            PrintTarget::Stderr => {
                let mut stderr = std::io::stderr().lock();
                (stderr.write_all(bytes).and_then(|()| stderr.flush()), "standard error")
            }
        };
        written.map_err(|error| self.context.error(format!("cannot write to {name}: {error}")))?;
        self.buffer.clear();
        Ok(())
    }
}

impl<T: Display + Send> Push<T> for PrintSink {
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        // `Display` is user code. Writing to a String cannot fail.
        let guard = BlameGuard::new(&self.context.operator_name);
        let _ = writeln!(self.buffer, "{record}");
        guard.disarm();
        if self.buffer.len() >= BUFFER_BYTES {
            self.write_out()?;
        }
        Ok(())
    }
}

impl ChainLink for PrintSink {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        None
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.write_out()
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        self.write_out()
    }
}
