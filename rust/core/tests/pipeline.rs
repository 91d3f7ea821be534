//! The asynchronous pipeline (SPEC §6) against the emulator: requests fill across `put()` calls,
//! coalescing, abandoned partitions, and stopping while Salesforce hangs.

mod common;

use common::Emulator;
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::outcome::Outcome;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn upsert<'a>(offset: i64, key: &'a str, name: &'a str) -> Record<'a> {
    Record {
        topic: "p",
        partition: 0,
        offset,
        key: Value::String(key),
        value: Value::Map(vec![("LastName", Value::String(name))]),
        operation_header: OperationHeader::Absent,
        original: None,
    }
}

fn upsert_sink<'a>(emu: &Emulator, extra: &[(&'a str, &'a str)]) -> salesforce_sink_core::SalesforceSink {
    let mut pairs = vec![("salesforce.external.id.field", "ExternalId__c"), ("salesforce.operation", "UPSERT")];
    pairs.extend_from_slice(extra);
    emu.sink(&pairs)
}

#[test]
fn requests_fill_across_puts() {
    let emu = Emulator::start();
    let sink = upsert_sink(&emu, &[("salesforce.linger.ms", "2000")]);
    let keys: Vec<String> = (0..10_000).map(|i| format!("K-{i}")).collect();
    let records: Vec<Record> = keys.iter().enumerate().map(|(i, k)| upsert(i as i64, k, k)).collect();
    let before = emu.api_requests();
    // Connect's default poll: 500 records a put. A synchronous sink sends 200 + 200 + 100.
    for (n, put) in records.chunks(500).enumerate() {
        sink.submit(put, (n * 500) as i64).unwrap();
    }
    let progress = sink.wait(Duration::from_secs(60)).unwrap();
    assert_eq!(progress.unfinished, 0);
    assert_eq!(emu.api_requests() - before, 50, "10,000 upserts in puts of 500: 50 full requests");
    assert_eq!(emu.records("Contact").len(), 10_000);
}

#[test]
fn a_part_filled_request_waits_linger_ms_and_no_longer() {
    let emu = Emulator::start();
    let sink = upsert_sink(&emu, &[("salesforce.linger.ms", "300")]);
    let started = Instant::now();
    let progress = sink.submit(&[upsert(0, "a", "A"), upsert(1, "b", "B")], 0).unwrap();
    assert_eq!(progress.unfinished, 2, "put() returns before Salesforce answers");
    while emu.records("Contact").len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "the part-filled request was never sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(290), "sent after {waited:?}, before linger.ms");
}

#[test]
fn coalescing_merges_waiting_updates_of_a_hot_key() {
    let emu = Emulator::start();
    emu.control("POST", "latency", json!({"ms": 100}));
    let mut requests = HashMap::new();
    for coalesce in ["false", "true"] {
        emu.control("POST", "reset", Json::Null);
        emu.control("POST", "latency", json!({"ms": 100}));
        let sink = upsert_sink(&emu, &[("salesforce.coalesce.updates", coalesce), ("salesforce.linger.ms", "0")]);
        let names: Vec<String> = (0..300).map(|i| format!("v{i}")).collect();
        // 300 writes over 3 hot keys, each write with a field of its own.
        let keys = ["h0", "h1", "h2"];
        let records: Vec<Record> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut r = upsert(i as i64, keys[i % 3], n);
                if let Value::Map(fields) = &mut r.value {
                    fields.push(if i % 2 == 0 { ("Email", Value::String("even@example.com")) } else { ("Phone", Value::String(n)) });
                }
                r
            })
            .collect();
        let before = emu.api_requests();
        let mut finished = Vec::new();
        for (n, put) in records.chunks(50).enumerate() {
            finished.extend(sink.submit(put, (n * 50) as i64).unwrap().finished);
        }
        let progress = sink.wait(Duration::from_secs(120)).unwrap();
        finished.extend(progress.finished);
        assert_eq!(finished.len(), 300, "coalesce {coalesce}: every record finishes");
        assert!(finished.iter().all(|(_, o)| *o == Outcome::Written), "coalesce {coalesce}");
        requests.insert(coalesce, emu.api_requests() - before);
        let mut stored: Vec<(String, String, String)> = emu
            .records("Contact")
            .iter()
            .map(|r| (r["ExternalId__c"].as_str().unwrap().to_owned(), r["LastName"].as_str().unwrap().to_owned(), r["Phone"].as_str().unwrap_or("").to_owned()))
            .collect();
        stored.sort();
        // The last write of each key wins, and fields of earlier writes that later ones lack stay.
        assert_eq!(
            stored,
            vec![
                ("h0".into(), "v297".into(), "v297".into()),
                ("h1".into(), "v298".into(), "v295".into()),
                ("h2".into(), "v299".into(), "v299".into())
            ],
            "coalesce {coalesce}"
        );
    }
    println!("requests for 300 upserts over 3 hot keys: {requests:?}");
    assert!(requests["true"] * 5 < requests["false"], "{requests:?}");
}

