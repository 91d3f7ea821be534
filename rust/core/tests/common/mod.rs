//! The emulator over real HTTP and a sink pointed at it, for the core's integration tests.
#![allow(dead_code)] // each test file uses its own part

use salesforce_sink_core::config::Config;
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::outcome::Outcome;
use salesforce_sink_core::{SalesforceSink, SinkError};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};

pub struct Emulator {
    pub rt: tokio::runtime::Runtime,
    pub base: String,
    http: reqwest::Client,
}

impl Emulator {
    pub fn start() -> Emulator {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (port, _app) = rt.block_on(sf_emulator::start("127.0.0.1", 0, false)).unwrap();
        Emulator { rt, base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() }
    }

    pub fn control(&self, method: &str, path: &str, body: Json) -> Json {
        let url = format!("{}/__emulator/{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        self.rt.block_on(async {
            let r = self.http.request(method, url).body(body.to_string()).send().await.unwrap();
            let bytes = r.bytes().await.unwrap();
            serde_json::from_slice(&bytes).unwrap_or(Json::Null)
        })
    }

    pub fn records(&self, sobject: &str) -> Vec<Json> {
        self.control("GET", &format!("records/{sobject}"), Json::Null).as_array().cloned().unwrap_or_default()
    }

    pub fn api_requests(&self) -> u64 {
        self.control("GET", "stats", Json::Null)["api_requests"].as_u64().unwrap()
    }

    /// The logged `/services/data` requests since the last `DELETE requests`.
    pub fn data_requests(&self) -> Vec<Json> {
        self.control("GET", "requests", Json::Null)
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["path"].as_str().unwrap_or("").starts_with("/services/data"))
            .collect()
    }

    pub fn config(&self, pairs: &[(&str, &str)]) -> Config {
        config_at(&self.base, pairs)
    }

    pub fn sink(&self, pairs: &[(&str, &str)]) -> SalesforceSink {
        SalesforceSink::with_config(self.config(pairs)).unwrap()
    }
}

