//! The task configuration, parsed from the values Java's `ConfigDef` already validated and
//! defaulted. Defaults live in one place, the `ConfigDef`; this parser only checks again what
//! native code relies on, so a config that bypassed Connect's validation still fails clearly.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_owned(), reason: reason.into() }
}

/// A secret whose `Debug`/`Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[hidden]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Insert,
    Update,
    Delete,
    Upsert,
}

impl Operation {
    /// Case-insensitive, as header values and the config accept.
    pub fn parse(s: &str) -> Option<Operation> {
        match s.trim().to_ascii_uppercase().as_str() {
            "INSERT" => Some(Operation::Insert),
            "UPDATE" => Some(Operation::Update),
            "DELETE" => Some(Operation::Delete),
            "UPSERT" => Some(Operation::Upsert),
            _ => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Insert => "INSERT",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Upsert => "UPSERT",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    ClientCredentials { client_secret: Secret },
    JwtBearer { private_key_pem: Secret, username: String, audience: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Single,
    Collections,
    /// Bulk API 2.0 ingest jobs (SPEC §7).
    Bulk,
    /// Collections while little waits, a Bulk job once `bulk.threshold` writes of one operation wait.
    Auto,
}

impl WriteMode {
    /// Whether this mode ever writes through Bulk API 2.0 jobs.
    pub fn uses_bulk(self) -> bool {
        matches!(self, WriteMode::Bulk | WriteMode::Auto)
    }
}

/// The `salesforce.bulk.*` keys (SPEC §7).
#[derive(Debug, Clone, PartialEq)]
pub struct BulkConfig {
    /// `AUTO`: writes of one operation waiting before a job is used.
    pub threshold: usize,
    pub max_records_per_job: usize,
    /// An open job is closed this long after its last record arrived.
    pub linger: Duration,
    /// The first status poll; later ones back off to [`BulkConfig::MAX_POLL_INTERVAL`].
    pub poll_interval: Duration,
    pub hard_delete: bool,
    /// A job not finished this long after UploadComplete is aborted (`salesforce.bulk.job.timeout.ms`).
    pub job_timeout: Duration,
}

impl BulkConfig {
    pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub connector_name: String,
    pub task_id: String,
    pub instance_url: String,
    pub client_id: String,
    pub auth: Auth,
    pub api_version: String,
    pub request_timeout: Duration,
    /// The SObject API name, or [`SOBJECT_BY_TOPIC`] (see [`Config::sobject_by_topic`]).
    pub sobject: String,
    pub operation: Operation,
    pub external_id_field: Option<String>,
    /// `salesforce.external.id.field.map`: (SObject, External ID field) pairs that override
    /// `external_id_field` for those SObjects (API names match case-insensitively).
    pub external_id_field_map: Vec<(String, String)>,
    /// `salesforce.idempotency.field` (SPEC §12): Native ID INSERTs carry the record's original
    /// `topic:partition:offset` in this field and are sent as UPSERTs on it.
    pub idempotency_field: Option<String>,
    pub header_routing: Option<String>,
    /// `salesforce.operation.header.mapping`: header values (lower-cased) and the operation each
    /// stands for; values not listed keep their usual meaning (INSERT, UPDATE, DELETE, UPSERT).
    pub header_mapping: Vec<(String, Operation)>,
    pub tombstone_delete: bool,
    pub retry: RetryPolicy,
    pub startup_validation: bool,
    pub compression: bool,
    pub write_mode: WriteMode,
    pub batch_size: usize,
    pub max_in_flight: usize,
    /// `salesforce.null.fields=SKIP`: leave null fields out instead of clearing them.
    pub skip_null_fields: bool,
    /// `salesforce.delete.missing=IGNORE`: deleting what is not there counts as done.
    pub ignore_missing_deletes: bool,
    /// How long a blocking wait for the buffer to drain may last (internal key
    /// `put.time.budget.ms`, set by Java from the consumer's `max.poll.interval.ms`), so a
    /// synchronous flush never outlives the consumer's poll interval.
    pub put_time_budget: Duration,
    /// `salesforce.linger.ms`: how long a part-filled request may wait for more records.
    pub linger: Duration,
    /// `salesforce.max.buffered.records`: unfinished records beyond which Java pauses its partitions.
    pub max_buffered_records: usize,
    /// `salesforce.coalesce.updates`: merge consecutive UPSERT/UPDATE writes of a key while they wait.
    pub coalesce_updates: bool,
    /// `salesforce.api.quota.check.interval.ms`: how long writes refused for the daily quota wait.
    pub quota_check_interval: Duration,
    /// `salesforce.api.quota.reserve.percent`: share of the daily API allowance left untouched
    /// (SPEC §8); 0 turns the quota guard off.
    pub quota_reserve_percent: u64,
    /// `salesforce.retry.max.duration.ms`: how long a record-level transient cause is retried
    /// before the record fails with it (SPEC §11); `None` (0): no limit.
    pub retry_max_duration: Option<Duration>,
    /// `salesforce.health.stall.threshold.ms`: health is STALLED while the oldest unfinished
    /// record is older than this (SPEC §11).
    pub stall_threshold: Duration,
    pub bulk: BulkConfig,
    /// Test-only hook from [`TEST_PANIC_ENV`]: the native entry point that must panic.
    pub test_panic: Option<String>,
    pub proxy: Option<Proxy>,
    /// Extra trusted CA certificates (PEM), for orgs reached through a TLS-inspecting proxy or a
    /// private endpoint. Java turns `salesforce.ssl.truststore.path` into this too.
    pub ca_pem: Option<String>,
    /// `salesforce.sobject.allowed`: with `${topic}`, the only SObjects records may write.
    pub sobject_allowed: Option<SObjectList>,
}

/// A list of SObject API names, matched as Salesforce matches them: case-insensitively
/// (`salesforce.sobject.allowed`; the one way a record's SObject is compared with a configured list).
#[derive(Debug, Clone, PartialEq)]
pub struct SObjectList(Vec<String>);

impl SObjectList {
    /// Comma-separated API names; `None` when there are none. Each must be an API name.
    pub fn parse(text: &str) -> Result<Option<SObjectList>, String> {
        let names: Vec<String> = text.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
        for name in &names {
            check_sobject_name(name)?;
        }
        Ok((!names.is_empty()).then_some(SObjectList(names)))
    }

    pub fn contains(&self, sobject: &str) -> bool {
        self.0.iter().any(|name| same_sobject(name, sobject))
    }

    /// The names as configured, for messages: `Contact, Account`.
    pub fn shown(&self) -> String {
        self.0.join(", ")
    }
}

/// Whether two SObject API names name the same SObject (Salesforce ignores their case).
pub fn same_sobject(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Proxy {
    pub url: Secret,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// `salesforce.sobject.type=${topic}`: each record's SObject is its topic after SMTs (SPEC §9).
pub const SOBJECT_BY_TOPIC: &str = "${topic}";

/// Parses `salesforce.operation.header.mapping` (`c:UPSERT,u:UPSERT,d:DELETE`): comma-separated
/// `value:OPERATION` pairs; values match case-insensitively, so one value may appear only once.
pub fn parse_header_mapping(text: &str) -> Result<Vec<(String, Operation)>, String> {
    let mut mapping: Vec<(String, Operation)> = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((value, op)) = pair.rsplit_once(':') else {
            return Err(format!("'{pair}' is not of the form value:OPERATION (e.g. c:UPSERT,d:DELETE)"));
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("'{pair}' has an empty header value"));
        }
        let op = Operation::parse(op).ok_or_else(|| format!("'{pair}': '{}' is not INSERT, UPDATE, DELETE or UPSERT", op.trim()))?;
        let value = value.to_lowercase();
        if mapping.iter().any(|(v, _)| *v == value) {
            return Err(format!("header value '{value}' is mapped more than once (values match case-insensitively)"));
        }
        mapping.push((value, op));
    }
    Ok(mapping)
}

/// Why `salesforce.idempotency.field` is refused in External ID mode (Java says the same).
pub const IDEMPOTENCY_IN_EXTERNAL_ID_MODE: &str = "is for Native ID mode only: with salesforce.external.id.field (or \
     salesforce.external.id.field.map) every INSERT is already an UPSERT on the record key's external ID, which \
     creates at most one Salesforce record per key; remove one of the two settings";

/// Parses `salesforce.external.id.field.map` (`Contact:ExternalId__c,Account:AccountNumber__c`):
/// comma-separated `SObject:Field` pairs of API names, each SObject (case-insensitively) once.
pub fn parse_external_id_field_map(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut map: Vec<(String, String)> = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((sobject, field)) = pair.split_once(':') else {
            return Err(format!("'{pair}' is not of the form SObject:Field (e.g. Contact:ExternalId__c,Account:AccountNumber__c)"));
        };
        let (sobject, field) = (sobject.trim(), field.trim());
        check_sobject_name(sobject).map_err(|why| format!("'{pair}': {why}"))?;
        check_sobject_name(field).map_err(|why| format!("'{pair}': {why}"))?;
        if map.iter().any(|(s, _)| s.eq_ignore_ascii_case(sobject)) {
            return Err(format!("SObject '{sobject}' is mapped more than once (API names match case-insensitively)"));
        }
        map.push((sobject.to_owned(), field.to_owned()));
    }
    Ok(map)
}

/// A quarter of Connect's default `max.poll.interval.ms` (5 minutes), when Java did not say.
const DEFAULT_PUT_TIME_BUDGET_MS: u64 = 75_000;

struct Values<'a>(&'a HashMap<String, String>);

impl Values<'_> {
    fn opt(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
    }
    fn required(&self, key: &str) -> Result<&str, ConfigError> {
        self.opt(key).ok_or_else(|| err(key, "is required"))
    }
    fn string(&self, key: &str, default: &str) -> String {
        self.opt(key).unwrap_or(default).to_owned()
    }
    fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.opt(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(err(key, format!("expected true or false, got '{v}'"))),
        }
    }
    fn int(&self, key: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let Some(v) = self.opt(key) else { return Ok(default) };
        let n: u64 = v.parse().map_err(|_| err(key, format!("expected a whole number, got '{v}'")))?;
        if n < min || n > max {
            return Err(err(key, format!("{n} is outside {min}..{max}")));
        }
        Ok(n)
    }
    fn choice<'c>(&self, key: &str, default: &'c str, allowed: &[&'c str]) -> Result<&'c str, ConfigError> {
        let v = self.opt(key).unwrap_or(default);
        allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(v))
            .copied()
            .ok_or_else(|| err(key, format!("'{v}' is not one of {}", allowed.join(", "))))
    }
}

