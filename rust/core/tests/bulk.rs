//! BULK and AUTO (SPEC §7) against the emulator's Bulk API 2.0: what the generative test does not
//! pin down one case at a time — quota, a job that names a bad column, abandoned and stopped jobs,
//! the AUTO switch.

mod common;

use common::Emulator;
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::outcome::Outcome;
use serde_json::{json, Value as Json};
use std::time::{Duration, Instant};

fn upsert<'a>(offset: i64, key: &'a str, fields: Vec<(&'a str, Value<'a>)>) -> Record<'a> {
    Record {
        topic: "b",
        partition: 0,
        offset,
        key: Value::String(key),
        value: Value::Map(fields),
        operation_header: OperationHeader::Absent,
        original: None,
    }
}

/// One UPSERT per key, offsets from 0, the key as its LastName.
fn named_upserts(keys: &[String]) -> Vec<Record<'_>> {
    keys.iter().enumerate().map(|(i, k)| upsert(i as i64, k, vec![("LastName", Value::String(k))])).collect()
}

fn bulk_sink(emu: &Emulator, extra: &[(&str, &str)]) -> salesforce_sink_core::SalesforceSink {
    let mut pairs = vec![
        ("salesforce.external.id.field", "ExternalId__c"),
        ("salesforce.operation", "UPSERT"),
        ("salesforce.write.mode", "BULK"),
        ("salesforce.bulk.linger.ms", "0"),
        ("salesforce.bulk.poll.interval.ms", "10"),
    ];
    pairs.extend_from_slice(extra);
    emu.sink(&pairs)
}

fn kinds(emu: &Emulator) -> Json {
    emu.control("GET", "stats", Json::Null)["by_kind"].clone()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < timeout, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_daily_bulk_allowance_makes_records_wait_never_fail() {
    let emu = Emulator::start();
    emu.control("POST", "bulk", json!({"daily_records_limit": 10}));
    let sink = bulk_sink(&emu, &[("salesforce.api.quota.check.interval.ms", "500")]);
    let keys: Vec<String> = (0..50).map(|i| format!("q-{i}")).collect();
    let records = named_upserts(&keys);
    let progress = sink.submit(&records, 0).unwrap();
    assert!(progress.finished.is_empty());
    let progress = sink.wait(Duration::from_secs(2)).unwrap();
    assert_eq!(progress.unfinished, 50, "the allowance is spent: every record waits ({:?})", progress.finished);
    assert!(progress.finished.is_empty(), "quota is no record's fault: {:?}", progress.finished);
    assert!(emu.records("Contact").is_empty());
    // A new day.
    emu.control("POST", "bulk", json!({"daily_records_limit": 150_000_000}));
    let progress = sink.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(progress.unfinished, 0);
    assert!(progress.finished.iter().all(|(_, o)| *o == Outcome::Written), "{:?}", progress.finished);
    assert_eq!(emu.records("Contact").len(), 50);
}

#[test]
fn a_job_failed_for_an_unknown_column_fails_only_the_records_that_carry_it() {
    let emu = Emulator::start();
    let sink = bulk_sink(&emu, &[]);
    let records = vec![
        upsert(0, "c-0", vec![("LastName", Value::String("A"))]),
        upsert(1, "c-1", vec![("LastName", Value::String("B")), ("Nope__c", Value::String("x"))]),
        upsert(2, "c-2", vec![("LastName", Value::String("C"))]),
    ];
    sink.submit(&records, 0).unwrap();
    let progress = sink.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(progress.unfinished, 0);
    let mut outcomes: Vec<(i64, Outcome)> = progress.finished;
    outcomes.sort_by_key(|(s, _)| *s);
    assert_eq!(outcomes[0].1, Outcome::Written);
    assert_eq!(outcomes[2].1, Outcome::Written);
    let Outcome::Failed(why) = &outcomes[1].1 else { panic!("{outcomes:?}") };
    assert!(why.contains("Nope__c") && why.contains("c-1") && why.contains("offset 1"), "{why}");
    assert_eq!(emu.records("Contact").len(), 2);
    assert_eq!(kinds(&emu)["bulk_create"], 2, "one failed job, one job for the rest: no Collections detour");
}

#[test]
fn stopping_a_task_aborts_its_running_jobs() {
    let emu = Emulator::start();
    emu.control("POST", "bulk", json!({"records_per_second": 50}));
    let sink = bulk_sink(&emu, &[]);
    let keys: Vec<String> = (0..2_000).map(|i| format!("s-{i}")).collect();
    let records = named_upserts(&keys);
    sink.submit(&records, 0).unwrap();
    wait_for("a job in progress", Duration::from_secs(10), || emu.control("GET", "bulk", Json::Null)["records_processed"].as_u64() > Some(0));
    drop(sink);
    wait_for("the job aborted", Duration::from_secs(10), || emu.control("GET", "bulk", Json::Null)["jobs_aborted"].as_u64() == Some(1));
    let written = emu.records("Contact").len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(emu.records("Contact").len(), written, "an aborted job writes nothing more");
    assert!(written < 2_000);
}

#[test]
fn abandoned_records_abort_their_job() {
    let emu = Emulator::start();
    emu.control("POST", "bulk", json!({"records_per_second": 50}));
    let sink = bulk_sink(&emu, &[]);
    let keys: Vec<String> = (0..500).map(|i| format!("a-{i}")).collect();
    let records = named_upserts(&keys);
    sink.submit(&records, 0).unwrap();
    wait_for("a job in progress", Duration::from_secs(10), || emu.control("GET", "bulk", Json::Null)["records_processed"].as_u64() > Some(0));
    let seqs: Vec<u8> = (0..500i64).flat_map(|s| s.to_be_bytes()).collect();
    let t0 = Instant::now();
    sink.abandon(&seqs).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "abandon waited {:?}", t0.elapsed());
    assert_eq!(emu.control("GET", "bulk", Json::Null)["jobs_aborted"], 1);
    let progress = sink.wait(Duration::from_millis(100)).unwrap();
    assert_eq!(progress.unfinished, 0, "abandoned records are not this task's any more");
    assert!(progress.finished.is_empty(), "abandoned records never finish here: {:?}", progress.finished);
}

