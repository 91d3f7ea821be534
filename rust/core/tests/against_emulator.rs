//! The write path against the Salesforce emulator over real HTTP: mixed operations and repeated
//! keys checked against a one-by-one model, per-record and request-level faults, stale Ids,
//! token revocation, and the request count of each write mode.

mod common;

use common::{model, redeliver, state_of, Emulator, Msg};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use salesforce_sink_core::config::Config;
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::outcome::Outcome;
use salesforce_sink_core::SalesforceSink;
use serde_json::{json, Value as Json};
use std::collections::{HashMap, HashSet};

fn stream(seed: u64, n: usize, keys: usize) -> Vec<Msg> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let op = ["UPSERT", "UPSERT", "INSERT", "UPDATE", "DELETE", "TOMBSTONE"][rng.gen_range(0..6)];
            Msg {
                key: format!("{}-{}", if rng.gen_bool(0.5) { "K" } else { "k" }, rng.gen_range(0..keys)),
                op,
                last_name: if rng.gen_bool(0.85) { Some(format!("L{i}")) } else { None },
                email: if rng.gen_bool(0.5) { Some(format!("u{i}@example.com")) } else { None },
                reserved: false,
            }
        })
        .collect()
}

/// External IDs (lower case) of records that a DELETE deleted without its answer reaching the
/// client (the emulator's commit_then_reset and commit_late faults): the only DELETEs the
/// connector may count as done although the one-by-one model rejects them.
fn deletes_with_lost_answers(emu: &Emulator) -> HashSet<String> {
    let ext_by_id: HashMap<String, String> = emu
        .control("GET", "records/Contact?include_deleted=true", Json::Null)
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| Some((r["Id"].as_str()?.to_string(), r["ExternalId__c"].as_str()?.to_lowercase())))
        .collect();
    let log = emu.control("GET", "requests", Json::Null);
    let mut keys = HashSet::new();
    for entry in log.as_array().into_iter().flatten() {
        let lost = matches!(entry["fault"].as_str(), Some("commit_then_reset" | "commit_late"));
        if !lost || entry["method"] != "DELETE" || entry["status"].as_u64().is_none_or(|s| s >= 300) {
            continue;
        }
        let query = entry["query"].as_str().unwrap_or("");
        let ids: Vec<String> = match collections_delete_ids(query) {
            Some(ids) => ids,
            None => entry["path"].as_str().and_then(|p| p.rsplit('/').next()).map(str::to_string).into_iter().collect(),
        };
        keys.extend(ids.iter().filter_map(|id| ext_by_id.get(id).cloned()));
    }
    keys
}

/// The `ids` parameter of a Collections DELETE query string.
fn collections_delete_ids(query: &str) -> Option<Vec<String>> {
    let ids = query.split('&').find_map(|kv| kv.strip_prefix("ids="))?;
    Some(ids.split("%2C").flat_map(|part| part.split(',')).map(str::to_string).collect())
}

/// Feeds the stream in `put()` batches, redelivering unfinished records as Connect would.
fn run(sink: &SalesforceSink, stream: &[Msg], batch: usize) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (b, chunk) in stream.chunks(batch).enumerate() {
        let records: Vec<Record> = chunk.iter().enumerate().map(|(i, m)| m.record((b * batch + i) as i64)).collect();
        outcomes.extend(redeliver(sink, &records, 20).unwrap());
    }
    outcomes
}

fn check_against_model(mode: &str, faults: Option<Json>, extra: &[(&str, &str)]) {
    let emu = Emulator::start();
    if let Some(rules) = faults {
        emu.control("POST", "faults", rules);
    }
    let mut settings = vec![
        ("salesforce.write.mode", mode),
        ("salesforce.external.id.field", "ExternalId__c"),
        ("salesforce.operation", "UPSERT"),
        ("salesforce.operation.header.enabled", "true"),
        ("salesforce.tombstone.delete", "true"),
    ];
    settings.extend_from_slice(extra);
    let sink = emu.sink(&settings);
    let msgs = stream(7, 1200, 60);
    let outcomes = run(&sink, &msgs, 300);
    let (expected_state, expected_ok) = model(&msgs, mode == "SINGLE");
    // Late commits have landed by now (the run outlasts their delay); only then is the log complete.
    std::thread::sleep(std::time::Duration::from_millis(LATE_COMMIT_MS + 200));
    let lost_answers = deletes_with_lost_answers(&emu);
    for (i, (o, ok)) in outcomes.iter().zip(&expected_ok).enumerate() {
        // A DELETE whose write happened but whose answer was lost finds nothing when retried: the
        // connector counts it as done. Only such DELETEs may differ from the model.
        let lost_answer_delete = !*ok
            && *o == Outcome::Written
            && matches!(msgs[i].op, "DELETE" | "TOMBSTONE")
            && lost_answers.contains(&msgs[i].key.to_lowercase());
        assert!(lost_answer_delete || (*o == Outcome::Written) == *ok, "record {i} {:?}: outcome {o:?}", msgs[i]);
    }
    assert_eq!(state_of(&emu), expected_state);
}

