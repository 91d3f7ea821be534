//! Issue 8: a record never touches a record it does not name, nothing is skipped, nothing
//! stalls. Each test here failed on the connector before the fix it names.

mod common;

use common::{redeliver, Emulator};
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::outcome::Outcome;
use salesforce_sink_core::SinkError;
use serde_json::{json, Value as Json};
use std::time::{Duration, Instant};

fn rec<'a>(offset: i64, key: Value<'a>, value: Value<'a>, op: Option<&'a str>) -> Record<'a> {
    Record {
        topic: "t",
        partition: 0,
        offset,
        key,
        value,
        operation_header: op.map_or(OperationHeader::Absent, OperationHeader::Text),
        original: None,
    }
}

fn last_name(name: &str) -> Value<'_> {
    Value::Map(vec![("LastName", Value::String(name))])
}

fn failed_with(o: &Outcome, words: &[&str]) -> bool {
    matches!(o, Outcome::Failed(m) if words.iter().all(|w| m.contains(w)))
}

#[test]
fn a_malformed_native_id_key_deletes_nothing() {
    let emu = Emulator::start();
    let sink = emu.sink(&[("salesforce.operation.header.enabled", "true")]);
    let inserts = [rec(0, Value::Null, last_name("one"), Some("INSERT")), rec(1, Value::Null, last_name("two"), Some("INSERT"))];
    assert_eq!(redeliver(&sink, &inserts, 3).unwrap(), vec![Outcome::Written; 2]);
    let ids: Vec<String> = emu.records("Contact").iter().map(|r| r["Id"].as_str().unwrap().to_owned()).collect();
    let both = format!("{},{}", ids[0], ids[1]);
    let encoded = format!("{}%2C{}", ids[0], ids[1]);
    let hostile = [both.as_str(), encoded.as_str(), "..", "003%2F..%2F", &ids[0][..14], "003000000000001AAB"];
    emu.control("DELETE", "requests", Json::Null);
    let deletes: Vec<Record> =
        hostile.iter().enumerate().map(|(i, k)| rec(10 + i as i64, Value::String(k), Value::Null, Some("DELETE"))).collect();
    let out = redeliver(&sink, &deletes, 3).unwrap();
    for (o, key) in out.iter().zip(hostile) {
        assert!(failed_with(o, &["is not one"]), "{key}: {o:?}");
    }
    assert_eq!(emu.records("Contact").len(), 2, "nothing was deleted");
    assert!(emu.data_requests().is_empty(), "no request named a key that is not an Id");

    // The 15-character form and an 18-character form in other case name the same record: the
    // UPDATE and the DELETE keep their order and never share a request.
    let id15 = &ids[0][..15];
    let lower18 = format!("{}{}", &ids[0][..15], ids[0][15..].to_lowercase());
    let writes = [
        rec(20, Value::String(id15), last_name("renamed"), Some("UPDATE")),
        rec(21, Value::String(&lower18), Value::Null, Some("DELETE")),
    ];
    assert_eq!(redeliver(&sink, &writes, 3).unwrap(), vec![Outcome::Written; 2]);
    assert_eq!(emu.records("Contact").len(), 1);
}

#[test]
fn reserved_field_names_cannot_retarget_a_request() {
    let emu = Emulator::start();
    for mode in ["COLLECTIONS", "SINGLE"] {
        let sink = emu.sink(&[("salesforce.write.mode", mode)]);
        let retarget = |n: i64| {
            rec(
                n,
                Value::Null,
                Value::Map(vec![
                    ("LastName", Value::String("x")),
                    ("Name", Value::String("Acme")),
                    ("attributes", Value::Map(vec![("type", Value::String("Account"))])),
                ]),
                None,
            )
        };
        let stray_id = rec(2, Value::Null, Value::Map(vec![("LastName", Value::String("y")), ("Id", Value::String("003000000000001AAA"))]), None);
        let out = redeliver(&sink, &[retarget(0), stray_id, rec(3, Value::Null, last_name("fine"), None)], 3).unwrap();
        assert!(failed_with(&out[0], &["attributes", "reserved"]), "{mode}: {:?}", out[0]);
        assert!(failed_with(&out[1], &["'Id'", "reserved"]), "{mode}: {:?}", out[1]);
        assert_eq!(out[2], Outcome::Written);
    }
    assert!(emu.records("Account").is_empty(), "no Account was written through a Contact connector");
}

