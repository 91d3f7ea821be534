//! The API quota guard (SPEC §8) and the task metrics (SPEC §10) against the emulator: the
//! pipeline stops at the reserve line, reads `/limits` while it holds, and resumes by itself.

mod common;

use common::Emulator;
use salesforce_sink_core::metrics::{HealthState, RequestKind};
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use serde_json::{json, Value as Json};
use std::time::{Duration, Instant};

fn insert<'a>(offset: i64, name: &'a str) -> Record<'a> {
    Record {
        topic: "q",
        partition: 0,
        offset,
        key: Value::Null,
        value: Value::Map(vec![("LastName", Value::String(name))]),
        operation_header: OperationHeader::Absent,
        original: None,
    }
}

fn limits_requests(emu: &Emulator) -> usize {
    emu.data_requests().iter().filter(|r| r["path"].as_str().unwrap_or("").ends_with("/limits")).count()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "{what} not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stops_at_the_reserve_line_and_resumes_when_the_allowance_is_back() {
    let emu = Emulator::start();
    // 87 % used, reserve 10 %: the line is at 9,000 used (remaining < 1,000).
    emu.control("POST", "limits", json!({"max": 10_000, "used": 8_700}));
    let max_in_flight = 4u64;
    let sink = emu.sink(&[
        ("salesforce.batch.size", "5"),
        ("salesforce.linger.ms", "0"),
        ("salesforce.max.in.flight.requests", "4"),
        ("salesforce.api.quota.reserve.percent", "10"),
        ("salesforce.api.quota.check.interval.ms", "1000"),
    ]);
    emu.control("DELETE", "requests", Json::Null);
    let names: Vec<String> = (0..5_000).map(|i| format!("N{i}")).collect();
    let records: Vec<Record> = names.iter().enumerate().map(|(i, n)| insert(i as i64, n)).collect();
    sink.submit(&records, 0).unwrap();

    wait_for("the quota guard", Duration::from_secs(30), || sink.metrics().quota.active());
    // Requests in flight finish; nothing new starts.
    wait_for("requests in flight to finish", Duration::from_secs(10), || sink.wait(Duration::ZERO).unwrap().requests_in_flight == 0);
    std::thread::sleep(Duration::from_millis(2_200)); // two check intervals: only GET /limits
    let used = emu.control("GET", "limits", Json::Null)["used"].as_u64().unwrap();
    let line = 9_000;
    let limits = limits_requests(&emu) as u64;
    assert!(limits >= 1, "no GET /limits while the guard held");
    assert!(used <= line + 1 + max_in_flight + limits, "used {used}: more than {max_in_flight} requests past the line (+{limits} /limits reads)");
    let written = emu.records("Contact").len();
    assert!(written < 5_000 && written >= (line - 8_700) as usize * 5 - 5, "{written} written before the line");
    let progress = sink.wait(Duration::ZERO).unwrap();
    assert_eq!(progress.unfinished, 5_000 - written, "records wait; none failed");
    assert_eq!(sink.metrics().health().state, HealthState::QuotaReserve);
    assert!(sink.metrics().health().message.contains("salesforce.api.quota.reserve.percent"));

    // A new day: the allowance is back; the guard notices at its next /limits read.
    emu.control("POST", "limits", json!({"used": 0}));
    let resumed = Instant::now();
    let progress = sink.wait(Duration::from_secs(30)).unwrap();
    assert_eq!(progress.unfinished, 0);
    assert!(resumed.elapsed() < Duration::from_secs(10), "resumed after {:?}", resumed.elapsed());
    assert_eq!(emu.records("Contact").len(), 5_000, "every record landed");
    assert!(!sink.metrics().quota.active());
    assert_eq!(sink.metrics().health().state, HealthState::Ok);

    // The metrics agree with what the emulator saw.
    let snapshot: std::collections::HashMap<_, _> = sink.metrics().snapshot(0, 0).into_iter().collect();
    let log = emu.data_requests();
    let collections = log.iter().filter(|r| r["path"].as_str().unwrap().contains("/composite/sobjects")).count() as i64;
    assert_eq!(snapshot["requests.collections"], collections);
    assert_eq!(snapshot["requests.limits"], limits_requests(&emu) as i64);
    assert_eq!(snapshot["records.written"], 5_000);
    assert_eq!(snapshot["records.failed"], 0);
    assert_eq!(snapshot["write.records"], 5_000);
    let used = emu.control("GET", "limits", Json::Null)["used"].as_i64().unwrap();
    assert_eq!(snapshot["api.requests.used"], used);
    assert_eq!(snapshot["api.requests.max"], 10_000);
    assert!(snapshot["request.latency.p50.us"] > 0);
    assert_eq!(sink.metrics().requests(RequestKind::Bulk), 0);
}

