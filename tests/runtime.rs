//! The local runtime through the public API: chaining, partitioning, end of
//! input, rolling aggregates and failure propagation, each checked against an
//! expectation computed here, at several parallelisms.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use weir::prelude::*;
use weir_common::{KeyGroup, MaxParallelism, Partitioning};

fn env(parallelism: usize) -> StreamEnv {
    let env = StreamEnv::new();
    env.set_parallelism(parallelism);
    env
}

/// Runs `job` on its own thread and fails the test if it has not returned
/// within `limit`: a hang must fail, not stall the test run.
fn within<T: Send + 'static>(limit: Duration, job: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(job());
    });
    match finished.recv_timeout(limit) {
        Ok(result) => result,
        Err(_) => panic!("the job did not end within {limit:?}"),
    }
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

#[test]
fn forward_edges_of_equal_parallelism_are_chained() {
    let env = env(2);
    env.from_sequence(0..10).map(|n| n + 1).filter(|n| n % 2 == 0).discard();
    let graph = env.job_graph("chained").expect("valid job");
    assert_eq!(graph.vertices.len(), 1, "{graph:#?}");
    let names: Vec<&str> = graph.vertices[0].operators.iter().map(|op| op.name.as_str()).collect();
    assert_eq!(names, ["Source: Sequence", "Map", "Filter", "Sink: Discard"]);
    assert_eq!(graph.vertices[0].name, "Source: Sequence -> Map -> Filter -> Sink: Discard");
}

#[test]
fn key_by_parallelism_change_and_disabled_chaining_break_chains() {
    let env = env(2);
    let doubled = env.from_sequence(0..10).map(|n| n * 2);
    doubled.key_by(|n| *n % 3).reduce(|a, b| a + b).discard();
    doubled.map(|n| n + 1).set_parallelism(3).discard().set_parallelism(3);
    doubled.filter(|_| true).disable_chaining().discard();
    let graph = env.job_graph("broken chains").expect("valid job");
    let edges: Vec<(u32, u32, Partitioning)> =
        graph.edges.iter().map(|edge| (edge.source.0, edge.target.0, edge.partitioning)).collect();
    // v0 = source -> map; v1 = reduce -> discard; v2 = map(3) -> discard(3); v3 = filter; v4 = discard.
    let expected = [
        (0, 1, Partitioning::Hash),
        (0, 2, Partitioning::Rebalance),
        (0, 3, Partitioning::Forward),
        (3, 4, Partitioning::Forward),
    ];
    assert_eq!(edges, expected);
    assert_eq!(graph.vertices[2].parallelism, 3);
}

#[test]
fn job_graph_round_trips_through_protobuf_and_ids_are_stable() {
    let build = || {
        let env = env(2);
        let words = env.from_collection(vec!["a".to_string()]).uid("words");
        words.map(|w| w.len() as u64).key_by(|n| *n).sum(|n| n).print();
        env.job_graph("ids").expect("valid job")
    };
    let (first, second) = (build(), build());
    assert_eq!(first, second, "the same program gives the same graph and ids");
    let decoded = weir::JobGraph::decode(&first.encode()).expect("decodes");
    assert_eq!(decoded, first);
    assert_eq!(first.vertices[0].operators[0].id, weir_common::OperatorId::from_uid("words"));
}

#[test]
fn streams_of_an_earlier_job_and_settings_after_rebalance_are_refused() {
    let env = env(1);
    let numbers = env.from_sequence(0..3);
    numbers.discard();
    env.execute("first").expect("job succeeds");
    numbers.map(|n| n + 1).discard();
    let error = env.execute("second").expect_err("stale stream refused").to_string();
    assert!(error.contains("earlier job"), "{error}");

    let env = StreamEnv::new();
    env.from_sequence(0..3).rebalance().set_parallelism(4).discard();
    let error = env.execute("third").expect_err("misplaced setting refused").to_string();
    assert!(error.contains("set_parallelism() was called after rebalance()"), "{error}");
}

#[test]
fn duplicate_uids_are_rejected() {
    let env = env(1);
    env.from_sequence(0..3).uid("same").map(|n| n).uid("same").discard();
    let error = env.execute("duplicate uids").expect_err("rejected").to_string();
    assert!(error.contains("uid 'same'"), "{error}");
}