#[test]
fn numeric_external_ids_are_decimals_checked_per_record() {
    let emu = Emulator::start();
    emu.control(
        "POST",
        "sobjects",
        json!({"name": "Invoice__c", "fields": [
            {"name": "Name", "type": "string", "length": 80},
            {"name": "Number__c", "type": "double", "precision": 18, "scale": 0, "externalId": true, "unique": true}
        ]}),
    );
    // Startup validation off: the field's type still comes from describe (SPEC §2).
    let sink = emu.sink(&[
        ("salesforce.sobject.type", "Invoice__c"),
        ("salesforce.external.id.field", "Number__c"),
        ("salesforce.operation.header.enabled", "true"),
        ("salesforce.operation", "UPSERT"),
        ("salesforce.startup.validation.enabled", "false"),
    ]);
    let name = |n: &'static str| Value::Map(vec![("Name", Value::String(n))]);
    // Salesforce keeps number fields as doubles: 17-digit keys would collapse into one record there.
    let keys = ["007", "7", "NaN", "inf", "+5", ".5", "1e3", "123456789012345", "123456789012346", "4.5", "12345678901234567"];
    let upserts: Vec<Record> = keys.iter().enumerate().map(|(i, k)| rec(i as i64, Value::String(k), name(k), None)).collect();
    let out = redeliver(&sink, &upserts, 3).unwrap();
    for (o, key) in out.iter().zip(keys) {
        let valid = matches!(key, "007" | "7" | "123456789012345" | "123456789012346");
        assert_eq!(*o == Outcome::Written, valid, "{key}: {o:?}");
    }
    let mut stored: Vec<(String, String)> = emu
        .records("Invoice__c")
        .iter()
        .map(|r| (r["Number__c"].to_string(), r["Name"].as_str().unwrap().to_owned()))
        .collect();
    stored.sort();
    assert_eq!(stored.len(), 3, "007 and 7 are one record; the two 15-digit keys are two: {stored:?}");
    // UPDATE through a SOQL lookup: one bad key fails alone, neighbouring keys do not swap Ids.
    let updates = [
        rec(20, Value::String("123456789012345"), name("first"), Some("UPDATE")),
        rec(21, Value::String("abc"), name("bad"), Some("UPDATE")),
        rec(22, Value::String("123456789012346"), name("second"), Some("UPDATE")),
    ];
    let out = redeliver(&sink, &updates, 3).unwrap();
    assert_eq!(out[0], Outcome::Written);
    assert!(failed_with(&out[1], &["not a decimal number"]), "{:?}", out[1]);
    assert_eq!(out[2], Outcome::Written);
    let by_number = |n: &str| {
        emu.records("Invoice__c").into_iter().find(|r| r["Number__c"].to_string().trim_end_matches(".0") == n).map(|r| r["Name"].clone())
    };
    assert_eq!(by_number("123456789012345"), Some(json!("first")));
    assert_eq!(by_number("123456789012346"), Some(json!("second")));
}

