//! External ID → Salesforce Id, for UPDATE and DELETE in External ID mode: a bounded per-task cache
//! (10,000 entries, 7-day TTL), then one SOQL query per up to 200 keys (COLLECTIONS) or one GET by
//! external ID per key (SINGLE, as the seed).

use super::{FatalError, Item, SendResult, Via, Writer};

use crate::error::{ErrorClass, SalesforceError};
use crate::http::percent_encode;
use crate::keys::ExternalIdKind;
use reqwest::Method;
use std::collections::HashMap;
use std::time::Duration;

const CACHE_ENTRIES: u64 = 10_000;
const CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const KEYS_PER_QUERY: usize = 200;
/// Pages of one query answer followed through `nextRecordsUrl` (2,000 records each by default):
/// 200 keys rarely match more than 200 records, and an answer that never ends is refused.
const MAX_QUERY_PAGES: usize = 50;
/// Salesforce refuses URIs over 16,384 bytes (414); leave room for the host and path.
const MAX_ENCODED_QUERY: usize = 15_000;

/// (SObject, external ID) → Id. Keys are stored lower-cased: Salesforce matches text external IDs
/// case-insensitively, so `K-1` and `k-1` name one record and must share one entry (numeric keys
/// are canonical decimals, which have no case). An external ID is unique within its SObject only
/// (`${topic}` writes several), so the SObject is part of the entry's key. An entry lives 7 days
/// from its resolution.
pub struct IdCache(moka::sync::Cache<String, String>);

impl IdCache {
    pub fn new() -> Self {
        IdCache(moka::sync::Cache::builder().max_capacity(CACHE_ENTRIES).time_to_live(CACHE_TTL).build())
    }
    fn entry(sobject: &str, key: &str) -> String {
        format!("{}\0{}", sobject.to_lowercase(), key.to_lowercase())
    }
    pub fn get(&self, sobject: &str, key: &str) -> Option<String> {
        self.0.get(&Self::entry(sobject, key))
    }
    pub fn insert(&self, sobject: &str, key: &str, id: &str) {
        self.0.insert(Self::entry(sobject, key), id.to_owned())
    }
    pub fn evict(&self, sobject: &str, key: &str) {
        self.0.invalidate(&Self::entry(sobject, key))
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
    Failed(SendResult),
}

impl Writer {
    /// Ids of `items[which]`, all of one SObject (a request's).
    pub(super) async fn resolve(&self, items: &[Item], which: &[usize], via: Via) -> Result<Vec<(usize, Resolution)>, FatalError> {
        let mut out = Vec::with_capacity(which.len());
        let mut unknown: Vec<usize> = Vec::new();
        let Some(&first) = which.first() else { return Ok(out) };
        let sobject = std::sync::Arc::clone(&items[first].write.sobject);
        for &i in which {
            debug_assert_eq!(items[i].write.sobject, sobject, "a request writes one SObject");
            let key = items[i].write.key.as_deref().unwrap_or_default();
            match self.ids.get(&sobject, key).filter(|_| !items[i].re_resolved) {
                Some(id) => {
                    self.client.metrics().id_cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    out.push((i, Resolution::Found { id, from_cache: true }))
                }
                None => {
                    self.client.metrics().id_cache_misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    unknown.push(i)
                }
            }
        }
        if unknown.is_empty() {
            return Ok(out);
        }
        let keys: Vec<&str> = unknown.iter().map(|&i| items[i].write.key.as_deref().unwrap_or_default()).collect();
        let found = match via {
            Via::Single => self.lookup_each(&sobject, &keys).await,
            Via::Collections | Via::Bulk => self.query_ids(&sobject, &keys).await,
        };
        for (i, key) in unknown.into_iter().zip(keys) {
            let resolution = match found.get(&key.to_lowercase()) {
                Some(Ok(ids)) if ids.len() == 1 => {
                    self.ids.insert(&sobject, key, &ids[0]);
                    Resolution::Found { id: ids[0].clone(), from_cache: false }
                }
                Some(Ok(ids)) if ids.len() > 1 => Resolution::Failed(SendResult::Failed(format!(
                    "{} {} records have {}='{}'; an external ID must name one record",
                    ids.len(),
                    sobject,
                    self.upsert_field(&sobject),
                    key
                ))),
                Some(Ok(_)) | None => Resolution::Missing,
                Some(Err(e)) => match e.class() {
                    ErrorClass::Fatal => return Err(self.fatal(e)),
                    ErrorClass::Recoverable => Resolution::Failed(SendResult::Retry(format!("Id lookup: {e}"))),
                    ErrorClass::NonRecoverable => Resolution::Failed(SendResult::Failed(format!("Id lookup: {e}"))),
                },
            };
            out.push((i, resolution));
        }
        Ok(out)
    }

