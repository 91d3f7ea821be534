//! `salesforce.idempotency.field` (SPEC §12) and `salesforce.external.id.field.map` (SPEC §1)
//! against the emulator over real HTTP: a Native ID INSERT written twice (redelivery after a crash
//! or a lost answer) creates one Salesforce record, in every write mode; the field is checked at
//! start; many topics route to many SObjects, each by its own external ID field.

mod common;

use common::{redeliver, Emulator};
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::outcome::Outcome;
use salesforce_sink_core::{SalesforceSink, SinkError};
use serde_json::{json, Value as Json};

const FIELD: &str = "Kafka_Coordinates__c";

/// Contact with the idempotency field (`field` overrides its definition, for the startup checks).
fn contact_with(emu: &Emulator, field: Json) {
    emu.control(
        "POST",
        "sobjects",
        json!({"name": "Contact", "keyPrefix": "003", "fields": [
            {"name": "LastName", "type": "string", "length": 80},
            field,
        ]}),
    );
}

fn idempotency_field() -> Json {
    json!({"name": FIELD, "type": "string", "length": 80, "externalId": true, "unique": true})
}

fn inserts(n: usize, names: &[String]) -> Vec<Record<'_>> {
    (0..n)
        .map(|i| Record {
            topic: "crm.contacts",
            partition: 2,
            offset: 1000 + i as i64,
            key: Value::Null,
            value: Value::Map(vec![("LastName", Value::String(&names[i]))]),
            operation_header: OperationHeader::Absent,
            original: None,
        })
        .collect()
}

fn sink(emu: &Emulator, mode: &str, idempotent: bool) -> SalesforceSink {
    let mut pairs = vec![("salesforce.write.mode", mode), ("salesforce.bulk.linger.ms", "0"), ("salesforce.bulk.poll.interval.ms", "5")];
    if idempotent {
        pairs.push(("salesforce.idempotency.field", FIELD));
    }
    emu.sink(&pairs)
}

/// Writes 450 INSERTs, then every one of them again (a new task after a crash before the offset
/// commit): returns the Contacts stored.
fn written_twice(mode: &str, idempotent: bool) -> Vec<Json> {
    let emu = Emulator::start();
    contact_with(&emu, idempotency_field());
    let names: Vec<String> = (0..450).map(|i| format!("Name {i}")).collect();
    let records = inserts(450, &names);
    for _ in 0..2 {
        let out = redeliver(&sink(&emu, mode, idempotent), &records, 5).unwrap();
        assert_eq!(out, vec![Outcome::Written; 450], "{mode}");
    }
    emu.records("Contact")
}

fn assert_one_record_per_insert(stored: &[Json], mode: &str) {
    assert_eq!(stored.len(), 450, "{mode}: one Contact per INSERT");
    let mut values: Vec<&str> = stored.iter().map(|r| r[FIELD].as_str().unwrap()).collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 450, "{mode}");
    assert!(values.contains(&"crm.contacts:2:1000") && values.contains(&"crm.contacts:2:1449"), "{mode}: {:?}", &values[..3]);
}

#[test]
fn a_redelivered_insert_creates_no_second_record_in_any_write_mode() {
    for mode in ["COLLECTIONS", "SINGLE", "BULK"] {
        assert_one_record_per_insert(&written_twice(mode, true), mode);
    }
    // Without the key the same redelivery duplicates every record: the test can fail.
    assert_eq!(written_twice("COLLECTIONS", false).len(), 900);
}

#[test]
fn upserts_on_the_field_take_200_records_a_request() {
    let emu = Emulator::start();
    contact_with(&emu, idempotency_field());
    let names: Vec<String> = (0..450).map(|i| format!("Name {i}")).collect();
    let sink = sink(&emu, "COLLECTIONS", true);
    emu.control("DELETE", "requests", Json::Null);
    redeliver(&sink, &inserts(450, &names), 1).unwrap();
    let writes: Vec<Json> = emu.data_requests().into_iter().filter(|r| r["path"].as_str().unwrap().contains("/composite/sobjects")).collect();
    assert_eq!(writes.len(), 3, "{writes:?}");
    for w in &writes {
        assert_eq!((w["method"].as_str(), w["path"].as_str()), (Some("PATCH"), Some(&*format!("/services/data/v62.0/composite/sobjects/Contact/{FIELD}"))));
    }
}