#[test]
fn abandoned_records_never_finish_and_their_keys_stay_in_order() {
    let emu = Emulator::start();
    emu.control("POST", "latency", json!({"ms": 300}));
    let sink = upsert_sink(&emu, &[("salesforce.linger.ms", "0"), ("salesforce.max.in.flight.requests", "1")]);
    let records = [upsert(0, "x", "first"), upsert(1, "x", "second"), upsert(2, "y", "other")];
    sink.submit(&records, 0).unwrap();
    std::thread::sleep(Duration::from_millis(100)); // seq 0 (and y) in flight, seq 1 waits for x
    sink.abandon(&[0i64, 1].iter().flat_map(|s| s.to_be_bytes()).collect::<Vec<u8>>()).unwrap();
    let progress = sink.wait(Duration::from_secs(10)).unwrap();
    assert_eq!(progress.unfinished, 0);
    let seqs: Vec<i64> = progress.finished.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![2], "only the record that was not abandoned reports");
    // The next owner writes the abandoned records again; the in-flight write of x landed first.
    sink.submit(&[upsert(3, "x", "second")], 3).unwrap();
    sink.wait(Duration::from_secs(10)).unwrap();
    let x = emu.records("Contact").into_iter().find(|r| r["ExternalId__c"] == "x").unwrap();
    assert_eq!(x["LastName"], "second");
}

#[test]
fn stop_returns_at_once_while_salesforce_hangs() {
    let emu = Emulator::start();
    let sink = upsert_sink(&emu, &[("salesforce.linger.ms", "0")]);
    emu.control("POST", "latency", json!({"ms": 20_000}));
    sink.submit(&[upsert(0, "a", "A")], 0).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let flushed = sink.wait(Duration::from_millis(300)).unwrap();
    assert_eq!(flushed.unfinished, 1, "a bounded flush gives up waiting");
    drop(sink);
    assert!(started.elapsed() < Duration::from_secs(2), "close took {:?}", started.elapsed());
}

#[test]
fn writes_of_repeated_keys_travel_together_instead_of_in_ever_smaller_requests() {
    let emu = Emulator::start();
    let sink = upsert_sink(&emu, &[]);
    // 30 keys written 12 times each, all in one put: 12 rounds of 30 writes.
    let names: Vec<String> = (0..360).map(|i| format!("v{i}")).collect();
    let keys: Vec<String> = (0..30).map(|k| format!("r-{k}")).collect();
    let records: Vec<Record> = names.iter().enumerate().map(|(i, n)| upsert(i as i64, &keys[i % 30], n)).collect();
    let before = emu.api_requests();
    sink.submit(&records, 0).unwrap();
    assert_eq!(sink.wait(Duration::from_secs(60)).unwrap().unfinished, 0);
    let requests = emu.api_requests() - before;
    assert!(requests <= 14, "{requests} requests for 12 rounds of 30 keys");
}

#[test]
fn mixed_operations_of_repeated_keys_travel_together() {
    for latency in [0, 150] {
        mixed_operations_with_latency(latency);
    }
}

fn mixed_operations_with_latency(latency: u64) {
    use rand::{Rng, SeedableRng};
    let emu = Emulator::start();
    emu.control("POST", "latency", json!({"ms": latency}));
    emu.control("POST", "faults", json!({"seed": 5, "rules": [
        {"kind": "record_error", "error_code": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access to this record", "probability": 0.1}
    ]}));
    let mut rng = rand::rngs::StdRng::seed_from_u64(latency);
    let sink = upsert_sink(&emu, &[
        ("salesforce.operation.header.enabled", "true"),
        ("salesforce.retry.initial.backoff.ms", "20"),
        ("salesforce.retry.max.backoff.ms", "200"),
    ]);
    let names: Vec<String> = (0..360).map(|i| format!("v{i}")).collect();
    let keys: Vec<String> = (0..30).map(|k| format!("m-{k}")).collect();
    let ops = ["UPSERT", "UPSERT", "UPDATE", "DELETE"];
    // Keys drawn at random (some written far more often than others), operations at random.
    let picks: Vec<(usize, usize)> = (0..360).map(|_| (rng.gen_range(0..30), rng.gen_range(0..4))).collect();
    let records: Vec<Record> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut r = upsert(i as i64, &keys[picks[i].0], n);
            r.operation_header = OperationHeader::Text(ops[picks[i].1]);
            r
        })
        .collect();
    let most = (0..30).map(|k| picks.iter().filter(|p| p.0 == k).count()).max().unwrap();
    emu.control("DELETE", "requests", Json::Null);
    let before = emu.api_requests();
    sink.submit(&records, 0).unwrap();
    assert_eq!(sink.wait(Duration::from_secs(60)).unwrap().unfinished, 0);
    let requests = emu.api_requests() - before;
    println!("{requests} requests for 360 mixed writes over 30 keys (the most written {most} times), +{latency} ms: {}", emu.control("GET", "stats", Json::Null)["by_kind"]);
    if std::env::var("SHOW_REQUESTS").is_ok() {
        for r in emu.control("GET", "requests", Json::Null).as_array().unwrap() {
            println!("{} {} {} {}", r["seq"], r["method"], r["path"].as_str().unwrap_or("").rsplit('/').next().unwrap_or(""), r["records"]);
        }
    }
    // Waves of one key at a time would take about 5 requests (3 operations, 2 Id lookups) per
    // round, 22 rounds here; lock errors on 10 % of the writes add a few rounds. One request per
    // record would be 360 and more.
    assert!(requests * 2 < 360, "{requests} requests for 360 mixed writes over 30 keys, +{latency} ms");
}
