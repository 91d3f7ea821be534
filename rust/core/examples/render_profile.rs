//! Rough per-record cost of the native conversion path (decode + route + convert + Collections
//! bodies), without Java and JNI: `cargo run --release -p salesforce-sink-core --example render_profile`.

use salesforce_sink_core::config::Config;
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::batch::encode;
use salesforce_sink_core::SalesforceSink;
use std::collections::HashMap;
use std::time::Instant;

fn main() {
    let cfg: HashMap<String, String> = [
        ("salesforce.instance.url", "http://127.0.0.1:1"),
        ("salesforce.client.id", "x"),
        ("salesforce.auth.type", "CLIENT_CREDENTIALS"),
        ("salesforce.client.secret", "x"),
        ("salesforce.sobject.type", "Contact"),
        ("salesforce.startup.validation.enabled", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let sink = SalesforceSink::with_config(Config::from_map(&cfg).unwrap()).unwrap();
    let names: Vec<String> = (0..500).map(|i| format!("Lovelace {i}")).collect();
    let records: Vec<Record> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Record {
            topic: "contacts",
            partition: 0,
            offset: i as i64,
            key: Value::String("k"),
            value: Value::Struct(vec![
                ("FirstName", Value::String("Ada")),
                ("LastName", Value::String(n)),
                ("Email", Value::String("ada.lovelace@example.com")),
                ("Phone", Value::Null),
                ("Birthdate", Value::Date(-56_000)),
                ("Description", Value::String("Analyst of the Analytical Engine, first programmer")),
                ("Score__c", Value::Decimal { scale: 2, unscaled: &[0x30, 0x39] }),
                ("Last_Contacted__c", Value::Timestamp(1_704_164_645_006)),
                ("Preferred_Time__c", Value::Time(45_296_789)),
                ("Active__c", Value::Boolean(true)),
                ("Visits__c", Value::Int(12345)),
                ("Rating__c", Value::Float64(4.25)),
            ]),
            operation_header: OperationHeader::Absent,
            original: None,
        })
        .collect();
    let batch = encode::batch(&records);
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    for _ in 0..(rounds / 8) {
        sink.render(&batch).unwrap();
    }
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(sink.render(&batch).unwrap());
    }
    let per = t.elapsed().as_nanos() as f64 / (rounds * records.len()) as f64;
    println!("render: {per:.0} ns/record");
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(salesforce_sink_core::wire::batch::decode_batch(&batch).unwrap());
    }
    let per = t.elapsed().as_nanos() as f64 / (rounds * records.len()) as f64;
    println!("decode alone: {per:.0} ns/record");
}
