//! A bounded source of text lines from files.
//!
//! The input is cut into splits, byte ranges of files, and split `k` goes to
//! subtask `k mod n`; so a single large file is read in parallel too. A split
//! owns every line that *starts* inside its range: a reader whose range starts
//! mid-line skips to the next line, and reads past its end to finish its last
//! line (the scheme of Hadoop's and Flink's text input formats).
//!
//! Replayable: a checkpoint records every unfinished split with the byte
//! offset of its next line, and a restore deals the splits out again, at any
//! parallelism.
//!
//! [`FileSource::numbered`] also gives each line its number in its file
//! (from 1), so that errors can point at it: a reader counts the lines
//! before its split once, when it opens it.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use weir_worker::TaskError;

use super::{ReadStatus, Source, SourceReader};
use crate::operators::OperatorContext;
use crate::push::Push;

/// Splits are never smaller than this, so small inputs are not cut into crumbs.
const MIN_SPLIT_BYTES: u64 = 64 * 1024;

/// Lines of one or more files or directories (the regular files directly in
/// a directory, in name order, skipping names that start with `.` or `_`).
/// Lines are UTF-8 without their `\n` or `\r\n`.
#[derive(Debug)]
pub struct FileSource {
    paths: Vec<PathBuf>,
    /// Planned once, by the first subtask to start, so that all subtasks of a
    /// process share one listing even if the input changes meanwhile.
    splits: Arc<OnceLock<Result<Vec<Split>, String>>>,
}

impl Clone for FileSource {
    /// A clone plans its own splits: it may be used in another job, later.
    fn clone(&self) -> Self {
        Self::lines_of(self.paths.clone())
    }
}

impl FileSource {
    /// Lines of a file or of the files in a directory.
    pub fn lines(path: impl Into<PathBuf>) -> Self {
        Self::lines_of([path.into()])
    }

    /// Lines of several files or directories, in the given order.
    pub fn lines_of(paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        Self { paths: paths.into_iter().map(Into::into).collect(), splits: Arc::default() }
    }

    /// The number of lines of the file at `path` (its line breaks), read a
    /// buffer at a time.
    pub fn count_lines(path: &Path) -> std::io::Result<u64> {
        lines_in(&mut BufReader::new(File::open(path)?), u64::MAX)
    }

    /// The same lines, each with its number in its file (from 1).
    pub fn numbered(self) -> NumberedFileSource {
        NumberedFileSource(self)
    }

