//! The request-level part of field validation: resolving field names
//! (case-insensitively) and checking that each JSON value deserializes into the field's type.
//!
//! Salesforce deserializes a request body before any record is saved, so unknown columns and
//! values of the wrong JSON type fail the whole request (HTTP 400, even inside an sObject
//! Collections request). Record-level rules (length, required, uniqueness, references) are in
//! `dml.rs` and fail one record.

use serde_json::{Map, Value};

pub use crate::error::SfError;
use crate::state::{FieldDef, FieldType, ObjectDef};

/// A body after name resolution and type checks, before any record-level rule.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The `Id` member, when the body has one (forbidden on insert, the key in Collections updates).
    pub id: Option<Value>,
    /// (index into `ObjectDef::fields`, converted value); `Null` clears the field.
    pub values: Vec<(usize, Value)>,
    /// Parent references by external ID (`"Account": {"AccountNumber__c": "A-1"}`).
    pub lookups: Vec<Lookup>,
}

#[derive(Debug)]
pub struct Lookup {
    /// Index of the reference field (AccountId) that receives the parent's Id.
    pub field: usize,
    /// The parent object type.
    pub parent: String,
    /// The parent's field to match on, as sent, and the value; `None` = `"Account": null`.
    pub key: Option<(String, Value)>,
}

/// Resolves every member of `body` against `def` and converts its value.
/// `raw` is the request body text, used only to point at a position in JSON_PARSER_ERROR messages.
pub fn prepare(def: &ObjectDef, body: &Map<String, Value>, raw: &str) -> Result<Prepared, SfError> {
    let mut p = Prepared::default();
    for (key, value) in body {
        if key == "attributes" {
            continue;
        }
        if key.eq_ignore_ascii_case("id") {
            p.id = Some(value.clone());
            continue;
        }
        if let Some(idx) = def.field_index(key) {
            let v = convert(&def.fields[idx], value, raw, key)?;
            p.values.retain(|(i, _)| *i != idx);
            p.values.push((idx, v));
            continue;
        }
        if let Some(idx) = def.relationship(key) {
            let field = &def.fields[idx];
            let mut parent = field.reference_to.first().cloned().unwrap_or_default();
            let key_pair = match value {
                Value::Null => None,
                Value::Object(m) => {
                    if let Some(t) = m.get("attributes").and_then(|a| a.get("type")).and_then(Value::as_str) {
                        parent = t.to_string();
                    }
                    let mut members = m.iter().filter(|(k, _)| k.as_str() != "attributes");
                    match (members.next(), members.next()) {
                        (Some((k, v)), None) => Some((k.clone(), v.clone())),
                        _ => {
                            return Err(SfError::new(
                                400,
                                "INVALID_FIELD",
                                format!(
                                    "{}: a foreign key reference must specify exactly one external ID field",
                                    field.relationship_name.as_deref().unwrap_or(key)
                                ),
                            ))
                        }
                    }
                }
                other => return Err(parser_error("sobject", other, raw, key)),
            };
            p.lookups.push(Lookup { field: idx, parent, key: key_pair });
            continue;
        }
        return Err(SfError::invalid_field(key, &def.name));
    }
    Ok(p)
}

