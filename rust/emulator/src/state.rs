//! The in-memory org: SObject definitions, records with their lookup indexes, record Ids,
//! Connected Apps, access tokens, the daily API quota and the request log.
//!
//! Everything lives behind one `Mutex<Store>` (see `server.rs`): requests hold it only for the
//! in-memory work, never across I/O, which keeps the emulator simple and still fast enough for
//! tens of thousands of records per second.

use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::faults::FaultState;

/// The emulated org and user (15-character ids, as Salesforce prints them in the identity URL).
pub const ORG_ID: &str = "00D8d000004EmuL";
pub const USER_ID: &str = "0058d000002EmuL";
pub const DEFAULT_CLIENT_ID: &str = "test-client-id";
pub const DEFAULT_CLIENT_SECRET: &str = "test-client-secret";
pub const DEFAULT_USERNAME: &str = "integration@example.com";
pub const DEFAULT_SESSION_TIMEOUT_SECS: u64 = 7200;
pub const DEFAULT_API_MAX: u64 = 100_000;
/// Upper bound on kept request-log entries, so a long benchmark cannot exhaust memory.
pub const MAX_LOG_ENTRIES: usize = 1_000_000;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Microseconds since the epoch: when a record was stored, for latency measurements finer than
/// Salesforce's millisecond `CreatedDate` (control API only).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Record Ids
// ---------------------------------------------------------------------------------------------

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 3-character case-safe suffix Salesforce appends to a 15-character Id: for each 5-character
/// chunk, a 5-bit number whose bit i is set when character i of the chunk is an upper-case letter,
/// mapped through `A..Z0..5`.
pub fn id_suffix(id15: &str) -> String {
    let b = id15.as_bytes();
    let mut out = String::with_capacity(3);
    for chunk in 0..3 {
        let mut bits = 0usize;
        for i in 0..5 {
            let c = b[chunk * 5 + i];
            if c.is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        out.push(SUFFIX_ALPHABET[bits] as char);
    }
    out
}

/// Turns a 15- or 18-character Id into the canonical 18-character form, or `None` when it is not
/// an Id at all. 18-character Ids are case-insensitive: the suffix restores the case of the first
/// 15 characters, exactly as Salesforce does.
pub fn normalize_id(s: &str) -> Option<String> {
    if !s.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    match s.len() {
        15 => Some(format!("{s}{}", id_suffix(s))),
        18 => {
            let b = s.as_bytes();
            let mut out = String::with_capacity(18);
            for chunk in 0..3 {
                let sc = b[15 + chunk].to_ascii_uppercase();
                let bits = SUFFIX_ALPHABET.iter().position(|&a| a == sc)?;
                for i in 0..5 {
                    let c = b[chunk * 5 + i];
                    if bits & (1 << i) != 0 {
                        if !c.is_ascii_alphabetic() {
                            return None;
                        }
                        out.push(c.to_ascii_uppercase() as char);
                    } else {
                        out.push(c.to_ascii_lowercase() as char);
                    }
                }
            }
            let suffix = id_suffix(&out);
            out.push_str(&suffix);
            Some(out)
        }
        _ => None,
    }
}

/// Fixed-width base-62 text (used for generated Ids and key prefixes).
pub fn base62_pub(n: u64, width: usize) -> String {
    base62(n, width)
}

fn base62(mut n: u64, width: usize) -> String {
    let mut v = vec![b'0'; width];
    for slot in v.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(v).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Object definitions
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Id,
    String,
    Textarea,
    Email,
    Phone,
    Url,
    Picklist,
    Multipicklist,
    Combobox,
    EncryptedString,
    Reference,
    Date,
    Datetime,
    Time,
    Double,
    Currency,
    Percent,
    Int,
    Boolean,
    Base64,
}

impl FieldType {
    pub fn parse(s: &str) -> Option<FieldType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "id" => FieldType::Id,
            "string" | "text" => FieldType::String,
            "textarea" => FieldType::Textarea,
            "email" => FieldType::Email,
            "phone" => FieldType::Phone,
            "url" => FieldType::Url,
            "picklist" => FieldType::Picklist,
            "multipicklist" => FieldType::Multipicklist,
            "combobox" => FieldType::Combobox,
            "encryptedstring" => FieldType::EncryptedString,
            "reference" => FieldType::Reference,
            "date" => FieldType::Date,
            "datetime" => FieldType::Datetime,
            "time" => FieldType::Time,
            "double" | "number" => FieldType::Double,
            "currency" => FieldType::Currency,
            "percent" => FieldType::Percent,
            // No `long`: Salesforce has no such field type (a 64-bit column is a Number(18, 0),
            // a double).
            "int" | "integer" => FieldType::Int,
            "boolean" | "checkbox" => FieldType::Boolean,
            "base64" => FieldType::Base64,
            _ => return None,
        })
    }

    /// The `type` value describe reports.
    pub fn api_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::Textarea => "textarea",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Picklist => "picklist",
            FieldType::Multipicklist => "multipicklist",
            FieldType::Combobox => "combobox",
            FieldType::EncryptedString => "encryptedstring",
            FieldType::Reference => "reference",
            FieldType::Date => "date",
            FieldType::Datetime => "datetime",
            FieldType::Time => "time",
            FieldType::Double => "double",
            FieldType::Currency => "currency",
            FieldType::Percent => "percent",
            FieldType::Int => "int",
            FieldType::Boolean => "boolean",
            FieldType::Base64 => "base64",
        }
    }

    /// Types whose values are free text with a maximum length.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::String
                | FieldType::Textarea
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Url
                | FieldType::Picklist
                | FieldType::Multipicklist
                | FieldType::Combobox
                | FieldType::EncryptedString
        )
    }

    pub fn is_number(self) -> bool {
        matches!(self, FieldType::Double | FieldType::Currency | FieldType::Percent | FieldType::Int)
    }

    /// Number, currency and percent fields: doubles with a precision and a scale.
    pub fn is_double(self) -> bool {
        matches!(self, FieldType::Double | FieldType::Currency | FieldType::Percent)
    }
}

