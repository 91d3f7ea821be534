//! Startup validation (SPEC §5): credentials work, and in External ID mode the field exists and is
//! an External ID or idLookup field. Failures say what to fix.

use crate::config::Config;
use crate::error::{ErrorClass, SalesforceError};
use crate::http::{percent_encode, SalesforceClient};
use crate::keys::ExternalIdKind;
use crate::logs::Logs;
use crate::SinkError;
use reqwest::Method;

/// Runs `call` until it succeeds, fails for good, or the retry policy runs out: a Salesforce hiccup
/// at start should not fail the task any more than one in `put()` does.
async fn with_retries<T, F, Fut>(cfg: &Config, logs: &Logs, what: &str, mut call: F) -> Result<T, SalesforceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SalesforceError>>,
{
    let mut retry = 0;
    loop {
        match call().await {
            Err(e) if e.class() == ErrorClass::Recoverable && retry < cfg.retry.max_attempts => {
                retry += 1;
                let backoff = cfg.retry.backoff(retry);
                logs.warn(format!("{what} failed ({e}); retry {retry} of {} in {} ms", cfg.retry.max_attempts, backoff.as_millis()));
                tokio::time::sleep(backoff).await;
            }
            other => return other,
        }
    }
}

/// Checks credentials and, in External ID mode, the field; returns the field's kind.
pub(crate) async fn validate(cfg: &Config, client: &SalesforceClient, logs: &Logs) -> Result<ExternalIdKind, SinkError> {
    with_retries(cfg, logs, "fetching an OAuth token", || client.tokens().token())
        .await
        .map_err(|e| SinkError::Startup(token_failure(cfg, &e)))?;
    logs.info(format!("OAuth token obtained from {}/services/oauth2/token", cfg.instance_url));
    let Some(field) = &cfg.external_id_field else { return Ok(ExternalIdKind::Text) };

    let described = with_retries(cfg, logs, "describe", || describe_field(cfg, client)).await.map_err(|e| {
        SinkError::Startup(match e.code() {
            Some("NOT_FOUND") => format!(
                "SObject '{}' does not exist or the integration user cannot see it: check salesforce.sobject.type and the user's object permissions",
                cfg.sobject
            ),
            _ => format!("cannot describe SObject '{}': {e}", cfg.sobject),
        })
    })?;
    let Some(found) = described else {
        return Err(SinkError::Startup(format!(
            "field '{field}' does not exist on {} (or the integration user has no field-level access): check salesforce.external.id.field",
            cfg.sobject
        )));
    };
    let flag = |k: &str| found.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    if !flag("externalId") && !flag("idLookup") {
        return Err(SinkError::Startup(format!(
            "field '{field}' on {} is not an External ID field: mark it as External ID in its field definition, or set salesforce.external.id.field to one that is",
            cfg.sobject
        )));
    }
    logs.info(format!("external ID field {field} on {} checked", cfg.sobject));
    Ok(ExternalIdKind::from_describe(&found))
}

/// The kind of the External ID field, learned from describe even when startup validation is off
/// (SPEC §2): which keys are valid depends on it. A field describe does not show is treated as
/// text; Salesforce then rejects the writes with its own error.
pub(crate) async fn external_id_kind(cfg: &Config, client: &SalesforceClient) -> Result<ExternalIdKind, SalesforceError> {
    match describe_field(cfg, client).await {
        Ok(found) => Ok(found.map(|f| ExternalIdKind::from_describe(&f)).unwrap_or_default()),
        Err(e) if e.class() == ErrorClass::NonRecoverable => Ok(ExternalIdKind::Text),
        Err(e) => Err(e),
    }
}

/// `GET /sobjects/{type}/describe`: the entry of the External ID field, if describe lists it.
async fn describe_field(cfg: &Config, client: &SalesforceClient) -> Result<Option<serde_json::Value>, SalesforceError> {
    let field = cfg.external_id_field.as_deref().unwrap_or_default();
    let path = format!("/sobjects/{}/describe", percent_encode(&cfg.sobject));
    let describe = client.send(Method::GET, &path, None).await?;
    let json: serde_json::Value = serde_json::from_slice(&describe.body)
        .map_err(|e| SalesforceError::BadAnswer(format!("describe of '{}' is not JSON: {e}", cfg.sobject)))?;
    let fields = json.get("fields").and_then(|f| f.as_array()).cloned().unwrap_or_default();
    Ok(fields
        .into_iter()
        .find(|f| f.get("name").and_then(|n| n.as_str()).is_some_and(|n| n.eq_ignore_ascii_case(field))))
}

fn token_failure(cfg: &Config, e: &SalesforceError) -> String {
    match e {
        SalesforceError::TokenRefused { status: 407, .. } => format!(
            "the proxy refused the token request with HTTP 407 Proxy Authentication Required. Fix: check \
             salesforce.proxy.username and salesforce.proxy.password (and salesforce.proxy.url)"
        ),
        SalesforceError::TokenRefused { error, .. } if e.class() == ErrorClass::Fatal => format!(
            "Salesforce refused to issue a token: {e}. Fix: {}",
            crate::auth::token_advice(error, &cfg.auth)
        ),
        _ => format!("cannot reach Salesforce at {} to obtain a token: {e}", cfg.instance_url),
    }
}