/// Converts one JSON value to what is stored for `field`, or fails like Salesforce's JSON
/// deserializer. Number, currency and percent values travel and are kept as doubles (a Decimal
/// sent as `1234.50` reads back as `1234.5`, a 17th significant digit may be lost); digits beyond
/// the field's scale are kept, as Salesforce keeps them for API writes (it rounds only in its UI).
/// Int fields take whole numbers only. Range checks (NUMBER_OUTSIDE_VALID_RANGE) fail one record
/// and are in `dml.rs`.
pub fn convert(field: &FieldDef, v: &Value, raw: &str, key: &str) -> Result<Value, SfError> {
    use FieldType as T;
    if v.is_null() {
        return Ok(Value::Null);
    }
    let t = field.ftype;
    let err = || parser_error(jackson_type(t), v, raw, key);
    match t {
        _ if t.is_text() || matches!(t, T::Id | T::Reference | T::Base64) => match v {
            Value::String(_) => Ok(v.clone()),
            // Jackson coerces scalars to text.
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(err()),
        },
        _ if t.is_number() => {
            let n = match v {
                Value::Number(n) => n.clone(),
                Value::String(s) if s.is_empty() => return Ok(Value::Null),
                Value::String(s) => match serde_json::from_str::<Value>(s.trim()) {
                    Ok(Value::Number(n)) => n,
                    _ => return Err(err()),
                },
                _ => return Err(err()),
            };
            kept_number(t, n).map(Value::Number).ok_or_else(err)
        }
        T::Boolean => match v {
            Value::Bool(_) => Ok(v.clone()),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(err()),
        },
        T::Date => match v {
            Value::String(s) if is_date(s) => Ok(v.clone()),
            _ => Err(err()),
        },
        T::Datetime => match v {
            Value::String(s) if is_datetime(s) => Ok(v.clone()),
            _ => Err(err()),
        },
        T::Time => match v {
            Value::String(s) if is_time(s) => Ok(v.clone()),
            _ => Err(err()),
        },
        _ => Ok(v.clone()),
    }
}

fn jackson_type(t: FieldType) -> &'static str {
    match t {
        FieldType::Date => "date",
        FieldType::Datetime => "datetime",
        FieldType::Time => "time",
        FieldType::Boolean => "boolean",
        FieldType::Int => "int",
        FieldType::Double | FieldType::Currency | FieldType::Percent => "double",
        _ => "string",
    }
}

/// The number Salesforce keeps: a double, or for int fields a whole number (`None`: a fraction,
/// which an int field cannot take). Values beyond every double or long are kept as sent, for the
/// range check to refuse.
fn kept_number(t: FieldType, n: serde_json::Number) -> Option<serde_json::Number> {
    let x = n.as_f64().filter(|x| x.is_finite());
    if t != FieldType::Int {
        return Some(x.and_then(serde_json::Number::from_f64).unwrap_or(n));
    }
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    match x {
        Some(x) if x.fract() != 0.0 => None,
        Some(x) if x.abs() < i64::MAX as f64 => Some((x as i64).into()),
        _ => Some(n),
    }
}

/// `Cannot deserialize instance of date from VALUE_STRING value 2020-13-45 or request may be
/// missing a required field at [line:1, column:27]`, as Salesforce words it.
fn parser_error(ty: &str, v: &Value, raw: &str, key: &str) -> SfError {
    let (token, text) = match v {
        Value::String(s) => ("VALUE_STRING", s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => ("VALUE_NUMBER_INT", n.to_string()),
        Value::Number(n) => ("VALUE_NUMBER_FLOAT", n.to_string()),
        Value::Bool(true) => ("VALUE_TRUE", "true".into()),
        Value::Bool(false) => ("VALUE_FALSE", "false".into()),
        Value::Object(_) => ("START_OBJECT", "{".into()),
        Value::Array(_) => ("START_ARRAY", "[".into()),
        Value::Null => ("VALUE_NULL", "null".into()),
    };
    let (line, column) = position_of(raw, key);
    SfError::new(
        400,
        "JSON_PARSER_ERROR",
        format!(
            "Cannot deserialize instance of {ty} from {token} value {text} or request may be missing a required field at [line:{line}, column:{column}]"
        ),
    )
}

/// 1-based line and column just past `"key":` in the raw body (best effort).
fn position_of(raw: &str, key: &str) -> (usize, usize) {
    let needle = format!("\"{key}\"");
    let Some(at) = raw.find(&needle) else { return (1, 1) };
    let mut end = at + needle.len();
    let bytes = raw.as_bytes();
    while end < bytes.len() && (bytes[end] == b':' || bytes[end].is_ascii_whitespace()) {
        end += 1;
    }
    let before = &raw[..end];
    let line = before.matches('\n').count() + 1;
    let column = end - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

// ---------------------------------------------------------------------------------------------
// Value formats
// ---------------------------------------------------------------------------------------------

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |a, d| a * 10 + (d - b'0') as u32))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        _ => 0,
    }
}