#[derive(Clone, Debug)]
pub struct FieldDef {
    pub name: String,
    pub label: String,
    pub ftype: FieldType,
    pub length: u32,
    /// Doubles: digits in all, and right of the point (integer digits = precision - scale).
    pub precision: u32,
    pub scale: u32,
    /// Int fields: the most digits a value may have (describe's `digits`).
    pub digits: u32,
    pub external_id: bool,
    pub id_lookup: bool,
    pub unique: bool,
    pub nillable: bool,
    pub createable: bool,
    pub updateable: bool,
    pub defaulted_on_create: bool,
    pub reference_to: Vec<String>,
    pub relationship_name: Option<String>,
    pub custom: bool,
}

impl FieldDef {
    pub fn new(name: &str, ftype: FieldType) -> FieldDef {
        let length = match ftype {
            FieldType::Id | FieldType::Reference => 18,
            t if t.is_text() => 255,
            _ => 0,
        };
        FieldDef {
            name: name.to_string(),
            label: label_of(name),
            ftype,
            length,
            precision: if ftype.is_double() { 18 } else { 0 },
            scale: 0,
            digits: if ftype == FieldType::Int { 9 } else { 0 },
            external_id: false,
            id_lookup: false,
            unique: false,
            // Checkboxes are never null in Salesforce: they default to false.
            nillable: ftype != FieldType::Boolean,
            createable: true,
            updateable: true,
            defaulted_on_create: ftype == FieldType::Boolean,
            reference_to: vec![],
            relationship_name: None,
            custom: name.ends_with("__c"),
        }
    }
    fn len(mut self, n: u32) -> Self {
        self.length = n;
        self
    }
    fn required(mut self) -> Self {
        self.nillable = false;
        self
    }
    fn ext_unique(mut self) -> Self {
        self.external_id = true;
        self.id_lookup = true;
        self.unique = true;
        self
    }
    fn id_lookup(mut self) -> Self {
        self.id_lookup = true;
        self
    }
    fn system(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self.nillable = false;
        self.defaulted_on_create = true;
        self
    }
    fn precision(mut self, p: u32, s: u32) -> Self {
        self.precision = p;
        self.scale = s;
        self
    }
    fn reference(mut self, to: &str, rel: &str) -> Self {
        self.reference_to = vec![to.to_string()];
        self.relationship_name = Some(rel.to_string());
        self
    }

    /// Fields that get a value index: anything usable to find a record (upsert, GET by external
    /// ID, parent lookups, SOQL filters) or that must stay unique.
    pub fn indexed(&self) -> bool {
        self.ftype != FieldType::Id && (self.external_id || self.id_lookup || self.unique)
    }