/// A test config for the instance at `base`: CLIENT_CREDENTIALS, INSERT into Contact, quick
/// retries, a connector name of its own; `pairs` win.
pub fn config_at(base: &str, pairs: &[(&str, &str)]) -> Config {
    {
        let mut map: HashMap<String, String> = [
            ("salesforce.instance.url", base),
            ("salesforce.client.id", "test-client-id"),
            ("salesforce.auth.type", "CLIENT_CREDENTIALS"),
            ("salesforce.client.secret", "test-client-secret"),
            ("salesforce.sobject.type", "Contact"),
            ("salesforce.retry.initial.backoff.ms", "1"),
            ("salesforce.retry.max.backoff.ms", "5"),
            ("salesforce.retry.max.attempts", "8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in pairs {
            map.insert((*k).into(), (*v).into());
        }
        // A distinct connector name per sink: tasks of different tests must not share a token.
        map.insert("connector.name".into(), format!("test-{}", rand::random::<u64>()));
        Config::from_map(&map).unwrap()
    }
}

/// Writes `records` as Connect would: RETRY records are redelivered (up to `rounds` times) until
/// every record has a final outcome. Returns the outcomes in record order.
pub fn redeliver(sink: &SalesforceSink, records: &[Record<'_>], rounds: usize) -> Result<Vec<Outcome>, SinkError> {
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut finals: Vec<Option<Outcome>> = vec![None; records.len()];
    for _ in 0..rounds {
        let batch: Vec<Record> = pending.iter().map(|&i| records[i].clone()).collect();
        let (out, _backoff) = sink.write_records(&batch)?;
        let mut still = Vec::new();
        for (&i, o) in pending.iter().zip(out) {
            if o.is_final() {
                finals[i] = Some(o);
            } else {
                still.push(i);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
    }
    assert!(pending.is_empty(), "records still pending after {rounds} redeliveries: {pending:?}");
    Ok(finals.into_iter().map(Option::unwrap).collect())
}

/// With `RELIABILITY=1`, merges one scenario's figures into the file `tests/reliability_report.py`
/// renders into tests/RELIABILITY.md (`RELIABILITY_FIGURES`, default tests/.work/reliability.json).
pub fn record_reliability(scenario: &str, figures: Json) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if std::env::var("RELIABILITY").as_deref() != Ok("1") {
        return;
    }
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = std::env::var("RELIABILITY_FIGURES").map(std::path::PathBuf::from).unwrap_or_else(|_| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/.work/reliability.json")
    });
    let mut data: serde_json::Map<String, Json> =
        std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let mut figures = figures;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    figures["recorded_at"] = Json::String(utc_text(secs));
    data.insert(scenario.to_owned(), figures);
    let _ = std::fs::create_dir_all(path.parent().expect("a file path"));
    let tmp = path.with_extension("rust.tmp");
    if std::fs::write(&tmp, serde_json::to_vec_pretty(&Json::Object(data)).unwrap()).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// `YYYY-MM-DD hh:mm:ss` (UTC) of epoch seconds, as the Python side writes its timestamps.
fn utc_text(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
}

/// One record of a generated stream, owned so batches can borrow from it.
#[derive(Clone, Debug, Default)]
pub struct Msg {
    pub key: String,
    /// UPSERT, INSERT, UPDATE, DELETE, TOMBSTONE, or a header value the connector must refuse.
    pub op: &'static str,
    pub last_name: Option<String>,
    pub email: Option<String>,
    /// A value field that may not be written (`attributes`).
    pub reserved: bool,
}

impl Msg {
    pub fn record(&self, offset: i64) -> Record<'_> {
        let mut fields = Vec::new();
        if let Some(l) = &self.last_name {
            fields.push(("LastName", Value::String(l)));
        }
        if let Some(e) = &self.email {
            fields.push(("Email", Value::String(e)));
        }
        if self.reserved {
            fields.push(("attributes", Value::Map(vec![("type", Value::String("Account"))])));
        }
        Record {
            topic: "t",
            partition: 0,
            offset,
            key: Value::String(&self.key),
            value: if self.op == "TOMBSTONE" { Value::Null } else { Value::Map(fields) },
            operation_header: if self.op == "TOMBSTONE" { OperationHeader::Absent } else { OperationHeader::Text(self.op) },
            original: None,
        }
    }
}

pub type State = BTreeMap<String, BTreeMap<String, String>>;

/// SPEC §2 one record at a time (External ID mode, tombstones delete): the final state by
/// lower-cased key, and whether each record is written. SINGLE mode puts the key in a URL path,
/// which cannot carry `.` or `..`.
pub fn model(stream: &[Msg], single: bool) -> (State, Vec<bool>) {
    let mut state = State::new();
    let mut ok = Vec::new();
    for m in stream {
        let k = m.key.to_lowercase();
        let path_safe = !(single && matches!(m.key.as_str(), "." | ".."));
        let valid_key = !m.key.trim().is_empty() && m.key.chars().count() <= 255 && path_safe;
        let fields = || {
            let mut f = BTreeMap::new();
            if let Some(l) = &m.last_name {
                f.insert("LastName".to_string(), l.clone());
            }
            if let Some(e) = &m.email {
                f.insert("Email".to_string(), e.clone());
            }
            f
        };
        let written = match m.op {
            _ if !valid_key => false,
            "UPSERT" | "INSERT" if m.reserved => false,
            "UPSERT" | "INSERT" => {
                if !state.contains_key(&k) && m.last_name.is_none() {
                    false // REQUIRED_FIELD_MISSING on create
                } else {
                    state.entry(k).or_default().extend(fields());
                    true
                }
            }
            "UPDATE" if m.reserved => false,
            "UPDATE" => match state.get_mut(&k) {
                Some(existing) => {
                    existing.extend(fields());
                    true
                }
                None => false,
            },
            "DELETE" | "TOMBSTONE" => state.remove(&k).is_some(),
            _ => false, // unknown header operation
        };
        ok.push(written);
    }
    (state, ok)
}

/// The emulator's Contacts by lower-cased external ID: the fields the model tracks.
pub fn state_of(emu: &Emulator) -> State {
    emu.records("Contact")
        .into_iter()
        .map(|r| {
            let mut f = BTreeMap::new();
            for k in ["LastName", "Email"] {
                if let Some(v) = r.get(k).and_then(Json::as_str) {
                    f.insert(k.to_string(), v.to_string());
                }
            }
            (r["ExternalId__c"].as_str().unwrap().to_lowercase(), f)
        })
        .collect()
}

/// An UPSERT of `key` (External ID) setting LastName to `name`, in partition 0 of topic "p".
pub fn upsert<'a>(offset: i64, key: &'a str, name: &'a str) -> Record<'a> {
    Record {
        topic: "p",
        partition: 0,
        offset,
        key: Value::String(key),
        value: Value::Map(vec![("LastName", Value::String(name))]),
        operation_header: OperationHeader::Absent,
        original: None,
    }
}

/// A sink that UPSERTs Contacts by `ExternalId__c`, with `extra` settings.
pub fn upsert_sink(emu: &Emulator, extra: &[(&str, &str)]) -> SalesforceSink {
    let mut pairs = vec![("salesforce.external.id.field", "ExternalId__c"), ("salesforce.operation", "UPSERT")];
    pairs.extend_from_slice(extra);
    emu.sink(&pairs)
}
