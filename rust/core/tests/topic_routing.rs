//! `salesforce.sobject.type=${topic}` against the emulator over real HTTP (SPEC §9): each record
//! goes to the SObject its topic names, requests never mix SObjects, one external ID on two
//! SObjects names two records (ordering key and Id cache), and topics that cannot be written fail
//! their own records only.

mod common;

use common::{redeliver, Emulator};
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::outcome::Outcome;
use serde_json::json;

fn account_with_external_id(emu: &Emulator) {
    emu.control(
        "POST",
        "sobjects",
        json!({"name": "Account", "keyPrefix": "001", "fields": [
            {"name": "Name", "type": "string", "length": 255},
            {"name": "LastName", "type": "string", "length": 80},
            {"name": "ExternalId__c", "type": "string", "length": 255, "externalId": true, "unique": true},
        ]}),
    );
}

fn rec<'a>(topic: &'a str, offset: i64, key: &'a str, op: &'a str, last_name: Option<&'a str>) -> Record<'a> {
    Record {
        topic,
        partition: 0,
        offset,
        key: Value::String(key),
        value: match last_name {
            Some(name) => Value::Map(vec![("LastName", Value::String(name))]),
            None => Value::Null,
        },
        operation_header: OperationHeader::Text(op),
        original: None,
    }
}

fn by_topic_sink(emu: &Emulator, mode: &str) -> salesforce_sink_core::SalesforceSink {
    emu.sink(&[
        ("salesforce.sobject.type", "${topic}"),
        ("salesforce.external.id.field", "ExternalId__c"),
        ("salesforce.operation", "UPSERT"),
        ("salesforce.operation.header.enabled", "true"),
        ("salesforce.write.mode", mode),
    ])
}

fn check_mode(mode: &str) {
    let emu = Emulator::start();
    account_with_external_id(&emu);
    let sink = by_topic_sink(&emu, mode);
    let records = vec![
        rec("Contact", 0, "K-1", "UPSERT", Some("Contact one")),
        rec("Account", 0, "K-1", "UPSERT", Some("Account one")),
        rec("Contact", 1, "K-2", "UPSERT", Some("Contact two")),
        rec("NoSuchThing__c", 0, "K-1", "UPSERT", Some("nowhere")),
        rec("crm.Lead", 0, "K-1", "UPSERT", Some("bad name")),
        rec("Account", 1, "K-2", "UPSERT", Some("Account two")),
    ];
    let out = redeliver(&sink, &records, 5).unwrap();
    assert_eq!(out[0], Outcome::Written);
    assert_eq!(out[1], Outcome::Written);
    assert_eq!(out[2], Outcome::Written);
    assert_eq!(out[5], Outcome::Written);
    match &out[3] {
        Outcome::Failed(m) => {
            assert!(m.contains("SObject 'NoSuchThing__c' does not exist"), "{m}");
            assert!(m.contains("topic NoSuchThing__c partition 0 offset 0"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    match &out[4] {
        Outcome::Failed(m) => assert!(m.contains("'crm.Lead'") && m.contains("RegexRouter"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Every data request names one SObject: upserts by path, and bodies of one type only.
    for r in emu.data_requests() {
        let path = r["path"].as_str().unwrap_or("");
        assert!(!path.contains("crm.Lead"), "the bad topic reached Salesforce: {path}");
    }
    // Then UPDATE and DELETE by the same external ID on both SObjects: each resolves its own Id.
    let second = vec![
        rec("Contact", 2, "K-1", "UPDATE", Some("Contact one, updated")),
        rec("Account", 2, "K-1", "DELETE", None),
        rec("Account", 3, "K-2", "UPDATE", Some("Account two, updated")),
        rec("Contact", 3, "K-2", "DELETE", None),
    ];
    let out = redeliver(&sink, &second, 5).unwrap();
    assert_eq!(out, vec![Outcome::Written; 4], "{mode}");
    let names = |sobject: &str| {
        let mut v: Vec<(String, String)> = emu
            .records(sobject)
            .iter()
            .map(|r| (r["ExternalId__c"].as_str().unwrap().to_owned(), r["LastName"].as_str().unwrap().to_owned()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("Contact"), vec![("K-1".into(), "Contact one, updated".into())], "{mode}");
    assert_eq!(names("Account"), vec![("K-2".into(), "Account two, updated".into())], "{mode}");
}

#[test]
fn collections_write_each_topic_to_its_sobject() {
    check_mode("COLLECTIONS");
}

#[test]
fn single_writes_each_topic_to_its_sobject() {
    check_mode("SINGLE");
}

#[test]
fn unknown_sobject_is_described_once() {
    let emu = Emulator::start();
    let sink = by_topic_sink(&emu, "COLLECTIONS");
    for round in 0..3 {
        let records = vec![rec("Missing__c", round, "K", "UPSERT", Some("x"))];
        let out = redeliver(&sink, &records, 2).unwrap();
        assert!(matches!(&out[0], Outcome::Failed(m) if m.contains("Missing__c")), "{out:?}");
    }
    let describes = emu
        .data_requests()
        .into_iter()
        .filter(|r| r["path"].as_str().unwrap_or("").ends_with("/sobjects/Missing__c/describe"))
        .count();
    assert_eq!(describes, 1);
}
