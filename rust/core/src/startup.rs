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

/// What checking the External ID field found, when it could not say yes.
pub(crate) enum FieldCheck {
    /// The cause may clear by itself (Salesforce busy or unreachable): check again later.
    NotYet(SalesforceError),
    /// The configuration is wrong (for this SObject): the message says what to fix.
    Wrong(String),
    /// Salesforce refused the connector's credentials: no SObject can be written.
    Fatal(String),
}

/// Checks credentials and, in External ID mode, the field; returns the field's kind, or `None`
/// when Salesforce was busy (it answered 5xx, 429 or a concurrency limit, or too slowly). A task
/// must not fail for good (Connect does not restart failed tasks) because Salesforce was busy when
/// it started: the check is then made again before the first records are planned. An address
/// where nothing answers at all still fails the start.
pub(crate) async fn validate(cfg: &Config, client: &SalesforceClient, logs: &Logs) -> Result<Option<ExternalIdKind>, SinkError> {
    match with_retries(cfg, logs, "fetching an OAuth token", || client.tokens().token_counted(client.metrics())).await {
        Ok(_) => logs.info(format!("OAuth token obtained from {}/services/oauth2/token", cfg.instance_url)),
        // Nothing answers at that address: far more often a wrong salesforce.instance.url (or
        // proxy) than an outage, and an operator must hear of it now, not find a silent task.
        Err(e @ SalesforceError::Connection(_)) => return Err(SinkError::Startup(token_failure(cfg, &e))),
        // Salesforce answered, but busy (5xx, 429, concurrency limit) or slow: start anyway.
        Err(e) if e.class() == ErrorClass::Recoverable => {
            logs.warn(format!(
                "{}; the task starts anyway and keeps trying before it writes",
                token_failure(cfg, &e)
            ));
            return Ok(None);
        }
        Err(e) => return Err(SinkError::Startup(token_failure(cfg, &e))),
    }
    if !cfg.external_id_mode() && cfg.idempotency_field.is_none() {
        return Ok(Some(ExternalIdKind::Text));
    }
    if cfg.sobject_by_topic() {
        // No SObject is known before the first record: each is checked when first seen.
        logs.info("salesforce.sobject.type=${topic}: each SObject (and its external ID or idempotency field) is checked when its first record arrives");
        return Ok(None);
    }
    match with_retries(cfg, logs, "describe", || async {
        match check_sobject(cfg, client, &cfg.sobject, true).await {
            Err(FieldCheck::NotYet(e)) => Err(e),
            other => Ok(other),
        }
    })
    .await
    {
        Ok(Ok(kind)) => {
            let field = cfg.external_id_field_for(&cfg.sobject).map(|f| ("external ID field", f));
            let (what, field) = field.or(cfg.idempotency_field.as_deref().map(|f| ("idempotency field", f))).unwrap_or_default();
            logs.info(format!("{what} {field} on {} checked", cfg.sobject));
            Ok(Some(kind))
        }
        Ok(Err(FieldCheck::Wrong(why) | FieldCheck::Fatal(why))) => Err(SinkError::Startup(why)),
        Ok(Err(FieldCheck::NotYet(e))) | Err(e) => {
            logs.warn(format!(
                "cannot describe SObject '{}' yet ({e}); the task starts anyway and checks it before it writes",
                cfg.sobject
            ));
            Ok(None)
        }
    }
}

/// The kind of the External ID field from describe, learned whether or not startup validation is
/// on (SPEC §2: which keys are valid depends on it). `strict` (startup validation on): the field
/// must exist and be an External ID or idLookup field. Otherwise a field describe does not show
/// is treated as text, and Salesforce rejects the writes with its own error.
pub(crate) async fn check_external_id_field(cfg: &Config, client: &SalesforceClient, sobject: &str, strict: bool) -> Result<ExternalIdKind, FieldCheck> {
    let Some(field) = cfg.external_id_field_for(sobject) else {
        return Err(FieldCheck::Wrong(crate::plan::no_external_id_field(sobject)));
    };
    let described = match describe_fields(client, sobject).await {
        Ok(fields) => find_field(fields, field),
        Err(e) if e.class() == ErrorClass::Recoverable => return Err(FieldCheck::NotYet(e)),
        Err(e) if e.class() == ErrorClass::Fatal => return Err(FieldCheck::Fatal(format!("cannot describe SObject '{sobject}': {e}"))),
        Err(_) if !strict => return Ok(ExternalIdKind::Text),
        Err(e) if e.code() == Some("NOT_FOUND") => {
            return Err(FieldCheck::Wrong(format!(
                "SObject '{sobject}' does not exist or the integration user cannot see it: check salesforce.sobject.type and the user's object permissions"
            )))
        }
        Err(e) => return Err(FieldCheck::Wrong(format!("cannot describe SObject '{sobject}': {e}"))),
    };
    let Some(found) = described else {
        if !strict {
            return Ok(ExternalIdKind::Text);
        }
        return Err(FieldCheck::Wrong(format!(
            "field '{field}' does not exist on {sobject} (or the integration user has no field-level access): check {}",
            external_id_key(cfg, sobject)
        )));
    };
    let flag = |k: &str| found.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    if strict && !flag("externalId") && !flag("idLookup") {
        return Err(FieldCheck::Wrong(format!(
            "field '{field}' on {sobject} is not an External ID field: mark it as External ID in its field definition, or set {} to one that is",
            external_id_key(cfg, sobject)
        )));
    }
    Ok(ExternalIdKind::from_describe(&found))
}