#[test]
fn auto_uses_collections_for_a_trickle_and_a_job_for_a_backlog() {
    let emu = Emulator::start();
    let sink = emu.sink(&[
        ("salesforce.external.id.field", "ExternalId__c"),
        ("salesforce.operation", "UPSERT"),
        ("salesforce.write.mode", "AUTO"),
        ("salesforce.bulk.threshold", "500"),
        ("salesforce.bulk.linger.ms", "50"),
        ("salesforce.bulk.poll.interval.ms", "10"),
        ("salesforce.linger.ms", "10"),
    ]);
    let keys: Vec<String> = (0..1_010).map(|i| format!("t-{i}")).collect();
    let records = named_upserts(&keys);
    sink.submit(&records[..10], 0).unwrap();
    assert_eq!(sink.wait(Duration::from_secs(10)).unwrap().unfinished, 0);
    let trickle = kinds(&emu);
    assert!(trickle["bulk_create"].is_null(), "10 records: no job ({trickle})");
    sink.submit(&records[10..], 10).unwrap();
    assert_eq!(sink.wait(Duration::from_secs(30)).unwrap().unfinished, 0);
    let backlog = kinds(&emu);
    assert_eq!(backlog["bulk_create"], 1, "1,000 waiting records: one job ({backlog})");
    assert_eq!(emu.records("Contact").len(), 1_010);
}

#[test]
fn deletes_go_as_hard_deletes_when_configured() {
    let emu = Emulator::start();
    let sink = bulk_sink(&emu, &[("salesforce.bulk.hard.delete", "true"), ("salesforce.operation.header.enabled", "true")]);
    let keys: Vec<String> = (0..20).map(|i| format!("h-{i}")).collect();
    let records = named_upserts(&keys);
    sink.submit(&records, 0).unwrap();
    assert_eq!(sink.wait(Duration::from_secs(20)).unwrap().unfinished, 0);
    let deletes: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Record { operation_header: OperationHeader::Text("DELETE"), ..upsert(20 + i as i64, k, vec![]) })
        .collect();
    sink.submit(&deletes, 20).unwrap();
    let progress = sink.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(progress.unfinished, 0);
    assert!(progress.finished.iter().all(|(_, o)| *o == Outcome::Written), "{:?}", progress.finished);
    assert!(emu.records("Contact").is_empty());
    // The org's job list, as Salesforce serves it: the delete job ran as hardDelete.
    let operations: Vec<String> = emu.rt.block_on(async {
        let http = reqwest::Client::new();
        let token: Json = http
            .post(format!("{}/services/oauth2/token", emu.base))
            .form(&[("grant_type", "client_credentials"), ("client_id", "test-client-id"), ("client_secret", "test-client-secret")])
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap();
        let jobs: Json = http
            .get(format!("{}/services/data/v62.0/jobs/ingest", emu.base))
            .bearer_auth(token["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap();
        jobs["records"].as_array().unwrap().iter().map(|j| j["operation"].as_str().unwrap_or("").to_owned()).collect()
    });
    assert!(operations.contains(&"upsert".to_owned()) && operations.contains(&"hardDelete".to_owned()), "{operations:?}");
}
