//! Checkpoint storage on a directory: local disk, or a mount every process of
//! a cluster can reach.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::checksum::{self, TRAILER_LEN};
use super::{CheckpointStorage, FileHandle, StorageError, StoragePath};

/// Copy buffer for uploads and downloads.
const CHUNK: usize = 256 * 1024;

/// Storage below one root directory.
#[derive(Debug)]
pub struct LocalDirStorage {
    root: PathBuf,
}

/// Creates `dir` and its missing ancestors, syncing each new directory's
/// parent so that the new entries survive a power loss with the files in them.
fn create_dir_all_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        create_dir_all_durably(parent)?;
    }
    match fs::create_dir(dir) {
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => return Err(error),
        _ => {}
    }
    match dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

impl LocalDirStorage {
    /// Storage below `root`, created on first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where a storage path lives on disk.
    pub fn local_path(&self, path: &StoragePath) -> PathBuf {
        self.root.join(path.as_str())
    }

    /// Writes through `fill` into a temporary file next to the target, appends
    /// the checksum trailer, syncs, and renames it into place.
    fn write_atomically(
        &self,
        path: &StoragePath,
        fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()>,
    ) -> Result<FileHandle, StorageError> {
        let target = self.local_path(path);
        let failed = |operation, source| StorageError::Io { operation, path: path.to_string(), source };
        let parent = target.parent().unwrap_or(&self.root);
        create_dir_all_durably(parent).map_err(|error| failed("create the directory of", error))?;
        let name = target.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        // Unique across processes and hosts sharing a mount; never reused.
        let temporary = parent.join(format!(".{name}.{}.tmp", super::unique_id(&name)));
        let result = (|| {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temporary)
                .map_err(|error| failed("create", error))?;
            let mut writer = BufWriter::with_capacity(CHUNK, file);
            let mut hasher = checksum::hasher();
            let mut size = 0u64;
            fill(&mut |bytes: &[u8]| {
                hasher.update(bytes);
                size += bytes.len() as u64;
                writer.write_all(bytes)
            })
            .map_err(|error| failed("write", error))?;
            writer.write_all(&checksum::trailer(hasher.digest())).map_err(|error| failed("write", error))?;
            let file = writer.into_inner().map_err(|error| failed("write", error.into_error()))?;
            file.sync_all().map_err(|error| failed("sync", error))?;
            fs::rename(&temporary, &target).map_err(|error| failed("rename into place", error))?;
            // The rename is durable only once the directory entry is.
            File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(|error| failed("sync the directory of", error))?;
            Ok(FileHandle { path: path.clone(), size })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        result
    }

    /// Opens a stored file and checks that its length matches the handle.
    fn open_checked(&self, file: &FileHandle) -> Result<BufReader<File>, StorageError> {
        let local = self.local_path(&file.path);
        let opened = File::open(&local).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => StorageError::Missing { path: file.path.to_string() },
            _ => StorageError::Io { operation: "open", path: file.path.to_string(), source: error },
        })?;
        let length = opened
            .metadata()
            .map_err(|error| StorageError::Io { operation: "inspect", path: file.path.to_string(), source: error })?
            .len();
        let expected = file.size.checked_add(TRAILER_LEN).ok_or_else(|| StorageError::Corrupt {
            path: file.path.to_string(),
            reason: format!("the recorded size {} is impossible", file.size),
        })?;
        if length != expected {
            return Err(StorageError::Corrupt {
                path: file.path.to_string(),
                reason: format!("{length} bytes on disk, {expected} expected"),
            });
        }
        Ok(BufReader::with_capacity(CHUNK, opened))
    }

    /// Streams the contents of `file` to `sink` and verifies the trailer.
    fn read_verified(
        &self,
        file: &FileHandle,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), StorageError> {
        let mut reader = self.open_checked(file)?;
        let failed = |source| StorageError::Io { operation: "read", path: file.path.to_string(), source };
        let mut hasher = checksum::hasher();
        let mut remaining = file.size;
        let mut buffer = vec![0u8; CHUNK];
        while remaining > 0 {
            let want = remaining.min(CHUNK as u64) as usize;
            reader.read_exact(&mut buffer[..want]).map_err(failed)?;
            hasher.update(&buffer[..want]);
            sink(&buffer[..want]).map_err(failed)?;
            remaining -= want as u64;
        }
        let mut trailer = [0u8; TRAILER_LEN as usize];
        reader.read_exact(&mut trailer).map_err(failed)?;
        checksum::verify(&trailer, hasher.digest())
            .map_err(|reason| StorageError::Corrupt { path: file.path.to_string(), reason })
    }
}

impl CheckpointStorage for LocalDirStorage {
    fn write(&self, path: &StoragePath, contents: &[u8]) -> Result<FileHandle, StorageError> {
        self.write_atomically(path, |write| write(contents))
    }

    fn upload(&self, path: &StoragePath, source: &Path) -> Result<FileHandle, StorageError> {
        let mut input = File::open(source).map_err(|error| StorageError::Io {
            operation: "open the local source of",
            path: path.to_string(),
            source: error,
        })?;
        self.write_atomically(path, |write| {
            let mut buffer = vec![0u8; CHUNK];
            loop {
                let read = input.read(&mut buffer)?;
                if read == 0 {
                    return Ok(());
                }
                write(&buffer[..read])?;
            }
        })
    }