    pub fn describe(&self) -> Value {
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.ftype.api_name(),
            "length": self.length,
            "precision": self.precision,
            "scale": self.scale,
            "digits": self.digits,
            "externalId": self.external_id,
            "idLookup": self.id_lookup,
            "unique": self.unique,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.defaulted_on_create,
            "custom": self.custom,
            "referenceTo": self.reference_to,
            "relationshipName": self.relationship_name,
        })
    }
}

/// "Last_Contacted__c" -> "Last Contacted", "AccountId" -> "Account ID" (labels appear in
/// Salesforce error messages such as STRING_TOO_LONG and MALFORMED_ID).
pub fn label_of(name: &str) -> String {
    let base = name.strip_suffix("__c").unwrap_or(name);
    if base == "Id" {
        return "Record ID".to_string();
    }
    if let Some(stem) = base.strip_suffix("Id") {
        if !stem.is_empty() && !name.ends_with("__c") {
            return format!("{stem} ID");
        }
    }
    if name.ends_with("__c") {
        return base.replace('_', " ");
    }
    // Standard fields: split camel case ("LastName" -> "Last Name").
    let mut out = String::new();
    let mut prev_lower = false;
    for c in base.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_ascii_lowercase();
        out.push(c);
    }
    out
}

#[derive(Debug)]
pub struct ObjectDef {
    pub name: String,
    pub label: String,
    pub key_prefix: String,
    pub custom: bool,
    pub fields: Vec<FieldDef>,
    by_lower: HashMap<String, usize>,
    rel_by_lower: HashMap<String, usize>,
}

impl ObjectDef {
    /// Builds a definition; the system fields every SObject has are added when missing.
    pub fn new(name: &str, label: Option<&str>, key_prefix: &str, fields: Vec<FieldDef>) -> ObjectDef {
        let mut all = vec![FieldDef::new("Id", FieldType::Id).system()];
        all[0].id_lookup = true;
        all[0].label = "Record ID".into();
        for f in fields {
            if let Some(pos) = all.iter().position(|e| e.name.eq_ignore_ascii_case(&f.name)) {
                all[pos] = f;
            } else {
                all.push(f);
            }
        }
        for (n, t) in [
            ("IsDeleted", FieldType::Boolean),
            ("CreatedDate", FieldType::Datetime),
            ("LastModifiedDate", FieldType::Datetime),
            ("SystemModstamp", FieldType::Datetime),
        ] {
            if !all.iter().any(|e| e.name.eq_ignore_ascii_case(n)) {
                all.push(FieldDef::new(n, t).system());
            }
        }
        let mut by_lower = HashMap::new();
        let mut rel_by_lower = HashMap::new();
        for (i, f) in all.iter().enumerate() {
            by_lower.insert(f.name.to_ascii_lowercase(), i);
            if let Some(r) = &f.relationship_name {
                rel_by_lower.insert(r.to_ascii_lowercase(), i);
            }
        }
        ObjectDef {
            name: name.to_string(),
            label: label.map(str::to_string).unwrap_or_else(|| label_of(name)),
            key_prefix: key_prefix.to_string(),
            custom: name.ends_with("__c"),
            fields: all,
            by_lower,
            rel_by_lower,
        }
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.by_lower.get(&name.to_ascii_lowercase()).copied()
    }
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.field_index(name).map(|i| &self.fields[i])
    }
    /// The reference field whose relationship name is `name` (e.g. "Account" -> AccountId).
    pub fn relationship(&self, name: &str) -> Option<usize> {
        self.rel_by_lower.get(&name.to_ascii_lowercase()).copied()
    }

    pub fn describe(&self) -> Value {
        json!({
            "name": self.name,
            "label": self.label,
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "createable": true,
            "updateable": true,
            "deletable": true,
            "queryable": true,
            "fields": self.fields.iter().map(FieldDef::describe).collect::<Vec<_>>(),
            "urls": {
                "sobject": format!("/services/data/v62.0/sobjects/{}", self.name),
                "describe": format!("/services/data/v62.0/sobjects/{}/describe", self.name),
                "rowTemplate": format!("/services/data/v62.0/sobjects/{}/{{ID}}", self.name),
            },
        })
    }
}