/// Whether `name` can be an SObject API name: a letter, then letters, digits and underscores, no
/// trailing underscore and no more than 3 parts joined by `__` (namespace, name, suffix such as
/// `__c`). It goes into URL paths and SOQL's `FROM`, so nothing else may pass.
pub fn check_sobject_name(name: &str) -> Result<(), String> {
    let well_formed = name.len() <= 255
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.ends_with('_')
        && name.split("__").all(|part| !part.is_empty() && !part.starts_with('_'))
        && name.split("__").count() <= 3;
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a Salesforce API name (a letter, then letters, digits and single underscores, e.g. Contact or MyObject__c)",
            crate::keys::shown(name)
        ))
    }
}

/// `http://` is only for loopback (tests, local proxies); anything else must be TLS.
pub fn check_instance_url(url: &str) -> Result<(), String> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        let host = url_host(rest);
        if !is_loopback_host(host) {
            return Err(format!(
                "plain http:// is only allowed to loopback hosts; use https:// for '{host}'"
            ));
        }
        rest
    } else {
        return Err("must start with https:// (or http:// for a loopback host)".into());
    };
    if rest.split(['/', '?', '#']).next().unwrap_or("").is_empty() {
        return Err("has no host".into());
    }
    Ok(())
}

/// The host of `authority[/path]` (without brackets for IPv6).
fn url_host(after_scheme: &str) -> &str {
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or("");
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    }
}

