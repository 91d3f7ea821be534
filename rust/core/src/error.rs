//! Errors of talking to Salesforce and their classification (SPEC §4). Every error maps to exactly
//! one [`ErrorClass`]; the writers act on the class and never look at status codes themselves.

use std::fmt;
use std::time::Duration;
use thiserror::Error;

/// One entry of Salesforce's error array (`errorCode` in REST bodies, `statusCode` in Collections).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ApiError {
    #[serde(alias = "errorCode", alias = "statusCode", default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if !self.fields.is_empty() {
            write!(f, " (fields: {})", self.fields.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: retried with backoff, then redelivered by Connect.
    Recoverable,
    /// The record cannot be written as it is: DLQ, or task failure under `errors.tolerance=none`.
    NonRecoverable,
    /// Nothing any record can fix (credentials refused): the task fails with the message.
    Fatal,
}

#[derive(Debug, Error)]
pub enum SalesforceError {
    #[error("HTTP {status}: {}", join(.errors))]
    Rejected { status: u16, errors: Vec<ApiError> },
    /// No answer in time; the duration is the request timeout, zero where the caller did not know it.
    #[error("no response within {}", timeout_text(.0))]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connection(String),
    /// The server's certificate is not trusted (or TLS cannot be agreed): a setting to fix, not
    /// a hiccup (salesforce.ssl.ca.pem / truststore, or a TLS-inspecting proxy).
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("unexpected response, HTTP {status}: {snippet}")]
    Unexpected { status: u16, snippet: String },
    #[error("OAuth token request refused (HTTP {status}): {error}: {description}")]
    TokenRefused { status: u16, error: String, description: String },
    /// A redirect, never followed (SPEC §5): following it would send the token, the secret or the
    /// records to a host nobody configured. `location` is escaped and cut.
    #[error("HTTP {status} redirect to '{location}', not followed: salesforce.instance.url must be the org's My Domain URL (https://<domain>.my.salesforce.com)")]
    Redirected { status: u16, location: String },
    /// A successful answer that cannot be understood (not the documented shape, a result count
    /// that differs from the request): asking again gets the same answer.
    #[error("unusable answer from Salesforce: {0}")]
    BadAnswer(String),
}

fn timeout_text(timeout: &Duration) -> String {
    if timeout.is_zero() {
        "the request timeout (salesforce.request.timeout.ms)".into()
    } else {
        format!("{} ms", timeout.as_millis())
    }
}

fn join(errors: &[ApiError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl SalesforceError {
    pub fn class(&self) -> ErrorClass {
        match self {
            // Not a record's fault, and no record can fix it (SPEC §4): a proxy that wants other
            // credentials, or a session Salesforce refuses even right after a fresh token (the
            // client already fetched one and repeated the request).
            SalesforceError::Rejected { status: 401 | 407, .. } | SalesforceError::Unexpected { status: 401 | 407, .. } => {
                ErrorClass::Fatal
            }
            SalesforceError::Rejected { status, errors } => {
                // The code decides where there is one: UNABLE_TO_LOCK_ROW comes as 400 and as 500.
                match errors.first() {
                    Some(e) if !e.code.is_empty() => classify_code(&e.code, &e.message, Some(*status)),
                    _ => classify_status(*status),
                }
            }
            // No record caused it and none can fix it: records wait (SPEC §4, §11), the health says why.
            SalesforceError::Timeout(_) | SalesforceError::Connection(_) | SalesforceError::Redirected { .. } => {
                ErrorClass::Recoverable
            }
            SalesforceError::Tls(_) => ErrorClass::Fatal,
            SalesforceError::Unexpected { status, .. } => classify_status(*status),
            SalesforceError::BadAnswer(_) => ErrorClass::NonRecoverable,
            SalesforceError::TokenRefused { status, .. } => {
                if *status >= 500 || *status == 429 {
                    ErrorClass::Recoverable
                } else {
                    ErrorClass::Fatal
                }
            }
        }
    }

    /// The HTTP status of an answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            SalesforceError::Rejected { status, .. }
            | SalesforceError::Unexpected { status, .. }
            | SalesforceError::TokenRefused { status, .. }
            | SalesforceError::Redirected { status, .. } => Some(*status),
            SalesforceError::Timeout(_)
            | SalesforceError::Connection(_)
            | SalesforceError::Tls(_)
            | SalesforceError::BadAnswer(_) => None,
        }
    }

    /// The first Salesforce error code, if Salesforce gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            SalesforceError::Rejected { errors, .. } => errors.first().map(|e| e.code.as_str()),
            _ => None,
        }
    }

    /// The org's daily API allowance is spent: it comes back over the rolling day, not in
    /// seconds, so waiting writes are tried again only every `salesforce.api.quota.check.interval.ms`.
    pub fn is_daily_quota(&self) -> bool {
        matches!(self, SalesforceError::Rejected { errors, .. }
            if errors.first().is_some_and(|e| e.code == "REQUEST_LIMIT_EXCEEDED" && !e.message.to_ascii_lowercase().contains("concurrent")))
    }

    pub fn is_session_expired(&self) -> bool {
        matches!(self, SalesforceError::Rejected { status: 401, .. }) || self.code() == Some("INVALID_SESSION_ID")
    }
}

