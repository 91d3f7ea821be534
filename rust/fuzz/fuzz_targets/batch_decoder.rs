//! The batch buffer from Java, then everything a decoded batch goes through before HTTP: routing
//! (`plan`), conversion to Salesforce JSON, scheduling and the Collections bodies (`render`).
//! Nothing may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use once_cell::sync::Lazy;
use salesforce_sink_core::config::Config;
use salesforce_sink_core::plan::{plan_record, Plan};
use salesforce_sink_core::wire::{batch, config as wire_config};
use salesforce_sink_core::{write, SalesforceSink};
use std::collections::HashMap;

/// Sinks that never talk to anyone: startup validation off, a loopback URL nobody listens on.
static SINKS: Lazy<Vec<SalesforceSink>> = Lazy::new(|| {
    let variants: &[&[(&str, &str)]] = &[
        // Native ID, INSERT, operation header routing, tombstones delete.
        &[("salesforce.operation.header.enabled", "true"), ("salesforce.tombstone.delete", "true")],
        // External ID, UPSERT, nulls skipped, routing on a custom header name.
        &[
            ("salesforce.operation", "UPSERT"),
            ("salesforce.external.id.field", "Ext__c"),
            ("salesforce.null.fields", "SKIP"),
            ("salesforce.operation.header.enabled", "true"),
            ("salesforce.operation.header.name", "op"),
        ],
        &[("salesforce.operation", "UPDATE")],
        &[("salesforce.operation", "DELETE"), ("salesforce.external.id.field", "Ext__c")],
    ];
    variants
        .iter()
        .map(|extra| {
            let mut map: HashMap<String, String> = [
                ("salesforce.instance.url", "http://127.0.0.1:9"),
                ("salesforce.client.id", "fuzz"),
                ("salesforce.auth.type", "CLIENT_CREDENTIALS"),
                ("salesforce.client.secret", "fuzz"),
                ("salesforce.sobject.type", "Contact"),
                ("salesforce.startup.validation.enabled", "false"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            for (k, v) in *extra {
                map.insert((*k).to_owned(), (*v).to_owned());
            }
            let cfg = Config::from_map(&map).expect("fuzz config");
            SalesforceSink::with_config(cfg).expect("fuzz sink")
        })
        .collect()
});

static CONFIGS: Lazy<Vec<(Config, bool)>> = Lazy::new(|| {
    let base = |extra: &[(&str, &str)]| {
        let mut map: HashMap<String, String> = [
            ("salesforce.instance.url", "http://127.0.0.1:9"),
            ("salesforce.client.id", "fuzz"),
            ("salesforce.auth.type", "CLIENT_CREDENTIALS"),
            ("salesforce.client.secret", "fuzz"),
            ("salesforce.sobject.type", "Contact"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in extra {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        Config::from_map(&map).expect("fuzz config")
    };
    vec![
        (base(&[("salesforce.operation.header.enabled", "true")]), false),
        (base(&[("salesforce.operation", "UPSERT"), ("salesforce.external.id.field", "Ext__c")]), true),
        (base(&[("salesforce.operation", "DELETE"), ("salesforce.tombstone.delete", "true")]), false),
    ]
});

fuzz_target!(|data: &[u8]| {
    // The config buffer has the same primitives; a config is never fuzzed into a sink, only decoded.
    if let Ok(map) = wire_config::decode_config(data) {
        let _ = Config::from_map(&map);
    }
    let Ok(records) = batch::decode_batch(data) else {
        return;
    };
    // What decodes must encode again and decode to as many records (the Java encoder's twin).
    let again = batch::encode::batch(&records);
    let redecoded = batch::decode_batch(&again).expect("re-encoded batch must decode");
    assert_eq!(redecoded.len(), records.len());

    for (cfg, external_id_mode) in CONFIGS.iter() {
        let mut writes = Vec::new();
        for record in &records {
            let _ = record.coordinates();
            match plan_record(cfg, record) {
                Plan::Write(w) => {
                    let _ = w.ordering_key(*external_id_mode);
                    writes.push(w);
                }
                Plan::Skip => {}
                Plan::Reject(reason) => assert!(!reason.is_empty()),
            }
        }
        let waves = write::schedule(writes.iter(), *external_id_mode);
        assert_eq!(waves.iter().map(Vec::len).sum::<usize>(), writes.len());
    }
    for sink in SINKS.iter() {
        let _ = sink.render(data).expect("a batch that decodes renders");
    }
});
