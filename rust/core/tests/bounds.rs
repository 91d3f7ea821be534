//! SPEC §11, bounds and visibility, against the emulator: a panic on a native thread fails the
//! sink with its message, a record-level transient error is retried for a bounded time, and a
//! task that only waits does not spin.

mod common;

use common::{upsert, Emulator};
use salesforce_sink_core::metrics::HealthState;
use salesforce_sink_core::record::Record;
use salesforce_sink_core::wire::outcome::Outcome;
use salesforce_sink_core::{FlushScope, SalesforceSink, SinkError};
use serde_json::json;
use std::time::{Duration, Instant};

const UPSERT: [(&str, &str); 2] = [("salesforce.external.id.field", "ExternalId__c"), ("salesforce.operation", "UPSERT")];

/// A sink whose test-only panic switch names `point` (what `SALESFORCE_SINK_TEST_NATIVE_PANIC` does
/// for a worker).
fn panicking_sink(emu: &Emulator, point: &str) -> SalesforceSink {
    let mut pairs = UPSERT.to_vec();
    pairs.push(("salesforce.linger.ms", "0"));
    let mut cfg = emu.config(&pairs);
    cfg.test_panic = Some(point.into());
    SalesforceSink::with_config(cfg).unwrap()
}

/// Waits (at most 10 s) for the sink's first error, as Java's next put/preCommit/flush would meet it.
fn first_error(sink: &SalesforceSink) -> SinkError {
    let started = Instant::now();
    loop {
        match sink.wait(Duration::from_millis(200)) {
            Err(e) => return e,
            Ok(progress) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "no error 10 s after the panic: the sink stalls silently with {} record(s) unfinished",
                progress.unfinished
            ),
        }
    }
}

#[test]
fn a_panic_in_a_request_fails_the_sink_with_its_message() {
    let emu = Emulator::start();
    for point in ["request", "dispatcher"] {
        let sink = panicking_sink(&emu, point);
        // The request may panic before submit() returns: then submit() already fails.
        let error = match sink.submit(&[upsert(0, "a", "A")], 0) {
            Err(e) => e.to_string(),
            Ok(_) => first_error(&sink).to_string(),
        };
        assert!(
            error.contains(&format!("native panic in the {point} task: forced panic in native {point}")),
            "{error}"
        );
        // Every later call throws: the task fails rather than runs on without committing.
        let later = sink.submit(&[upsert(1, "b", "B")], 1).map(|_| ()).unwrap_err().to_string();
        assert_eq!(later, error);
    }
}

