//! Salesforce error values: the lowest layer, used by every other module.

use serde_json::{json, Map, Value};

/// A Salesforce error: `[{"message","errorCode","fields"}]` in single-record responses,
/// `{"statusCode","message","fields"}` inside sObject Collections results.
#[derive(Debug, Clone, PartialEq)]
pub struct SfError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub fields: Option<Vec<String>>,
}

impl SfError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> SfError {
        SfError { status, code: code.to_string(), message: message.into(), fields: None }
    }
    pub fn with_fields(mut self, fields: &[&str]) -> SfError {
        self.fields = Some(fields.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn not_found() -> SfError {
        SfError::new(404, "NOT_FOUND", "The requested resource does not exist")
    }
    pub fn entity_is_deleted() -> SfError {
        SfError::new(404, "ENTITY_IS_DELETED", "entity is deleted").with_fields(&[])
    }
    pub fn invalid_session() -> SfError {
        SfError::new(401, "INVALID_SESSION_ID", "Session expired or invalid")
    }
    pub fn invalid_field(column: &str, object: &str) -> SfError {
        SfError::new(400, "INVALID_FIELD", format!("No such column '{column}' on sobject of type {object}"))
    }

    /// The array body of a single-record error response.
    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("message".into(), Value::String(self.message.clone()));
        m.insert("errorCode".into(), Value::String(self.code.clone()));
        if let Some(f) = &self.fields {
            m.insert("fields".into(), json!(f));
        }
        Value::Array(vec![Value::Object(m)])
    }

    /// One entry of a Collections result's `errors` array (key `statusCode`, not `errorCode`).
    pub fn collection_error(&self) -> Value {
        json!({
            "statusCode": self.code,
            "message": self.message,
            "fields": self.fields.clone().unwrap_or_default(),
        })
    }
}