/// Lost answers: Salesforce wrote the records, the connection dropped before the answer arrived,
/// and the connector wrote them again.
fn lost_answers(mode: &str, idempotent: bool) -> usize {
    let emu = Emulator::start();
    contact_with(&emu, idempotency_field());
    let names: Vec<String> = (0..300).map(|i| format!("Name {i}")).collect();
    let sink = sink(&emu, mode, idempotent);
    emu.control(
        "POST",
        "faults",
        json!({"seed": 7, "rules": [{"kind": "commit_then_reset", "probability": 0.3, "path_contains": "/sobjects"}]}),
    );
    let records = inserts(300, &names);
    let out = redeliver(&sink, &records, 10).unwrap();
    assert!(out.iter().all(|o| *o == Outcome::Written), "{mode}: {out:?}");
    let lost = emu.control("GET", "requests", Json::Null).as_array().unwrap().iter().filter(|r| r["fault"] == "commit_then_reset").count();
    assert!(lost > 0, "{mode}: no answer was lost");
    emu.records("Contact").len()
}

#[test]
fn lost_answers_create_no_second_record() {
    for mode in ["COLLECTIONS", "SINGLE"] {
        assert_eq!(lost_answers(mode, true), 300, "{mode}");
    }
    assert!(lost_answers("COLLECTIONS", false) > 300, "without the key a lost answer duplicates");
}

#[test]
fn a_renaming_smt_keeps_the_original_coordinates() {
    let emu = Emulator::start();
    contact_with(&emu, idempotency_field());
    let sink = emu.sink(&[("salesforce.sobject.type", "${topic}"), ("salesforce.idempotency.field", FIELD)]);
    // Two source topics renamed to one SObject topic: same transformed coordinates, two records.
    let rec = |original| Record {
        topic: "Contact",
        partition: 0,
        offset: 5,
        key: Value::Null,
        value: Value::Map(vec![("LastName", Value::String("L"))]),
        operation_header: OperationHeader::Absent,
        original: Some(original),
    };
    let out = redeliver(&sink, &[rec(("eu.contacts", 0, 5)), rec(("us.contacts", 0, 5))], 3).unwrap();
    assert_eq!(out, vec![Outcome::Written; 2]);
    let mut values: Vec<String> = emu.records("Contact").iter().map(|r| r[FIELD].as_str().unwrap().to_owned()).collect();
    values.sort();
    assert_eq!(values, vec!["eu.contacts:0:5", "us.contacts:0:5"]);
}

