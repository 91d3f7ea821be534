//! COLLECTIONS mode: sObject Collections, up to 200 records a request, `allOrNone=false`, one
//! result per record in request order.

use super::{RequestItem, SendResult, Writer};
use crate::config::Operation;
use crate::convert::write_string;
use crate::error::{classify_code, ApiError, ErrorClass, SalesforceError};
use crate::http::percent_encode;
use reqwest::Method;

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiError>,
}

pub(super) async fn send(w: &Writer, op: Operation, items: &[RequestItem]) -> Result<Vec<SendResult>, SalesforceError> {
    let response = match op {
        Operation::Delete => {
            let ids: Vec<String> = items.iter().map(|i| percent_encode(i.id.as_deref().unwrap_or_default())).collect();
            let path = format!("/composite/sobjects?ids={}&allOrNone=false", ids.join(","));
            w.client.send(Method::DELETE, &path, None).await?
        }
        Operation::Insert => w.client.send(Method::POST, "/composite/sobjects", Some(&body(w, op, items))).await?,
        Operation::Update => w.client.send(Method::PATCH, "/composite/sobjects", Some(&body(w, op, items))).await?,
        Operation::Upsert => {
            let path = format!(
                "/composite/sobjects/{}/{}",
                percent_encode(&items[0].sobject),
                percent_encode(w.upsert_field(&items[0].sobject))
            );
            w.client.send(Method::PATCH, &path, Some(&body(w, op, items))).await?
        }
    };
    let results = parse_results(response.status, &response.body, items.len(), op)?;
    Ok(results
        .into_iter()
        .zip(items)
        .map(|(result, item)| match result {
            EntryResult::Written(id) => SendResult::Written { id: id.or_else(|| item.id.clone()) },
            EntryResult::Rejected { class, gone, text } => w.result_for(op, item, class, gone, text),
        })
        .collect())
}

/// One Collections result, classified.
#[derive(Debug)]
pub(crate) enum EntryResult {
    Written(Option<String>),
    Rejected { class: ErrorClass, gone: bool, text: String },
}

/// A Collections answer → one classified result per request record, in request order. Pure, so
/// it can be fuzzed (`fuzzing::collections_results`).
pub(crate) fn parse_results(status: u16, body: &[u8], count: usize, op: Operation) -> Result<Vec<EntryResult>, SalesforceError> {
    let entries: Vec<Entry> = serde_json::from_slice(body).map_err(|e| {
        SalesforceError::BadAnswer(format!("HTTP {status}: Collections answer is not a result array: {e}"))
    })?;
    if entries.len() != count {
        // Nothing can be attributed, and asking again gets the same answer (SPEC §4): the
        // records fail with this message rather than loop. (Before Native ID keys were checked,
        // a key with a comma made Salesforce act on two records and answer twice.)
        return Err(SalesforceError::BadAnswer(format!(
            "Collections answered {} results for {} records",
            entries.len(),
            count
        )));
    }
    Ok(entries
        .into_iter()
        .map(|entry| {
            if entry.success {
                return EntryResult::Written(entry.id);
            }
            let first = entry.errors.first();
            let code = first.map(|e| e.code.as_str()).unwrap_or("");
            let message = first.map(|e| e.message.as_str()).unwrap_or("");
            let class = classify_code(code, message, None);
            let gone = matches!(code, "NOT_FOUND" | "ENTITY_IS_DELETED" | "INVALID_CROSS_REFERENCE_KEY")
                && matches!(op, Operation::Update | Operation::Delete);
            let text = entry.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            EntryResult::Rejected { class, gone, text: if text.is_empty() { "rejected without an error".into() } else { text } }
        })
        .collect())
}

/// `{"allOrNone":false,"records":[{"attributes":{"type":T}, <id or external ID>, <fields>}, …]}`
/// (every item of one SObject).
pub(super) fn body(w: &Writer, op: Operation, items: &[RequestItem]) -> Vec<u8> {
    let Some(first) = items.first() else { return br#"{"allOrNone":false,"records":[]}"#.to_vec() };
    let mut type_attr = Vec::new();
    write_string(&mut type_attr, &first.sobject);
    let numeric = w.kind_of(&first.sobject).is_numeric();
    let size: usize = items.iter().map(|i| i.fields.len() + 64).sum();
    let mut out = Vec::with_capacity(size + 48);
    out.extend_from_slice(br#"{"allOrNone":false,"records":["#);
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"attributes":{"type":"#);
        out.extend_from_slice(&type_attr);
        out.push(b'}');
        match op {
            Operation::Update => {
                out.extend_from_slice(br#","id":"#);
                write_string(&mut out, item.id.as_deref().unwrap_or_default());
            }
            Operation::Upsert => {
                out.push(b',');
                write_string(&mut out, w.upsert_field(&first.sobject));
                out.push(b':');
                let key = item.key.as_deref().unwrap_or_default();
                // Numeric keys are canonical decimals (checked in `plan`): valid JSON numbers.
                if numeric && crate::keys::canonical_decimal(key, false).is_some() {
                    out.extend_from_slice(key.as_bytes());
                } else {
                    write_string(&mut out, key);
                }
            }
            _ => {}
        }
        if !item.fields.is_empty() {
            out.push(b',');
            out.extend_from_slice(&item.fields);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}