pub fn default_objects() -> Vec<ObjectDef> {
    use FieldType as T;
    let account = ObjectDef::new(
        "Account",
        None,
        "001",
        vec![
            FieldDef::new("Name", T::String).len(255).required(),
            FieldDef::new("AccountNumber", T::String).len(40),
            FieldDef::new("AccountNumber__c", T::String).len(40).ext_unique(),
            FieldDef::new("Description", T::Textarea).len(32000),
            FieldDef::new("Industry", T::Picklist).len(255),
        ],
    );
    let contact = ObjectDef::new(
        "Contact",
        None,
        "003",
        vec![
            FieldDef::new("FirstName", T::String).len(40),
            FieldDef::new("LastName", T::String).len(80).required(),
            // Contact.Email is an idLookup field in every real org.
            FieldDef::new("Email", T::Email).len(80).id_lookup(),
            FieldDef::new("Phone", T::Phone).len(40),
            FieldDef::new("Birthdate", T::Date),
            FieldDef::new("AccountId", T::Reference).reference("Account", "Account"),
            FieldDef::new("ExternalId__c", T::String).len(255).ext_unique(),
            FieldDef::new("Description", T::Textarea).len(32000),
            FieldDef::new("Interests__c", T::Multipicklist).len(4099),
            FieldDef::new("Score__c", T::Double).precision(18, 2),
            FieldDef::new("Last_Contacted__c", T::Datetime),
            FieldDef::new("Preferred_Time__c", T::Time),
            FieldDef::new("Active__c", T::Boolean),
            FieldDef::new("Photo__c", T::String).len(131072),
        ],
    );
    let my = ObjectDef::new(
        "MyObject__c",
        Some("My Object"),
        "a00",
        vec![
            FieldDef::new("Name", T::String).len(80),
            FieldDef::new("ExternalId__c", T::String).len(255).ext_unique(),
            FieldDef::new("Amount__c", T::Currency).precision(18, 2),
            FieldDef::new("Quantity__c", T::Double).precision(18, 4),
            FieldDef::new("Start_Date__c", T::Date),
            FieldDef::new("Start_Time__c", T::Time),
            FieldDef::new("Created_At__c", T::Datetime),
            FieldDef::new("Active__c", T::Boolean),
            FieldDef::new("Tags__c", T::Multipicklist).len(4099),
            FieldDef::new("Notes__c", T::Textarea).len(32000),
            FieldDef::new("Secondary_Key__c", T::String).len(255).id_lookup(),
        ],
    );
    vec![account, contact, my]
}

/// Parses a field definition from the control API (`POST /__emulator/sobjects`).
pub fn field_from_json(v: &Value) -> Result<FieldDef, String> {
    let name = v.get("name").and_then(Value::as_str).ok_or("field without name")?;
    let tname = v.get("type").and_then(Value::as_str).unwrap_or("string");
    let ftype = FieldType::parse(tname).ok_or_else(|| format!("unknown field type {tname}"))?;
    let mut f = FieldDef::new(name, ftype);
    let b = |k: &str| v.get(k).and_then(Value::as_bool);
    let n = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as u32);
    if let Some(x) = v.get("label").and_then(Value::as_str) {
        f.label = x.to_string();
    }
    if let Some(x) = n("length") {
        f.length = x;
    }
    if let Some(x) = n("precision") {
        f.precision = x;
    }
    if let Some(x) = n("scale") {
        f.scale = x;
    }
    if let Some(x) = n("digits") {
        f.digits = x;
    }
    if let Some(x) = b("externalId") {
        f.external_id = x;
        // Salesforce: every External ID field is also an idLookup field.
        f.id_lookup |= x;
    }
    if let Some(x) = b("idLookup") {
        f.id_lookup = x || f.external_id;
    }
    if let Some(x) = b("unique") {
        f.unique = x;
    }
    if let Some(x) = b("nillable") {
        f.nillable = x;
    }
    if let Some(x) = b("createable") {
        f.createable = x;
    }
    if let Some(x) = b("updateable") {
        f.updateable = x;
    }
    if let Some(x) = b("defaultedOnCreate") {
        f.defaulted_on_create = x;
    }
    match v.get("referenceTo") {
        Some(Value::String(s)) => f.reference_to = vec![s.clone()],
        Some(Value::Array(a)) => f.reference_to = a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        _ => {}
    }
    if let Some(x) = v.get("relationshipName").and_then(Value::as_str) {
        f.relationship_name = Some(x.to_string());
    }
    Ok(f)
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    /// Field values under canonical field names, as Salesforce keeps them (after validation:
    /// numbers as doubles or ints, references as 18-character Ids).
    pub fields: Map<String, Value>,
    pub created_ms: u64,
    pub created_us: u64,
    pub modified_ms: u64,
    pub deleted: bool,
}