/// `yyyy-MM-dd` with a real calendar day.
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    match (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10])) {
        (Some(y), Some(m), Some(d)) => (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m),
        _ => false,
    }
}

/// `HH:mm:ss` plus an optional fraction of 1-9 digits; returns the rest of the string.
fn clock(b: &[u8]) -> Option<&[u8]> {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let mut rest = &b[8..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        rest = &rest[1 + n..];
    }
    Some(rest)
}

/// `yyyy-MM-ddTHH:mm:ss(.SSS)?` followed by `Z`, `±hh:mm`, `±hhmm` or nothing (read as GMT).
pub fn is_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 19 || !is_date(&s[..10]) || b[10] != b'T' {
        return false;
    }
    let Some(zone) = clock(&b[11..]) else { return false };
    match zone {
        [] | [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2] | [sign, h1, h2, m1, m2] if *sign == b'+' || *sign == b'-' => {
            matches!((digits(&[*h1, *h2]), digits(&[*m1, *m2])), (Some(h), Some(m)) if h <= 14 && m <= 59)
        }
        _ => false,
    }
}

/// `HH:mm:ss(.SSS)?Z?` (Salesforce's time format; the zone designator may only be `Z`).
pub fn is_time(s: &str) -> bool {
    match clock(s.as_bytes()) {
        Some(rest) => rest.is_empty() || rest == b"Z",
        None => false,
    }
}