/// 127.0.0.0/8, `localhost` and `::1` (SPEC §1).
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host == "::1"
        || host.parse::<std::net::Ipv4Addr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// Whether an `http(s)://` URL names a loopback host: the only hosts reached without TLS, and
/// never through the proxy.
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or("");
    is_loopback_host(url_host(rest))
}

/// `salesforce.proxy.url` is `http(s)://host:port`: credentials inside it would be echoed by the
/// validate endpoint and the worker's config logging, so they belong in the Password keys. The
/// message never repeats the URL.
pub fn check_proxy_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Err("must be http://host:port or https://host:port".into());
    };
    if rest.split(['/', '?', '#']).next().unwrap_or("").contains('@') {
        return Err("must not hold a user name or password; put them in salesforce.proxy.username and \
                    salesforce.proxy.password (a Password key, never shown)"
            .into());
    }
    Ok(())
}

impl Config {
    pub fn from_map(map: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let v = Values(map);
        let instance_url = v.required("salesforce.instance.url")?.trim_end_matches('/').to_owned();
        check_instance_url(&instance_url).map_err(|reason| err("salesforce.instance.url", reason))?;

        let auth = match v.choice("salesforce.auth.type", "", &["CLIENT_CREDENTIALS", "JWT_BEARER"])? {
            "CLIENT_CREDENTIALS" => Auth::ClientCredentials {
                client_secret: Secret::new(v.required("salesforce.client.secret")?),
            },
            _ => Auth::JwtBearer {
                private_key_pem: Secret::new(v.required("salesforce.jwt.private.key")?),
                username: v.required("salesforce.jwt.username")?.to_owned(),
                audience: v.string("salesforce.jwt.audience", "https://login.salesforce.com"),
            },
        };

        let api_version = v.string("salesforce.api.version", "62.0");
        let well_formed = api_version
            .split_once('.')
            .map(|(major, minor)| minor == "0" && (2..=3).contains(&major.len()) && major.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or(false);
        if !well_formed {
            return Err(err("salesforce.api.version", format!("'{api_version}' is not of the form NN.0")));
        }

        let operation = Operation::parse(&v.string("salesforce.operation", "INSERT"))
            .ok_or_else(|| err("salesforce.operation", "must be INSERT, UPDATE, DELETE or UPSERT"))?;
        let external_id_field = v.opt("salesforce.external.id.field").map(str::to_owned);
        let external_id_field_map = parse_external_id_field_map(&v.string("salesforce.external.id.field.map", ""))
            .map_err(|reason| err("salesforce.external.id.field.map", reason))?;
        let idempotency_field = v.opt("salesforce.idempotency.field").map(str::to_owned);
        if let Some(field) = &idempotency_field {
            check_sobject_name(field).map_err(|why| err("salesforce.idempotency.field", why))?;
            if external_id_field.is_some() || !external_id_field_map.is_empty() {
                return Err(err("salesforce.idempotency.field", IDEMPOTENCY_IN_EXTERNAL_ID_MODE));
            }
        }
        if operation == Operation::Upsert && external_id_field.is_none() && external_id_field_map.is_empty() {
            return Err(err(
                "salesforce.operation",
                "UPSERT needs salesforce.external.id.field (UPSERT is not supported in Native ID mode)",
            ));
        }

        let write_mode = match v.choice("salesforce.write.mode", "COLLECTIONS", &["SINGLE", "COLLECTIONS", "BULK", "AUTO"])? {
            "SINGLE" => WriteMode::Single,
            "COLLECTIONS" => WriteMode::Collections,
            "BULK" => WriteMode::Bulk,
            _ => WriteMode::Auto,
        };

        let sobject = v.required("salesforce.sobject.type")?.to_owned();

        let sobject_allowed = SObjectList::parse(v.opt("salesforce.sobject.allowed").unwrap_or(""))
            .map_err(|reason| err("salesforce.sobject.allowed", reason))?;
        if let Some(allowed) = sobject_allowed.as_ref().filter(|a| sobject != SOBJECT_BY_TOPIC && !a.contains(&sobject)) {
            return Err(err(
                "salesforce.sobject.allowed",
                format!("does not list salesforce.sobject.type '{sobject}' (allowed: {})", allowed.shown()),
            ));
        }

        let max_backoff_ms = v.int("salesforce.retry.max.backoff.ms", 30_000, 0, i32::MAX as u64)?;
        Ok(Config {
            connector_name: v.string("connector.name", "salesforce-sink"),
            task_id: v.string("task.id", "0"),
            instance_url,
            client_id: v.required("salesforce.client.id")?.to_owned(),
            auth,
            api_version,
            request_timeout: Duration::from_millis(v.int("salesforce.request.timeout.ms", 30_000, 1, i32::MAX as u64)?),
            sobject,
            operation,
            external_id_field,
            external_id_field_map,
            idempotency_field,
            header_routing: if v.boolean("salesforce.operation.header.enabled", false)? {
                Some(v.string("salesforce.operation.header.name", "operation"))
            } else {
                None
            },
            header_mapping: parse_header_mapping(&v.string("salesforce.operation.header.mapping", ""))
                .map_err(|reason| err("salesforce.operation.header.mapping", reason))?,
            tombstone_delete: v.boolean("salesforce.tombstone.delete", false)?,
            retry: RetryPolicy {
                max_attempts: v.int("salesforce.retry.max.attempts", 3, 0, 100)? as u32,
                initial_backoff: Duration::from_millis(v.int("salesforce.retry.initial.backoff.ms", 1000, 0, i32::MAX as u64)?),
                max_backoff: Duration::from_millis(max_backoff_ms),
            },
            startup_validation: v.boolean("salesforce.startup.validation.enabled", true)?,
            compression: v.boolean("salesforce.compression.enabled", false)?,
            write_mode,
            batch_size: v.int("salesforce.batch.size", 200, 1, 200)? as usize,
            max_in_flight: v.int("salesforce.max.in.flight.requests", 4, 1, 64)? as usize,
            skip_null_fields: v.choice("salesforce.null.fields", "SEND", &["SEND", "SKIP"])? == "SKIP",
            ignore_missing_deletes: v.choice("salesforce.delete.missing", "FAIL", &["FAIL", "IGNORE"])? == "IGNORE",
            put_time_budget: Duration::from_millis(v.int("put.time.budget.ms", DEFAULT_PUT_TIME_BUDGET_MS, 1, i32::MAX as u64)?),
            linger: Duration::from_millis(v.int("salesforce.linger.ms", 200, 0, 600_000)?),
            max_buffered_records: v.int("salesforce.max.buffered.records", 20_000, 1, 10_000_000)? as usize,
            coalesce_updates: v.boolean("salesforce.coalesce.updates", false)?,
            quota_check_interval: Duration::from_millis(v.int("salesforce.api.quota.check.interval.ms", 60_000, 1_000, 86_400_000)?),
            quota_reserve_percent: v.int("salesforce.api.quota.reserve.percent", 10, 0, 100)?,
            retry_max_duration: Some(v.int("salesforce.retry.max.duration.ms", 900_000, 0, i64::MAX as u64)?)
                .filter(|&ms| ms > 0)
                .map(Duration::from_millis),
            stall_threshold: Duration::from_millis(v.int("salesforce.health.stall.threshold.ms", 300_000, 1, i64::MAX as u64)?),
            bulk: BulkConfig {
                threshold: v.int("salesforce.bulk.threshold", 2_000, 1, 10_000_000)? as usize,
                max_records_per_job: v.int("salesforce.bulk.max.records.per.job", 100_000, 1, 150_000_000)? as usize,
                linger: Duration::from_millis(v.int("salesforce.bulk.linger.ms", 5_000, 0, 3_600_000)?),
                poll_interval: Duration::from_millis(v.int("salesforce.bulk.poll.interval.ms", 2_000, 1, 3_600_000)?),
                hard_delete: v.boolean("salesforce.bulk.hard.delete", false)?,
                job_timeout: Duration::from_millis(v.int("salesforce.bulk.job.timeout.ms", 3_600_000, 1_000, 604_800_000)?),
            },
            test_panic: test_panic_from_env(&v.string("connector.name", "salesforce-sink")),
            proxy: v.opt("salesforce.proxy.url").map(|url| check_proxy_url(url).map(|()| url)).transpose()
                .map_err(|reason| err("salesforce.proxy.url", reason))?.map(|url| Proxy {
                url: Secret::new(url),
                username: v.opt("salesforce.proxy.username").map(str::to_owned),
                password: v.opt("salesforce.proxy.password").map(Secret::new),
            }),
            ca_pem: v.opt("salesforce.ssl.ca.pem").map(str::to_owned),
            sobject_allowed,
        })
    }

    /// Panics in `point` when the test-only environment variable [`TEST_PANIC_ENV`] names this
    /// sink's connector for it: a JNI entry point, or a background task of the pipeline
    /// (`request`, `dispatcher`).
    pub fn test_hook(&self, point: &str) {
        if self.test_panic.as_deref() == Some(point) {
            panic!("forced panic in native {point} ({TEST_PANIC_ENV})");
        }
    }

    /// `salesforce.sobject.type=${topic}`: the SObject is each record's topic.
    pub fn sobject_by_topic(&self) -> bool {
        self.sobject == SOBJECT_BY_TOPIC
    }

    /// External ID mode (SPEC §2): keys are external ID values, INSERT is UPSERT.
    pub fn external_id_mode(&self) -> bool {
        self.external_id_field.is_some() || !self.external_id_field_map.is_empty()
    }

    /// The External ID field of `sobject`: its entry in `salesforce.external.id.field.map`, else
    /// `salesforce.external.id.field`; `None` in Native ID mode or for an SObject the map leaves out
    /// while no default is set.
    pub fn external_id_field_for(&self, sobject: &str) -> Option<&str> {
        self.external_id_field_map
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(sobject))
            .map(|(_, field)| field.as_str())
            .or(self.external_id_field.as_deref())
    }