/// The text a value is matched by (external IDs, SOQL): Salesforce matches text case-insensitively
/// and numbers by value (`5`, `5.0` and `5E0` are one number).
pub fn match_key(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_lowercase()),
        Value::Number(n) => Some(n.as_f64().filter(|x| x.is_finite()).map_or_else(|| n.to_string(), |x| x.to_string())),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[derive(Default)]
pub struct Table {
    pub records: HashMap<String, Record>,
    /// Ids in creation order, so listings are stable.
    pub order: Vec<String>,
    /// field name -> match key -> ids of live records with that value.
    pub index: HashMap<String, HashMap<String, Vec<String>>>,
}

impl Table {
    pub fn new(def: &ObjectDef) -> Table {
        let mut t = Table::default();
        for f in def.fields.iter().filter(|f| f.indexed()) {
            t.index.insert(f.name.clone(), HashMap::new());
        }
        t
    }

    fn unindex(&mut self, rec: &Record) {
        if rec.deleted {
            return;
        }
        for (field, idx) in self.index.iter_mut() {
            if let Some(k) = rec.fields.get(field).and_then(match_key) {
                if let Some(ids) = idx.get_mut(&k) {
                    ids.retain(|i| i != &rec.id);
                    if ids.is_empty() {
                        idx.remove(&k);
                    }
                }
            }
        }
    }

    fn reindex(&mut self, rec: &Record) {
        if rec.deleted {
            return;
        }
        for (field, idx) in self.index.iter_mut() {
            if let Some(k) = rec.fields.get(field).and_then(match_key) {
                idx.entry(k).or_default().push(rec.id.clone());
            }
        }
    }

    /// Replaces (or removes, with `None`) the stored record for `id`, keeping indexes right.
    pub fn put(&mut self, id: &str, rec: Option<Record>) {
        if let Some(old) = self.records.remove(id) {
            self.unindex(&old);
        } else if rec.is_some() {
            self.order.push(id.to_string());
        }
        match rec {
            Some(r) => {
                self.reindex(&r);
                self.records.insert(id.to_string(), r);
            }
            None => self.order.retain(|i| i != id),
        }
    }