#[test]
fn every_key_reaches_the_subtask_owning_its_key_group() {
    for parallelism in [1, 2, 3, 4] {
        let env = env(parallelism);
        let owners = env
            .from_sequence(0..5_000)
            .map(|n| (format!("key-{}", n % 517), 1u64))
            .key_by(|(key, _): &(String, u64)| key.clone())
            .sum(|(_, count): &mut (String, u64)| count)
            // Chained behind the sum: runs in the sum's subtask.
            .process(|(key, _): (String, u64), context: &mut ProcessContext<'_, (String, usize)>| {
                let subtask = context.subtask().index;
                context.collect((key, subtask));
            })
            .collect();
        env.execute("ownership").expect("job succeeds");
        let records = owners.take();
        assert_eq!(records.len(), 5_000);
        let max = MaxParallelism::default();
        let mut scratch = Vec::new();
        for (key, subtask) in records {
            let group = KeyGroup::of_key(&key, max, &mut scratch).expect("strings serialize");
            assert_eq!(subtask, group.operator_index(max, parallelism), "key {key} at parallelism {parallelism}");
        }
    }
}

#[test]
fn rolling_sum_emits_every_update_in_streaming_mode() {
    let env = env(2);
    let input = vec![("a", 1i64), ("b", 5), ("a", 2), ("a", -4), ("b", 1)];
    let updates = env
        .from_collection(input.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Vec<_>>())
        .set_parallelism(1)
        .key_by(|(key, _): &(String, i64)| key.clone())
        .sum(|(_, value): &mut (String, i64)| value)
        .collect();
    env.execute("rolling").expect("job succeeds");
    let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (key, total) in updates.take() {
        by_key.entry(key).or_default().push(total);
    }
    // Updates of one key arrive in input order (one source subtask, one channel).
    assert_eq!(by_key["a"], [1, 3, -1]);
    assert_eq!(by_key["b"], [5, 6]);
}

#[test]
fn batch_mode_emits_final_min_max_sum_once_per_key() {
    for parallelism in [1, 2, 4] {
        let env = env(parallelism);
        env.set_runtime_mode(RuntimeMode::Batch);
        let numbers = env.from_sequence(0..10_000).map(|n| (n % 7, n as i64));
        let sums = numbers.key_by(|p: &(u64, i64)| p.0).sum(|p: &mut (u64, i64)| &mut p.1).collect();
        let mins = numbers.key_by(|p: &(u64, i64)| p.0).min(|p: &mut (u64, i64)| &mut p.1).collect();
        let maxs = numbers.key_by(|p: &(u64, i64)| p.0).max(|p: &mut (u64, i64)| &mut p.1).collect();
        env.execute("final aggregates").expect("job succeeds");
        let mut expected_sum: HashMap<u64, i64> = HashMap::new();
        for n in 0..10_000u64 {
            *expected_sum.entry(n % 7).or_default() += n as i64;
        }
        let expected_sum = sorted(expected_sum.into_iter().collect());
        assert_eq!(sorted(sums.take()), expected_sum, "parallelism {parallelism}");
        assert_eq!(sorted(mins.take()), (0..7).map(|k| (k, k as i64)).collect::<Vec<_>>());
        let expected_max: Vec<(u64, i64)> =
            (0..7).map(|k| (k, (0..10_000i64).filter(|n| *n as u64 % 7 == k).max().unwrap_or_default())).collect();
        assert_eq!(sorted(maxs.take()), expected_max);
    }
}

#[test]
fn union_rebalance_and_broadcast_deliver_as_specified() {
    let env = env(3);
    let left = env.from_sequence(0..1_000);
    let right = env.from_collection((1_000..1_500).collect::<Vec<u64>>());
    let union = left.union(&[right]).collect();
    let tagged = |stream: DataStream<u64>| {
        stream
            .process(|n: u64, context: &mut ProcessContext<'_, (u64, usize)>| {
                let subtask = context.subtask().index;
                context.collect((n, subtask));
            })
            .set_parallelism(3)
            .collect()
    };
    let rebalanced = tagged(env.from_sequence(0..3_000).set_parallelism(1).rebalance());
    let broadcast = tagged(env.from_sequence(0..100).set_parallelism(1).broadcast());
    env.execute("distribution").expect("job succeeds");

    assert_eq!(sorted(union.take()), (0..1_500).collect::<Vec<u64>>());

    let rebalanced = rebalanced.take();
    assert_eq!(sorted(rebalanced.iter().map(|(n, _)| *n).collect()), (0..3_000).collect::<Vec<u64>>());
    for subtask in 0..3 {
        let share = rebalanced.iter().filter(|(_, s)| *s == subtask).count();
        assert_eq!(share, 1_000, "round robin gives subtask {subtask} a third");
    }

    let broadcast = sorted(broadcast.take());
    let expected: Vec<(u64, usize)> = (0..100).flat_map(|n| (0..3).map(move |s| (n, s))).collect();
    assert_eq!(broadcast, expected, "every record reaches every subtask once");
}

