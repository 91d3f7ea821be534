//! Record keys reach logs and DLQ headers (`__connect.errors.exception.message`) through failure
//! messages: a key holding newlines or ANSI escapes must not forge log lines or repaint a
//! terminal, and a 10 kB key must not bloat every message (issue 19, item 7).

mod common;

use common::{redeliver, Emulator};
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::outcome::Outcome;

fn rec<'a>(offset: i64, key: &'a str, value: Value<'a>) -> Record<'a> {
    Record { topic: "t", partition: 0, offset, key: Value::String(key), value, operation_header: OperationHeader::Absent, original: None }
}

fn failure(o: &Outcome) -> &str {
    match o {
        Outcome::Failed(m) => m,
        other => panic!("expected a record error, got {other:?}"),
    }
}

fn assert_harmless(message: &str) {
    assert!(!message.chars().any(char::is_control), "a control character reached the message: {message:?}");
    assert!(message.len() < 1_000, "{} bytes: {message:?}", message.len());
}

const FORGED: &str = "K-1\n2026-01-01 INFO forged log line\r\x1b[2J\x1b[31mred";

#[test]
fn external_id_keys_are_escaped_and_cut_in_messages() {
    let emu = Emulator::start();
    let sink = emu.sink(&[("salesforce.external.id.field", "ExternalId__c"), ("salesforce.operation", "UPSERT")]);
    let long = format!("{}\n", "x".repeat(10_000));
    let no_last_name = Value::Map(vec![("FirstName", Value::String("Ada"))]);
    let records = vec![rec(0, FORGED, no_last_name.clone()), rec(1, &long, no_last_name)];
    let out = redeliver(&sink, &records, 3).unwrap();
    for o in &out {
        assert_harmless(failure(o));
    }
    assert!(failure(&out[0]).contains(r"K-1\n2026-01-01 INFO forged log line\r\u{1b}[2J"), "{}", failure(&out[0]));
}

#[test]
fn keys_of_updates_that_find_nothing_are_escaped_and_cut() {
    let emu = Emulator::start();
    let sink = emu.sink(&[("salesforce.external.id.field", "ExternalId__c"), ("salesforce.operation", "UPDATE")]);
    let long = format!("{}\u{1b}[0m", "y".repeat(10_000));
    let value = Value::Map(vec![("LastName", Value::String("Nobody"))]);
    let records = vec![rec(0, FORGED, value.clone()), rec(1, &long, value)];
    let out = redeliver(&sink, &records, 3).unwrap();
    for o in &out {
        let m = failure(o);
        assert!(m.contains("NOT_FOUND"), "{m}");
        assert_harmless(m);
    }
}

#[test]
fn native_id_insert_keys_are_escaped_in_messages() {
    let emu = Emulator::start();
    let sink = emu.sink(&[]);
    let no_last_name = Value::Map(vec![("FirstName", Value::String("Ada"))]);
    let out = redeliver(&sink, &[rec(0, FORGED, no_last_name)], 3).unwrap();
    let m = failure(&out[0]);
    assert!(m.contains("REQUIRED_FIELD_MISSING") && m.contains("forged log line"), "{m}");
    assert_harmless(m);
}