    fn reader<T>(
        &self,
        context: &OperatorContext,
        line: fn(u64, String) -> T,
        numbered: bool,
    ) -> Result<Box<dyn SourceReader<T>>, TaskError>
    where
        T: Send + 'static,
    {
        let mine: Vec<(Split, Option<u64>)> = match context.restored_entries() {
            Some(entries) => entries
                .iter()
                .map(|entry| {
                    postcard::from_bytes::<(Split, Option<u64>)>(entry).map_err(|error| {
                        context.restore_error(format!(
                            "its position in the checkpoint does not decode ({error}): \
                             the checkpoint belongs to another job or source"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            None => {
                let planned = self.splits.get_or_init(|| plan_splits(&self.paths, context.subtask.parallelism));
                let splits = planned.as_ref().map_err(|error| context.error(error.clone()))?;
                splits
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| k % context.subtask.parallelism == context.subtask.index)
                    .map(|(_, split)| (split.clone(), None))
                    .collect()
            }
        };
        let pending = mine.into_iter().rev().collect();
        Ok(Box::new(LineReader { context: context.clone(), pending, open: None, line, numbered }))
    }
}

/// Lines of files with their numbers: `(line number, line)`; see
/// [`FileSource::numbered`].
#[derive(Clone, Debug)]
pub struct NumberedFileSource(FileSource);

impl Source for NumberedFileSource {
    type Output = (u64, String);

    fn name(&self) -> String {
        self.0.name()
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn create_reader(&self, context: &OperatorContext) -> Result<Box<dyn SourceReader<(u64, String)>>, TaskError> {
        self.0.reader(context, |number, line| (number, line), true)
    }
}

impl Source for FileSource {
    type Output = String;

    fn name(&self) -> String {
        let shown: Vec<String> = self.paths.iter().map(|path| path.display().to_string()).collect();
        format!("Source: File {}", shown.join(","))
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn create_reader(&self, context: &OperatorContext) -> Result<Box<dyn SourceReader<String>>, TaskError> {
        self.reader(context, |_, line| line, false)
    }
}

/// A byte range of one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Split {
    path: PathBuf,
    start: u64,
    end: u64,
}

/// Lists the input files and cuts them into about `parallelism` splits in all.
fn plan_splits(paths: &[PathBuf], parallelism: usize) -> Result<Vec<Split>, String> {
    let mut files = Vec::new();
    for path in paths {
        list_files(path, &mut files)?;
    }
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    let split_bytes = total.div_ceil(parallelism as u64).max(MIN_SPLIT_BYTES);
    let mut splits = Vec::new();
    for (path, size) in files {
        let mut start = 0;
        while start < size {
            let end = (start + split_bytes).min(size);
            splits.push(Split { path: path.clone(), start, end });
            start = end;
        }
    }
    Ok(splits)
}

fn list_files(path: &Path, files: &mut Vec<(PathBuf, u64)>) -> Result<(), String> {
    let unreadable = |error: std::io::Error| format!("cannot read input path '{}': {error}", path.display());
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if metadata.is_file() {
        files.push((path.to_path_buf(), metadata.len()));
        return Ok(());
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(path).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name();
        let hidden = name.to_string_lossy().starts_with(['.', '_']);
        // `fs::metadata` follows symbolic links, so a linked file is input too.
        let metadata = std::fs::metadata(entry.path()).map_err(unreadable)?;
        if metadata.is_file() && !hidden {
            entries.push((entry.path(), metadata.len()));
        }
    }
    entries.sort();
    files.extend(entries);
    Ok(())
}

struct OpenSplit {
    reader: BufReader<File>,
    split: Split,
    /// Offset of the next unread byte.
    position: u64,
    /// Number of the next line in its file (counted only when asked for).
    line_number: u64,
}

struct LineReader<T> {
    context: OperatorContext,
    /// Splits still to read, the next one last, with the offset of the line
    /// to resume at when a checkpoint caught them half read.
    pending: Vec<(Split, Option<u64>)>,
    open: Option<OpenSplit>,
    /// Makes a record of a line and its number.
    line: fn(u64, String) -> T,
    /// Whether line numbers are wanted (counting them costs a read of the
    /// file up to each split).
    numbered: bool,
}

/// The number of lines that end in the next `bytes` bytes of `reader`.
fn lines_in(reader: &mut impl BufRead, bytes: u64) -> std::io::Result<u64> {
    let (mut left, mut lines) = (bytes, 0u64);
    while left > 0 {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            break;
        }
        let take = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        lines += buffer[..take].iter().filter(|byte| **byte == b'\n').count() as u64;
        reader.consume(take);
        left -= take as u64;
    }
    Ok(lines)
}

impl<T> LineReader<T> {
    fn open_next(&mut self) -> Result<bool, TaskError> {
        let Some((split, resume_at)) = self.pending.pop() else {
            return Ok(false);
        };
        let failed = |error: std::io::Error| {
            self.context.error(format!("cannot read input file '{}': {error}", split.path.display()))
        };
        let file = File::open(&split.path).map_err(failed)?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut position = split.start;
        if let Some(offset) = resume_at {
            // A checkpoint's offset is always the start of a line.
            reader.seek(SeekFrom::Start(offset)).map_err(failed)?;
            position = offset;
        } else if split.start > 0 {
            // Back up one byte: if it is a newline, the split starts on a line.
            reader.seek(SeekFrom::Start(split.start - 1)).map_err(failed)?;
            let mut skipped = Vec::new();
            position = split.start - 1 + reader.read_until(b'\n', &mut skipped).map_err(failed)? as u64;
        }
        let line_number = if self.numbered {
            reader.seek(SeekFrom::Start(0)).map_err(failed)?;
            let before = lines_in(&mut reader, position).map_err(failed)?;
            reader.seek(SeekFrom::Start(position)).map_err(failed)?;
            before + 1
        } else {
            0
        };
        self.open = Some(OpenSplit { reader, split, position, line_number });
        Ok(true)
    }
}

impl<T: Send> SourceReader<T> for LineReader<T> {
    fn read(&mut self, out: &mut dyn Push<T>, max: usize) -> Result<ReadStatus, TaskError> {
        let mut emitted = 0;
        let mut bytes = Vec::with_capacity(128);
        while emitted < max {
            let Some(open) = &mut self.open else {
                if self.open_next()? {
                    continue;
                }
                return Ok(ReadStatus::Finished);
            };
            if open.position >= open.split.end {
                self.open = None;
                continue;
            }
            bytes.clear();
            let read = open.reader.read_until(b'\n', &mut bytes).map_err(|error| {
                self.context.error(format!("cannot read input file '{}': {error}", open.split.path.display()))
            })?;
            if read == 0 {
                self.open = None;
                continue;
            }
            let line_start = open.position;
            open.position += read as u64;
            let line = decode_line(std::mem::take(&mut bytes)).ok_or_else(|| {
                self.context.error(format!(
                    "input file '{}' is not UTF-8 text: the line at byte {line_start} is invalid",
                    open.split.path.display()
                ))
            })?;
            let number = open.line_number;
            open.line_number += 1;
            out.push((self.line)(number, line))?;
            emitted += 1;
        }
        Ok(ReadStatus::More)
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, TaskError> {
        let open = self.open.as_ref().map(|open| (open.split.clone(), Some(open.position)));
        let splits = open.iter().chain(self.pending.iter().rev());
        splits
            .map(|state| {
                postcard::to_allocvec(state)
                    .map_err(|error| self.context.error(format!("cannot record its position: {error}")))
            })
            .collect()
    }
}

/// The line without its terminator (`\n` or `\r\n`, as `str::lines`), if it is valid UTF-8.
fn decode_line(mut bytes: Vec<u8>) -> Option<String> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::prelude::*;

    use super::*;
    use crate::push::{ChainLink, Push};

    /// Keeps what a reader pushes.
    struct Gather<T>(Vec<T>);

    impl<T: Send> ChainLink for Gather<T> {
        fn next(&mut self) -> Option<&mut dyn ChainLink> {
            None
        }
    }

    impl<T: Send> Push<T> for Gather<T> {
        fn push(&mut self, record: T) -> Result<(), TaskError> {
            self.0.push(record);
            Ok(())
        }
    }

    /// The numbered lines of one split.
    fn read_split(split: Split) -> Vec<(u64, String)> {
        let context = crate::operators::tests::context(0, 1);
        let line = |number, line| (number, line);
        let mut reader = LineReader { context, pending: vec![(split, None)], open: None, line, numbered: true };
        let mut out = Gather(Vec::new());
        while reader.read(&mut out, 7).expect("readable") == ReadStatus::More {}
        out.0
    }

    proptest! {
        #[test]
        fn splits_at_any_offsets_read_every_line_once(
            lines in proptest::collection::vec("[a-zé€ \r]{0,12}", 0..40),
            cuts in proptest::collection::vec(0u64..600, 0..6),
            trailing_newline: bool,
        ) {
            let mut text = lines.join("\n");
            if trailing_newline && !text.is_empty() {
                text.push('\n');
            }
            let mut file = tempfile::NamedTempFile::new().expect("temp file");
            file.write_all(text.as_bytes()).expect("write");
            let size = text.len() as u64;
            let mut bounds: Vec<u64> = cuts.into_iter().filter(|cut| *cut < size).collect();
            bounds.extend([0, size]);
            bounds.sort();
            bounds.dedup();
            let mut read = Vec::new();
            for pair in bounds.windows(2) {
                read.extend(read_split(Split { path: file.path().to_path_buf(), start: pair[0], end: pair[1] }));
            }
            let expected: Vec<(u64, String)> = if text.is_empty() {
                vec![]
            } else {
                text.lines().enumerate().map(|(index, line)| (index as u64 + 1, line.to_owned())).collect()
            };
            prop_assert_eq!(read, expected, "every line once, with its number in the file");
        }
    }

    #[test]
    fn a_missing_path_is_named() {
        let error = plan_splits(&[PathBuf::from("/no/such/input.txt")], 2).expect_err("missing");
        assert!(error.contains("'/no/such/input.txt'"), "{error}");
    }

    #[test]
    fn crlf_and_invalid_utf8() {
        assert_eq!(decode_line(b"word\r\n".to_vec()).as_deref(), Some("word"));
        assert_eq!(decode_line(b"word\r".to_vec()).as_deref(), Some("word\r"));
        assert_eq!(decode_line(b"\xff\n".to_vec()), None);
    }
}
