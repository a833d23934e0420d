//! Incremental RocksDB snapshots: after a small update to a large state the
//! next snapshot uploads a small fraction of the bytes, and discarding the
//! older snapshot deletes no file the newer one needs.

use std::collections::BTreeSet;

use weir_common::{CheckpointId, KeyGroupRange, MaxParallelism};
use weir_state::SharedFileRegistry;
use weir_state::keyed::{KeyedSnapshot, KeyedStateBackend, StateBackendKind, ValueState};
use weir_state::storage::{CheckpointStorage, LocalDirStorage, StoragePath};

const KEYS: u64 = 1_000_000;

/// A deterministic, poorly compressible 16-byte payload.
fn payload(key: u64, version: u64) -> Vec<u8> {
    let mut state = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version.wrapping_mul(0xD1B5_4A32_D192_ED03);
    (0..16)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn shared_paths(snapshot: &KeyedSnapshot) -> Vec<StoragePath> {
    match snapshot {
        KeyedSnapshot::Incremental(snapshot) => snapshot.shared.iter().map(|(_, file)| file.path.clone()).collect(),
        KeyedSnapshot::Full { .. } => panic!("RocksDB takes incremental snapshots"),
    }
}

fn read(backend: &mut KeyedStateBackend<u64>, state: &ValueState<(), Vec<u8>>, key: u64) -> Option<Vec<u8>> {
    backend.set_current_key(key).expect("key");
    backend.value(state, &()).expect("read")
}

#[test]
fn a_one_percent_update_uploads_a_small_fraction_and_old_files_are_released_safely() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalDirStorage::new(dir.path().join("checkpoints"));
    let max = MaxParallelism::default();
    let range = KeyGroupRange::for_subtask(max, 1, 0);
    let kind = StateBackendKind::RocksDb { dir: dir.path().join("db") };
    let mut backend = KeyedStateBackend::<u64>::new(&kind, max, range).expect("backend");
    let state = backend.register_value::<(), Vec<u8>>("payload").expect("registers");
    for key in 0..KEYS {
        backend.set_current_key(key).expect("key");
        backend.set_value(&state, &(), payload(key, 0)).expect("write");
    }
    let shared = StoragePath::new("job/shared").expect("valid");
    let first_dir = StoragePath::new("job/chk-1/subtask-0").expect("valid");
    let first = backend.snapshot_incremental(&storage, &first_dir, &shared).expect("first snapshot");
    backend.confirm(&first.snapshot);

    let updated: Vec<u64> = (0..KEYS).step_by(100).collect();
    for &key in &updated {
        backend.set_current_key(key).expect("key");
        backend.set_value(&state, &(), payload(key, 1)).expect("update");
    }
    let second_dir = StoragePath::new("job/chk-2/subtask-0").expect("valid");
    let second = backend.snapshot_incremental(&storage, &second_dir, &shared).expect("second snapshot");

    eprintln!("uploaded: first {} bytes, second {} bytes", first.uploaded_bytes, second.uploaded_bytes);
    // The whole state is at least 16 MB of payload; the update is 1% of it.
    assert!(first.uploaded_bytes > 16_000_000, "first snapshot uploaded {} bytes", first.uploaded_bytes);
    assert!(
        second.uploaded_bytes * 20 < first.uploaded_bytes,
        "second snapshot uploaded {} bytes, the first {}: not incremental",
        second.uploaded_bytes,
        first.uploaded_bytes
    );
    let reused: BTreeSet<_> = shared_paths(&first.snapshot).into_iter().collect();
    assert!(shared_paths(&second.snapshot).iter().any(|path| reused.contains(path)), "the second reuses files");

    // Retire the first checkpoint: only files the second does not need go.
    let mut registry = SharedFileRegistry::new();
    registry.register(CheckpointId(1), shared_paths(&first.snapshot));
    registry.register(CheckpointId(2), shared_paths(&second.snapshot));
    for path in registry.discard(CheckpointId(1)) {
        storage.delete(&path).expect("delete");
    }
    drop(backend);

    // The second snapshot alone restores everything, into RocksDB (its files
    // reused) and into memory at parallelism 2 (rescaled).
    let check = |restored: &mut KeyedStateBackend<u64>, state: &ValueState<(), Vec<u8>>, keys: &[u64]| {
        for &key in keys {
            let version = u64::from(key % 100 == 0);
            assert_eq!(read(restored, state, key), Some(payload(key, version)), "key {key}");
        }
    };
    let sample: Vec<u64> = (0..KEYS).step_by(997).chain(updated.iter().copied().step_by(7)).collect();
    let kind = StateBackendKind::RocksDb { dir: dir.path().join("restored-db") };
    let mut restored = KeyedStateBackend::<u64>::new(&kind, max, range).expect("backend");
    restored.restore(&storage, std::slice::from_ref(&second.snapshot)).expect("restore");
    let restored_state = restored.register_value::<(), Vec<u8>>("payload").expect("registers");
    check(&mut restored, &restored_state, &sample);
    // Unchanged files were not uploaded again by the restored instance.
    let third_dir = StoragePath::new("job/chk-3/subtask-0").expect("valid");
    let third = restored.snapshot_incremental(&storage, &third_dir, &shared).expect("third snapshot");
    assert!(third.uploaded_bytes * 20 < first.uploaded_bytes, "after restore: {} bytes", third.uploaded_bytes);

    for index in 0..2 {
        let half = KeyGroupRange::for_subtask(max, 2, index);
        let mut memory = KeyedStateBackend::<u64>::new(&StateBackendKind::Memory, max, half).expect("backend");
        memory.restore(&storage, std::slice::from_ref(&second.snapshot)).expect("restore");
        let memory_state = memory.register_value::<(), Vec<u8>>("payload").expect("registers");
        let mine: Vec<u64> = sample
            .iter()
            .copied()
            .filter(|key| {
                let group = weir_common::KeyGroup::of_key(key, max, &mut Vec::new()).expect("serializes");
                half.contains(group)
            })
            .collect();
        check(&mut memory, &memory_state, &mine);
    }
}