#[test]
fn reserve_zero_keeps_sending_to_the_daily_limit() {
    let emu = Emulator::start();
    emu.control("POST", "limits", json!({"max": 1_000, "used": 980}));
    let sink = emu.sink(&[("salesforce.batch.size", "5"), ("salesforce.linger.ms", "0"), ("salesforce.api.quota.reserve.percent", "0")]);
    let names: Vec<String> = (0..50).map(|i| format!("N{i}")).collect();
    let records: Vec<Record> = names.iter().enumerate().map(|(i, n)| insert(i as i64, n)).collect();
    sink.submit(&records, 0).unwrap();
    sink.wait(Duration::from_secs(5)).unwrap();
    assert!(!sink.metrics().quota.active());
    assert_eq!(emu.records("Contact").len(), 50);
}

#[test]
fn unavailable_salesforce_shows_in_the_health_and_clears() {
    let emu = Emulator::start();
    let sink = emu.sink(&[("salesforce.linger.ms", "0")]);
    emu.control(
        "POST",
        "faults",
        json!({"rules": [{"kind": "status", "status": 503, "error_code": "SERVER_UNAVAILABLE", "message": "down", "path_contains": "/services/data"}]}),
    );
    sink.submit(&[insert(0, "a")], 0).unwrap();
    wait_for("SALESFORCE_UNAVAILABLE", Duration::from_secs(20), || sink.metrics().health().state == HealthState::SalesforceUnavailable);
    assert!(sink.metrics().health().message.contains("503"), "{}", sink.metrics().health().message);
    emu.control("DELETE", "faults", Json::Null);
    let progress = sink.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(progress.unfinished, 0);
    assert_eq!(sink.metrics().health().state, HealthState::Ok);
    assert_eq!(emu.records("Contact").len(), 1);
}

