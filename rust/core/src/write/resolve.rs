//! External ID → Salesforce Id, for UPDATE and DELETE in External ID mode: a bounded per-task cache
//! (10,000 entries, 7-day TTL), then one SOQL query per up to 200 keys (COLLECTIONS) or one GET by
//! external ID per key (SINGLE, as the seed).

use super::{FatalError, Item, ItemResult, Writer};
use crate::config::WriteMode;
use crate::error::{ErrorClass, SalesforceError};
use crate::http::percent_encode;
use reqwest::Method;
use std::collections::HashMap;
use std::time::Duration;

const CACHE_ENTRIES: u64 = 10_000;
const CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const KEYS_PER_QUERY: usize = 200;
/// Salesforce refuses URIs over 16,384 bytes (414); leave room for the host and path.
const MAX_ENCODED_QUERY: usize = 15_000;

pub struct IdCache(moka::sync::Cache<String, String>);

impl IdCache {
    pub fn new() -> Self {
        IdCache(moka::sync::Cache::builder().max_capacity(CACHE_ENTRIES).time_to_live(CACHE_TTL).build())
    }
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.get(key)
    }
    pub fn insert(&self, key: &str, id: &str) {
        self.0.insert(key.to_owned(), id.to_owned())
    }
    pub fn evict(&self, key: &str) {
        self.0.invalidate(key)
    }
}

impl Default for IdCache {
    fn default() -> Self {
        Self::new()
    }
}

pub(super) enum Resolution {
    Found { id: String, from_cache: bool },
    Missing,
    Failed(ItemResult),
}

impl Writer {
    pub(super) async fn resolve(&self, items: &[Item], which: &[usize]) -> Result<Vec<(usize, Resolution)>, FatalError> {
        let mut out = Vec::with_capacity(which.len());
        let mut unknown: Vec<usize> = Vec::new();
        for &i in which {
            let key = items[i].write.key.as_deref().unwrap_or_default();
            match self.ids.get(key).filter(|_| !items[i].re_resolved) {
                Some(id) => out.push((i, Resolution::Found { id, from_cache: true })),
                None => unknown.push(i),
            }
        }
        if unknown.is_empty() {
            return Ok(out);
        }
        let keys: Vec<&str> = unknown.iter().map(|&i| items[i].write.key.as_deref().unwrap_or_default()).collect();
        let found = match self.cfg.write_mode {
            WriteMode::Single => self.lookup_each(&keys).await,
            WriteMode::Collections => self.query_ids(&keys).await,
        };
        for (i, key) in unknown.into_iter().zip(keys) {
            let resolution = match found.get(&key.to_lowercase()) {
                Some(Ok(ids)) if ids.len() == 1 => {
                    self.ids.insert(key, &ids[0]);
                    Resolution::Found { id: ids[0].clone(), from_cache: false }
                }
                Some(Ok(ids)) if ids.len() > 1 => Resolution::Failed(ItemResult::Failed(format!(
                    "{} {} records have {}='{}'; an external ID must name one record",
                    ids.len(),
                    self.cfg.sobject,
                    self.cfg.external_id_field.as_deref().unwrap_or_default(),
                    key
                ))),
                Some(Ok(_)) | None => Resolution::Missing,
                Some(Err(e)) => match e.class() {
                    ErrorClass::Fatal => return Err(self.fatal(e)),
                    ErrorClass::Recoverable => Resolution::Failed(ItemResult::Retry(format!("Id lookup: {e}"))),
                    ErrorClass::NonRecoverable => Resolution::Failed(ItemResult::Failed(format!("Id lookup: {e}"))),
                },
            };
            out.push((i, resolution));
        }
        Ok(out)
    }

    /// SINGLE mode: `GET /sobjects/{T}/{field}/{value}?fields=Id`, one per key, as the seed.
    async fn lookup_each(&self, keys: &[&str]) -> HashMap<String, Result<Vec<String>, SalesforceError>> {
        let field = self.cfg.external_id_field.as_deref().unwrap_or_default();
        let mut found = HashMap::new();
        for key in keys {
            let path = format!(
                "/sobjects/{}/{}/{}?fields=Id",
                percent_encode(&self.cfg.sobject),
                percent_encode(field),
                percent_encode(key)
            );
            let result = match self.client.send(Method::GET, &path, None).await {
                Ok(r) => Ok(serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("Id").and_then(|id| id.as_str()).map(|id| vec![id.to_owned()]))
                    .unwrap_or_default()),
                Err(e) if e.code() == Some("NOT_FOUND") => Ok(vec![]),
                Err(SalesforceError::Rejected { status: 300, errors }) => {
                    // Several matches: the body lists their URLs; two entries are enough to refuse.
                    Ok(vec![errors.first().map(|e| e.message.clone()).unwrap_or_default(); 2])
                }
                Err(e) => Err(e),
            };
            found.insert(key.to_lowercase(), result);
        }
        found
    }

    /// COLLECTIONS mode: `SELECT Id, F FROM T WHERE F IN (…)`, up to 200 keys and 15,000 encoded
    /// bytes a query. Keys are matched case-insensitively, as Salesforce matches text external IDs.
    async fn query_ids(&self, keys: &[&str]) -> HashMap<String, Result<Vec<String>, SalesforceError>> {
        let field = self.cfg.external_id_field.as_deref().unwrap_or_default();
        let mut found: HashMap<String, Result<Vec<String>, SalesforceError>> = HashMap::new();
        for chunk in chunk_keys(keys, field, &self.cfg.sobject, self.external_id_numeric) {
            let soql = soql_for(&chunk, field, &self.cfg.sobject, self.external_id_numeric);
            let result = self.client.send(Method::GET, &format!("/query?q={}", percent_encode(&soql)), None).await;
            match result {
                Ok(response) => {
                    for key in &chunk {
                        found.entry(key.to_lowercase()).or_insert_with(|| Ok(vec![]));
                    }
                    for (n, id) in ids_in_query_result(&response.body, field, &chunk, self.external_id_numeric) {
                        if let Some(Ok(ids)) = found.get_mut(&chunk[n].to_lowercase()) {
                            ids.push(id);
                        }
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    let class = e.class();
                    let mut original = Some(e);
                    for key in &chunk {
                        // One error per key; they share the cause.
                        let err = original.take().unwrap_or_else(|| clone_error(class, &message));
                        found.insert(key.to_lowercase(), Err(err));
                    }
                }
            }
        }
        found
    }
}