    /// SINGLE mode: `GET /sobjects/{T}/{field}/{value}?fields=Id`, one per key, as the seed.
    async fn lookup_each(&self, sobject: &str, keys: &[&str]) -> HashMap<String, Result<Vec<String>, SalesforceError>> {
        let field = self.upsert_field(sobject);
        let mut found = HashMap::new();
        for key in keys {
            let path = format!(
                "/sobjects/{}/{}/{}?fields=Id",
                percent_encode(sobject),
                percent_encode(field),
                percent_encode(key)
            );
            let result = match self.client.send(Method::GET, &path, None).await {
                Ok(r) => serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("Id").and_then(|id| id.as_str()).and_then(crate::ids::to_18))
                    .map(|id| vec![id])
                    .ok_or_else(|| SalesforceError::BadAnswer("GET by external ID answered without a record Id".into())),
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
    /// bytes a query, every page of the answer. Keys are matched as the field's kind says
    /// (text case-insensitively, numbers as decimals).
    async fn query_ids(&self, sobject: &str, keys: &[&str]) -> HashMap<String, Result<Vec<String>, SalesforceError>> {
        let field = self.upsert_field(sobject);
        let kind = self.kind_of(sobject);
        let numeric = kind.is_numeric();
        let mut found: HashMap<String, Result<Vec<String>, SalesforceError>> = HashMap::new();
        for chunk in chunk_keys(keys, field, sobject, numeric) {
            let soql = soql_for(&chunk, field, sobject, numeric);
            match self.query_all_pages(&soql, field, &chunk, kind).await {
                Ok(matches) => {
                    for key in &chunk {
                        found.entry(key.to_lowercase()).or_insert_with(|| Ok(vec![]));
                    }
                    for (n, id) in matches {
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

    async fn query_all_pages(
        &self,
        soql: &str,
        field: &str,
        chunk: &[&str],
        kind: ExternalIdKind,
    ) -> Result<Vec<(usize, String)>, SalesforceError> {
        let mut path = format!("/query?q={}", percent_encode(soql));
        let mut matches = Vec::new();
        for _ in 0..MAX_QUERY_PAGES {
            let response = self.client.send(Method::GET, &path, None).await?;
            let page = ids_in_query_result(&response.body, field, chunk, kind)?;
            matches.extend(page.matches);
            match page.next {
                None => return Ok(matches),
                Some(next) => path = self.client.relative_data_path(&next).ok_or_else(|| {
                    SalesforceError::BadAnswer(format!("query answer's nextRecordsUrl '{next}' is outside this API version"))
                })?,
            }
        }
        Err(SalesforceError::BadAnswer(format!("query answer still not done after {MAX_QUERY_PAGES} pages")))
    }
}

/// One page of a SOQL answer: the records matched to keys, and where the next page is.
pub(crate) struct QueryPage {
    /// (index of the matching key in the chunk, 18-character Id).
    pub matches: Vec<(usize, String)>,
    pub next: Option<String>,
}

/// The records of a SOQL answer as (index of the matching key in `chunk`, Id); records matching
/// no key are left out. An answer without the documented shape, or with an Id that is not one,
/// is an error: read as "no record matches", it would turn a garbled answer into a not-found
/// DELETE or UPDATE. Pure, so it can be fuzzed.
pub(crate) fn ids_in_query_result(body: &[u8], field: &str, chunk: &[&str], kind: ExternalIdKind) -> Result<QueryPage, SalesforceError> {
    let bad = |why: &str| SalesforceError::BadAnswer(format!("query answer {why}"));
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad("is not JSON"))?;
    let records = json.get("records").and_then(|r| r.as_array()).ok_or_else(|| bad("has no records array"))?;
    let mut matches = Vec::new();
    for record in records {
        let id = record.get("Id").and_then(|v| v.as_str()).ok_or_else(|| bad("has a record without an Id"))?;
        let id = crate::ids::to_18(id).ok_or_else(|| bad("has a record whose Id is not a Salesforce Id"))?;
        // A record whose field is null matches no key (the query asked for non-null values).
        let Some(value) = field_ci(record, field).and_then(value_text) else { continue };
        if let Some(n) = chunk.iter().position(|k| kind.same_key(k, &value)) {
            matches.push((n, id));
        }
    }
    let done = json.get("done").and_then(|d| d.as_bool()).unwrap_or(true);
    let next = if done {
        None
    } else {
        let url = json.get("nextRecordsUrl").and_then(|u| u.as_str()).ok_or_else(|| bad("is not done but has no nextRecordsUrl"))?;
        Some(url.to_owned())
    };
    Ok(QueryPage { matches, next })
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

/// Numeric keys are canonical decimals already (`keys`), so they go into SOQL as numbers.
fn literal(key: &str, numeric: bool) -> String {
    if numeric && crate::keys::canonical_decimal(key, false).is_some() {
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
    fn garbled_query_answers_are_errors_not_misses() {
        let keys = ["k1", "k2"];
        for body in [&b"<html>"[..], br#"{"done":true}"#, br#"{"records":[{"Id":"x,y","Ext__c":"k1"}]}"#, br#"{"done":false,"records":[]}"#] {
            let e = ids_in_query_result(body, "Ext__c", &keys, ExternalIdKind::Text).err().expect("an error");
            assert_eq!(e.class(), ErrorClass::NonRecoverable, "{e}");
        }
        let page = ids_in_query_result(
            br#"{"done":false,"nextRecordsUrl":"/services/data/v62.0/query/01g-2000","records":[{"Id":"003000000000001","ext__C":"K2"}]}"#,
            "Ext__c",
            &keys,
            ExternalIdKind::Text,
        )
        .unwrap();
        assert_eq!(page.matches, vec![(1, "003000000000001AAA".to_string())]);
        assert_eq!(page.next.as_deref(), Some("/services/data/v62.0/query/01g-2000"));
        // 17-digit numbers that are one float apart stay apart
        let nums = ["12345678901234567", "12345678901234568"];
        let kind = ExternalIdKind::Number { precision: 18, scale: 0 };
        let page = ids_in_query_result(br#"{"done":true,"records":[{"Id":"003000000000002AAA","Num__c":12345678901234568}]}"#, "Num__c", &nums, kind).unwrap();
        assert_eq!(page.matches, vec![(1, "003000000000002AAA".to_string())]);
    }

    #[test]
    fn cache_evicts_and_ignores_case() {
        let c = IdCache::new();
        c.insert("Contact", "K-1", "003");
        assert_eq!(c.get("contact", "k-1").as_deref(), Some("003"));
        // the same external ID on another SObject is another record
        assert_eq!(c.get("Account", "K-1"), None);
        c.insert("Account", "K-1", "001");
        assert_eq!(c.get("Contact", "K-1").as_deref(), Some("003"));
        c.evict("CONTACT", "k-1");
        assert_eq!(c.get("Contact", "K-1"), None);
        assert_eq!(c.get("Account", "K-1").as_deref(), Some("001"));
    }
}