/// A loose email syntax check, like Salesforce's INVALID_EMAIL_ADDRESS validation.
pub fn is_email(s: &str) -> bool {
    let mut parts = s.splitn(2, '@');
    let (Some(local), Some(domain)) = (parts.next(), parts.next()) else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c == ',' || c == ';')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::default_objects;

    #[test]
    fn dates() {
        assert!(is_date("2020-02-29"));
        assert!(is_date("1999-12-31"));
        assert!(!is_date("2021-02-29"));
        assert!(!is_date("2020-13-45"));
        assert!(!is_date("2020-1-05"));
        assert!(!is_date("2020-01-05T00:00:00Z"));
        assert!(!is_date("20200105"));
    }

    #[test]
    fn datetimes() {
        assert!(is_datetime("2024-05-01T12:34:56.789Z"));
        assert!(is_datetime("2024-05-01T12:34:56Z"));
        assert!(is_datetime("2024-05-01T12:34:56.789+02:00"));
        assert!(is_datetime("2024-05-01T12:34:56.789-0800"));
        assert!(is_datetime("2024-05-01T12:34:56"));
        assert!(!is_datetime("2024-05-01 12:34:56Z"));
        assert!(!is_datetime("2024-05-01T24:00:00Z"));
        assert!(!is_datetime("2024-05-01T12:34:56.Z"));
        assert!(!is_datetime("2024-05-01T12:34:56+2"));
        assert!(!is_datetime("2024-05-01"));
    }

    #[test]
    fn times() {
        assert!(is_time("12:34:56.789Z"));
        assert!(is_time("00:00:00Z"));
        assert!(is_time("23:59:59"));
        assert!(!is_time("24:00:00.000Z"));
        assert!(!is_time("12:34"));
        assert!(!is_time("12:34:56+01:00"));
    }

    fn contact() -> ObjectDef {
        default_objects().into_iter().find(|o| o.name == "Contact").unwrap()
    }

    #[test]
    fn names_are_case_insensitive_and_canonicalised() {
        let def = contact();
        let body: Map<String, Value> = serde_json::from_str(r#"{"lastname":"X","ACTIVE__C":"true"}"#).unwrap();
        let p = prepare(&def, &body, "").unwrap();
        let names: Vec<_> = p.values.iter().map(|(i, _)| def.fields[*i].name.as_str()).collect();
        assert_eq!(names, ["LastName", "Active__c"]);
        assert_eq!(p.values[1].1, Value::Bool(true));
    }

    #[test]
    fn unknown_field_and_bad_types() {
        let def = contact();
        let body: Map<String, Value> = serde_json::from_str(r#"{"Nope__c":1}"#).unwrap();
        let e = prepare(&def, &body, "").unwrap_err();
        assert_eq!(e.code, "INVALID_FIELD");
        assert_eq!(e.message, "No such column 'Nope__c' on sobject of type Contact");

        let raw = r#"{"LastName":"X","Birthdate":"2020-13-45"}"#;
        let body: Map<String, Value> = serde_json::from_str(raw).unwrap();
        let e = prepare(&def, &body, raw).unwrap_err();
        assert_eq!(e.code, "JSON_PARSER_ERROR");
        assert!(e.message.starts_with("Cannot deserialize instance of date from VALUE_STRING value 2020-13-45"), "{}", e.message);
        assert!(e.message.ends_with("at [line:1, column:29]"), "{}", e.message);

        let body: Map<String, Value> = serde_json::from_str(r#"{"Score__c":"abc"}"#).unwrap();
        assert_eq!(prepare(&def, &body, "").unwrap_err().code, "JSON_PARSER_ERROR");
        let body: Map<String, Value> = serde_json::from_str(r#"{"Active__c":1}"#).unwrap();
        assert_eq!(prepare(&def, &body, "").unwrap_err().code, "JSON_PARSER_ERROR");
        let body: Map<String, Value> = serde_json::from_str(r#"{"Interests__c":["a","b"]}"#).unwrap();
        assert_eq!(prepare(&def, &body, "").unwrap_err().code, "JSON_PARSER_ERROR");
    }

    #[test]
    fn numbers_are_kept_as_salesforce_keeps_them() {
        let def = contact();
        let kept = |field: &FieldDef, json: &str| {
            let v: Value = serde_json::from_str(json).unwrap();
            convert(field, &v, "", &field.name).map(|v| serde_json::to_string(&v).unwrap())
        };
        let score = def.field("Score__c").unwrap();
        assert_eq!(kept(score, "1234.50").unwrap(), "1234.5");
        assert_eq!(kept(score, "\"1234.567\"").unwrap(), "1234.567", "no rounding to the scale through the API");
        assert_eq!(kept(score, "9007199254740993").unwrap(), "9007199254740992.0", "a double keeps ~16 digits");
        let int = FieldDef::new("Count__c", FieldType::Int);
        assert_eq!(kept(&int, "42").unwrap(), "42");
        assert_eq!(kept(&int, "42.0").unwrap(), "42");
        assert_eq!(kept(&int, "4.5").unwrap_err().code, "JSON_PARSER_ERROR");
        assert!(FieldType::parse("long").is_none(), "Salesforce has no long field type");
    }

    #[test]
    fn relationship_by_external_id() {
        let def = contact();
        let body: Map<String, Value> =
            serde_json::from_str(r#"{"account":{"AccountNumber__c":"A-1"}}"#).unwrap();
        let p = prepare(&def, &body, "").unwrap();
        assert_eq!(p.lookups.len(), 1);
        assert_eq!(def.fields[p.lookups[0].field].name, "AccountId");
        assert_eq!(p.lookups[0].parent, "Account");
    }

    #[test]
    fn emails() {
        assert!(is_email("a.b@example.com"));
        assert!(!is_email("not-an-email"));
        assert!(!is_email("a@b"));
        assert!(!is_email("a b@example.com"));
    }
}