/// Submits `records` and waits (at most `timeout`) until every one has finished; outcomes by offset.
fn finish_all(sink: &SalesforceSink, records: &[Record<'_>], timeout: Duration) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
    let mut collect = |progress: salesforce_sink_core::pipeline::Progress| {
        for (seq, outcome) in progress.finished {
            outcomes[seq as usize] = Some(outcome);
        }
        progress.unfinished
    };
    let started = Instant::now();
    let mut unfinished = collect(sink.submit(records, 0).unwrap());
    while unfinished > 0 && started.elapsed() < timeout {
        unfinished = collect(sink.wait(Duration::from_millis(500)).unwrap());
    }
    assert_eq!(unfinished, 0, "{unfinished} record(s) still unfinished after {timeout:?}");
    outcomes.into_iter().map(Option::unwrap).collect()
}

#[test]
fn a_record_level_transient_error_is_retried_for_retry_max_duration_then_fails() {
    let emu = Emulator::start();
    emu.control(
        "POST",
        "faults",
        json!({"rules": [{"kind": "record_error", "error_code": "UNKNOWN_EXCEPTION", "status": 500,
                          "message": "An unexpected error occurred", "record_contains": "STUCK"}]}),
    );
    let mut pairs = UPSERT.to_vec();
    pairs.extend([("salesforce.retry.max.duration.ms", "2000"), ("salesforce.retry.max.backoff.ms", "200"), ("salesforce.linger.ms", "0")]);
    let sink = emu.sink(&pairs);
    let names: Vec<String> = (0..20).map(|i| if i == 7 { "STUCK".to_owned() } else { format!("n{i}") }).collect();
    let keys: Vec<String> = (0..20).map(|i| format!("K{i}")).collect();
    let records: Vec<Record> = (0..20).map(|i| upsert(i as i64, &keys[i], &names[i])).collect();
    let started = Instant::now();
    let outcomes = finish_all(&sink, &records, Duration::from_secs(30));
    let took = started.elapsed();
    for (i, outcome) in outcomes.iter().enumerate() {
        if i == 7 {
            let Outcome::Failed(message) = outcome else { panic!("the stuck record ended {outcome:?}") };
            assert!(message.contains("UNKNOWN_EXCEPTION") && message.contains("salesforce.retry.max.duration.ms=2000"), "{message}");
            assert!(message.contains("K7"), "the message names the record: {message}");
        } else {
            assert_eq!(*outcome, Outcome::Written, "record {i}");
        }
    }
    assert!(took >= Duration::from_millis(2000), "failed after {took:?}, before salesforce.retry.max.duration.ms");
    assert_eq!(emu.records("Contact").len(), 19);
}

#[test]
fn a_request_level_outage_keeps_waiting_past_retry_max_duration() {
    let emu = Emulator::start();
    // Every request refused with 503 for about 3 s (20 answers at 100..200 ms backoff).
    emu.control("POST", "faults", json!({"rules": [{"kind": "status", "status": 503, "error_code": "SERVER_UNAVAILABLE",
                                                    "path_contains": "/composite/sobjects", "count": 20}]}));
    let mut pairs = UPSERT.to_vec();
    pairs.extend([
        ("salesforce.retry.max.duration.ms", "500"),
        ("salesforce.retry.initial.backoff.ms", "100"),
        ("salesforce.retry.max.backoff.ms", "200"),
        ("salesforce.linger.ms", "0"),
    ]);
    let sink = emu.sink(&pairs);
    let records: Vec<Record> = (0..5).map(|i| upsert(i, ["a", "b", "c", "d", "e"][i as usize], "N")).collect();
    let outcomes = finish_all(&sink, &records, Duration::from_secs(30));
    assert!(outcomes.iter().all(|o| *o == Outcome::Written), "{outcomes:?}");
}

#[test]
fn a_flush_while_salesforce_is_down_ends_once_nothing_can_finish_before_its_deadline() {
    let emu = Emulator::start();
    emu.control("POST", "faults", json!({"rules": [{"kind": "status", "status": 503, "error_code": "SERVER_UNAVAILABLE",
                                                    "path_contains": "/composite/sobjects"}]}));
    let mut pairs = UPSERT.to_vec();
    pairs.extend([
        ("salesforce.retry.initial.backoff.ms", "4000"),
        ("salesforce.retry.max.backoff.ms", "4000"),
        ("salesforce.linger.ms", "0"),
    ]);
    let sink = emu.sink(&pairs);
    let records: Vec<Record> = (0..5).map(|i| upsert(i, ["a", "b", "c", "d", "e"][i as usize], "N")).collect();
    sink.submit(&records, 0).unwrap();
    // The first attempt is refused at once; the retry is 2 to 4 s away (jitter), past the flush's
    // 1.5 s. A revocation's last commit waits like this: it must not hold the rebalance for nothing.
    let started = Instant::now();
    sink.flush(Duration::from_millis(1500), FlushScope::Everything).unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1000), "the flush waited {took:?} for writes that could not finish before its deadline");
    assert_eq!(sink.wait(Duration::ZERO).unwrap().unfinished, 5);
    // A flush whose deadline is past the retry waits for it.
    emu.control("DELETE", "faults", json!(null));
    let started = Instant::now();
    let progress = sink.wait(Duration::from_secs(10)).unwrap();
    assert_eq!(progress.unfinished, 0, "not written after {:?}", started.elapsed());
    assert_eq!(emu.records("Contact").len(), 5);
}

