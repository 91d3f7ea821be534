//! A task's life cycle (issue 17, SPEC §11) against the emulator: how long giving up revoked
//! partitions waits for their requests in flight, and the drain estimate that bounds the backlog a
//! task holds.

mod common;

use common::{upsert, upsert_sink, Emulator};
use salesforce_sink_core::record::Record;
use serde_json::json;
use std::time::{Duration, Instant};



fn seqs(seqs: &[i64]) -> Vec<u8> {
    seqs.iter().flat_map(|s| s.to_be_bytes()).collect()
}

fn last_name(emu: &Emulator, key: &str) -> Option<String> {
    emu.records("Contact").into_iter().find(|r| r["ExternalId__c"] == key).and_then(|r| r["LastName"].as_str().map(str::to_owned))
}

/// On revocation the revoked partitions' request in flight is waited for, even past the 3 s a
/// stopping task may wait: the next owner writes the key again only after it landed.
#[test]
fn revocation_waits_for_the_request_in_flight_past_three_seconds() {
    let emu = Emulator::start();
    let sink = upsert_sink(&emu, &[("salesforce.linger.ms", "0"), ("salesforce.request.timeout.ms", "20000")]);
    emu.control("POST", "latency", json!({"ms": 4500}));
    sink.submit(&[upsert(0, "k", "old")], 0).unwrap();
    std::thread::sleep(Duration::from_millis(200)); // in flight
    let started = Instant::now();
    sink.abandon_within(&seqs(&[0]), Duration::from_secs(21)).unwrap();
    let waited = started.elapsed();
    assert_eq!(last_name(&emu, "k").as_deref(), Some("old"), "abandon returned after {waited:?}, before the old write landed");
    assert!(waited < Duration::from_secs(10), "it waited for the answer, not the whole bound: {waited:?}");
    // The next owner's newer write is the last one.
    emu.control("POST", "latency", json!({"ms": 0}));
    let next = upsert_sink(&emu, &[("salesforce.linger.ms", "0")]);
    next.submit(&[upsert(0, "k", "new")], 0).unwrap();
    assert_eq!(next.wait(Duration::from_secs(10)).unwrap().unfinished, 0);
    assert_eq!(last_name(&emu, "k").as_deref(), Some("new"));
}

/// A stopping task gives up at once when Java says so, however slow Salesforce is.
#[test]
fn a_stopping_task_waits_only_what_java_gives_it() {
    let emu = Emulator::start();
    let sink = upsert_sink(&emu, &[("salesforce.linger.ms", "0")]);
    emu.control("POST", "latency", json!({"ms": 8000}));
    sink.submit(&[upsert(0, "s", "x")], 0).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    sink.abandon_within(&seqs(&[0]), Duration::from_millis(500)).unwrap();
    drop(sink);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

/// The drain estimate: a hot key's writes go one round trip at a time, so 40 writes of one key
/// take about 40 round trips while 40 writes of 40 keys take one.
#[test]
fn the_drain_estimate_counts_a_hot_keys_chain() {
    let emu = Emulator::start();
    let sink = upsert_sink(&emu, &[("salesforce.linger.ms", "0")]);
    emu.control("POST", "latency", json!({"ms": 100}));
    sink.submit(&[upsert(0, "warm", "w")], 0).unwrap();
    assert_eq!(sink.wait(Duration::from_secs(10)).unwrap().unfinished, 0);
    assert_eq!(sink.wait(Duration::ZERO).unwrap().drain_estimate, Duration::ZERO, "nothing waits");

    let names: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    let spread_keys: Vec<String> = (0..40).map(|i| format!("spread-{i}")).collect();
    let spread: Vec<Record> = names.iter().zip(&spread_keys).enumerate().map(|(i, (n, k))| upsert(1 + i as i64, k, n)).collect();
    let spread_estimate = sink.submit(&spread, 1).unwrap().drain_estimate;
    assert_eq!(sink.wait(Duration::from_secs(10)).unwrap().unfinished, 0);

    let hot: Vec<Record> = names.iter().enumerate().map(|(i, n)| upsert(41 + i as i64, "hot", n)).collect();
    let hot_estimate = sink.submit(&hot, 41).unwrap().drain_estimate;
    println!("drain estimate at 100 ms answers: 40 keys once {spread_estimate:?}, one key 40 times {hot_estimate:?}");
    assert!(spread_estimate < Duration::from_secs(1), "{spread_estimate:?}");
    assert!(hot_estimate >= Duration::from_millis(40 * 90), "{hot_estimate:?}");
    assert!(hot_estimate >= spread_estimate * 10, "{hot_estimate:?} vs {spread_estimate:?}");
    assert_eq!(sink.wait(Duration::from_secs(30)).unwrap().unfinished, 0);
    assert_eq!(last_name(&emu, "hot").as_deref(), Some("v39"));
}
