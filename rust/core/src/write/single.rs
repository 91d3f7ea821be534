//! SINGLE mode: one REST request per record, as the seed does.

use super::{RequestItem, SendResult, Writer};
use crate::config::Operation;
use crate::error::SalesforceError;
use crate::http::percent_encode;
use reqwest::Method;

pub(super) async fn send(w: &Writer, op: Operation, item: &RequestItem) -> Result<SendResult, SalesforceError> {
    let sobject = percent_encode(&item.sobject);
    let body = || {
        let mut b = Vec::with_capacity(item.fields.len() + 2);
        b.push(b'{');
        b.extend_from_slice(&item.fields);
        b.push(b'}');
        b
    };
    let id = || percent_encode(item.id.as_deref().unwrap_or_default());
    let result = match op {
        Operation::Insert => w.client.send(Method::POST, &format!("/sobjects/{sobject}/"), Some(&body())).await,
        Operation::Update => w.client.send(Method::PATCH, &format!("/sobjects/{sobject}/{}", id()), Some(&body())).await,
        Operation::Delete => w.client.send(Method::DELETE, &format!("/sobjects/{sobject}/{}", id()), None).await,
        Operation::Upsert => {
            let field = percent_encode(w.upsert_field(&item.sobject));
            let key = percent_encode(item.key.as_deref().unwrap_or_default());
            w.client.send(Method::PATCH, &format!("/sobjects/{sobject}/{field}/{key}"), Some(&body())).await
        }
    };
    // Errors are classified by the caller, the same way for every mode.
    let response = result?;
    // Create and upsert answer `{"id": …}`; update and delete answer 204 with no body.
    let id = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned));
    Ok(SendResult::Written { id: id.or_else(|| item.id.clone()) })
}