fn metric(sink: &SalesforceSink, name: &str) -> i64 {
    sink.metrics().snapshot(0, 0).into_iter().find(|(n, _)| *n == name).map(|(_, v)| v).unwrap()
}

#[test]
fn a_record_that_waits_past_the_stall_threshold_makes_the_task_stalled_until_it_finishes() {
    let emu = Emulator::start();
    emu.control(
        "POST",
        "faults",
        json!({"rules": [{"kind": "record_error", "error_code": "UNABLE_TO_LOCK_ROW", "record_contains": "STUCK"}]}),
    );
    let mut pairs = UPSERT.to_vec();
    pairs.extend([
        ("salesforce.retry.max.duration.ms", "3000"),
        ("salesforce.retry.max.backoff.ms", "200"),
        ("salesforce.linger.ms", "0"),
        ("salesforce.health.stall.threshold.ms", "500"),
    ]);
    let sink = emu.sink(&pairs);
    let records = [upsert(0, "a", "A"), upsert(1, "s", "STUCK"), upsert(2, "c", "C")];
    sink.submit(&records, 0).unwrap();
    let started = Instant::now();
    // Each call from Java (here flush without waiting) looks at the oldest unfinished record.
    while sink.metrics().health().state != HealthState::Stalled {
        assert!(started.elapsed() < Duration::from_secs(3), "not STALLED {:?} after submitting", started.elapsed());
        sink.flush(Duration::ZERO, FlushScope::Everything).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.elapsed() >= Duration::from_millis(500), "STALLED before the threshold");
    let health = sink.metrics().health();
    assert!(health.message.contains("UNABLE_TO_LOCK_ROW") && health.message.contains("stall.threshold"), "{}", health.message);
    assert!(metric(&sink, "oldest.unfinished.age.ms") > 500);
    while sink.metrics().health().state != HealthState::Ok {
        assert!(started.elapsed() < Duration::from_secs(15), "still {:?} after the record failed", sink.metrics().health().state);
        sink.flush(Duration::ZERO, FlushScope::Everything).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(&sink, "oldest.unfinished.age.ms"), 0);
    assert_eq!(emu.records("Contact").len(), 2);
}

#[test]
fn a_part_filled_job_waiting_for_a_slow_job_does_not_spin() {
    let emu = Emulator::start();
    // The first job (40 records) takes about 8 s at Salesforce.
    emu.control("POST", "bulk", json!({"records_per_second": 5}));
    let mut pairs = UPSERT.to_vec();
    pairs.extend([
        ("salesforce.write.mode", "BULK"),
        ("salesforce.bulk.linger.ms", "300"),
        ("salesforce.bulk.poll.interval.ms", "1000"),
    ]);
    let sink = emu.sink(&pairs);
    let keys: Vec<String> = (0..50).map(|i| format!("W{i}")).collect();
    let records: Vec<Record> = keys.iter().enumerate().map(|(i, k)| upsert(i as i64, k, k)).collect();
    sink.submit(&records[..40], 0).unwrap();
    let started = Instant::now();
    while emu.control("GET", "bulk", json!(null))["jobs_created"].as_u64() != Some(1) {
        assert!(started.elapsed() < Duration::from_secs(10), "the first job was never created");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second, part-filled job waits for the first; its quiet time (300 ms) passes at once.
    sink.submit(&records[40..], 40).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = sink.dispatch_rounds();
    std::thread::sleep(Duration::from_secs(2));
    let rounds = sink.dispatch_rounds() - before;
    println!("dispatcher rounds in 2 s of waiting for a slow Bulk job: {rounds}");
    // Polls of the job and Java's calls wake it a few times; a busy loop makes it tens of thousands.
    assert!(rounds < 50, "the dispatcher looked at the buffer {rounds} times in 2 s of waiting");
    let progress = sink.wait(Duration::from_secs(60)).unwrap();
    assert_eq!(progress.unfinished, 0);
    assert_eq!(emu.records("Contact").len(), 50);
}
