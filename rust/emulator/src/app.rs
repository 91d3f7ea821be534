//! What the API handlers share with the server: the app (the store behind its lock), what a
//! handler sees of a request (`Ctx`) and what it answers (`Reply`). The server imports this and
//! the handlers; the handlers never import the server.

use serde_json::{Map, Value};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::state::Store;
use crate::validate::SfError;

pub struct App {
    pub store: Mutex<Store>,
    pub port: u16,
    pub verbose: bool,
    /// Serving HTTPS: the `instance_url` in token answers is `https://`.
    pub tls: bool,
}

impl App {
    pub fn new(port: u16, verbose: bool) -> Arc<App> {
        Arc::new(App { store: Mutex::new(Store::new()), port, verbose, tls: false })
    }
    /// A poisoned lock only means a handler panicked; the store itself stays usable.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a handler answers: status, body and extra headers, plus what the request log needs.
pub struct Reply {
    pub status: u16,
    pub body: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, String)>,
    pub kind: &'static str,
    pub records: usize,
    pub content_type: &'static str,
}

const JSON_TYPE: &str = "application/json;charset=UTF-8";

impl Reply {
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply { status, body: Some(serde_json::to_vec(v).unwrap_or_default()), headers: vec![], kind: "other", records: 1, content_type: JSON_TYPE }
    }
    /// A CSV body (Bulk API 2.0 results).
    pub fn csv(status: u16, text: String) -> Reply {
        Reply { status, body: Some(text.into_bytes()), headers: vec![], kind: "other", records: 1, content_type: "text/csv" }
    }
    pub fn empty(status: u16) -> Reply {
        Reply { status, body: None, headers: vec![], kind: "other", records: 1, content_type: JSON_TYPE }
    }
    pub fn error(e: &SfError) -> Reply {
        Reply::json(e.status, &e.body())
    }
    pub fn kind(mut self, kind: &'static str) -> Reply {
        self.kind = kind;
        self
    }
    pub fn records(mut self, n: usize) -> Reply {
        self.records = n;
        self
    }
}

/// What the route handlers see of a request.
pub struct Ctx<'a> {
    pub method: &'a str,
    pub query: Option<&'a str>,
    /// The parsed JSON body (None when the body is empty).
    pub json: Option<&'a Result<Value, SfError>>,
    /// The body text, for positions in JSON_PARSER_ERROR messages.
    pub raw: &'a str,
    /// The body bytes (decompressed): CSV for Bulk API 2.0 uploads.
    pub body: &'a [u8],
    /// record_error fault rules that apply to this request.
    pub record_rules: &'a [usize],
    /// The 18-character Id of the user the access token acts as.
    pub user: &'a str,
}

impl Ctx<'_> {
    pub fn param(&self, name: &str) -> Option<String> {
        let q = self.query?;
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// The body as a JSON object, or the error Salesforce gives for anything else.
    pub fn body_object(&self) -> Result<&Map<String, Value>, SfError> {
        match self.json {
            None => Err(SfError::new(400, "JSON_PARSER_ERROR", "No content to map due to end-of-input at [line:1, column:0]")),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(Value::Object(m))) => Ok(m),
            Some(Ok(_)) => Err(SfError::new(
                400,
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of sobject from START_ARRAY value [ or request may be missing a required field at [line:1, column:1]",
            )),
        }
    }
}