/// How late a commit_late fault lets a DELETE land: beyond the sink's request timeout below.
const LATE_COMMIT_MS: u64 = 600;

#[test]
fn collections_mixed_operations_match_the_one_by_one_model() {
    check_against_model("COLLECTIONS", None, &[]);
}

#[test]
fn single_mixed_operations_match_the_one_by_one_model() {
    check_against_model("SINGLE", None, &[]);
}

#[test]
fn collections_survive_record_and_request_faults() {
    check_against_model(
        "COLLECTIONS",
        Some(json!({"seed": 11, "rules": [
            {"kind": "record_error", "error_code": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access to this record", "probability": 0.1},
            {"kind": "status", "status": 503, "error_code": "SERVER_UNAVAILABLE", "probability": 0.1, "path_contains": "/services/data"},
            {"kind": "status", "path_contains": "/services/data", "status": 403, "error_code": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentPerOrgLongTxn Limit exceeded", "count": 3},
            {"kind": "reset", "probability": 0.03, "path_contains": "/services/data"},
            {"kind": "commit_then_reset", "probability": 0.03, "path_contains": "/services/data"},
            {"kind": "delay", "delay_ms": 30, "probability": 0.2, "path_contains": "/services/data"},
            // Only DELETEs land late: a late UPSERT could overwrite a newer write of its key, which
            // no client can prevent and no one-by-one model can express.
            {"kind": "commit_late", "method": "DELETE", "delay_ms": LATE_COMMIT_MS, "probability": 0.1, "path_contains": "/composite/sobjects"}
        ]})),
        &[("salesforce.request.timeout.ms", "300")],
    );
}

#[test]
fn request_counts_per_write_mode() {
    let emu = Emulator::start();
    let msgs: Vec<Msg> = (0..1000)
        .map(|i| Msg { key: format!("E-{i}"), op: "UPSERT", last_name: Some(format!("L{i}")), email: None, reserved: false })
        .collect();
    let collections = emu.sink(&[("salesforce.external.id.field", "ExternalId__c"), ("salesforce.operation", "UPSERT")]);
    let before = emu.api_requests();
    run(&collections, &msgs, 400);
    let upserts = emu.api_requests() - before;
    assert_eq!(upserts, 5, "1000 upserts in put() batches of 400 take 5 Collections requests of up to 200");

    let updates: Vec<Msg> = msgs.iter().map(|m| Msg { op: "UPDATE", ..m.clone() }).collect();
    let fresh = emu.sink(&[
        ("salesforce.external.id.field", "ExternalId__c"),
        ("salesforce.operation", "UPDATE"),
        ("salesforce.startup.validation.enabled", "false"),
    ]);
    let before = emu.api_requests();
    let out = run(&fresh, &updates, 400);
    assert!(out.iter().all(|o| *o == Outcome::Written));
    assert_eq!(emu.api_requests() - before, 11, "1 describe (the field's type, SPEC §2) + 5 SOQL queries + 5 updates");

    let single = emu.sink(&[
        ("salesforce.external.id.field", "ExternalId__c"),
        ("salesforce.operation", "UPDATE"),
        ("salesforce.write.mode", "SINGLE"),
        ("salesforce.startup.validation.enabled", "false"),
    ]);
    let before = emu.api_requests();
    run(&single, &updates[..100], 50);
    assert_eq!(emu.api_requests() - before, 201, "SINGLE: 1 describe, then a GET and a PATCH per record");
}

#[test]
fn stale_cached_id_is_evicted_and_resolved_again() {
    let emu = Emulator::start();
    let sink = emu.sink(&[
        ("salesforce.external.id.field", "ExternalId__c"),
        ("salesforce.operation.header.enabled", "true"),
    ]);
    let upsert = Msg { key: "S-1".into(), op: "UPSERT", last_name: Some("First".into()), email: None, reserved: false };
    let update = Msg { key: "S-1".into(), op: "UPDATE", last_name: Some("Second".into()), email: None, reserved: false };
    assert_eq!(run(&sink, &[upsert.clone(), update.clone()], 10), vec![Outcome::Written; 2]);
    // Behind the connector's back: the record is deleted and created again with a new Id.
    let other = emu.sink(&[("salesforce.external.id.field", "ExternalId__c"), ("salesforce.operation.header.enabled", "true")]);
    let delete = Msg { key: "S-1".into(), op: "DELETE", last_name: None, email: None, reserved: false };
    assert_eq!(run(&other, &[delete, upsert], 10), vec![Outcome::Written; 2]);
    let third = Msg { key: "S-1".into(), op: "UPDATE", last_name: Some("Third".into()), email: None, reserved: false };
    assert_eq!(run(&sink, &[third], 10), vec![Outcome::Written]);
    let records = emu.records("Contact");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["LastName"], "Third");
}

#[test]
fn revoked_tokens_are_replaced_without_losing_records() {
    let emu = Emulator::start();
    let sink = emu.sink(&[("salesforce.write.mode", "SINGLE")]);
    let msgs: Vec<Msg> = (0..20)
        .map(|i| Msg { key: format!("{i}"), op: "INSERT", last_name: Some(format!("L{i}")), email: None, reserved: false })
        .collect();
    let insert_only = |m: &Msg| Msg { op: "INSERT", ..m.clone() };
    let first: Vec<Msg> = msgs[..10].iter().map(insert_only).collect();
    assert!(run(&sink, &first, 10).iter().all(|o| *o == Outcome::Written));
    emu.control("POST", "tokens/revoke", json!({}));
    assert!(run(&sink, &msgs[10..], 10).iter().all(|o| *o == Outcome::Written));
    assert_eq!(emu.records("Contact").len(), 20);
}

#[test]
fn one_unparsable_record_does_not_sink_its_collections_request() {
    let emu = Emulator::start();
    let sink = emu.sink(&[]);
    let good = |i: usize| Record {
        topic: "t",
        partition: 0,
        offset: i as i64,
        key: Value::Null,
        value: Value::Map(vec![("LastName", Value::String("ok"))]),
        operation_header: OperationHeader::Absent,
        original: None,
    };
    let mut records: Vec<Record> = (0..9).map(good).collect();
    // A date Salesforce cannot parse makes it refuse the whole Collections body.
    records[4].value = Value::Map(vec![("LastName", Value::String("bad")), ("Birthdate", Value::String("31/12/2020"))]);
    let (out, _) = sink.write_records(&records).unwrap();
    for (i, o) in out.iter().enumerate() {
        if i == 4 {
            assert!(matches!(o, Outcome::Failed(m) if m.contains("JSON_PARSER_ERROR") || m.contains("Birthdate")), "{o:?}");
        } else {
            assert_eq!(*o, Outcome::Written, "record {i}");
        }
    }
    assert_eq!(emu.records("Contact").len(), 8);
}

#[test]
fn delete_whose_answer_was_lost_is_not_an_error_on_retry() {
    // The emulator deletes, then answers after the client gave up: the retry finds nothing to
    // delete, which is that DELETE's own effect (issue 5 fault suite), not a DLQ record.
    let emu = Emulator::start();
    for mode in ["COLLECTIONS", "SINGLE"] {
        let sink = emu.sink(&[
            ("salesforce.write.mode", mode),
            ("salesforce.external.id.field", "ExternalId__c"),
            ("salesforce.operation.header.enabled", "true"),
            ("salesforce.request.timeout.ms", "300"),
        ]);
        let msgs: Vec<Msg> = (0..3)
            .map(|i| Msg { key: format!("D-{mode}-{i}"), op: "UPSERT", last_name: Some(format!("L{i}")), email: None, reserved: false })
            .collect();
        assert_eq!(run(&sink, &msgs, 10), vec![Outcome::Written; 3]);
        emu.control("POST", "faults", json!({"rules": [
            {"kind": "slow", "method": "DELETE", "path_contains": "/services/data", "delay_ms": 900, "count": 1}
        ]}));
        let deletes: Vec<Msg> = msgs.iter().map(|m| Msg { op: "DELETE", last_name: None, ..m.clone() }).collect();
        assert_eq!(run(&sink, &deletes, 10), vec![Outcome::Written; 3], "{mode}");
        emu.control("DELETE", "faults", Json::Null);
        assert!(emu.records("Contact").iter().all(|r| !r["ExternalId__c"].as_str().unwrap().starts_with(&format!("D-{mode}"))));
        // A DELETE of a key that never had an unanswered DELETE still fails when it is missing.
        let again = run(&sink, &deletes[..1], 10);
        assert!(matches!(again[0], Outcome::Failed(_)), "{again:?}");
    }
}

#[test]
fn a_deleted_external_id_stays_deleted_in_every_case_variant() {
    // External IDs match case-insensitively: once "K-1" is deleted, "k-1" names no record, and a
    // DELETE of it must fail (NOT_FOUND) even when its first request is lost before the write —
    // it cannot have deleted anything.
    let emu = Emulator::start();
    let sink = emu.sink(&[("salesforce.external.id.field", "ExternalId__c"), ("salesforce.operation.header.enabled", "true")]);
    let msg = |key: &str, op: &'static str| Msg { key: key.into(), op, last_name: Some("L".into()), email: None, reserved: false };
    assert_eq!(run(&sink, &[msg("k-1", "UPSERT")], 10), vec![Outcome::Written]);
    assert_eq!(run(&sink, &[msg("K-1", "DELETE")], 10), vec![Outcome::Written]);
    emu.control("POST", "faults", json!({"rules": [{"kind": "reset", "method": "DELETE", "count": 1}]}));
    let again = run(&sink, &[msg("k-1", "DELETE")], 10);
    assert!(matches!(again[0], Outcome::Failed(_)), "{again:?}");
}

#[test]
fn tasks_of_one_connector_share_one_token() {
    let emu = Emulator::start();
    let config = |connector: &str| {
        let mut map: HashMap<String, String> = [
            ("salesforce.instance.url", emu.base.as_str()),
            ("salesforce.client.id", "test-client-id"),
            ("salesforce.auth.type", "CLIENT_CREDENTIALS"),
            ("salesforce.client.secret", "test-client-secret"),
            ("salesforce.sobject.type", "Contact"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        map.insert("connector.name".into(), connector.into());
        Config::from_map(&map).unwrap()
    };
    let token_requests = || emu.control("GET", "stats", Json::Null)["by_kind"]["token"].as_u64().unwrap_or(0);
    let task0 = SalesforceSink::with_config(config("shared-connector")).unwrap();
    let task1 = SalesforceSink::with_config(config("shared-connector")).unwrap();
    assert_eq!(token_requests(), 1, "two tasks of one connector: one token");
    let other = SalesforceSink::with_config(config("another-connector")).unwrap();
    assert_eq!(token_requests(), 2, "another connector gets its own");
    drop((task0, task1, other));
}

#[test]
fn records_wait_for_the_daily_quota_without_splitting_or_the_dlq() {
    let emu = Emulator::start();
    let sink = emu.sink(&[("salesforce.startup.validation.enabled", "false"), ("put.time.budget.ms", "500")]);
    emu.control("POST", "limits", json!({"max": 1000, "used": 1000}));
    let msgs: Vec<Msg> = (0..50)
        .map(|i| Msg { key: format!("{i}"), op: "INSERT", last_name: Some(format!("L{i}")), email: None, reserved: false })
        .collect();
    let records: Vec<Record> = msgs.iter().enumerate().map(|(i, m)| m.record(i as i64)).collect();
    emu.control("DELETE", "requests", Json::Null);
    let (out, _) = sink.write_records(&records).unwrap();
    assert!(out.iter().all(|o| !o.is_final()), "the daily quota is no record's fault: {out:?}");
    let data_requests = emu.data_requests().len();
    assert!((1..=3).contains(&data_requests), "the quota refusal holds for all 50 records: {data_requests} requests, no split");
    // A new day: the records land.
    emu.control("POST", "limits", json!({"max": 1000, "used": 0}));
    let sink = emu.sink(&[("salesforce.startup.validation.enabled", "false")]);
    assert!(sink.write_records(&records).unwrap().0.iter().all(|o| *o == Outcome::Written));
    assert_eq!(emu.records("Contact").len(), 50);
}