#[test]
fn credential_failures_stop_the_task_instead_of_failing_records() {
    let emu = Emulator::start();
    let batch = |n: i64| vec![rec(n, Value::Null, last_name("a"), None), rec(n + 1, Value::Null, last_name("b"), None)];

    // A 401 that persists after the one refresh.
    let sink = emu.sink(&[]);
    emu.control("POST", "faults", json!({"rules": [
        {"kind": "status", "status": 401, "error_code": "INVALID_SESSION_ID", "message": "Session expired or invalid", "path_contains": "/composite"}
    ]}));
    match sink.write_records(&batch(0)) {
        Err(SinkError::Fatal(e)) => assert!(e.0.contains("freshly issued access token"), "{e}"),
        other => panic!("expected the task to fail, got {other:?}"),
    }
    emu.control("DELETE", "faults", Json::Null);

    // A proxy in front of Salesforce that wants other credentials (a failed task restarts with a
    // new native sink: a fatal error is final for the one that saw it).
    let sink = emu.sink(&[]);
    emu.control("POST", "faults", json!({"rules": [{"kind": "status", "status": 407, "path_contains": "/composite"}]}));
    match sink.write_records(&batch(2)) {
        Err(SinkError::Fatal(e)) => assert!(e.0.contains("407"), "{e}"),
        other => panic!("expected the task to fail, got {other:?}"),
    }
    emu.control("DELETE", "faults", Json::Null);

    // The Connected App's secret changes while the task runs.
    let sink = emu.sink(&[]);
    assert_eq!(redeliver(&sink, &batch(4), 3).unwrap(), vec![Outcome::Written; 2]);
    emu.control("POST", "clients", json!({"client_id": "test-client-id", "client_secret": "rotated"}));
    emu.control("POST", "tokens/revoke", json!({}));
    match sink.write_records(&batch(6)) {
        Err(SinkError::Fatal(e)) => assert!(e.0.contains("invalid_client"), "{e}"),
        other => panic!("expected the task to fail, got {other:?}"),
    }
    assert_eq!(emu.records("Contact").len(), 2);
}

#[test]
fn a_field_the_sobject_lacks_costs_one_extra_request_not_two_per_record() {
    let emu = Emulator::start();
    let sink = emu.sink(&[]);
    let names: Vec<String> = (0..200).map(|i| format!("L{i}")).collect();
    let records: Vec<Record> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut fields = vec![("LastName", Value::String(n))];
            if i % 20 == 7 {
                fields.push(("NoSuchField__c", Value::String("x")));
            }
            rec(i as i64, Value::Null, Value::Map(fields), None)
        })
        .collect();
    emu.control("DELETE", "requests", Json::Null);
    let out = redeliver(&sink, &records, 3).unwrap();
    for (i, o) in out.iter().enumerate() {
        if i % 20 == 7 {
            assert!(failed_with(o, &["INVALID_FIELD", "NoSuchField__c"]), "{i}: {o:?}");
        } else {
            assert_eq!(*o, Outcome::Written, "{i}");
        }
    }
    assert_eq!(emu.data_requests().len(), 2, "the refused request and one without the 10 records that carry the field");

    // A refusal that names no field is halved, within a budget.
    emu.control("DELETE", "requests", Json::Null);
    let bad_dates: Vec<Record> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let date = if i % 3 == 0 { "31/12/2020" } else { "2020-12-31" };
            rec(i as i64, Value::Null, Value::Map(vec![("LastName", Value::String(n)), ("Birthdate", Value::String(date))]), None)
        })
        .collect();
    let out = redeliver(&sink, &bad_dates, 3).unwrap();
    assert!(out.iter().enumerate().filter(|(i, _)| i % 3 == 0).all(|(_, o)| matches!(o, Outcome::Failed(_))));
    assert!(emu.data_requests().len() <= 1 + 200, "split budget (one extra request per record): {} requests", emu.data_requests().len());
}

