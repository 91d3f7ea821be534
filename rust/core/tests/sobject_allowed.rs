//! `salesforce.sobject.allowed` (SPEC §1): with `${topic}` routing, whoever may create topics
//! must not pick any SObject the integration user can write. A record for an SObject not in the
//! list is a record error naming the SObject and the key, and never reaches Salesforce, not even
//! as a describe.

mod common;

use common::{redeliver, Emulator};
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::outcome::Outcome;

fn rec(topic: &str, offset: i64) -> Record<'_> {
    Record {
        topic,
        partition: 0,
        offset,
        key: Value::String("k"),
        value: Value::Map(vec![("LastName", Value::String("Allowed?"))]),
        operation_header: OperationHeader::Absent,
        original: None,
    }
}

#[test]
fn only_listed_sobjects_are_written_case_insensitively() {
    let emu = Emulator::start();
    let sink = emu.sink(&[("salesforce.sobject.type", "${topic}"), ("salesforce.sobject.allowed", " contact , Lead")]);
    let records = vec![rec("Contact", 0), rec("Account", 0), rec("CONTACT", 1), rec("Account", 1)];
    let out = redeliver(&sink, &records, 3).unwrap();
    assert_eq!(out[0], Outcome::Written);
    assert_eq!(out[2], Outcome::Written, "SObject API names are case-insensitive");
    for o in [&out[1], &out[3]] {
        match o {
            Outcome::Failed(m) => {
                assert!(m.contains("'Account'") && m.contains("salesforce.sobject.allowed"), "{m}");
                assert!(m.contains("contact, Lead"), "the message lists what is allowed: {m}");
            }
            other => panic!("{other:?}"),
        }
    }
    for r in emu.data_requests() {
        let path = r["path"].as_str().unwrap_or("");
        assert!(!path.contains("Account"), "a not-allowed SObject reached Salesforce: {path}");
    }
    assert!(emu.records("Account").is_empty());
}

#[test]
fn a_fixed_sobject_outside_the_list_is_a_configuration_error() {
    let emu = Emulator::start();
    let mut map = std::collections::HashMap::new();
    for (k, v) in [
        ("salesforce.instance.url", emu.base.as_str()),
        ("salesforce.client.id", "id"),
        ("salesforce.auth.type", "CLIENT_CREDENTIALS"),
        ("salesforce.client.secret", "s"),
        ("salesforce.sobject.type", "Account"),
        ("salesforce.sobject.allowed", "Contact"),
    ] {
        map.insert(k.to_owned(), v.to_owned());
    }
    let err = salesforce_sink_core::config::Config::from_map(&map).expect_err("must be refused").to_string();
    assert!(err.contains("salesforce.sobject.allowed") && err.contains("Account"), "{err}");
    map.insert("salesforce.sobject.allowed".into(), "Contact,not an api name".into());
    map.insert("salesforce.sobject.type".into(), "${topic}".into());
    let err = salesforce_sink_core::config::Config::from_map(&map).expect_err("must be refused").to_string();
    assert!(err.contains("salesforce.sobject.allowed") && err.contains("not an api name"), "{err}");
}
