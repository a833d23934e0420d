//! Restoring keyed state refuses what it cannot restore faithfully — a
//! corrupted file, a snapshot of another max parallelism, state read back as
//! another type — and keeps what no operator has claimed yet: restored state
//! that nobody registered goes into the next snapshot.

use weir_common::{KeyGroupRange, MaxParallelism};
use weir_state::keyed::{KeyedStateBackend, StateBackendKind};
use weir_state::storage::{LocalDirStorage, StoragePath};

#[test]
fn a_corrupted_snapshot_fails_the_restore_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalDirStorage::new(dir.path());
    let max = MaxParallelism::default();
    let range = KeyGroupRange::for_subtask(max, 1, 0);
    let mut backend = KeyedStateBackend::<String>::new(&StateBackendKind::Memory, max, range).expect("backend");
    let count = backend.register_value::<(), u32>("count").expect("registers");
    backend.set_current_key("a".into()).expect("key");
    backend.set_value(&count, &(), 7).expect("update");
    let path = StoragePath::new("chk-1/subtask-0").expect("valid");
    let snapshot = backend.snapshot(&storage, &path).expect("snapshot");
    let local = storage.local_path(&path);
    let mut bytes = std::fs::read(&local).expect("file");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&local, bytes).expect("corrupt");

    let mut restored = KeyedStateBackend::<String>::new(&StateBackendKind::Memory, max, range).expect("backend");
    let error = restored.restore(&storage, &[snapshot]).expect_err("corruption detected").to_string();
    assert!(error.contains("'chk-1/subtask-0' is corrupt"), "{error}");
}

#[test]
fn restored_state_of_another_type_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalDirStorage::new(dir.path());
    let max = MaxParallelism::default();
    let range = KeyGroupRange::for_subtask(max, 1, 0);
    let mut backend = KeyedStateBackend::<String>::new(&StateBackendKind::Memory, max, range).expect("backend");
    let name = backend.register_value::<(), String>("name").expect("registers");
    backend.set_current_key("a".into()).expect("key");
    backend.set_value(&name, &(), "a long text, not a number".to_owned()).expect("update");
    let snapshot = backend.snapshot(&storage, &StoragePath::new("chk-1/s0").expect("valid")).expect("snapshot");

    let mut restored = KeyedStateBackend::<String>::new(&StateBackendKind::Memory, max, range).expect("backend");
    restored.restore(&storage, &[snapshot]).expect("restore");
    let error = restored.register_value::<(), (u64, u64, u64, u64)>("name").expect_err("type mismatch").to_string();
    assert!(error.contains("state 'name'"), "{error}");
    // The failed registration lost nothing: the right type still finds the value.
    let name = restored.register_value::<(), String>("name").expect("right type registers");
    restored.set_current_key("a".into()).expect("key");
    assert_eq!(restored.value(&name, &()).expect("read").as_deref(), Some("a long text, not a number"));
}

#[test]
fn restored_state_nobody_registered_goes_into_the_next_snapshot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalDirStorage::new(dir.path().join("checkpoints"));
    let max = MaxParallelism::new(32).expect("valid");
    let whole = KeyGroupRange::for_subtask(max, 1, 0);
    let rocks = |name: &str| StateBackendKind::RocksDb { dir: dir.path().join(name) };
    let mut original = KeyedStateBackend::<u32>::new(&rocks("original"), max, whole).expect("backend");
    let count = original.register_value::<(), u32>("count").expect("registers");
    for key in 0..100u32 {
        original.set_current_key(key).expect("key");
        original.set_value(&count, &(), key * 3).expect("write");
    }
    let shared = StoragePath::new("shared").expect("valid");
    let first =
        original.snapshot_incremental(&storage, &StoragePath::new("chk-1").expect("valid"), &shared).expect("snapshot");
    drop(original);

    // Rescale 1 -> 2 into RocksDB, snapshot before any operator registers the state...
    let mut halves = Vec::new();
    for index in 0..2 {
        let range = KeyGroupRange::for_subtask(max, 2, index);
        let mut half = KeyedStateBackend::<u32>::new(&rocks(&format!("half-{index}")), max, range).expect("backend");
        half.restore(&storage, std::slice::from_ref(&first.snapshot)).expect("restore");
        let path = StoragePath::new(format!("chk-2/subtask-{index}")).expect("valid");
        halves.push(half.snapshot(&storage, &path).expect("snapshot"));
    }
    // ...and back to one task in memory: every value is still there.
    let mut merged = KeyedStateBackend::<u32>::new(&StateBackendKind::Memory, max, whole).expect("backend");
    merged.restore(&storage, &halves).expect("restore");
    let count = merged.register_value::<(), u32>("count").expect("registers");
    for key in 0..100u32 {
        merged.set_current_key(key).expect("key");
        assert_eq!(merged.value(&count, &()).expect("read"), Some(key * 3), "key {key}");
    }
}

#[test]
fn a_snapshot_of_another_max_parallelism_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalDirStorage::new(dir.path());
    let (small, large) = (MaxParallelism::new(16).expect("valid"), MaxParallelism::new(32).expect("valid"));
    let mut backend =
        KeyedStateBackend::<u64>::new(&StateBackendKind::Memory, small, KeyGroupRange::for_subtask(small, 1, 0))
            .expect("backend");
    let path = StoragePath::new("chk-1/subtask-0").expect("valid");
    let snapshot = backend.snapshot(&storage, &path).expect("snapshot");
    let mut other =
        KeyedStateBackend::<u64>::new(&StateBackendKind::Memory, large, KeyGroupRange::for_subtask(large, 1, 0))
            .expect("backend");
    let error = other.restore(&storage, &[snapshot]).expect_err("refused").to_string();
    assert!(error.contains("max parallelism 16"), "{error}");
}