    /// Live records whose `field` matches `value` (case-insensitive for text).
    pub fn find_by(&self, field: &str, key: &str) -> Vec<String> {
        if field.eq_ignore_ascii_case("Id") {
            return normalize_id(key)
                .filter(|id| self.records.get(id).is_some_and(|r| !r.deleted))
                .into_iter()
                .collect();
        }
        if let Some(idx) = self.index.get(field) {
            return idx.get(key).cloned().unwrap_or_default();
        }
        // Not indexed: scan (used by SOQL on ordinary fields).
        self.order
            .iter()
            .filter_map(|id| self.records.get(id))
            .filter(|r| !r.deleted && r.fields.get(field).and_then(match_key).as_deref() == Some(key))
            .map(|r| r.id.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Clients, tokens, request log
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub public_key_pem: Option<String>,
    pub username: String,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub expires_at_ms: u64,
    /// The 18-character Id of the user the token acts as (`createdById` of Bulk jobs).
    pub user_id: String,
}

/// The stable User Id (`005…`, 18 characters) of a username: the default integration user has
/// [`USER_ID`]; every other username gets an Id derived from its lower-cased text, so a client
/// registered with a username keeps the same user across tokens, resets and restarts.
pub fn user_id_for(username: &str) -> String {
    if username.eq_ignore_ascii_case(DEFAULT_USERNAME) {
        return normalize_id(USER_ID).unwrap_or_default();
    }
    let hash = username
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, c| (h ^ c as u64).wrapping_mul(0x100_0000_01b3));
    // 005 + 12 base-62 characters = 15; 62^12 > 2^64, so every hash fits.
    normalize_id(&format!("005{}", base62(hash, 12))).unwrap_or_default()
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LogEntry {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub request_content_encoding: Option<String>,
    pub accept_encoding: Option<String>,
    pub response_content_encoding: Option<String>,
    /// Body size on the wire (compressed size when the body was gzip-encoded).
    pub request_body_bytes: usize,
    /// Body size after decompression.
    pub request_body_decoded_bytes: usize,
    /// Whether the request counted towards the daily API quota.
    pub counted: bool,
    pub kind: String,
    pub records: usize,
    pub ts_ms: u64,
    /// The kind of the fault rule applied to this request, if any (`faults::KINDS`).
    pub fault: Option<String>,
}

pub struct Store {
    pub objects: HashMap<String, Arc<ObjectDef>>,
    pub prefixes: HashMap<String, String>,
    pub tables: HashMap<String, Table>,
    pub clients: HashMap<String, Client>,
    pub tokens: HashMap<String, Token>,
    /// Every access token issued since the last reset, revoked or not (`GET /__emulator/tokens`).
    pub issued_tokens: Vec<String>,
    pub session_timeout_secs: u64,
    /// The org's My Domain login URL (`https://<domain>.my.salesforce.com`), a JWT audience
    /// Salesforce accepts besides login.salesforce.com and test.salesforce.com.
    pub my_domain_login_url: Option<String>,
    pub api_used: u64,
    pub api_max: u64,
    pub latency_ms: u64,
    pub faults: FaultState,
    pub log: VecDeque<LogEntry>,
    pub seq: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub api_requests: u64,
    pub records_written: u64,
    /// Bulk API 2.0 ingest jobs, their settings and counters.
    pub bulk: crate::bulk::BulkState,
    /// Never reset, so Ids from before a reset are never handed out again.
    next_id: u64,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Store {
        let mut s = Store {
            objects: HashMap::new(),
            prefixes: HashMap::new(),
            tables: HashMap::new(),
            clients: HashMap::new(),
            tokens: HashMap::new(),
            issued_tokens: Vec::new(),
            session_timeout_secs: DEFAULT_SESSION_TIMEOUT_SECS,
            my_domain_login_url: None,
            api_used: 0,
            api_max: DEFAULT_API_MAX,
            latency_ms: 0,
            faults: FaultState::default(),
            log: VecDeque::new(),
            seq: 0,
            by_kind: BTreeMap::new(),
            api_requests: 0,
            records_written: 0,
            bulk: crate::bulk::BulkState::default(),
            // Start well inside the 9-character counter space so Ids look like real ones.
            next_id: 62u64.pow(7) * 3 + 12_345,
        };
        s.reset();
        s
    }

    /// Back to the state after start: default objects and client, nothing else.
    pub fn reset(&mut self) {
        self.objects.clear();
        self.prefixes.clear();
        self.tables.clear();
        for def in default_objects() {
            self.define(def);
        }
        self.clients.clear();
        self.clients.insert(
            DEFAULT_CLIENT_ID.into(),
            Client {
                client_id: DEFAULT_CLIENT_ID.into(),
                client_secret: Some(DEFAULT_CLIENT_SECRET.into()),
                public_key_pem: None,
                username: DEFAULT_USERNAME.into(),
            },
        );
        self.tokens.clear();
        self.issued_tokens.clear();
        self.session_timeout_secs = DEFAULT_SESSION_TIMEOUT_SECS;
        self.my_domain_login_url = None;
        self.api_used = 0;
        self.api_max = DEFAULT_API_MAX;
        self.latency_ms = 0;
        self.faults = FaultState::default();
        self.log.clear();
        self.by_kind.clear();
        self.api_requests = 0;
        self.records_written = 0;
        self.bulk = crate::bulk::BulkState::default();
    }

    /// Defines or replaces an object; a replaced object starts with no records.
    pub fn define(&mut self, def: ObjectDef) {
        let lower = def.name.to_ascii_lowercase();
        if let Some(old) = self.objects.get(&lower) {
            self.prefixes.remove(&old.key_prefix);
            self.tables.remove(&old.name);
        }
        self.prefixes.insert(def.key_prefix.clone(), def.name.clone());
        self.tables.insert(def.name.clone(), Table::new(&def));
        self.objects.insert(lower, Arc::new(def));
    }

    pub fn object(&self, name: &str) -> Option<Arc<ObjectDef>> {
        self.objects.get(&name.to_ascii_lowercase()).cloned()
    }

    /// The object an Id belongs to, by its key prefix.
    pub fn object_of_id(&self, id18: &str) -> Option<Arc<ObjectDef>> {
        self.prefixes.get(&id18[..3]).and_then(|n| self.object(n))
    }

    /// A fresh 18-character Id: prefix + pod "8d" + reserved "0" + 9-character counter + suffix.
    pub fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let id15 = format!("{prefix}8d0{}", base62(self.next_id, 9));
        format!("{id15}{}", id_suffix(&id15))
    }

    pub fn table(&self, object: &str) -> &Table {
        &self.tables[object]
    }
    pub fn table_mut(&mut self, object: &str) -> &mut Table {
        self.tables.get_mut(object).expect("table for defined object")
    }

    /// A record (live or deleted) by canonical Id, with its object.
    pub fn get_record(&self, id18: &str) -> Option<(&ObjectDef, &Record)> {
        let def = self.prefixes.get(&id18[..3])?;
        let obj = self.objects.get(&def.to_ascii_lowercase())?;
        self.tables.get(def)?.records.get(id18).map(|r| (obj.as_ref(), r))
    }

    pub fn record_view(rec: &Record, include_deleted_flag: bool) -> Value {
        let mut m = Map::new();
        m.insert("Id".into(), Value::String(rec.id.clone()));
        for (k, v) in &rec.fields {
            m.insert(k.clone(), v.clone());
        }
        if include_deleted_flag {
            m.insert("IsDeleted".into(), Value::Bool(rec.deleted));
        }
        Value::Object(m)
    }

    /// `record_view` plus `__created_us`, the emulator's own microsecond creation time.
    pub fn record_view_timed(rec: &Record, include_deleted_flag: bool) -> Value {
        let mut v = Self::record_view(rec, include_deleted_flag);
        v["__created_us"] = Value::from(rec.created_us);
        v
    }

    pub fn push_log(&mut self, mut e: LogEntry) {
        self.seq += 1;
        e.seq = self.seq;
        *self.by_kind.entry(e.kind.clone()).or_default() += 1;
        if e.counted {
            self.api_requests += 1;
        }
        if self.log.len() >= MAX_LOG_ENTRIES {
            self.log.pop_front();
        }
        self.log.push_back(e);
    }
}

/// Salesforce's dateTime rendering: `2024-05-01T12:34:56.789+0000`.
pub fn format_datetime(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+0000",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_known_example() {
        assert_eq!(id_suffix("001A0000006Vm9r"), "IAC");
        assert_eq!(normalize_id("001A0000006Vm9r").unwrap(), "001A0000006Vm9rIAC");
    }