#[test]
fn a_put_ends_within_its_time_budget_and_the_rest_is_redelivered_in_order() {
    let emu = Emulator::start();
    let sink = emu.sink(&[
        ("salesforce.external.id.field", "ExternalId__c"),
        ("salesforce.operation", "UPSERT"),
        ("put.time.budget.ms", "1000"),
    ]);
    emu.control("POST", "latency", json!({"ms": 150}));
    // One hot key written 30 times: 30 sequential requests of 150 ms, far beyond the budget.
    let names: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    let records: Vec<Record> = names.iter().enumerate().map(|(i, n)| rec(i as i64, Value::String("hot"), last_name(n), None)).collect();
    let started = Instant::now();
    let (first, backoff) = sink.write_records(&records).unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "put took {took:?} with a 1 s budget");
    assert!(backoff >= Duration::from_millis(1), "Connect ignores timeout(0)");
    let written = first.iter().take_while(|o| **o == Outcome::Written).count();
    assert!(written > 0 && written < 30, "{written} written in the first put");
    assert!(first[written..].iter().all(|o| !o.is_final()), "the rest is left to the redelivery, in order");
    let rest = redeliver(&sink, &records[written..], 10).unwrap();
    assert!(rest.iter().all(|o| *o == Outcome::Written));
    let stored = emu.records("Contact");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["LastName"], "v29");
}

#[test]
fn lock_errors_wrapped_by_triggers_and_unknown_exceptions_are_retried() {
    let emu = Emulator::start();
    let sink = emu.sink(&[]);
    emu.control("POST", "faults", json!({"rules": [
        {"kind": "record_error", "error_code": "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
         "message": "ContactTrigger: execution of AfterInsert caused by: System.DmlException: Insert failed. First exception on row 0; first error: UNABLE_TO_LOCK_ROW, unable to obtain exclusive access to this record: []", "count": 3},
        {"kind": "record_error", "error_code": "UNKNOWN_EXCEPTION", "message": "An unexpected error occurred. Please include this ErrorId if you contact support", "count": 2}
    ]}));
    let names: Vec<String> = (0..10).map(|i| format!("L{i}")).collect();
    let records: Vec<Record> = names.iter().enumerate().map(|(i, n)| rec(i as i64, Value::Null, last_name(n), None)).collect();
    assert_eq!(redeliver(&sink, &records, 5).unwrap(), vec![Outcome::Written; 10]);
    assert_eq!(emu.records("Contact").len(), 10);
}

#[test]
fn a_busy_salesforce_at_start_does_not_fail_the_task_for_good() {
    let emu = Emulator::start();
    emu.control("POST", "faults", json!({"rules": [
        {"kind": "status", "status": 503, "error_code": "SERVER_UNAVAILABLE", "path_contains": "/describe"}
    ]}));
    let cfg = [("salesforce.external.id.field", "ExternalId__c"), ("salesforce.operation", "UPSERT"), ("salesforce.retry.max.attempts", "1")];
    let sink = emu.sink(&cfg); // starts although describe answered 503 twice
    let records = [rec(0, Value::String("k"), last_name("a"), None)];
    match sink.write_records(&records) {
        Err(SinkError::NotReady { message, .. }) => assert!(message.contains("describe"), "{message}"),
        other => panic!("nothing can be planned before the field is known: {other:?}"),
    }
    emu.control("DELETE", "faults", Json::Null);
    assert_eq!(redeliver(&sink, &records, 2).unwrap(), vec![Outcome::Written]);

    // What is wrong stays wrong: the check made late still fails the task, with what to fix.
    emu.control("POST", "faults", json!({"rules": [
        {"kind": "status", "status": 503, "error_code": "SERVER_UNAVAILABLE", "path_contains": "/describe", "count": 2}
    ]}));
    let wrong = emu.sink(&[("salesforce.external.id.field", "NoSuch__c"), ("salesforce.operation", "UPSERT"), ("salesforce.retry.max.attempts", "1")]);
    match wrong.write_records(&records) {
        Err(SinkError::Fatal(e)) => assert!(e.0.contains("NoSuch__c") && e.0.contains("salesforce.external.id.field"), "{e}"),
        other => panic!("{other:?}"),
    }
}