#[test]
fn a_bounded_job_ends_when_every_source_is_exhausted() {
    for parallelism in [1, 2, 4] {
        let env = env(parallelism);
        let big = env.from_sequence(0..200_000).collect();
        let small = env.from_collection(vec![1u8, 2, 3]).collect();
        let empty = env.from_collection(Vec::<u8>::new()).collect();
        env.execute("bounded").expect("job succeeds");
        assert_eq!(sorted(big.take()), (0..200_000).collect::<Vec<u64>>());
        assert_eq!(sorted(small.take()), [1, 2, 3]);
        assert!(empty.take().is_empty());
    }
}

#[test]
fn a_panicking_map_fails_the_job_naming_operator_and_subtask() {
    for parallelism in [1, 4] {
        let error = within(Duration::from_secs(60), move || {
            let env = env(parallelism);
            // An unbounded source in another pipeline must be stopped too.
            env.source(GeneratorSource::new(|n: u64| n)).discard();
            env.from_sequence(0..1_000_000)
                .key_by(|n: &u64| *n % 10)
                .reduce(|a, b| a + b)
                .map(|n: u64| {
                    if n > 1_000 {
                        panic!("value {n} is too large");
                    }
                    n
                })
                .name("exploding map")
                .discard();
            env.execute("failing").expect_err("the job fails").to_string()
        });
        assert!(error.contains("operator 'exploding map'"), "{error}");
        assert!(error.contains("(subtask "), "{error}");
        assert!(error.contains("is too large"), "{error}");
    }
}

#[test]
fn a_panicking_key_selector_is_named() {
    let error = within(Duration::from_secs(60), || {
        let env = env(2);
        env.from_sequence(0..100)
            .name("numbers")
            .key_by(|n: &u64| if *n == 42 { panic!("no key for 42") } else { *n })
            .reduce(|a, b| a + b)
            .discard();
        env.execute("failing key").expect_err("the job fails").to_string()
    });
    assert!(error.contains("key selector after 'numbers'"), "{error}");
}

#[test]
fn partial_batches_are_flushed_after_the_buffer_timeout() {
    // A slow unbounded source never fills a batch: its records must still
    // reach the next task, here one that fails on the fifth record. Without
    // flushing, the job would wait forever.
    let error = within(Duration::from_secs(60), || {
        let env = env(1);
        env.set_buffer_timeout(Duration::from_millis(20));
        env.source(GeneratorSource::new(|n: u64| n).records_per_second(200.0))
            .rebalance()
            .map(|n: u64| if n == 4 { panic!("record {n} arrived") } else { n })
            .name("receiver")
            .discard();
        env.execute("trickle").expect_err("the receiver fails on purpose").to_string()
    });
    assert!(error.contains("record 4 arrived"), "{error}");
}

#[test]
fn a_missing_file_fails_the_job_naming_the_path() {
    let env = env(2);
    env.read_text_file("/no/such/dir/input.txt").discard();
    let error = env.execute("missing file").expect_err("the job fails").to_string();
    assert!(error.contains("'/no/such/dir/input.txt'"), "{error}");
}

#[test]
fn batch_mode_refuses_an_unbounded_source() {
    let env = env(1);
    env.set_runtime_mode(RuntimeMode::Batch);
    env.source(GeneratorSource::new(|n: u64| n)).discard();
    let error = env.execute("unbounded batch").expect_err("rejected").to_string();
    assert!(error.contains("unbounded"), "{error}");
}

#[test]
fn text_file_sink_writes_one_file_per_subtask() {
    let dir = tempfile::tempdir().expect("temp dir");
    let single = dir.path().join("single.txt");
    let multi = dir.path().join("multi");
    let env = env(2);
    let numbers = env.from_sequence(0..1_000);
    numbers.write_as_text(&single).set_parallelism(1);
    numbers.write_as_text(&multi);
    env.execute("text sink").expect("job succeeds");
    let read_numbers =
        |text: String| -> Vec<u64> { sorted(text.lines().map(|line| line.parse().expect("a number")).collect()) };
    assert_eq!(read_numbers(std::fs::read_to_string(&single).expect("file")), (0..1_000).collect::<Vec<_>>());
    let both = std::fs::read_to_string(multi.join("1")).expect("part 1")
        + &std::fs::read_to_string(multi.join("2")).expect("part 2");
    assert_eq!(read_numbers(both), (0..1_000).collect::<Vec<_>>());
}

