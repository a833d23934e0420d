//! Keyed state survives snapshot and restore at another parallelism, on both
//! backends and across them: random operations on every kind of state, over
//! random keys and namespaces at parallelism m, a snapshot per subtask, a
//! restore at parallelism n, and every key's state compared with a model
//! kept in plain maps.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use weir_common::{KeyGroup, KeyGroupRange, MaxParallelism};
use weir_state::keyed::{
    AggregateFunction, AggregatingState, KeyedSnapshot, KeyedStateBackend, ListState, MapState, ReducingState,
    StateBackendKind, StateTtl, TimeDomain, TimerService, ValueState,
};
use weir_state::storage::{LocalDirStorage, StoragePath};

/// Time to live of the "lease" state, in milliseconds of the test clock.
const LEASE_MS: i64 = 50;

/// Sum and count, read back exactly.
struct SumCount;

impl AggregateFunction for SumCount {
    type In = u32;
    type Acc = (u64, u64);
    type Out = (u64, u64);
    fn create_accumulator(&self) -> (u64, u64) {
        (0, 0)
    }
    fn add(&self, accumulator: &mut (u64, u64), input: u32) {
        accumulator.0 += u64::from(input);
        accumulator.1 += 1;
    }
    fn result(&self, accumulator: &(u64, u64)) -> (u64, u64) {
        *accumulator
    }
    fn merge(&self, a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

#[derive(Clone, Debug)]
enum Op {
    SetValue(u32),
    ClearValue,
    ListAdd(u16),
    ClearList,
    MapPut(u8, u32),
    MapRemove(u8),
    ClearMap,
    Reduce(u32),
    Aggregate(u32),
    SetTimer(bool, i64),
    /// Writes the lease state (time to live `LEASE_MS`).
    Lease(u32),
    /// Moves the clock forward.
    Tick(i64),
    DeleteTimer(bool, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u32>().prop_map(Op::SetValue),
        Just(Op::ClearValue),
        any::<u16>().prop_map(Op::ListAdd),
        Just(Op::ClearList),
        (0u8..6, any::<u32>()).prop_map(|(k, v)| Op::MapPut(k, v)),
        (0u8..6).prop_map(Op::MapRemove),
        Just(Op::ClearMap),
        (0u32..1000).prop_map(Op::Reduce),
        (0u32..1000).prop_map(Op::Aggregate),
        (any::<bool>(), -5i64..20).prop_map(|(event, at)| Op::SetTimer(event, at)),
        any::<u32>().prop_map(Op::Lease),
        (0i64..30).prop_map(Op::Tick),
        (any::<bool>(), -5i64..20).prop_map(|(event, at)| Op::DeleteTimer(event, at)),
    ]
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    value: Option<u32>,
    list: Vec<u16>,
    map: BTreeMap<u8, u32>,
    total: Option<u64>,
    mean: Option<(u64, u64)>,
    /// (event time?, timestamp)
    timers: BTreeSet<(bool, i64)>,
    /// The lease's value as a read sees it now.
    lease: Option<u32>,
    /// The lease's value and expiry, as written (model only).
    lease_written: Option<(u32, i64)>,
}

impl Model {
    /// What reads should return at `now`: the visible lease, no model-only fields.
    fn visible_at(&self, now: i64) -> Model {
        let lease = self.lease_written.filter(|(_, expires)| *expires > now).map(|(value, _)| value);
        Model { timers: BTreeSet::new(), lease, lease_written: None, ..self.clone() }
    }
}

struct Handles {
    value: ValueState<u8, u32>,
    list: ListState<u8, u16>,
    map: MapState<u8, u8, u32>,
    total: ReducingState<u8, u64>,
    mean: AggregatingState<u8, SumCount>,
    timers: TimerService<u8>,
    lease: ValueState<u8, u32>,
}

struct Subtasks {
    max: MaxParallelism,
    backends: Vec<KeyedStateBackend<String>>,
    handles: Vec<Handles>,
    /// The processing-time clock of every backend.
    clock: Arc<AtomicI64>,
}

impl Subtasks {
    fn new(kind: &dyn Fn(usize) -> StateBackendKind, max: MaxParallelism, parallelism: usize, now: i64) -> Self {
        let clock = Arc::new(AtomicI64::new(now));
        let backends = (0..parallelism)
            .map(|index| {
                let range = KeyGroupRange::for_subtask(max, parallelism, index);
                let mut backend = KeyedStateBackend::new(&kind(index), max, range).expect("backend opens");
                let reader = clock.clone();
                backend.set_clock(Arc::new(move || reader.load(Ordering::SeqCst)));
                backend
            })
            .collect();
        Self { max, backends, handles: Vec::new(), clock }
    }

    fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn register(&mut self) {
        self.handles = self
            .backends
            .iter_mut()
            .map(|backend| Handles {
                value: backend.register_value("count").expect("registers"),
                list: backend.register_list("events").expect("registers"),
                map: backend.register_map("attributes").expect("registers"),
                total: backend.register_reducing("total", |a: u64, b: u64| a + b).expect("registers"),
                mean: backend.register_aggregating("mean", SumCount).expect("registers"),
                timers: backend.register_timer_service("timers").expect("registers"),
                lease: backend
                    .register_value_with_ttl("lease", Some(StateTtl::new(Duration::from_millis(LEASE_MS as u64))))
                    .expect("registers"),
            })
            .collect();
    }

    /// The backend owning `key`, with the key set as current.
    fn select(&mut self, key: &str) -> (&mut KeyedStateBackend<String>, &Handles) {
        let group = KeyGroup::of_key(key, self.max, &mut Vec::new()).expect("strings serialize");
        let owner = group.operator_index(self.max, self.backends.len());
        self.backends[owner].set_current_key(key.to_owned()).expect("key");
        (&mut self.backends[owner], &self.handles[owner])
    }

    fn read(&mut self, key: &str, ns: u8) -> Model {
        let (backend, h) = self.select(key);
        Model {
            value: backend.value(&h.value, &ns).expect("read"),
            list: backend.list(&h.list, &ns).expect("read"),
            map: backend.map_entries(&h.map, &ns).expect("read").into_iter().collect(),
            total: backend.reducing_get(&h.total, &ns).expect("read"),
            mean: backend.aggregating_get(&h.mean, &ns).expect("read"),
            timers: BTreeSet::new(),
            lease: backend.value(&h.lease, &ns).expect("read"),
            lease_written: None,
        }
    }

    /// Fires every timer of every subtask, checking that each subtask fires in
    /// timestamp order; returns them sorted as (key, namespace, event time?, timestamp).
    fn fire_all(&mut self) -> Vec<(String, u8, bool, i64)> {
        let mut fired = Vec::new();
        for (backend, handles) in self.backends.iter_mut().zip(&self.handles) {
            for (event, domain) in [(true, TimeDomain::EventTime), (false, TimeDomain::ProcessingTime)] {
                let timers = backend.fire_timers(&handles.timers, domain, i64::MAX).expect("fire");
                assert!(timers.windows(2).all(|pair| pair[0].timestamp <= pair[1].timestamp), "timestamp order");
                for timer in &timers {
                    let group = KeyGroup::of_key(&timer.key, self.max, &mut Vec::new()).expect("serializes");
                    assert!(
                        backend.key_group_range().contains(group),
                        "timer of {} fired by a foreign subtask",
                        timer.key
                    );
                }
                assert_eq!(backend.next_timer(&handles.timers, domain).expect("next"), None);
                fired.extend(timers.into_iter().map(|timer| (timer.key, timer.namespace, event, timer.timestamp)));
            }
        }
        // Sorted, not deduplicated: a timer firing twice would show.
        fired.sort();
        fired
    }
}

fn apply(subtasks: &mut Subtasks, model: &mut HashMap<(String, u8), Model>, key: String, ns: u8, op: Op) {
    if let Op::Tick(millis) = op {
        subtasks.clock.fetch_add(millis, Ordering::SeqCst);
        return;
    }
    let now = subtasks.now();
    let expected = model.entry((key.clone(), ns)).or_default();
    let (backend, h) = subtasks.select(&key);
    match op {
        Op::SetValue(value) => {
            backend.set_value(&h.value, &ns, value).expect("update");
            expected.value = Some(value);
        }
        Op::ClearValue => {
            backend.clear(&h.value, &ns).expect("clear");
            expected.value = None;
        }
        Op::ListAdd(value) => {
            backend.list_add(&h.list, &ns, value).expect("add");
            expected.list.push(value);
        }
        Op::ClearList => {
            backend.clear(&h.list, &ns).expect("clear");
            expected.list.clear();
        }
        Op::MapPut(user_key, value) => {
            backend.map_put(&h.map, &ns, user_key, value).expect("put");
            expected.map.insert(user_key, value);
        }
        Op::MapRemove(user_key) => {
            backend.map_remove(&h.map, &ns, &user_key).expect("remove");
            expected.map.remove(&user_key);
        }
        Op::ClearMap => {
            backend.clear(&h.map, &ns).expect("clear");
            expected.map.clear();
        }
        Op::Reduce(value) => {
            backend.reducing_add(&h.total, &ns, u64::from(value)).expect("add");
            expected.total = Some(expected.total.unwrap_or(0) + u64::from(value));
        }
        Op::Aggregate(value) => {
            backend.aggregating_add(&h.mean, &ns, value).expect("add");
            let (sum, count) = expected.mean.unwrap_or((0, 0));
            expected.mean = Some((sum + u64::from(value), count + 1));
        }
        Op::SetTimer(event, at) => {
            backend.register_timer(&h.timers, domain(event), ns, at).expect("set timer");
            expected.timers.insert((event, at));
        }
        Op::DeleteTimer(event, at) => {
            backend.delete_timer(&h.timers, domain(event), ns, at).expect("delete timer");
            expected.timers.remove(&(event, at));
        }
        Op::Lease(value) => {
            backend.set_value(&h.lease, &ns, value).expect("lease");
            expected.lease_written = Some((value, now + LEASE_MS));
        }
        Op::Tick(_) => {}
    }
}

fn domain(event: bool) -> TimeDomain {
    if event { TimeDomain::EventTime } else { TimeDomain::ProcessingTime }
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

fn run(ops: Vec<(u8, u8, Op)>, m: usize, n: usize, rocks_before: bool, rocks_after: bool) -> Result<(), TestCaseError> {
    run_with(ops, m, n, rocks_before, rocks_after, false)
}

fn run_with(
    ops: Vec<(u8, u8, Op)>,
    m: usize,
    n: usize,
    rocks_before: bool,
    rocks_after: bool,
    incremental: bool,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = LocalDirStorage::new(dir.path().join("checkpoints"));
    let max = MaxParallelism::new(64).expect("valid");

    let mut before = Subtasks::new(&kind_for(rocks_before, dir.path().join("before")), max, m, 10_000);
    before.register();
    let mut model = HashMap::new();
    for (key, ns, op) in ops {
        apply(&mut before, &mut model, format!("key-{key}"), ns, op);
    }
    // The live state matches the model before any snapshot is involved.
    let snapshot_time = before.now();
    for ((key, ns), expected) in &model {
        prop_assert_eq!(before.read(key, *ns), expected.visible_at(snapshot_time), "live state of {}/{}", key, ns);
    }
    let expected_timers: Vec<(String, u8, bool, i64)> = model
        .iter()
        .flat_map(|((key, ns), entry)| entry.timers.iter().map(move |(event, at)| (key.clone(), *ns, *event, *at)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let snapshots: Vec<KeyedSnapshot> = before
        .backends
        .iter_mut()
        .enumerate()
        .map(|(index, backend)| {
            let path = StoragePath::new(format!("chk-1/subtask-{index}")).expect("valid path");
            if incremental {
                let shared = StoragePath::new("shared").expect("valid path");
                backend.snapshot_incremental(&storage, &path, &shared).expect("snapshot").snapshot
            } else {
                backend.snapshot(&storage, &path).expect("snapshot")
            }
        })
        .collect();
    drop(before);

    let mut after = Subtasks::new(&kind_for(rocks_after, dir.path().join("after")), max, n, snapshot_time);
    for backend in &mut after.backends {
        backend.restore(&storage, &snapshots).expect("restore");
    }
    after.register();
    // Read at the snapshot's time, then later: leases keep their exact expiry.
    for advance in [0, LEASE_MS / 2] {
        after.clock.store(snapshot_time + advance, Ordering::SeqCst);
        for key in 0..64u8 {
            for ns in 0..3u8 {
                let key = format!("key-{key}");
                let expected = model.get(&(key.clone(), ns)).cloned().unwrap_or_default();
                let expected = expected.visible_at(snapshot_time + advance);
                prop_assert_eq!(
                    after.read(&key, ns),
                    expected,
                    "key {}/{} after {} -> {}, +{}ms",
                    key,
                    ns,
                    m,
                    n,
                    advance
                );
            }
        }
    }
    prop_assert_eq!(after.fire_all(), expected_timers, "timers after {} -> {}", m, n);
    Ok(())
}

fn ops() -> impl Strategy<Value = Vec<(u8, u8, Op)>> {
    proptest::collection::vec((0u8..64, 0u8..3, op()), 0..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn memory_state_restores_at_any_parallelism(ops in ops(), m in 1usize..=8, n in 1usize..=8) {
        run(ops, m, n, false, false)?;
    }
}

proptest! {
    // Each case opens up to 16 RocksDB instances: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn rocksdb_state_restores_at_any_parallelism(ops in ops(), m in 1usize..=8, n in 1usize..=8) {
        run(ops, m, n, true, true)?;
    }

    #[test]
    fn incremental_rocksdb_snapshots_restore_at_any_parallelism_and_backend(
        ops in ops(), m in 1usize..=8, n in 1usize..=8, to_rocks: bool,
    ) {
        run_with(ops, m, n, true, to_rocks, true)?;
    }

    #[test]
    fn snapshots_move_between_backends(ops in ops(), m in 1usize..=8, n in 1usize..=8, to_rocks: bool) {
        run(ops, m, n, !to_rocks, to_rocks)?;
    }
}

#[test]
fn the_fast_incremental_restore_path_keeps_state_and_timers() {
    let ops = (0..200u32)
        .map(|i| {
            let op = match i % 4 {
                0 => Op::SetValue(i),
                1 => Op::MapPut((i % 5) as u8, i),
                2 => Op::SetTimer(i % 8 == 2, i64::from(i % 13)),
                _ => Op::ListAdd(i as u16),
            };
            ((i % 37) as u8, (i % 3) as u8, op)
        })
        .collect();
    // Equal parallelism, RocksDB to RocksDB, incremental: the files are reused.
    run_with(ops, 3, 3, true, true, true).expect("state and timers survive");
}
