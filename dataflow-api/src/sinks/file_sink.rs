//! An exactly-once sink of text lines into a directory, by two-phase commit
//! with checkpoints (Flink's `FileSink` with its in-progress, pending and
//! finished part files).
//!
//! Each subtask writes its records, one `Display` line each, into a hidden
//! in-progress file `.part-<run>-<subtask>-<n>.inprogress`. At checkpoint
//! barrier `c` the file is synced and renamed to the hidden pending file
//! `.part-<run>-<subtask>-<n>.pending` (pre-commit), and the checkpoint records
//! it. Only when checkpoint `c` completes do pending files become visible as
//! `part-<run>-<subtask>-<n>` (commit, an atomic rename). Both renames are
//! made durable by syncing the directory, so no crash point loses a pending
//! file a checkpoint recorded or undoes a commit. At the end of input
//! everything left is committed: at once without checkpointing; with it, once
//! a checkpoint records the finished task's pending files or the job
//! succeeds, so a failure elsewhere in the job cannot replay records whose
//! output was committed already.
//!
//! On restore from checkpoint `c`, the pending files `c` recorded are committed
//! (their checkpoint completed; a file already committed is left alone), and
//! hidden files of earlier runs that no checkpoint covers are deleted: their
//! records are replayed. A directory must not be shared by two jobs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weir_common::CheckpointId;
use weir_worker::TaskError;
use weir_worker::blame::BlameGuard;
use weir_worker::checkpoint::OperatorSnapshot;

use crate::checkpointing::ChainSnapshot;
use crate::operators::OperatorContext;
use crate::push::{ChainLink, Push};

/// A pre-committed part file: its hidden pending name and its final name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PendingFile {
    pending: String,
    committed: String,
}

pub(crate) struct ExactlyOnceFileSink {
    context: OperatorContext,
    dir: PathBuf,
    /// The open in-progress file and its number.
    open: Option<(BufWriter<File>, u64)>,
    next_part: u64,
    /// Pre-committed files, with the checkpoint that covers them.
    pending: Vec<(CheckpointId, PendingFile)>,
    line: String,
}

impl ExactlyOnceFileSink {
    pub(crate) fn create(context: OperatorContext, dir: &Path) -> Result<Self, TaskError> {
        std::fs::create_dir_all(dir).map_err(|error| {
            context.error(format!("cannot create the output directory '{}': {error}", dir.display()))
        })?;
        let sink = Self {
            context,
            dir: dir.to_path_buf(),
            open: None,
            next_part: 0,
            pending: Vec::new(),
            line: String::new(),
        };
        sink.recover()?;
        Ok(sink)
    }