#[test]
fn instances_restored_from_one_snapshot_never_share_new_file_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalDirStorage::new(dir.path().join("checkpoints"));
    let max = MaxParallelism::default();
    let range = KeyGroupRange::for_subtask(max, 1, 0);
    let rocks = |name: &str| StateBackendKind::RocksDb { dir: dir.path().join(name) };
    let shared = StoragePath::new("shared").expect("valid");
    let mut original = KeyedStateBackend::<u64>::new(&rocks("original"), max, range).expect("backend");
    let state = original.register_value::<(), Vec<u8>>("payload").expect("registers");
    for key in 0..1_000 {
        original.set_current_key(key).expect("key");
        original.set_value(&state, &(), payload(key, 0)).expect("write");
    }
    let base =
        original.snapshot_incremental(&storage, &StoragePath::new("base").expect("valid"), &shared).expect("snapshot");
    drop(original);

    // Two restored copies diverge; their new SST files must get different names.
    let mut outcomes = Vec::new();
    for copy in 1..=2u64 {
        let mut restored = KeyedStateBackend::<u64>::new(&rocks(&format!("copy-{copy}")), max, range).expect("backend");
        restored.restore(&storage, std::slice::from_ref(&base.snapshot)).expect("restore");
        let state = restored.register_value::<(), Vec<u8>>("payload").expect("registers");
        for key in 0..1_000 {
            restored.set_current_key(key).expect("key");
            restored.set_value(&state, &(), payload(key, copy)).expect("write");
        }
        let private = StoragePath::new(format!("copy-{copy}")).expect("valid");
        outcomes.push(restored.snapshot_incremental(&storage, &private, &shared).expect("snapshot"));
    }
    let base_files: BTreeSet<_> = shared_paths(&base.snapshot).into_iter().collect();
    let new_files = |outcome: &weir_state::keyed::SnapshotOutcome| -> BTreeSet<StoragePath> {
        shared_paths(&outcome.snapshot).into_iter().filter(|path| !base_files.contains(path)).collect()
    };
    let (first, second) = (new_files(&outcomes[0]), new_files(&outcomes[1]));
    assert!(!first.is_empty() && !second.is_empty());
    assert!(first.is_disjoint(&second), "new shared files collide: {first:?} / {second:?}");

    // Each copy restores to its own values.
    for (copy, outcome) in (1..=2u64).zip(&outcomes) {
        let mut check = KeyedStateBackend::<u64>::new(&StateBackendKind::Memory, max, range).expect("backend");
        check.restore(&storage, std::slice::from_ref(&outcome.snapshot)).expect("restore");
        let state = check.register_value::<(), Vec<u8>>("payload").expect("registers");
        for key in (0..1_000).step_by(37) {
            assert_eq!(read(&mut check, &state, key), Some(payload(key, copy)), "copy {copy}, key {key}");
        }
    }
}

#[test]
fn an_incremental_snapshot_of_another_max_parallelism_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalDirStorage::new(dir.path().join("checkpoints"));
    let (small, large) = (MaxParallelism::new(16).expect("valid"), MaxParallelism::new(32).expect("valid"));
    let kind = StateBackendKind::RocksDb { dir: dir.path().join("db") };
    let mut backend =
        KeyedStateBackend::<u64>::new(&kind, small, KeyGroupRange::for_subtask(small, 1, 0)).expect("backend");
    let shared = StoragePath::new("shared").expect("valid");
    let taken =
        backend.snapshot_incremental(&storage, &StoragePath::new("chk").expect("valid"), &shared).expect("snapshot");
    drop(backend);
    let kind = StateBackendKind::RocksDb { dir: dir.path().join("other") };
    let mut other =
        KeyedStateBackend::<u64>::new(&kind, large, KeyGroupRange::for_subtask(large, 1, 0)).expect("backend");
    let error = other.restore(&storage, std::slice::from_ref(&taken.snapshot)).expect_err("refused").to_string();
    assert!(error.contains("max parallelism 16"), "{error}");
}