/// The records of a SOQL answer as (index of the matching key in `chunk`, Id); records without an
/// Id, without the field or matching no key are left out. Pure, so it can be fuzzed.
pub(crate) fn ids_in_query_result(body: &[u8], field: &str, chunk: &[&str], numeric: bool) -> Vec<(usize, String)> {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let mut out = Vec::new();
    for record in json.get("records").and_then(|r| r.as_array()).into_iter().flatten() {
        let (Some(id), Some(value)) =
            (record.get("Id").and_then(|v| v.as_str()), field_ci(record, field).and_then(value_text))
        else {
            continue;
        };
        if let Some(n) = chunk.iter().position(|k| same_key(k, &value, numeric)) {
            out.push((n, id.to_owned()));
        }
    }
    out
}

fn clone_error(class: ErrorClass, message: &str) -> SalesforceError {
    match class {
        ErrorClass::Recoverable => SalesforceError::Connection(message.to_owned()),
        ErrorClass::Fatal => SalesforceError::TokenRefused { status: 400, error: "token".into(), description: message.to_owned() },
        ErrorClass::NonRecoverable => SalesforceError::Unexpected { status: 400, snippet: message.to_owned() },
    }
}

fn field_ci<'a>(record: &'a serde_json::Value, field: &str) -> Option<&'a serde_json::Value> {
    record.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(field)).map(|(_, v)| v)
}

fn value_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn same_key(key: &str, value: &str, numeric: bool) -> bool {
    if numeric {
        if let (Ok(a), Ok(b)) = (key.parse::<f64>(), value.parse::<f64>()) {
            return a == b;
        }
    }
    key.eq_ignore_ascii_case(value) || key.to_lowercase() == value.to_lowercase()
}

/// A SOQL string literal: backslash escapes for `\`, quotes and control characters, so a key like
/// `' OR Name != '` stays one literal.
pub fn soql_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn literal(key: &str, numeric: bool) -> String {
    if numeric && key.parse::<f64>().is_ok() {
        key.to_owned()
    } else {
        soql_literal(key)
    }
}

fn soql_for(keys: &[&str], field: &str, sobject: &str, numeric: bool) -> String {
    let list: Vec<String> = keys.iter().map(|k| literal(k, numeric)).collect();
    format!("SELECT Id, {field} FROM {sobject} WHERE {field} IN ({})", list.join(", "))
}

/// Cuts keys into queries of at most 200 keys whose encoded text stays under the URI limit.
fn chunk_keys<'a>(keys: &[&'a str], field: &str, sobject: &str, numeric: bool) -> Vec<Vec<&'a str>> {
    let base = percent_encode(&soql_for(&[], field, sobject, numeric)).len();
    let mut chunks: Vec<Vec<&str>> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut size = base;
    let mut seen = std::collections::HashSet::new();
    for &key in keys {
        if !seen.insert(key.to_lowercase()) {
            continue;
        }
        let cost = percent_encode(&literal(key, numeric)).len() + 6;
        if !current.is_empty() && (current.len() == KEYS_PER_QUERY || size + cost > MAX_ENCODED_QUERY) {
            chunks.push(std::mem::take(&mut current));
            size = base;
        }
        size += cost;
        current.push(key);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_cannot_break_out() {
        assert_eq!(soql_literal("' OR Name != '"), r"'\' OR Name != \''");
        assert_eq!(soql_literal("a\\b\"c\nd"), r#"'a\\b\"c\nd'"#);
    }

    #[test]
    fn queries_stay_under_limits() {
        let keys: Vec<String> = (0..450).map(|i| format!("K-{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let chunks = chunk_keys(&refs, "Ext__c", "Contact", false);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), vec![200, 200, 50]);
        let long: Vec<String> = (0..200).map(|i| format!("{i}-{}", "ü".repeat(40))).collect();
        let refs: Vec<&str> = long.iter().map(String::as_str).collect();
        for chunk in chunk_keys(&refs, "Ext__c", "Contact", false) {
            assert!(percent_encode(&soql_for(&chunk, "Ext__c", "Contact", false)).len() <= MAX_ENCODED_QUERY);
        }
        assert_eq!(soql_for(&["1", "x"], "Num__c", "T", true), "SELECT Id, Num__c FROM T WHERE Num__c IN (1, 'x')");
    }

    #[test]
    fn cache_evicts() {
        let c = IdCache::new();
        c.insert("k", "003");
        assert_eq!(c.get("k").as_deref(), Some("003"));
        c.evict("k");
        assert_eq!(c.get("k"), None);
    }
}