#[test]
fn an_id_lookup_is_not_followed_by_its_write_once_the_guard_holds() {
    let emu = Emulator::start();
    let keys: Vec<String> = (0..1_000).map(|i| format!("K{i}")).collect();
    let upsert = |sink: &salesforce_sink_core::SalesforceSink, op_names: &[String]| {
        let records: Vec<Record> = keys
            .iter()
            .zip(op_names)
            .enumerate()
            .map(|(i, (k, n))| Record {
                topic: "q",
                partition: 0,
                offset: i as i64,
                key: Value::String(k),
                value: Value::Map(vec![("LastName", Value::String(n))]),
                operation_header: OperationHeader::Absent,
                original: None,
            })
            .collect();
        sink.submit(&records, 0).unwrap();
    };
    let first: Vec<String> = keys.iter().map(|k| format!("first {k}")).collect();
    let seed = emu.sink(&[("salesforce.external.id.field", "ExternalId__c"), ("salesforce.operation", "UPSERT"), ("salesforce.linger.ms", "0")]);
    upsert(&seed, &first);
    assert_eq!(seed.wait(Duration::from_secs(30)).unwrap().unfinished, 0);
    // Every UPDATE request is a SOQL lookup and a write: two calls per pipeline request.
    emu.control("POST", "limits", json!({"max": 10_000, "used": 8_900}));
    let sink = emu.sink(&[
        ("salesforce.external.id.field", "ExternalId__c"),
        ("salesforce.operation", "UPDATE"),
        ("salesforce.batch.size", "5"),
        ("salesforce.linger.ms", "0"),
        ("salesforce.max.in.flight.requests", "4"),
        ("salesforce.api.quota.check.interval.ms", "1000"),
    ]);
    emu.control("DELETE", "requests", Json::Null);
    let second: Vec<String> = keys.iter().map(|k| format!("second {k}")).collect();
    upsert(&sink, &second);
    wait_for("the quota guard", Duration::from_secs(30), || sink.metrics().quota.active());
    wait_for("requests in flight to finish", Duration::from_secs(10), || sink.wait(Duration::ZERO).unwrap().requests_in_flight == 0);
    std::thread::sleep(Duration::from_millis(400));
    let used = emu.control("GET", "limits", Json::Null)["used"].as_u64().unwrap();
    let limits = limits_requests(&emu) as u64;
    assert!(used <= 9_000 + 1 + 4 + limits, "used {used} ({limits} /limits reads)");
    emu.control("POST", "limits", json!({"used": 0}));
    assert_eq!(sink.wait(Duration::from_secs(30)).unwrap().unfinished, 0);
    let updated = emu.records("Contact").iter().filter(|r| r["LastName"].as_str().unwrap_or("").starts_with("second")).count();
    assert_eq!(updated, 1_000);
    let snapshot: std::collections::HashMap<_, _> = sink.metrics().snapshot(0, 0).into_iter().collect();
    assert!(snapshot["id.cache.misses"] >= 1_000, "{snapshot:?}");
    assert_eq!(snapshot["requests.query"] as usize, emu.data_requests().iter().filter(|r| r["path"].as_str().unwrap().ends_with("/query")).count());
}

#[test]
fn bulk_jobs_are_counted_open_while_they_run_and_their_calls_by_kind() {
    let emu = Emulator::start();
    emu.control("POST", "latency", json!({"ms": 20}));
    let sink = emu.sink(&[
        ("salesforce.external.id.field", "ExternalId__c"),
        ("salesforce.operation", "UPSERT"),
        ("salesforce.write.mode", "BULK"),
        ("salesforce.bulk.linger.ms", "0"),
        ("salesforce.bulk.poll.interval.ms", "10"),
    ]);
    emu.control("DELETE", "requests", Json::Null);
    let keys: Vec<String> = (0..300).map(|i| format!("b-{i}")).collect();
    let records: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Record {
            topic: "b",
            partition: 0,
            offset: i as i64,
            key: Value::String(k),
            value: Value::Map(vec![("LastName", Value::String(k))]),
            operation_header: OperationHeader::Absent,
            original: None,
        })
        .collect();
    sink.submit(&records, 0).unwrap();
    wait_for("a Bulk job under way", Duration::from_secs(10), || {
        sink.metrics().snapshot(0, 0).iter().any(|(n, v)| *n == "bulk.jobs.open" && *v > 0)
    });
    assert_eq!(sink.wait(Duration::from_secs(30)).unwrap().unfinished, 0);
    let snapshot: std::collections::HashMap<_, _> = sink.metrics().snapshot(0, 0).into_iter().collect();
    assert_eq!(snapshot["bulk.jobs.open"], 0);
    let bulk_calls = emu.data_requests().iter().filter(|r| r["path"].as_str().unwrap().contains("/jobs/ingest")).count();
    assert!(bulk_calls >= 4, "create, upload, close, poll: {bulk_calls}");
    assert_eq!(snapshot["requests.bulk"] as usize, bulk_calls);
    assert_eq!(snapshot["records.written"], 300);
    assert_eq!(emu.records("Contact").len(), 300);
}