fn classify_status(status: u16) -> ErrorClass {
    if status >= 500 || status == 429 {
        ErrorClass::Recoverable
    } else {
        ErrorClass::NonRecoverable
    }
}

/// Classifies by Salesforce error code first, by HTTP status when the code says nothing.
pub fn classify_code(code: &str, message: &str, status: Option<u16>) -> ErrorClass {
    match code {
        "UNABLE_TO_LOCK_ROW" | "CONCURRENT_REQUESTS_LIMIT_EXCEEDED" | "SERVER_UNAVAILABLE" | "UNKNOWN_EXCEPTION" => {
            ErrorClass::Recoverable
        }
        // A trigger or flow that could not lock a row reports the lock inside its own code.
        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY" if message.contains("UNABLE_TO_LOCK_ROW") => ErrorClass::Recoverable,
        // One code for two limits: the concurrency limits clear within seconds, the daily quota
        // (TotalRequests) within hours. Neither is the record's fault: records wait (SPEC §4, §8),
        // retried with the capped backoff, and never go to the DLQ for it.
        "REQUEST_LIMIT_EXCEEDED" => ErrorClass::Recoverable,
        _ => status.map(classify_status).unwrap_or(ErrorClass::NonRecoverable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, code: &str, message: &str) -> SalesforceError {
        SalesforceError::Rejected {
            status,
            errors: vec![ApiError { code: code.into(), message: message.into(), fields: vec![] }],
        }
    }

    #[test]
    fn spec_classes() {
        use ErrorClass::*;
        let cases = [
            (rejected(503, "SERVER_UNAVAILABLE", "down"), Recoverable),
            (rejected(500, "UNKNOWN_EXCEPTION", "x"), Recoverable),
            (rejected(429, "", ""), Recoverable),
            (rejected(400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"), Recoverable),
            (rejected(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded"), Recoverable),
            (rejected(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."), Recoverable),
            (rejected(400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]"), NonRecoverable),
            (rejected(404, "NOT_FOUND", "The requested resource does not exist"), NonRecoverable),
            (SalesforceError::Timeout(Duration::from_secs(1)), Recoverable),
            (SalesforceError::Connection("reset".into()), Recoverable),
            (SalesforceError::Redirected { status: 307, location: "https://elsewhere/".into() }, Recoverable),
            (SalesforceError::Tls("invalid peer certificate: UnknownIssuer".into()), Fatal),
            (SalesforceError::TokenRefused { status: 400, error: "invalid_client".into(), description: "x".into() }, Fatal),
            (SalesforceError::TokenRefused { status: 503, error: "".into(), description: "".into() }, Recoverable),
            // credentials and transport that no record caused: never the DLQ (issue 8, item 4)
            (rejected(401, "INVALID_SESSION_ID", "Session expired or invalid"), Fatal),
            (SalesforceError::Unexpected { status: 407, snippet: "<html>Proxy Authentication Required".into() }, Fatal),
            // answers that will be the same on every attempt are not retried (item 3)
            (SalesforceError::BadAnswer("2 results for 1 record".into()), NonRecoverable),
            (SalesforceError::Unexpected { status: 414, snippet: "URI Too Long".into() }, NonRecoverable),
            // lock errors wrapped by triggers, and Salesforce's own hiccups per record (item 9)
            (rejected(400, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "MyTrigger: execution of AfterUpdate caused by: System.DmlException: Update failed. first error: UNABLE_TO_LOCK_ROW, unable to obtain exclusive access to this record"), Recoverable),
            (rejected(400, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "MyTrigger: validation failed"), NonRecoverable),
            (rejected(200, "UNKNOWN_EXCEPTION", "An unexpected error occurred"), Recoverable),
        ];
        for (e, class) in cases {
            assert_eq!(e.class(), class, "{e}");
        }
    }

    #[test]
    fn collections_entries_parse_with_status_code() {
        let e: ApiError = serde_json::from_str(r#"{"statusCode":"DUPLICATE_VALUE","message":"dup","fields":["Ext__c"]}"#).unwrap();
        assert_eq!(e.to_string(), "DUPLICATE_VALUE: dup (fields: Ext__c)");
        let e: ApiError = serde_json::from_str(r#"{"errorCode":"NOT_FOUND","message":"gone"}"#).unwrap();
        assert_eq!(e.code, "NOT_FOUND");
    }
}