    /// Commits what the restored checkpoint pre-committed and deletes hidden
    /// files of earlier runs that it does not cover.
    fn recover(&self) -> Result<(), TaskError> {
        let Some(restore) = self.context.restore.as_ref().filter(|restore| restore.has(self.context.operator_id))
        else {
            return Ok(());
        };
        let decode = |entry: &Vec<u8>| {
            postcard::from_bytes::<PendingFile>(entry).map_err(|error| {
                self.context.restore_error(format!(
                    "a pending file in checkpoint {} does not decode: {error}",
                    restore.metadata.id
                ))
            })
        };
        for entry in self.context.restored_entries().unwrap_or_default() {
            let file = decode(&entry)?;
            self.commit(&file).map_err(|error| {
                let message = format!("cannot commit {} of checkpoint {}: {error}", file.pending, restore.metadata.id);
                self.context.restore_error(message)
            })?;
        }
        let covered: Vec<PendingFile> =
            restore.all_entries(self.context.operator_id).iter().map(decode).collect::<Result<_, _>>()?;
        let current_run = format!(".part-{}-", self.context.run_id);
        let listing = std::fs::read_dir(&self.dir).map_err(|error| self.io_error("list", &self.dir, error))?;
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with(".part-") && (name.ends_with(".inprogress") || name.ends_with(".pending"));
            if ours && !name.starts_with(&current_run) && !covered.iter().any(|file| file.pending == name) {
                // Written after the restored checkpoint by a failed run: replayed now.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    fn io_error(&self, action: &str, path: &Path, error: std::io::Error) -> TaskError {
        self.context.error(format!("cannot {action} '{}': {error}", path.display()))
    }

    fn name(&self, part: u64) -> String {
        format!("part-{}-{}-{part}", self.context.run_id, self.context.subtask.index)
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>, TaskError> {
        if self.open.is_none() {
            let part = self.next_part;
            self.next_part += 1;
            let path = self.dir.join(format!(".{}.inprogress", self.name(part)));
            let file = File::create(&path).map_err(|error| self.io_error("create", &path, error))?;
            self.open = Some((BufWriter::with_capacity(64 * 1024, file), part));
        }
        match &mut self.open {
            Some((writer, _)) => Ok(writer),
            None => Err(self.context.error("no open part file")),
        }
    }

    /// Closes the in-progress file durably and renames it to pending.
    fn pre_commit(&mut self) -> Result<Option<PendingFile>, TaskError> {
        let Some((writer, part)) = self.open.take() else { return Ok(None) };
        let name = self.name(part);
        let in_progress = self.dir.join(format!(".{name}.inprogress"));
        let file = writer.into_inner().map_err(|error| self.io_error("write", &in_progress, error.into_error()))?;
        file.sync_all().map_err(|error| self.io_error("sync", &in_progress, error))?;
        let pending = PendingFile { pending: format!(".{name}.pending"), committed: name };
        let target = self.dir.join(&pending.pending);
        std::fs::rename(&in_progress, &target).map_err(|error| self.io_error("pre-commit", &in_progress, error))?;
        // The checkpoint records the pending file: the rename must survive a crash.
        sync_dir(&self.dir).map_err(|error| self.io_error("sync", &self.dir, error))?;
        Ok(Some(pending))
    }

    /// Makes a pending file visible; one committed already is left alone.
    fn commit(&self, file: &PendingFile) -> Result<(), TaskError> {
        commit_file(&self.dir, file).map_err(|message| self.context.error(message))
    }
}

/// Renames a pending file to its final name in `dir`; a file committed
/// already (the pending one gone, the final one there) is fine.
fn commit_file(dir: &Path, file: &PendingFile) -> Result<(), String> {
    let (pending, committed) = (dir.join(&file.pending), dir.join(&file.committed));
    match std::fs::rename(&pending, &committed) {
        // Once the checkpoint counts it committed, a crash must not undo it.
        Ok(()) => sync_dir(dir).map_err(|error| format!("cannot sync '{}': {error}", dir.display())),
        // Committed by an earlier attempt, perhaps not yet durably.
        Err(_) if committed.exists() => {
            sync_dir(dir).map_err(|error| format!("cannot sync '{}': {error}", dir.display()))
        }
        Err(error) => Err(format!("cannot commit '{}': {error}", pending.display())),
    }
}

/// Makes the renames in `dir` durable (a rename is a change of the directory).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl<T: std::fmt::Display + Send> Push<T> for ExactlyOnceFileSink {
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        use std::fmt::Write as _;
        self.line.clear();
        let guard = BlameGuard::new(&self.context.operator_name);
        let _ = writeln!(self.line, "{record}");
        guard.disarm();
        let line = std::mem::take(&mut self.line);
        let written = self.writer()?.write_all(line.as_bytes());
        self.line = line;
        written.map_err(|error| self.context.error(format!("cannot write to '{}': {error}", self.dir.display())))
    }
}

impl ChainLink for ExactlyOnceFileSink {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        None
    }

    fn checkpoint(&mut self, chain: &mut ChainSnapshot<'_>) -> Result<(), TaskError> {
        if let Some(file) = self.pre_commit()? {
            self.pending.push((chain.id(), file));
        }
        let entries = self
            .pending
            .iter()
            .map(|(_, file)| postcard::to_allocvec(file).map_err(|error| self.context.error(error.to_string())))
            .collect::<Result<_, _>>()?;
        chain.add(self.context.operator_id, OperatorSnapshot { keyed: None, entries });
        Ok(())
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<(), TaskError> {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending).into_iter().partition(|(c, _)| *c <= id);
        self.pending = later;
        due.iter().try_for_each(|(_, file)| self.commit(file))
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        let last = self.pre_commit()?;
        let files: Vec<PendingFile> =
            std::mem::take(&mut self.pending).into_iter().map(|(_, file)| file).chain(last).collect();
        let Some(finishing) = &self.context.finishing else {
            // No checkpoints: the end of input is final.
            return files.iter().try_for_each(|file| self.commit(file));
        };
        let entries = files
            .iter()
            .map(|file| postcard::to_allocvec(file).map_err(|error| self.context.error(error.to_string())))
            .collect::<Result<_, _>>()?;
        let (dir, operator) = (self.dir.clone(), self.context.operator_name.clone());
        let commit = Box::new(move || {
            for file in &files {
                commit_file(&dir, file).map_err(|error| format!("sink '{operator}': {error}"))?;
            }
            Ok(())
        });
        finishing.leave(self.context.operator_id, OperatorSnapshot { keyed: None, entries }, commit);
        Ok(())
    }
}
