//! Lines of standard input, read by one parallel instance (the first); the
//! others end at once. The input ends at end of file.
//!
//! A read blocks until a line or the end arrives, so a job reading an
//! interactive terminal is cancelled only once the next line comes.
//!
//! Standard input cannot be rewound: after a restore the source goes on with
//! the lines not read yet, so lines read after the last completed checkpoint
//! are lost (at most once). Read files for exactly-once results.

use std::io::BufRead;

use weir_worker::TaskError;

use super::{ReadStatus, Source, SourceReader};
use crate::operators::OperatorContext;
use crate::push::Push;

/// The lines of standard input, without their line endings.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdinSource;

impl Source for StdinSource {
    type Output = String;

    fn name(&self) -> String {
        "Source: stdin".into()
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn create_reader(&self, context: &OperatorContext) -> Result<Box<dyn SourceReader<String>>, TaskError> {
        Ok(Box::new(StdinReader { context: context.clone(), done: context.subtask.index != 0, line_number: 0 }))
    }
}

struct StdinReader {
    context: OperatorContext,
    done: bool,
    line_number: u64,
}

impl SourceReader<String> for StdinReader {
    fn read(&mut self, out: &mut dyn Push<String>, max: usize) -> Result<ReadStatus, TaskError> {
        if self.done {
            return Ok(ReadStatus::Finished);
        }
        let stdin = std::io::stdin();
        let mut lines = stdin.lock();
        for _ in 0..max {
            let mut line = String::new();
            let read = lines.read_line(&mut line).map_err(|error| {
                self.context.error(format!("cannot read standard input after line {}: {error}", self.line_number))
            })?;
            if read == 0 {
                self.done = true;
                return Ok(ReadStatus::Finished);
            }
            self.line_number += 1;
            let trimmed = line.trim_end_matches(['\n', '\r']).len();
            line.truncate(trimmed);
            out.push(line)?;
        }
        Ok(ReadStatus::More)
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, TaskError> {
        Ok(Vec::new())
    }
}
