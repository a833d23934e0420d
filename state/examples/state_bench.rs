//! Keyed-state benchmark: put, get and update throughput of one backend on
//! one thread, then snapshot and restore times and sizes.
//!
//! ```text
//! cargo run --release -p weir-state --example state_bench -- --backend memory --keys 1000000 --value-bytes 100
//! cargo run --release -p weir-state --example state_bench -- --backend rocksdb --keys 1000000 --value-bytes 100
//! ```

use std::time::Instant;

use weir_common::{KeyGroupRange, MaxParallelism};
use weir_state::keyed::{KeyedSnapshot, KeyedStateBackend, StateBackendKind};
use weir_state::storage::{LocalDirStorage, StoragePath};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: &str| -> String {
        args.iter().position(|arg| arg == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or(default.into())
    };
    let backend_name = flag("--backend", "memory");
    let keys: u64 = flag("--keys", "1000000").parse().expect("--keys N");
    let value_bytes: usize = flag("--value-bytes", "100").parse().expect("--value-bytes N");
    let dir = tempfile::tempdir().expect("temp dir");
    let kind = match backend_name.as_str() {
        "rocksdb" => StateBackendKind::RocksDb { dir: dir.path().join("db") },
        _ => StateBackendKind::Memory,
    };
    let max = MaxParallelism::default();
    let range = KeyGroupRange::for_subtask(max, 1, 0);
    let mut backend = KeyedStateBackend::<u64>::new(&kind, max, range).expect("backend");
    let payload = backend.register_value::<(), Vec<u8>>("payload").expect("registers");
    let counter = backend.register_value::<(), u64>("counter").expect("registers");
    let value = |key: u64| -> Vec<u8> {
        (0..value_bytes).map(|i| (key as usize).wrapping_mul(31).wrapping_add(i) as u8).collect()
    };
    // A fixed permutation of the keys, so reads do not walk in insertion order.
    let shuffled = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % keys;

    let rate = |started: Instant, operations: u64| operations as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for key in 0..keys {
        backend.set_current_key(key).expect("key");
        backend.set_value(&payload, &(), value(key)).expect("put");
    }
    println!("backend={backend_name} keys={keys} value_bytes={value_bytes}");
    println!("put_ops_per_second={:.0}", rate(started, keys));

    let started = Instant::now();
    let mut found = 0u64;
    for i in 0..keys {
        backend.set_current_key(shuffled(i)).expect("key");
        found += u64::from(backend.value(&payload, &()).expect("get").is_some());
    }
    assert_eq!(found, keys);
    println!("get_ops_per_second={:.0}", rate(started, keys));

    let started = Instant::now();
    for i in 0..keys {
        backend.set_current_key(shuffled(i)).expect("key");
        backend.update_value(&counter, &(), |count| (Some(count.unwrap_or(0) + 1), ())).expect("update");
    }
    println!("update_ops_per_second={:.0} (read-modify-write of a u64 counter)", rate(started, keys));

    let storage = LocalDirStorage::new(dir.path().join("checkpoints"));
    let started = Instant::now();
    let full = backend.snapshot(&storage, &StoragePath::new("chk-1/full").expect("path")).expect("snapshot");
    let full_size = match &full {
        KeyedSnapshot::Full { file, .. } => file.size,
        KeyedSnapshot::Incremental(_) => 0,
    };
    println!("full_snapshot_ms={:.0} full_snapshot_bytes={full_size}", started.elapsed().as_secs_f64() * 1e3);

    let started = Instant::now();
    let shared = StoragePath::new("shared").expect("path");
    let first =
        backend.snapshot_incremental(&storage, &StoragePath::new("chk-2").expect("path"), &shared).expect("snapshot");
    println!(
        "incremental_first_ms={:.0} incremental_first_bytes={}",
        started.elapsed().as_secs_f64() * 1e3,
        first.uploaded_bytes
    );
    backend.confirm(&first.snapshot);
    for key in (0..keys).step_by(100) {
        backend.set_current_key(key).expect("key");
        backend.set_value(&payload, &(), value(key + 1)).expect("put");
    }
    let started = Instant::now();
    let second =
        backend.snapshot_incremental(&storage, &StoragePath::new("chk-3").expect("path"), &shared).expect("snapshot");
    println!(
        "incremental_after_1pct_ms={:.0} incremental_after_1pct_bytes={}",
        started.elapsed().as_secs_f64() * 1e3,
        second.uploaded_bytes
    );
    drop(backend);

    for (label, snapshot) in [("full", &full), ("incremental", &second.snapshot)] {
        let kind = match &kind {
            StateBackendKind::RocksDb { dir } => StateBackendKind::RocksDb { dir: dir.with_extension(label) },
            StateBackendKind::Memory => StateBackendKind::Memory,
        };
        let started = Instant::now();
        let mut restored = KeyedStateBackend::<u64>::new(&kind, max, range).expect("backend");
        restored.restore(&storage, std::slice::from_ref(snapshot)).expect("restore");
        let payload = restored.register_value::<(), Vec<u8>>("payload").expect("registers");
        println!("restore_{label}_ms={:.0}", started.elapsed().as_secs_f64() * 1e3);
        restored.set_current_key(7).expect("key");
        assert_eq!(restored.value(&payload, &()).expect("get"), Some(value(7)));
    }
}
