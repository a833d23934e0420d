//! Reference counting of files that several snapshots share.
//!
//! Incremental snapshots reuse files (RocksDB SST files) that earlier
//! snapshots uploaded. A shared file may be deleted only when no retained
//! snapshot needs it any more. This registry is the pure bookkeeping: facts in
//! (a snapshot registered its files, a snapshot was discarded), actions out
//! (these files can be deleted now); the caller does the I/O.

use std::collections::{BTreeSet, HashMap};

use weir_common::CheckpointId;

use crate::storage::StoragePath;

/// Which retained snapshots use which shared files.
#[derive(Debug, Default)]
pub struct SharedFileRegistry {
    users: HashMap<StoragePath, BTreeSet<CheckpointId>>,
}

impl SharedFileRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `checkpoint` needs `files`.
    pub fn register(&mut self, checkpoint: CheckpointId, files: impl IntoIterator<Item = StoragePath>) {
        for file in files {
            self.users.entry(file).or_default().insert(checkpoint);
        }
    }

    /// Whether some retained snapshot already stores `file`, so a new snapshot
    /// can refer to it instead of uploading it again.
    pub fn is_stored(&self, file: &StoragePath) -> bool {
        self.users.contains_key(file)
    }

    /// Forgets `checkpoint`; returns the files no retained snapshot needs any
    /// more, which the caller should delete.
    pub fn discard(&mut self, checkpoint: CheckpointId) -> Vec<StoragePath> {
        let mut unused = Vec::new();
        self.users.retain(|file, users| {
            users.remove(&checkpoint);
            if users.is_empty() {
                unused.push(file.clone());
            }
            !users.is_empty()
        });
        unused.sort();
        unused
    }

    /// Number of files in use.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no file is in use.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn path(index: u8) -> StoragePath {
        StoragePath::new(format!("shared/{index}.sst")).expect("valid path")
    }

    #[derive(Clone, Debug)]
    enum Step {
        Snapshot(Vec<u8>),
        Discard(usize),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            proptest::collection::vec(0u8..12, 0..5).prop_map(Step::Snapshot),
            (0usize..8).prop_map(Step::Discard),
        ];
        proptest::collection::vec(step, 0..40)
    }

    proptest! {
        /// A file is reported unused exactly when the last retained snapshot
        /// that needs it is discarded, and never while one still needs it.
        #[test]
        fn deletes_exactly_the_files_no_retained_snapshot_needs(steps in steps()) {
            let mut registry = SharedFileRegistry::new();
            let mut retained: BTreeMap<CheckpointId, Vec<u8>> = BTreeMap::new();
            let needed = |retained: &BTreeMap<CheckpointId, Vec<u8>>| -> BTreeSet<u8> {
                retained.values().flatten().copied().collect()
            };
            for (number, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Snapshot(files) => {
                        let id = CheckpointId(number as u64);
                        registry.register(id, files.iter().map(|&f| path(f)));
                        retained.insert(id, files);
                    }
                    Step::Discard(pick) => {
                        let Some(&id) = retained.keys().nth(pick) else { continue };
                        let before = needed(&retained);
                        retained.remove(&id);
                        let after = needed(&retained);
                        let expected: Vec<StoragePath> = before.difference(&after).map(|&f| path(f)).collect();
                        let mut reported = registry.discard(id);
                        reported.sort();
                        let mut expected = expected;
                        expected.sort();
                        prop_assert_eq!(reported, expected);
                    }
                }
                let needed = needed(&retained);
                for file in 0..12u8 {
                    prop_assert_eq!(registry.is_stored(&path(file)), needed.contains(&file));
                }
            }
        }
    }
}
