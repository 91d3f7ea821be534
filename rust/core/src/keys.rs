//! What a record key may be for the field it names (SPEC §2), in the one form it is compared,
//! ordered and sent in: Native ID keys as 18-character Ids (see [`crate::ids`]), numeric external
//! IDs as canonical decimal text, text external IDs as they are.

/// The kind of the External ID field, learned from describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExternalIdKind {
    /// Text (or a type whose keys the connector passes through as text).
    #[default]
    Text,
    /// A number field (`double`, `int`, `currency`, `percent`). `precision`/`scale` bound the
    /// digits a key may have, when describe tells them (0 = unknown).
    Number { precision: u32, scale: u32 },
}

impl ExternalIdKind {
    /// From one entry of describe's `fields`.
    pub fn from_describe(field: &serde_json::Value) -> ExternalIdKind {
        let n = |k: &str| field.get(k).and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        match field.get("type").and_then(|t| t.as_str()) {
            Some("int") => ExternalIdKind::Number { precision: n("digits"), scale: 0 },
            Some("double" | "currency" | "percent" | "long") => {
                ExternalIdKind::Number { precision: n("precision"), scale: n("scale") }
            }
            _ => ExternalIdKind::Text,
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, ExternalIdKind::Number { .. })
    }

    /// The key in its canonical form, or why the field cannot hold it. Numbers must be plain
    /// decimal text (`-12.50`): no exponent, sign `+`, bare `.5`, `NaN` or `inf`, each of which
    /// would otherwise be sent unquoted into a JSON body or a SOQL `IN (…)` list.
    pub fn canonical_key(&self, key: &str) -> Result<String, String> {
        let ExternalIdKind::Number { precision, scale } = *self else { return Ok(key.to_owned()) };
        let canonical = canonical_decimal(key, false).ok_or_else(|| {
            format!("the external ID field is numeric, but the key '{}' is not a decimal number", shown(key))
        })?;
        let digits = canonical.trim_start_matches('-');
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let int_digits = if int == "0" { 0 } else { int.len() as u32 };
        let significant = format!("{int}{frac}").trim_start_matches('0').len();
        if significant > MAX_EXACT_DIGITS {
            return Err(format!(
                "the key '{}' has more than {MAX_EXACT_DIGITS} significant digits: Salesforce keeps number fields \
                 as doubles, which cannot tell it from its neighbours, so it could name another record",
                shown(key)
            ));
        }
        if precision > 0 && (frac.len() as u32 > scale || int_digits > precision.saturating_sub(scale)) {
            return Err(format!(
                "the key '{}' does not fit the numeric external ID field (precision {precision}, scale {scale}): \
                 Salesforce would round it, and it could then name another record",
                shown(key)
            ));
        }
        Ok(canonical)
    }

    /// Whether a value Salesforce returned for the field (SOQL answer) is this canonical key.
    pub fn same_key(&self, canonical_key: &str, returned: &str) -> bool {
        match self {
            ExternalIdKind::Number { .. } => canonical_decimal(returned, true).as_deref() == Some(canonical_key),
            ExternalIdKind::Text => canonical_key.to_lowercase() == returned.to_lowercase(),
        }
    }
}

/// Digits a double holds exactly whatever they are (2^53 has 16 digits, not all 16-digit numbers
/// fit): Salesforce stores number fields as doubles.
const MAX_EXACT_DIGITS: usize = 15;

/// Text from outside (a key, a header) for logs, messages and DLQ headers: at most 100
/// characters, control characters (newlines, ANSI escapes) escaped, so it can neither forge log
/// lines nor bloat a message. The one way such text enters a message.
pub fn shown(text: &str) -> String {
    let cut: String = text.chars().take(100).collect();
    cut.escape_debug().to_string()
}

/// Decimal text without leading zeros, trailing fractional zeros or a negative zero: two texts
/// of the same number compare equal as strings, whatever their digits (no float rounding).
/// `exponent` accepts `1.5E3` (how Salesforce may print a double); keys never get one.
pub fn canonical_decimal(text: &str, exponent: bool) -> Option<String> {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(at) if exponent => {
            let e = &text[at + 1..];
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (&text[..at], e.parse::<i32>().ok()?)
        }
        Some(_) => return None,
        None => (text, 0),
    };
    let (negative, unsigned) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if int.is_empty() || (unsigned.contains('.') && frac.is_empty()) {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits, and where the decimal point sits among them.
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let mut point = int.len() as i64 + i64::from(exp);
    if point < 0 {
        let pad = (-point) as usize;
        digits.splice(0..0, std::iter::repeat(b'0').take(pad));
        point = 0;
    }
    let point = point as usize;
    if digits.len() < point {
        digits.resize(point, b'0');
    }
    let int_part = std::str::from_utf8(&digits[..point]).ok()?.trim_start_matches('0');
    let frac_part = std::str::from_utf8(&digits[point..]).ok()?.trim_end_matches('0');
    let mut out = String::with_capacity(digits.len() + 2);
    if negative && !(int_part.is_empty() && frac_part.is_empty()) {
        out.push('-');
    }
    out.push_str(if int_part.is_empty() { "0" } else { int_part });
    if !frac_part.is_empty() {
        out.push('.');
        out.push_str(frac_part);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_compare_as_numbers_not_floats() {
        assert_eq!(canonical_decimal("007", false).as_deref(), Some("7"));
        assert_eq!(canonical_decimal("-0.0", false).as_deref(), Some("0"));
        assert_eq!(canonical_decimal("12.500", false).as_deref(), Some("12.5"));
        // 17 digits: as f64 these two are the same number
        assert_ne!(canonical_decimal("12345678901234567", false), canonical_decimal("12345678901234568", false));
        assert_eq!(canonical_decimal("1.2345E4", true).as_deref(), Some("12345"));
        assert_eq!(canonical_decimal("5E-3", true).as_deref(), Some("0.005"));
        for bad in ["NaN", "inf", "+5", ".5", "5.", "", "-", "1e5", "0x10", "1_000", " 1", "1,2"] {
            assert_eq!(canonical_decimal(bad, false), None, "{bad}");
        }
    }

    #[test]
    fn numeric_keys_must_fit_the_field() {
        let field = ExternalIdKind::Number { precision: 18, scale: 0 };
        assert_eq!(field.canonical_key("0042").unwrap(), "42");
        assert!(field.canonical_key("4.5").unwrap_err().contains("precision 18, scale 0"));
        assert!(field.canonical_key("1234567890123456789").is_err());
        assert!(field.canonical_key("12345678901234567").unwrap_err().contains("significant digits"));
        assert_eq!(field.canonical_key("123456789012345").unwrap(), "123456789012345");
        assert!(field.canonical_key("abc").unwrap_err().contains("not a decimal number"));
        assert!(field.same_key("42", "42.0"));
        assert!(!field.same_key("42", "420"));
        let unbounded = ExternalIdKind::Number { precision: 0, scale: 0 };
        assert_eq!(unbounded.canonical_key("4.50").unwrap(), "4.5");
        assert_eq!(ExternalIdKind::Text.canonical_key("007").unwrap(), "007");
        assert!(ExternalIdKind::Text.same_key("Key-A", "key-a"));
    }

    #[test]
    fn kind_from_describe() {
        let f = serde_json::json!({"name": "Num__c", "type": "double", "precision": 18, "scale": 2});
        assert_eq!(ExternalIdKind::from_describe(&f), ExternalIdKind::Number { precision: 18, scale: 2 });
        let f = serde_json::json!({"name": "Ext__c", "type": "string"});
        assert_eq!(ExternalIdKind::from_describe(&f), ExternalIdKind::Text);
    }
}