#[test]
fn a_value_that_carries_the_field_is_a_record_error() {
    let emu = Emulator::start();
    contact_with(&emu, idempotency_field());
    let sink = sink(&emu, "COLLECTIONS", true);
    let rec = Record {
        topic: "t",
        partition: 0,
        offset: 0,
        key: Value::Null,
        value: Value::Map(vec![("LastName", Value::String("L")), (FIELD, Value::String("t:0:0"))]),
        operation_header: OperationHeader::Absent,
        original: None,
    };
    match &redeliver(&sink, &[rec], 1).unwrap()[0] {
        Outcome::Failed(m) => assert!(m.contains("salesforce.idempotency.field") && m.contains("topic t partition 0 offset 0"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(emu.records("Contact").is_empty());
}

#[test]
fn startup_checks_the_field_and_names_the_key() {
    let base = idempotency_field();
    let with = |change: Json| {
        let mut f = base.clone();
        f.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        f
    };
    for (field, expected) in [
        (json!({"name": "Other__c", "type": "string", "length": 80}), "does not exist on Contact"),
        (with(json!({"externalId": false})), "not marked External ID"),
        (with(json!({"unique": false})), "not marked Unique"),
        (with(json!({"length": 39})), "holds 39 characters"),
        (with(json!({"type": "double", "precision": 18, "scale": 0})), "of type double"),
    ] {
        let emu = Emulator::start();
        contact_with(&emu, field);
        match SalesforceSink::with_config(emu.config(&[("salesforce.idempotency.field", FIELD)])) {
            Err(SinkError::Startup(m)) => assert!(m.contains("salesforce.idempotency.field") && m.contains(expected), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("started with a field that {expected}"),
        }
    }
    // With ${topic}: the same check, when the SObject is first seen; its records fail.
    let emu = Emulator::start();
    contact_with(&emu, with(json!({"unique": false})));
    let sink = emu.sink(&[("salesforce.sobject.type", "${topic}"), ("salesforce.idempotency.field", FIELD)]);
    let rec = Record {
        topic: "Contact",
        partition: 0,
        offset: 0,
        key: Value::Null,
        value: Value::Map(vec![("LastName", Value::String("L"))]),
        operation_header: OperationHeader::Absent,
        original: None,
    };
    match &redeliver(&sink, &[rec], 1).unwrap()[0] {
        Outcome::Failed(m) => assert!(m.contains("salesforce.idempotency.field") && m.contains("not marked Unique"), "{m}"),
        other => panic!("{other:?}"),
    }
}

fn routed<'a>(topic: &'a str, offset: i64, key: &'a str, op: &'a str, name: Option<&'a str>) -> Record<'a> {
    Record {
        topic,
        partition: 0,
        offset,
        key: Value::String(key),
        value: match name {
            Some(n) if topic == "Account" => Value::Map(vec![("Name", Value::String(n))]),
            Some(n) => Value::Map(vec![("LastName", Value::String(n))]),
            None => Value::Null,
        },
        operation_header: OperationHeader::Text(op),
        original: None,
    }
}

#[test]
fn each_sobject_upserts_and_deletes_by_its_own_external_id_field() {
    for mode in ["COLLECTIONS", "SINGLE"] {
        let emu = Emulator::start();
        let sink = emu.sink(&[
            ("salesforce.sobject.type", "${topic}"),
            ("salesforce.operation", "UPSERT"),
            ("salesforce.operation.header.enabled", "true"),
            ("salesforce.external.id.field.map", "Contact:ExternalId__c,Account:AccountNumber__c"),
            ("salesforce.write.mode", mode),
        ]);
        let first = vec![
            routed("Contact", 0, "C-1", "UPSERT", Some("Contact one")),
            routed("Account", 0, "A-1", "UPSERT", Some("Account one")),
            routed("Contact", 1, "C-2", "UPSERT", Some("Contact two")),
            routed("Account", 1, "A-2", "INSERT", Some("Account two")),
            routed("Lead", 0, "L-1", "UPSERT", Some("no field for it")),
        ];
        let out = redeliver(&sink, &first, 5).unwrap();
        assert_eq!(out[..4], vec![Outcome::Written; 4], "{mode}");
        match &out[4] {
            Outcome::Failed(m) => assert!(m.contains("salesforce.external.id.field.map") && m.contains("Lead"), "{m}"),
            other => panic!("{other:?}"),
        }
        let second = vec![
            routed("Contact", 2, "C-1", "DELETE", None),
            routed("Account", 2, "A-2", "DELETE", None),
            routed("Account", 3, "A-1", "UPSERT", Some("Account one, again")),
        ];
        assert_eq!(redeliver(&sink, &second, 5).unwrap(), vec![Outcome::Written; 3], "{mode}");
        let field = |sobject: &str, f: &str| -> Vec<(String, String)> {
            let name = if sobject == "Account" { "Name" } else { "LastName" };
            emu.records(sobject).iter().map(|r| (r[f].as_str().unwrap().to_owned(), r[name].as_str().unwrap().to_owned())).collect()
        };
        assert_eq!(field("Contact", "ExternalId__c"), vec![("C-2".to_owned(), "Contact two".to_owned())], "{mode}");
        assert_eq!(field("Account", "AccountNumber__c"), vec![("A-1".to_owned(), "Account one, again".to_owned())], "{mode}");
        for r in emu.data_requests() {
            let path = r["path"].as_str().unwrap_or("");
            assert!(!(path.contains("Account") && path.contains("ExternalId__c")), "{mode}: {path}");
        }
    }
}