    #[test]
    fn eighteen_char_ids_are_case_insensitive() {
        assert_eq!(normalize_id("001A0000006Vm9rIAC").unwrap(), "001A0000006Vm9rIAC");
        assert_eq!(normalize_id("001a0000006vm9riac").unwrap(), "001A0000006Vm9rIAC");
        assert_eq!(normalize_id("001A0000006VM9RIAC").unwrap(), "001A0000006Vm9rIAC");
    }

    #[test]
    fn malformed_ids() {
        assert!(normalize_id("001A0000006Vm9").is_none());
        assert!(normalize_id("001A0000006Vm9r-AC").is_none());
        assert!(normalize_id("001A0000006Vm9rIA!").is_none());
        // Suffix claims an upper-case letter where there is a digit.
        assert!(normalize_id("001A0000006Vm9r999").is_none());
    }

    #[test]
    fn generated_ids_round_trip() {
        let mut s = Store::new();
        let id = s.new_id("003");
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("003"));
        assert_eq!(normalize_id(&id).unwrap(), id);
        assert_eq!(normalize_id(&id[..15]).unwrap(), id);
        assert_ne!(s.new_id("003"), id);
    }

    #[test]
    fn labels() {
        assert_eq!(label_of("LastName"), "Last Name");
        assert_eq!(label_of("AccountId"), "Account ID");
        assert_eq!(label_of("Last_Contacted__c"), "Last Contacted");
    }

    #[test]
    fn datetime_format() {
        assert_eq!(format_datetime(0), "1970-01-01T00:00:00.000+0000");
        assert_eq!(format_datetime(1_709_210_096_789), "2024-02-29T12:34:56.789+0000");
    }
}
