//! Time-to-live: expired entries are invisible on read, reads may refresh
//! them, and full snapshots leave expired entries out, on both backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use weir_common::{KeyGroupRange, MaxParallelism};
use weir_state::keyed::{KeyedSnapshot, KeyedStateBackend, StateBackendKind, StateTtl};
use weir_state::storage::{LocalDirStorage, StoragePath};

/// A clock the test moves by hand.
fn manual_clock() -> (Arc<AtomicI64>, weir_state::keyed::Clock) {
    let now = Arc::new(AtomicI64::new(1_000));
    let reader = now.clone();
    (now, Arc::new(move || reader.load(Ordering::SeqCst)))
}

fn backends(dir: &std::path::Path) -> Vec<(&'static str, StateBackendKind)> {
    vec![("memory", StateBackendKind::Memory), ("rocksdb", StateBackendKind::RocksDb { dir: dir.join("db") })]
}

#[test]
fn expired_entries_are_invisible_and_left_out_of_snapshots() {
    let max = MaxParallelism::default();
    let range = KeyGroupRange::for_subtask(max, 1, 0);
    let ttl = Some(StateTtl::new(Duration::from_millis(100)));
    let databases = tempfile::tempdir().expect("temp dir");
    for (label, kind) in backends(databases.path()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = LocalDirStorage::new(dir.path());
        let (now, clock) = manual_clock();
        let mut backend = KeyedStateBackend::<String>::new(&kind, max, range).expect("backend");
        backend.set_clock(clock.clone());
        let value = backend.register_value_with_ttl::<(), u32>("value", ttl).expect("registers");
        let list = backend.register_list_with_ttl::<(), u32>("list", ttl).expect("registers");
        let map = backend.register_map_with_ttl::<(), u8, u32>("map", ttl).expect("registers");
        let total = backend.register_reducing_with_ttl::<(), u64>("total", |a, b| a + b, ttl).expect("registers");
        let write = |backend: &mut KeyedStateBackend<String>, key: &str, n: u32| {
            backend.set_current_key(key.to_owned()).expect("key");
            backend.set_value(&value, &(), n).expect("value");
            backend.list_add(&list, &(), n).expect("list");
            backend.map_put(&map, &(), 1, n).expect("map");
            backend.reducing_add(&total, &(), u64::from(n)).expect("reduce");
        };
        write(&mut backend, "old", 1); // at 1000, expires at 1100
        now.store(1_050, Ordering::SeqCst);
        write(&mut backend, "new", 2); // expires at 1150
        now.store(1_120, Ordering::SeqCst);
        let read = |backend: &mut KeyedStateBackend<String>, key: &str| {
            backend.set_current_key(key.to_owned()).expect("key");
            (
                backend.value(&value, &()).expect("value"),
                backend.list(&list, &()).expect("list"),
                backend.map_entries(&map, &()).expect("map"),
                backend.reducing_get(&total, &()).expect("reduce"),
            )
        };
        assert_eq!(read(&mut backend, "old"), (None, vec![], vec![], None), "{label}: expired entries are invisible");
        assert_eq!(read(&mut backend, "new"), (Some(2), vec![2], vec![(1, 2)], Some(2)), "{label}");

        // A snapshot at 1120 leaves "old" out: restored with the clock turned
        // back to 1000, where "old" would be alive, it is gone all the same.
        let snapshot = backend.snapshot(&storage, &StoragePath::new("chk").expect("valid")).expect("snapshot");
        drop(backend);
        let (earlier, clock) = manual_clock();
        earlier.store(1_000, Ordering::SeqCst);
        let mut restored = KeyedStateBackend::<String>::new(&StateBackendKind::Memory, max, range).expect("backend");
        restored.set_clock(clock);
        restored.restore(&storage, std::slice::from_ref(&snapshot)).expect("restore");
        let value = restored.register_value_with_ttl::<(), u32>("value", ttl).expect("registers");
        restored.set_current_key("old".into()).expect("key");
        assert_eq!(restored.value(&value, &()).expect("read"), None, "{label}: expired entry left the snapshot");
        restored.set_current_key("new".into()).expect("key");
        assert_eq!(restored.value(&value, &()).expect("read"), Some(2), "{label}: live entry kept, with its expiry");
        earlier.store(1_150, Ordering::SeqCst);
        assert_eq!(restored.value(&value, &()).expect("read"), None, "{label}: the restored expiry still applies");
        assert!(matches!(snapshot, KeyedSnapshot::Full { .. }));
    }
}

#[test]
fn reads_refresh_the_time_to_live_only_when_asked() {
    let max = MaxParallelism::default();
    let range = KeyGroupRange::for_subtask(max, 1, 0);
    let dir = tempfile::tempdir().expect("temp dir");
    for (label, kind) in backends(dir.path()) {
        let (now, clock) = manual_clock();
        let mut backend = KeyedStateBackend::<u64>::new(&kind, max, range).expect("backend");
        backend.set_clock(clock);
        let plain = StateTtl::new(Duration::from_millis(100));
        let refreshing = plain.refresh_on_read();
        let fixed = backend.register_value_with_ttl::<(), u32>("fixed", Some(plain)).expect("registers");
        let sliding = backend.register_value_with_ttl::<(), u32>("sliding", Some(refreshing)).expect("registers");
        backend.set_current_key(7).expect("key");
        backend.set_value(&fixed, &(), 1).expect("write");
        backend.set_value(&sliding, &(), 1).expect("write");
        now.store(1_090, Ordering::SeqCst);
        assert_eq!(backend.value(&fixed, &()).expect("read"), Some(1));
        assert_eq!(backend.value(&sliding, &()).expect("read"), Some(1), "{label}: read at 1090 refreshes to 1190");
        now.store(1_150, Ordering::SeqCst);
        assert_eq!(backend.value(&fixed, &()).expect("read"), None, "{label}: written at 1000, expired at 1100");
        assert_eq!(backend.value(&sliding, &()).expect("read"), Some(1), "{label}: refreshed");
        // Registering the same name without a time to live is refused.
        assert!(backend.register_value::<(), u32>("fixed").is_err(), "{label}");
    }
}