    /// The field UPSERTs of `sobject` match on: its External ID field, or (Native ID mode)
    /// `salesforce.idempotency.field`, the only UPSERTs there are (SPEC §12).
    pub fn upsert_field(&self, sobject: &str) -> &str {
        self.external_id_field_for(sobject).or(self.idempotency_field.as_deref()).unwrap_or_default()
    }

    /// `https://host/services/data/v62.0`
    pub fn data_url(&self) -> String {
        format!("{}/services/data/v{}", self.instance_url, self.api_version)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn base() -> HashMap<String, String> {
        [
            ("salesforce.instance.url", "http://127.0.0.1:9999"),
            ("salesforce.client.id", "cid"),
            ("salesforce.auth.type", "client_credentials"),
            ("salesforce.client.secret", "shh"),
            ("salesforce.sobject.type", "Contact"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut m = base();
        for (k, v) in pairs {
            m.insert((*k).to_owned(), (*v).to_owned());
        }
        Config::from_map(&m)
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = with(&[]).unwrap();
        assert_eq!(c.operation, Operation::Insert);
        assert_eq!(c.api_version, "62.0");
        assert_eq!(c.write_mode, WriteMode::Collections);
        assert_eq!((c.batch_size, c.max_in_flight), (200, 4));
        assert_eq!(c.retry.max_attempts, 3);
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert!(c.startup_validation && !c.compression && !c.tombstone_delete && c.header_routing.is_none());
    }

    #[test]
    fn retry_duration_and_stall_threshold_bound_waits() {
        let c = with(&[]).unwrap();
        assert_eq!(c.retry_max_duration, Some(Duration::from_secs(900)));
        assert_eq!(c.stall_threshold, Duration::from_secs(300));
        assert_eq!(with(&[("salesforce.retry.max.duration.ms", "0")]).unwrap().retry_max_duration, None);
        assert_eq!(with(&[("salesforce.retry.max.duration.ms", "-1")]).unwrap_err().key, "salesforce.retry.max.duration.ms");
        assert_eq!(with(&[("salesforce.health.stall.threshold.ms", "0")]).unwrap_err().key, "salesforce.health.stall.threshold.ms");
    }

    #[test]
    fn each_mistake_names_its_key() {
        assert_eq!(with(&[("salesforce.client.secret", "")]).unwrap_err().key, "salesforce.client.secret");
        assert_eq!(with(&[("salesforce.operation", "upsert")]).unwrap_err().key, "salesforce.operation");
        assert_eq!(with(&[("salesforce.api.version", "62")]).unwrap_err().key, "salesforce.api.version");
        assert_eq!(with(&[("salesforce.batch.size", "201")]).unwrap_err().key, "salesforce.batch.size");
        assert_eq!(
            with(&[("salesforce.instance.url", "http://example.com")]).unwrap_err().key,
            "salesforce.instance.url"
        );
        let jwt = with(&[("salesforce.auth.type", "JWT_BEARER"), ("salesforce.jwt.private.key", "x")]);
        assert_eq!(jwt.unwrap_err().key, "salesforce.jwt.username");
    }

    #[test]
    fn loopback_rule() {
        for ok in ["https://x.my.salesforce.com", "http://localhost:1", "http://127.0.0.5/", "http://[::1]:8080"] {
            assert!(check_instance_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://10.0.0.1", "http://localhost.evil.com", "ftp://x", "https://", "http://127.0.0.1.nip.io"] {
            assert!(check_instance_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sobject_by_topic_and_names() {
        assert!(with(&[("salesforce.sobject.type", "${topic}")]).unwrap().sobject_by_topic());
        assert!(!with(&[]).unwrap().sobject_by_topic());
        for ok in ["Contact", "MyObject__c", "ns__Obj__c", "Account2"] {
            assert!(check_sobject_name(ok).is_ok(), "{ok}");
        }
        for bad in ["crm.Contact", "crm-Contact", "1Contact", "Contact_", "a___b", "a__b__c__d", "", "Con tact", "${topic"] {
            assert!(check_sobject_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn idempotency_field_and_external_id_field_map() {
        let c = with(&[("salesforce.idempotency.field", "KafkaCoordinates__c")]).unwrap();
        assert_eq!(c.idempotency_field.as_deref(), Some("KafkaCoordinates__c"));
        assert!(!c.external_id_mode());
        assert!(with(&[]).unwrap().idempotency_field.is_none());
        for (pairs, key) in [
            (vec![("salesforce.idempotency.field", "bad name")], "salesforce.idempotency.field"),
            (vec![("salesforce.idempotency.field", "K__c"), ("salesforce.external.id.field", "Ext__c")], "salesforce.idempotency.field"),
            (vec![("salesforce.idempotency.field", "K__c"), ("salesforce.external.id.field.map", "Contact:Ext__c")], "salesforce.idempotency.field"),
            (vec![("salesforce.external.id.field.map", "Contact")], "salesforce.external.id.field.map"),
            (vec![("salesforce.external.id.field.map", "Contact:A__c,contact:B__c")], "salesforce.external.id.field.map"),
            (vec![("salesforce.external.id.field.map", "Contact:A b")], "salesforce.external.id.field.map"),
        ] {
            assert_eq!(with(&pairs).unwrap_err().key, key, "{pairs:?}");
        }
        let m = with(&[
            ("salesforce.sobject.type", "${topic}"),
            ("salesforce.operation", "UPSERT"),
            ("salesforce.external.id.field.map", " Contact:ExternalId__c , Account:AccountNumber__c"),
        ])
        .unwrap();
        assert!(m.external_id_mode());
        assert_eq!(m.external_id_field_for("contact"), Some("ExternalId__c"));
        assert_eq!(m.external_id_field_for("Account"), Some("AccountNumber__c"));
        assert_eq!(m.external_id_field_for("Lead"), None);
        let with_default = with(&[("salesforce.external.id.field", "Ext__c"), ("salesforce.external.id.field.map", "Account:AccountNumber__c")]).unwrap();
        assert_eq!(with_default.external_id_field_for("Lead"), Some("Ext__c"));
        assert_eq!(with_default.external_id_field_for("ACCOUNT"), Some("AccountNumber__c"));
    }

    #[test]
    fn header_mapping() {
        let c = with(&[("salesforce.operation.header.mapping", " c:UPSERT, r:upsert,U:UPSERT ,d:Delete")]).unwrap();
        assert_eq!(
            c.header_mapping,
            vec![
                ("c".into(), Operation::Upsert),
                ("r".into(), Operation::Upsert),
                ("u".into(), Operation::Upsert),
                ("d".into(), Operation::Delete)
            ]
        );
        assert!(with(&[]).unwrap().header_mapping.is_empty());
        for bad in ["c", "c:MERGE", ":UPSERT", "c:UPSERT,C:DELETE"] {
            assert_eq!(with(&[("salesforce.operation.header.mapping", bad)]).unwrap_err().key, "salesforce.operation.header.mapping", "{bad}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let c = with(&[]).unwrap();
        assert!(!format!("{c:?}").contains("shh"));
    }
}

/// Test-only switch, deliberately outside the connector configuration so that no user can reach it
/// through the REST API: the worker's environment variable `SALESFORCE_SINK_TEST_NATIVE_PANIC`
/// lists `<entry point>:<connector name>` pairs (comma-separated; a name ending in `*` is a prefix),
/// and the sink of a matching connector panics in that entry point. Tests use it to prove a native
/// panic becomes a Java exception instead of taking the worker down.
pub const TEST_PANIC_ENV: &str = "SALESFORCE_SINK_TEST_NATIVE_PANIC";

fn test_panic_from_env(connector_name: &str) -> Option<String> {
    test_panic_for(&std::env::var(TEST_PANIC_ENV).ok()?, connector_name)
}

fn test_panic_for(spec: &str, connector_name: &str) -> Option<String> {
    spec.split(',').find_map(|pair| {
        let (entry_point, pattern) = pair.trim().split_once(':')?;
        let matches = match pattern.strip_suffix('*') {
            Some(prefix) => connector_name.starts_with(prefix),
            None => connector_name == pattern,
        };
        matches.then(|| entry_point.to_owned())
    })
}

#[cfg(test)]
mod test_panic_tests {
    use super::test_panic_for;

    #[test]
    fn pairs_match_by_name_or_prefix() {
        let spec = "open:a, put:panic-put-*";
        assert_eq!(test_panic_for(spec, "a").as_deref(), Some("open"));
        assert_eq!(test_panic_for(spec, "panic-put-17").as_deref(), Some("put"));
        assert_eq!(test_panic_for(spec, "b"), None);
        assert_eq!(test_panic_for("garbage", "a"), None);
        assert_eq!(test_panic_for("", "a"), None);
    }
}