    fn read(&self, file: &FileHandle) -> Result<Vec<u8>, StorageError> {
        // No capacity from the handle: a corrupt handle must not allocate wildly;
        // the length is checked against the file before any byte is read.
        let mut contents = Vec::new();
        self.read_verified(file, &mut |bytes| {
            contents.extend_from_slice(bytes);
            Ok(())
        })?;
        Ok(contents)
    }

    fn download(&self, file: &FileHandle, target: &Path) -> Result<(), StorageError> {
        let failed = |source| StorageError::Io { operation: "download", path: file.path.to_string(), source };
        let mut output = BufWriter::with_capacity(CHUNK, File::create(target).map_err(failed)?);
        let result = self
            .read_verified(file, &mut |bytes| output.write_all(bytes))
            .and_then(|()| output.flush().map_err(failed));
        if result.is_err() {
            let _ = fs::remove_file(target);
        }
        result
    }

    fn delete(&self, path: &StoragePath) -> Result<(), StorageError> {
        let local = self.local_path(path);
        match fs::remove_file(&local) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(StorageError::Io { operation: "delete", path: path.to_string(), source: error });
            }
            _ => {}
        }
        // Directories left empty go too (a discarded checkpoint's `chk-<n>`),
        // up to the root; a directory that still holds files stays.
        let mut directory = local.parent();
        while let Some(dir) = directory.filter(|dir| dir.starts_with(&self.root) && *dir != self.root) {
            if fs::remove_dir(dir).is_err() {
                break;
            }
            directory = dir.parent();
        }
        Ok(())
    }

    fn handle(&self, path: &StoragePath) -> Result<FileHandle, StorageError> {
        let length = match fs::metadata(self.local_path(path)) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::Missing { path: path.to_string() });
            }
            Err(error) => return Err(StorageError::Io { operation: "look at", path: path.to_string(), source: error }),
        };
        let size = length.checked_sub(TRAILER_LEN).ok_or_else(|| StorageError::Corrupt {
            path: path.to_string(),
            reason: format!("{length} bytes, shorter than the checksum trailer"),
        })?;
        Ok(FileHandle { path: path.clone(), size })
    }

    fn exists(&self, path: &StoragePath) -> Result<bool, StorageError> {
        self.local_path(path).try_exists().map_err(|error| StorageError::Io {
            operation: "look for",
            path: path.to_string(),
            source: error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, LocalDirStorage, StoragePath) {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = LocalDirStorage::new(dir.path().join("checkpoints"));
        let path = StoragePath::new("job-1/chk-3/state-0").expect("valid path");
        (dir, storage, path)
    }

    #[test]
    fn write_then_read_returns_the_contents() {
        let (_dir, storage, path) = setup();
        let contents: Vec<u8> = (0..1_000_000u32).map(|n| (n % 251) as u8).collect();
        let handle = storage.write(&path, &contents).expect("write");
        assert_eq!(handle.size, contents.len() as u64);
        assert_eq!(storage.read(&handle).expect("read"), contents);
        assert!(storage.exists(&path).expect("exists"));
    }

    #[test]
    fn upload_and_download_round_trip_large_files() {
        let (dir, storage, path) = setup();
        let source = dir.path().join("local.sst");
        let contents: Vec<u8> = (0..3 * CHUNK as u32 + 17).map(|n| (n * 7 % 256) as u8).collect();
        fs::write(&source, &contents).expect("local file");
        let handle = storage.upload(&path, &source).expect("upload");
        let target = dir.path().join("restored.sst");
        storage.download(&handle, &target).expect("download");
        assert_eq!(fs::read(&target).expect("restored"), contents);
    }

    #[test]
    fn a_flipped_bit_is_reported_with_the_path() {
        let (dir, storage, path) = setup();
        let handle = storage.write(&path, b"keyed state of subtask 0").expect("write");
        let local = storage.local_path(&path);
        let mut bytes = fs::read(&local).expect("stored file");
        bytes[5] ^= 0x01;
        fs::write(&local, bytes).expect("corrupt it");
        let error = storage.read(&handle).expect_err("corruption detected").to_string();
        assert!(error.contains("'job-1/chk-3/state-0' is corrupt"), "{error}");
        assert!(error.contains("checksum mismatch"), "{error}");
        // A failed download leaves nothing behind.
        let target = dir.path().join("restored");
        assert!(storage.download(&handle, &target).is_err());
        assert!(!target.exists());
    }

    #[test]
    fn truncated_and_missing_files_are_reported_with_the_path() {
        let (_dir, storage, path) = setup();
        let handle = storage.write(&path, b"0123456789").expect("write");
        let local = storage.local_path(&path);
        let bytes = fs::read(&local).expect("stored file");
        fs::write(&local, &bytes[..bytes.len() - 3]).expect("truncate it");
        let error = storage.read(&handle).expect_err("truncation detected").to_string();
        assert!(error.contains("'job-1/chk-3/state-0' is corrupt"), "{error}");
        storage.delete(&path).expect("delete");
        storage.delete(&path).expect("deleting twice is fine");
        let error = storage.read(&handle).expect_err("missing").to_string();
        assert!(error.contains("'job-1/chk-3/state-0' is missing"), "{error}");
    }

    #[test]
    fn overwriting_leaves_no_temporary_files() {
        let (_dir, storage, path) = setup();
        storage.write(&path, b"first").expect("write");
        let handle = storage.write(&path, b"second").expect("overwrite");
        assert_eq!(storage.read(&handle).expect("read"), b"second");
        let directory = storage.local_path(&path).parent().expect("parent").to_path_buf();
        let names: Vec<String> = fs::read_dir(directory)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["state-0"]);
    }
}
