//! Keyed state survives snapshot and restore at another parallelism, on both
//! backends and across them: random updates over random keys at parallelism
//! m, a snapshot per subtask, a restore at parallelism n, and every key's
//! value compared with a plain map.

use std::collections::HashMap;

use proptest::prelude::*;
use weir_common::{KeyGroup, KeyGroupRange, MaxParallelism};
use weir_state::keyed::{KeyedSnapshot, KeyedStateBackend, StateBackendKind, ValueStateHandle};
use weir_state::storage::{CheckpointStorage, LocalDirStorage, StoragePath};

#[derive(Clone, Debug)]
enum Op {
    Put(u32),
    Add(u32),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![any::<u32>().prop_map(Op::Put), (0u32..1000).prop_map(Op::Add), Just(Op::Clear)]
}

struct Subtasks {
    max: MaxParallelism,
    backends: Vec<KeyedStateBackend<String>>,
    counts: Vec<ValueStateHandle<u32>>,
}

impl Subtasks {
    fn new(kind: &dyn Fn(usize) -> StateBackendKind, max: MaxParallelism, parallelism: usize) -> Self {
        let backends: Vec<_> = (0..parallelism)
            .map(|index| {
                let range = KeyGroupRange::for_subtask(max, parallelism, index);
                KeyedStateBackend::new(&kind(index), max, range).expect("backend opens")
            })
            .collect();
        Self { max, backends, counts: Vec::new() }
    }

    fn register(&mut self) {
        self.counts =
            self.backends.iter_mut().map(|backend| backend.register_value("count").expect("registers")).collect();
    }

    /// The subtask owning `key`, with the key set as current.
    fn select(&mut self, key: &str) -> usize {
        let group = KeyGroup::of_key(key, self.max, &mut Vec::new()).expect("strings serialize");
        let owner = group.operator_index(self.max, self.backends.len());
        self.backends[owner].set_current_key(key.to_owned()).expect("key");
        owner
    }
}

fn kind_for(rocks: bool, root: std::path::PathBuf) -> impl Fn(usize) -> StateBackendKind {
    move |index| {
        if rocks {
            StateBackendKind::RocksDb { dir: root.join(format!("db-{index}")) }
        } else {
            StateBackendKind::Memory
        }
    }
}

fn run(ops: Vec<(u8, Op)>, m: usize, n: usize, rocks_before: bool, rocks_after: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalDirStorage::new(dir.path().join("checkpoints"));
    let max = MaxParallelism::new(64).expect("valid");

    let mut before = Subtasks::new(&kind_for(rocks_before, dir.path().join("before")), max, m);
    before.register();
    let mut model: HashMap<String, u32> = HashMap::new();
    for (key, op) in ops {
        let key = format!("key-{key}");
        let owner = before.select(&key);
        let (backend, count) = (&mut before.backends[owner], &before.counts[owner]);
        match op {
            Op::Put(value) => {
                backend.update(count, value).expect("update");
                model.insert(key, value);
            }
            Op::Add(delta) => {
                let current = backend.value(count).expect("read").unwrap_or(0);
                backend.update(count, current.wrapping_add(delta)).expect("update");
                let slot = model.entry(key).or_insert(0);
                *slot = slot.wrapping_add(delta);
            }
            Op::Clear => {
                backend.clear(count).expect("clear");
                model.remove(&key);
            }
        }
    }
    let snapshots: Vec<KeyedSnapshot> = before
        .backends
        .iter_mut()
        .enumerate()
        .map(|(index, backend)| {
            let path = StoragePath::new(format!("chk-1/subtask-{index}")).expect("valid path");
            backend.snapshot(&storage, &path).expect("snapshot")
        })
        .collect();
    drop(before);

    let mut after = Subtasks::new(&kind_for(rocks_after, dir.path().join("after")), max, n);
    for backend in &mut after.backends {
        backend.restore(&storage, &snapshots).expect("restore");
    }
    after.register();
    for index in 0..=255u8 {
        let key = format!("key-{index}");
        let owner = after.select(&key);
        let restored = after.backends[owner].value(&after.counts[owner]).expect("read");
        prop_assert_eq!(restored, model.get(&key).copied(), "key {} at {} -> {}", key, m, n);
    }
    Ok(())
}

fn ops() -> impl Strategy<Value = Vec<(u8, Op)>> {
    proptest::collection::vec((any::<u8>(), op()), 0..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn memory_state_restores_at_any_parallelism(ops in ops(), m in 1usize..=8, n in 1usize..=8) {
        run(ops, m, n, false, false)?;
    }
}

proptest! {
    // Each case opens up to 16 RocksDB instances: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn rocksdb_state_restores_at_any_parallelism(ops in ops(), m in 1usize..=8, n in 1usize..=8) {
        run(ops, m, n, true, true)?;
    }

    #[test]
    fn snapshots_move_between_backends(ops in ops(), m in 1usize..=8, n in 1usize..=8, to_rocks: bool) {
        run(ops, m, n, !to_rocks, to_rocks)?;
    }
}

#[test]
fn a_corrupted_snapshot_fails_the_restore_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalDirStorage::new(dir.path());
    let max = MaxParallelism::default();
    let range = KeyGroupRange::for_subtask(max, 1, 0);
    let mut backend = KeyedStateBackend::<String>::new(&StateBackendKind::Memory, max, range).expect("backend");
    let count = backend.register_value::<u32>("count").expect("registers");
    backend.set_current_key("a".into()).expect("key");
    backend.update(&count, 7).expect("update");
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
    assert!(storage.exists(&path).expect("exists"));
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
