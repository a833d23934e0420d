//! Two processes' exchanges on loopback: credit flow and broken-off channels.

use std::time::{Duration, Instant};

use weir_common::ChannelKey;

use super::Network;
use crate::{Batch, CancelToken, Event, Watermark};

fn key(edge: u32, upstream: u32, downstream: u32) -> ChannelKey {
    ChannelKey { edge, upstream, downstream }
}

/// Two processes' exchanges on loopback, joined by hand.
fn pair() -> (Network, Network) {
    let (a, b) = (Network::bind("127.0.0.1").expect("binds"), Network::bind("127.0.0.1").expect("binds"));
    let addresses = vec![a.address().to_string(), b.address().to_string()];
    for network in [&a, &b] {
        network.state.run.set("run-1".into()).expect("unset");
        network.state.addresses.set(addresses.clone()).expect("unset");
    }
    (a, b)
}

#[test]
fn a_producer_sends_only_against_credit_and_events_arrive_in_order() {
    let (a, b) = pair();
    let input = b.remote_input(key(0, 0, 1), 2);
    let cancel = CancelToken::new();
    let output = a.remote_output(key(0, 0, 1), 1, cancel.clone()).expect("joined");
    let batch = |n: u64| Event::Records(Batch::serializable(vec![n, n + 1], Some(vec![10, 11])));
    output.send(batch(0)).expect("credit 1 of 2");
    output.send(Event::Watermark(Watermark::At(7))).expect("credit 2 of 2");
    // The consumer's channel is full and nothing was taken: no credit.
    let (sent_tx, sent_rx) = crossbeam_channel::bounded(1);
    let producer = std::thread::spawn(move || {
        output.send(batch(2)).expect("sent once credit came");
        sent_tx.send(()).expect("test waits");
        output.send(Event::EndOfPartition).expect("sent");
    });
    assert!(sent_rx.recv_timeout(Duration::from_millis(300)).is_err(), "sent without credit");
    let take = || {
        let event = input.receiver.recv_timeout(Duration::from_secs(5)).expect("arrives");
        input.took();
        event
    };
    let Event::Records(first) = take() else { panic!("records first") };
    assert_eq!(first.timestamps(), Some(&[10, 11][..]));
    assert_eq!(first.into_data::<u64>().expect("decodes"), vec![0, 1]);
    sent_rx.recv_timeout(Duration::from_secs(5)).expect("taking one event granted one credit");
    assert!(matches!(take(), Event::Watermark(Watermark::At(7))));
    let Event::Records(third) = take() else { panic!("records third") };
    assert_eq!(third.into_data::<u64>().expect("decodes"), vec![2, 3]);
    assert!(matches!(take(), Event::EndOfPartition));
    producer.join().expect("producer");
    assert_eq!(b.failure(), None, "a channel that ended its partition is no failure");
}

#[test]
fn a_channel_that_breaks_off_fails_the_consuming_run() {
    let (a, b) = pair();
    let run = CancelToken::new();
    b.attach_run(&run);
    let input = b.remote_input(key(3, 1, 0), 4);
    let output = a.remote_output(key(3, 1, 0), 1, CancelToken::new()).expect("joined");
    output.send(Event::Watermark(Watermark::At(1))).expect("credit");
    drop(output); // The producer vanishes without ending its partition.
    assert!(matches!(input.receiver.recv_timeout(Duration::from_secs(5)), Ok(Event::Watermark(_))));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !run.is_cancelled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(run.is_cancelled(), "the run is cancelled");
    assert!(b.failure().is_some_and(|reason| reason.contains("ended before the end of its partition")));
}

#[test]
fn a_giant_credit_grant_fails_the_producing_run_instead_of_filling_memory() {
    let failure = failure_after_grants(&[u32::MAX]);
    assert!(failure.contains("granted 4294967295 credits at once"), "{failure}");
}

#[test]
fn credits_granted_bit_by_bit_beyond_the_limit_fail_the_producing_run_too() {
    let failure = failure_after_grants(&[super::data::MAX_CREDITS / 2 + 1, super::data::MAX_CREDITS / 2 + 1]);
    assert!(failure.contains("more than 65536 credits in all"), "{failure}");
}

/// The producing run's failure after a consumer forged `forged` grants.
fn failure_after_grants(forged: &[u32]) -> String {
    let (a, b) = pair();
    let run = CancelToken::new();
    a.attach_run(&run);
    // The consumer's side, by hand, so the test can grant what it likes.
    let (events, _receiver) = crossbeam_channel::bounded(2);
    let grants = std::sync::Arc::new(std::sync::Mutex::new(None));
    b.state.inputs.insert(key(0, 0, 1), super::data::RemoteInput { events, capacity: 2, grants: grants.clone() });
    let output = a.remote_output(key(0, 0, 1), 1, CancelToken::new()).expect("joined");
    output.send(Event::Watermark(Watermark::At(1))).expect("the first grant arrived");
    let line = super::lock(&grants).clone().expect("the producer connected");
    for credits in forged {
        line.send(Ok(weir_proto::v1::ChannelResponse { credits: *credits })).expect("stream open");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !run.is_cancelled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(run.is_cancelled(), "the producing run is cancelled");
    a.failure().unwrap_or_default()
}