#[test]
fn a_rate_limited_bounded_generator_emits_every_index_once() {
    let env = env(2);
    let records = env.source(GeneratorSource::new(|n: u64| n * 10).count(2_000).records_per_second(10_000.0)).collect();
    let started = Instant::now();
    env.execute("rate limited").expect("job succeeds");
    // A limiter is a lower bound on time: 2,000 records at 10,000/s take at
    // least 0.2 s (less one burst of 0.1 s), however fast the machine.
    assert!(started.elapsed() >= Duration::from_millis(100), "too fast: {:?}", started.elapsed());
    assert_eq!(sorted(records.take()), (0..2_000).map(|n| n * 10).collect::<Vec<u64>>());
}

/// After a failed job, no thread of it is left: `execute` joins them all.
#[cfg(target_os = "linux")]
#[test]
fn a_failed_job_leaves_no_task_thread_behind() {
    let error = within(Duration::from_secs(60), || {
        let env = env(4);
        // Thread names start with the chain name ("leakcheck -> …"), so this test
        // finds its own threads among those of tests running concurrently.
        env.source(GeneratorSource::new(|n: u64| n)).name("leakcheck").discard();
        env.from_sequence(0..100)
            .name("leakcheck")
            .rebalance()
            .map(|n: u64| if n == 50 { panic!("planned failure") } else { n })
            .name("leakcheck-map")
            .discard();
        env.execute("leak check").expect_err("the job fails").to_string()
    });
    assert!(error.contains("planned failure"), "{error}");
    let mut leftovers = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("procfs") {
        let comm = std::fs::read_to_string(task.expect("entry").path().join("comm")).unwrap_or_default();
        if comm.starts_with("leakcheck") {
            leftovers.push(comm);
        }
    }
    assert!(leftovers.is_empty(), "threads still running: {leftovers:?}");
}

#[test]
fn rolling_aggregates_give_the_same_results_on_rocksdb() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |backend: weir::StateBackend, parallelism: usize| {
        let env = env(parallelism);
        env.set_runtime_mode(RuntimeMode::Batch);
        env.set_state_backend(backend);
        let sums = env
            .from_sequence(0..20_000)
            .map(|n| (format!("key-{}", n % 97), n))
            .key_by(|(key, _): &(String, u64)| key.clone())
            .sum(|(_, n): &mut (String, u64)| n)
            .collect();
        env.execute("rolling on a backend").expect("job succeeds");
        sorted(sums.take())
    };
    let expected = run(weir::StateBackend::Memory, 1);
    assert_eq!(expected.len(), 97);
    assert_eq!(expected.iter().map(|(_, sum)| sum).sum::<u64>(), (0..20_000).sum::<u64>());
    for parallelism in [1, 2, 4] {
        let rocks = weir::StateBackend::RocksDb { dir: dir.path().to_path_buf() };
        assert_eq!(run(rocks, parallelism), expected, "RocksDB at parallelism {parallelism}");
    }
    // Each run's working directories are gone once the job ended.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
    assert!(leftovers.is_empty(), "RocksDB directories left behind: {leftovers:?}");
}

#[test]
fn a_task_that_ignores_its_cancellation_is_given_up_after_the_timeout() {
    let env = StreamEnv::new();
    env.set_parallelism(1).set_task_cancellation_timeout(Duration::from_millis(300));
    let (started, started_rx) = std::sync::mpsc::sync_channel(1);
    env.from_sequence(0..10)
        .map(move |n| {
            let _ = started.try_send(());
            // Blocks without looking at the job's cancellation.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
                if n > 100 {
                    break n;
                }
            }
        })
        .discard();
    let client = env.execute_async("stuck").expect("starts");
    started_rx.recv_timeout(Duration::from_secs(10)).expect("the map runs");
    client.cancel();
    let cancelled = Instant::now();
    let error = client.wait().expect_err("the stuck task fails the job").to_string();
    assert!(cancelled.elapsed() < Duration::from_secs(10), "the job ended instead of waiting for the task");
    assert!(error.contains("did not stop within 300ms of the run's cancellation"), "{error}");
    assert!(error.contains("v0-0"), "names the task: {error}");
}