/// The key that names `sobject`'s External ID field, for messages.
fn external_id_key(cfg: &Config, sobject: &str) -> &'static str {
    if cfg.external_id_field_map.iter().any(|(s, _)| s.eq_ignore_ascii_case(sobject)) {
        "salesforce.external.id.field.map"
    } else {
        "salesforce.external.id.field"
    }
}

/// One SObject (`salesforce.sobject.type`, or a record's topic with `${topic}`): in External ID
/// mode as [`check_external_id_field`]; in Native ID mode, with `strict`, that describe knows it
/// and that `salesforce.idempotency.field`, if set, can carry the guarantee of SPEC §12.
pub(crate) async fn check_sobject(cfg: &Config, client: &SalesforceClient, sobject: &str, strict: bool) -> Result<ExternalIdKind, FieldCheck> {
    if cfg.external_id_mode() {
        return check_external_id_field(cfg, client, sobject, strict).await;
    }
    if !strict {
        return Ok(ExternalIdKind::Text);
    }
    match describe_fields(client, sobject).await {
        Ok(fields) => match cfg.idempotency_field.as_deref() {
            Some(field) => check_idempotency_field(find_field(fields, field).as_ref(), field, sobject).map(|()| ExternalIdKind::Text).map_err(FieldCheck::Wrong),
            None => Ok(ExternalIdKind::Text),
        },
        Err(e) if e.class() == ErrorClass::Recoverable => Err(FieldCheck::NotYet(e)),
        Err(e) if e.class() == ErrorClass::Fatal => Err(FieldCheck::Fatal(format!("cannot describe SObject '{sobject}': {e}"))),
        Err(e) if e.code() == Some("NOT_FOUND") => Err(FieldCheck::Wrong(format!(
            "SObject '{sobject}' does not exist or the integration user cannot see it: check the topic and the user's object permissions"
        ))),
        Err(e) => Err(FieldCheck::Wrong(format!("cannot describe SObject '{sobject}': {e}"))),
    }
}

/// The shortest `salesforce.idempotency.field` accepted: `topic:partition:offset` of a short topic.
pub const MIN_IDEMPOTENCY_FIELD_LENGTH: u64 = 40;

/// SPEC §12: the idempotency field must be a unique External ID text field of at least
/// [`MIN_IDEMPOTENCY_FIELD_LENGTH`] characters; `found` is its describe entry.
pub(crate) fn check_idempotency_field(found: Option<&serde_json::Value>, field: &str, sobject: &str) -> Result<(), String> {
    let key = "salesforce.idempotency.field";
    let Some(found) = found else {
        return Err(format!(
            "{key}: field '{field}' does not exist on {sobject} (or the integration user has no field-level access to it). \
             Create a Text field of length 255 marked Unique and External ID, or set {key} to one"
        ));
    };
    let flag = |k: &str| found.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    let kind = found.get("type").and_then(|t| t.as_str()).unwrap_or("?");
    let length = found.get("length").and_then(|l| l.as_u64()).unwrap_or(0);
    let mut wrong = Vec::new();
    if kind != "string" {
        wrong.push(format!("it is of type {kind}, not Text"));
    } else if length < MIN_IDEMPOTENCY_FIELD_LENGTH {
        wrong.push(format!("it holds {length} characters, fewer than the {MIN_IDEMPOTENCY_FIELD_LENGTH} a topic:partition:offset needs (255 is best)"));
    }
    if !flag("externalId") {
        wrong.push("it is not marked External ID (the connector upserts on it)".to_owned());
    }
    if !flag("unique") {
        wrong.push("it is not marked Unique".to_owned());
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{key}: field '{field}' on {sobject} cannot make INSERTs idempotent: {}. Use a Text field of length 255 marked Unique and External ID",
        wrong.join("; ")
    ))
}

fn find_field(fields: Vec<serde_json::Value>, name: &str) -> Option<serde_json::Value> {
    fields.into_iter().find(|f| f.get("name").and_then(|n| n.as_str()).is_some_and(|n| n.eq_ignore_ascii_case(name)))
}

/// `GET /sobjects/{type}/describe`: the SObject's field entries.
async fn describe_fields(client: &SalesforceClient, sobject: &str) -> Result<Vec<serde_json::Value>, SalesforceError> {
    let path = format!("/sobjects/{}/describe", percent_encode(sobject));
    let describe = client.send(Method::GET, &path, None).await?;
    let json: serde_json::Value = serde_json::from_slice(&describe.body)
        .map_err(|e| SalesforceError::BadAnswer(format!("describe of '{sobject}' is not JSON: {e}")))?;
    Ok(json.get("fields").and_then(|f| f.as_array()).cloned().unwrap_or_default())
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
