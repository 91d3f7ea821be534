//! What Salesforce answers, whatever it is: error bodies (`http::rejection`) and their
//! classification, Collections result arrays, SOQL results of the Id lookup, the
//! `Sforce-Limit-Info` header, Bulk API 2.0 result CSVs. Nothing may panic.
//!
//! Input: byte 0 = operation (low 2 bits) and record count (high 6 bits), bytes 1–2 = HTTP status
//! (big-endian), the rest = the response body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use salesforce_sink_core::config::Operation;
use salesforce_sink_core::error::classify_code;
use salesforce_sink_core::http::{parse_api_usage, rejection};
use salesforce_sink_core::metrics::Metrics;
use salesforce_sink_core::logs::Logs;
use salesforce_sink_core::write::fuzzing;

const KEYS: &[&str] = &["C-1", "c-2", "42", "ÄÖ-ü", "", "x' OR Name != '"];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let op = [Operation::Insert, Operation::Update, Operation::Delete, Operation::Upsert][(data[0] & 3) as usize];
    let count = (data[0] >> 2) as usize;
    let status = u16::from_be_bytes([data[1], data[2]]);
    let body = &data[3..];

    let e = rejection(status, body);
    let _ = (e.to_string(), e.class(), e.code(), e.is_session_expired());

    let results = fuzzing::collections_results(status, body, count, op);
    assert!(results.len() == count || results.len() == 1);

    for numeric in [false, true] {
        for (n, _id) in fuzzing::query_ids(body, "ExternalId__c", KEYS, numeric) {
            assert!(n < KEYS.len());
        }
    }

    // A result CSV re-encoded and parsed again gives the same rows (INSERT results are matched by
    // their re-encoded line).
    if let Ok(lines) = fuzzing::bulk_result_rows(body) {
        // A row of one empty cell is an empty line, which readers skip.
        let kept: Vec<String> = lines.into_iter().filter(|l| !l.is_empty()).collect();
        let again = fuzzing::bulk_result_rows(kept.join("\n").as_bytes()).expect("re-encoded CSV parses");
        assert_eq!(again, kept);
    }

    let text = String::from_utf8_lossy(body);
    let (code, message) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = classify_code(code, message, Some(status));
    let _ = classify_code(code, message, None);
    let _ = parse_api_usage(&text);
    Metrics::new(10, Logs::default()).observe_api_usage(&text);
});
