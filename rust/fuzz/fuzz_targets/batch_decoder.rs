//! The batch buffer from Java, then everything a decoded batch goes through before HTTP: routing
//! and key checks (`plan`), conversion to Salesforce JSON, coalescing of fields fragments and the
//! Collections bodies (`render`).
//! Nothing may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use once_cell::sync::Lazy;
use salesforce_sink_core::config::Config;
use salesforce_sink_core::convert::merge_fragments;
use salesforce_sink_core::keys::ExternalIdKind;
use salesforce_sink_core::plan::{plan_record, Plan};
use salesforce_sink_core::wire::{batch, config as wire_config};
use salesforce_sink_core::SalesforceSink;
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

    let kinds = [ExternalIdKind::Text, ExternalIdKind::Number { precision: 18, scale: 2 }];
    for (cfg, external_id_mode) in CONFIGS.iter() {
        for kind in kinds {
            let mut previous: Option<std::sync::Arc<[u8]>> = None;
            for record in &records {
                let _ = record.coordinates();
                match plan_record(cfg, kind, record) {
                    Plan::Write(w) => {
                        let _ = w.ordering_key(*external_id_mode);
                        if let Some(earlier) = &previous {
                            // what the converter writes, the coalescer must be able to merge
                            assert!(merge_fragments(earlier, &w.fields).is_some());
                        }
                        previous = Some(w.fields.clone());
                    }
                    Plan::Skip => {}
                    Plan::Reject(reason) => assert!(!reason.is_empty()),
                }
            }
        }
    }
    for sink in SINKS.iter() {
        let _ = sink.render(data).expect("a batch that decodes renders");
    }
});
