//! Connect values → Salesforce JSON (SPEC §3), written straight into bytes.
//!
//! A record's fields become a JSON *fragment* — `"A":1,"B":"x"` without braces — so the single-record
//! and the Collections writers can wrap the same bytes in their own envelopes (`attributes`, `id`,
//! the external ID) without converting twice or re-parsing.

use crate::record::Value;
use base64::Engine;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
#[error("{0}")]
pub struct ConvertError(pub String);

fn err(msg: impl Into<String>) -> ConvertError {
    ConvertError(msg.into())
}

/// How the record's own fields relate to its key in External ID mode.
pub struct ExternalId<'k> {
    pub field: &'k str,
    /// The key in its canonical form (see `keys`).
    pub key: &'k str,
    /// A numeric field: the value's copy of the key is compared as a decimal number.
    pub numeric: bool,
}

impl ExternalId<'_> {
    fn is_key(&self, text: &str) -> bool {
        if self.numeric {
            crate::keys::canonical_decimal(text, false).as_deref() == Some(self.key)
        } else {
            text == self.key
        }
    }
}

/// Converts a whole record value (Struct or Map) into a fields fragment.
///
/// `external_id`: the external ID field inside the value is dropped when it equals the key (the key
/// is sent anyway) and is an error when it differs, since one of the two would silently lose.
pub fn fields_fragment(
    value: &Value<'_>,
    external_id: Option<&ExternalId<'_>>,
    skip_nulls: bool,
) -> Result<Vec<u8>, ConvertError> {
    let fields = match value {
        Value::Struct(f) | Value::Map(f) => f,
        other => {
            return Err(err(format!(
                "record value is {}; expected a Struct (schema converters) or a Map (schemaless JSON)",
                other.type_name()
            )))
        }
    };
    let mut out = Vec::with_capacity(fields.len() * 48);
    let mut first = true;
    for (name, field) in fields {
        if skip_nulls && matches!(field, Value::Null) {
            continue;
        }
        if let Some(ext) = external_id {
            if name.eq_ignore_ascii_case(ext.field) {
                match scalar_text(field) {
                    Some(text) if ext.is_key(&text) => continue,
                    _ if matches!(field, Value::Null) => continue,
                    Some(text) => {
                        return Err(err(format!(
                            "field {name}='{text}' in the value differs from the record key '{}'",
                            ext.key
                        )))
                    }
                    None => {
                        return Err(err(format!(
                            "field {name} in the value is {}, but it is the external ID field and must equal the key '{}'",
                            field.type_name(),
                            ext.key
                        )))
                    }
                }
            }
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_string(&mut out, name);
        out.push(b':');
        write_value(&mut out, field, skip_nulls).map_err(|e| err(format!("field {name}: {}", e.0)))?;
    }
    Ok(out)
}

/// Two fields fragments as one, the later's fields winning (names compared case-insensitively,
/// as Salesforce does). `None` when either is not a fragment this module wrote.
pub fn merge_fragments(earlier: &[u8], later: &[u8]) -> Option<Vec<u8>> {
    let parse = |fragment: &[u8]| {
        let mut object = Vec::with_capacity(fragment.len() + 2);
        object.push(b'{');
        object.extend_from_slice(fragment);
        object.push(b'}');
        match serde_json::from_slice::<serde_json::Value>(&object) {
            Ok(serde_json::Value::Object(map)) => Some(map),
            _ => None,
        }
    };
    let mut merged = parse(earlier)?;
    for (name, value) in parse(later)? {
        merged.retain(|existing, _| !existing.eq_ignore_ascii_case(&name));
        merged.insert(name, value);
    }
    let text = serde_json::to_vec(&serde_json::Value::Object(merged)).ok()?;
    Some(text[1..text.len() - 1].to_vec())
}

/// The text of a key or external ID: strings as they are, integers as decimal text.
pub fn scalar_text(v: &Value<'_>) -> Option<String> {
    match v {
        Value::String(s) => Some((*s).to_owned()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A JSON string literal. Runs of characters that need no escape are copied whole; the escapes
/// are JSON's own (`\"`, `\\`, `\n`, … and `\u00XX` for other control characters).
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Most strings need no escape: a branch-free scan (vectorised by the compiler) finds out.
    let clean = bytes.iter().fold(true, |clean, &b| clean & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if clean {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_value(out: &mut Vec<u8>, v: &Value<'_>, skip_nulls: bool) -> Result<(), ConvertError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        // Shortest round-trip text, as Jackson writes doubles (`1.0`, `0.1`, `1.0E-7` → `1e-7`).
        Value::Float32(f) if f.is_finite() => out.extend_from_slice(ryu::Buffer::new().format_finite(*f).as_bytes()),
        Value::Float64(f) if f.is_finite() => out.extend_from_slice(ryu::Buffer::new().format_finite(*f).as_bytes()),
        Value::Float32(_) | Value::Float64(_) => return Err(err("NaN and infinity have no JSON form")),
        Value::String(s) => write_string(out, s),
        Value::Bytes(b) => write_string(out, &base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Array(items) => {
            // Salesforce has no array fields; a list of strings is a multi-select picklist value.
            let mut joined = String::new();
            for (i, item) in items.iter().enumerate() {
                let Value::String(s) = item else {
                    return Err(err(format!(
                        "arrays must hold strings (joined with ';' for multi-select picklists), found {}",
                        item.type_name()
                    )));
                };
                if i > 0 {
                    joined.push(';');
                }
                joined.push_str(s);
            }
            write_string(out, &joined)
        }
        Value::Map(_) | Value::Struct(_) => {
            // A nested object: a parent lookup by the parent's external ID.
            out.push(b'{');
            out.extend_from_slice(&fields_fragment(v, None, skip_nulls)?);
            out.push(b'}');
        }
        Value::Date(days) => {
            out.push(b'"');
            write_date(out, i64::from(*days))?;
            out.push(b'"');
        }
        Value::Time(ms) => {
            if !(0..86_400_000).contains(ms) {
                return Err(err(format!("Time of {ms} ms is not within one day")));
            }
            out.push(b'"');
            write_time(out, i64::from(*ms));
            out.extend_from_slice(b"Z\"");
        }
        Value::Timestamp(ms) => {
            out.push(b'"');
            write_date(out, ms.div_euclid(86_400_000))?;
            out.push(b'T');
            write_time(out, ms.rem_euclid(86_400_000));
            out.extend_from_slice(b"Z\"");
        }
        Value::Decimal { scale, unscaled } => write_decimal(out, *scale, unscaled)?,
    }
    Ok(())
}

/// `n` as exactly `width` decimal digits (callers guarantee it fits).
fn push_digits(out: &mut Vec<u8>, n: i64, width: usize) {
    let mut digits = [b'0'; 4];
    let mut n = n;
    for slot in digits[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// `YYYY-MM-DD` of a day count since 1970-01-01.
fn write_date(out: &mut Vec<u8>, days: i64) -> Result<(), ConvertError> {
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return Err(err(format!("year {y} is outside 0000..9999")));
    }
    push_digits(out, y, 4);
    out.push(b'-');
    push_digits(out, i64::from(m), 2);
    out.push(b'-');
    push_digits(out, i64::from(d), 2);
    Ok(())
}

/// `hh:mm:ss.SSS` of milliseconds within a day.
fn write_time(out: &mut Vec<u8>, ms: i64) {
    push_digits(out, ms / 3_600_000, 2);
    out.push(b':');
    push_digits(out, ms / 60_000 % 60, 2);
    out.push(b':');
    push_digits(out, ms / 1000 % 60, 2);
    out.push(b'.');
    push_digits(out, ms % 1000, 3);
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`), matching `java.time.LocalDate`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Exactly the record's scale, as `BigDecimal.toPlainString()` prints it: no float ever touches it.
pub fn decimal_text(scale: i32, unscaled: &[u8]) -> Result<String, ConvertError> {
    let mut out = Vec::with_capacity(24);
    write_decimal(&mut out, scale, unscaled)?;
    Ok(String::from_utf8(out).expect("decimal digits are ASCII"))
}

fn write_decimal(out: &mut Vec<u8>, scale: i32, unscaled: &[u8]) -> Result<(), ConvertError> {
    if unscaled.is_empty() || unscaled.len() > 16 {
        return Err(err(format!(
            "Decimal with a {}-byte unscaled value is outside what Salesforce numbers hold",
            unscaled.len()
        )));
    }
    // Sign-extend the two's-complement bytes into an i128.
    let fill = if unscaled[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut bytes = [fill; 16];
    bytes[16 - unscaled.len()..].copy_from_slice(unscaled);
    let n = i128::from_be_bytes(bytes);
    if !(-1000..=1000).contains(&scale) {
        return Err(err(format!("Decimal scale {scale} is out of range")));
    }
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(n.unsigned_abs()).as_bytes();
    if n < 0 {
        out.push(b'-');
    }
    if scale <= 0 {
        out.extend_from_slice(digits);
        if n != 0 {
            out.resize(out.len() + (-scale) as usize, b'0');
        }
    } else {
        let scale = scale as usize;
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            out.extend_from_slice(int);
            out.push(b'.');
            out.extend_from_slice(frac);
        } else {
            out.extend_from_slice(b"0.");
            out.resize(out.len() + scale - digits.len(), b'0');
            out.extend_from_slice(digits);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(v: &Value<'_>) -> String {
        String::from_utf8(fields_fragment(v, None, false).unwrap()).unwrap()
    }

    #[test]
    fn logical_types_have_exact_strings() {
        let v = Value::Struct(vec![
            ("D", Value::Date(19_723)),          // 2024-01-01
            ("Old", Value::Date(-1)),            // 1969-12-31
            ("T", Value::Time(45_296_789)),      // 12:34:56.789
            ("Ts", Value::Timestamp(1_704_164_645_006)), // 2024-01-02T03:04:05.006Z
            ("Neg", Value::Timestamp(-1)),
        ]);
        assert_eq!(
            frag(&v),
            r#""D":"2024-01-01","Old":"1969-12-31","T":"12:34:56.789Z","Ts":"2024-01-02T03:04:05.006Z","Neg":"1969-12-31T23:59:59.999Z""#
        );
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(decimal_text(2, &[0x30, 0x39]).unwrap(), "123.45");
        assert_eq!(decimal_text(2, &[0x04, 0x82]).unwrap(), "11.54");
        assert_eq!(decimal_text(3, &[0x05]).unwrap(), "0.005");
        assert_eq!(decimal_text(3, &[0xfb]).unwrap(), "-0.005");
        assert_eq!(decimal_text(2, &[0x00]).unwrap(), "0.00");
        assert_eq!(decimal_text(-2, &[0x07]).unwrap(), "700");
        assert_eq!(decimal_text(2, &[0x01, 0xe2, 0x3a]).unwrap(), "1234.50");
        assert!(decimal_text(0, &[1; 17]).is_err());
    }

    #[test]
    fn scalars_nested_objects_and_picklists() {
        let v = Value::Map(vec![
            ("S", Value::String("a\"b\\c\n😀")),
            ("I", Value::Int(-3)),
            ("F", Value::Float32(1.1)),
            ("G", Value::Float64(0.1)),
            ("B", Value::Boolean(false)),
            ("N", Value::Null),
            ("Y", Value::Bytes(b"hi")),
            ("Tags", Value::Array(vec![Value::String("a"), Value::String("b")])),
            ("Account", Value::Map(vec![("AccountNumber__c", Value::String("A-1"))])),
        ]);
        assert_eq!(
            frag(&v),
            r#""S":"a\"b\\c\n😀","I":-3,"F":1.1,"G":0.1,"B":false,"N":null,"Y":"aGk=","Tags":"a;b","Account":{"AccountNumber__c":"A-1"}"#
        );
        let out = fields_fragment(&v, None, true).unwrap();
        assert!(!String::from_utf8(out).unwrap().contains("\"N\""));
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        for s in ["plain", "q\"b\\s", "\n\r\t\u{8}\u{c}\u{1}\u{1f}", "ü😀\u{7f}", ""] {
            let mut ours = Vec::new();
            write_string(&mut ours, s);
            assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn json_injection_stays_a_string() {
        let v = Value::Map(vec![("Name", Value::String("x\",\"IsDeleted\":true,\"a\":\""))]);
        let json = format!("{{{}}}", frag(&v));
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.as_object().unwrap().len(), 1);
    }

    #[test]
    fn merged_fragments_keep_the_later_fields() {
        let merged = merge_fragments(br#""LastName":"A","Email":"a@x","N":1.10"#, br#""lastname":"B","Phone":null"#).unwrap();
        assert_eq!(String::from_utf8(merged).unwrap(), r#""Email":"a@x","N":1.10,"lastname":"B","Phone":null"#);
        assert_eq!(merge_fragments(b"", br#""A":1"#).unwrap(), br#""A":1"#.to_vec());
    }

    #[test]
    fn external_id_in_value_must_match_key() {
        let ext = ExternalId { field: "ExternalId__c", key: "K-1", numeric: false };
        let same = Value::Map(vec![("externalid__c", Value::String("K-1")), ("Name", Value::String("n"))]);
        assert_eq!(String::from_utf8(fields_fragment(&same, Some(&ext), false).unwrap()).unwrap(), r#""Name":"n""#);
        let differs = Value::Map(vec![("ExternalId__c", Value::String("K-2"))]);
        let e = fields_fragment(&differs, Some(&ext), false).unwrap_err();
        assert!(e.0.contains("differs from the record key"), "{e}");
    }

    #[test]
    fn unsupported_values_are_named() {
        for (v, word) in [
            (Value::String("x"), "String"),
            (Value::Bytes(b"x"), "a byte array"),
            (Value::Array(vec![]), "array"),
            (Value::Int(1), "integer"),
        ] {
            assert!(fields_fragment(&v, None, false).unwrap_err().0.contains(word));
        }
        let nan = Value::Map(vec![("X", Value::Float64(f64::NAN))]);
        assert!(fields_fragment(&nan, None, false).unwrap_err().0.starts_with("field X"));
        let arr = Value::Map(vec![("X", Value::Array(vec![Value::Int(1)]))]);
        assert!(fields_fragment(&arr, None, false).is_err());
    }
}
