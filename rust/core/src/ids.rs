//! Salesforce record Ids: 15-character case-sensitive, 18-character case-safe.

const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 18-character form of a Salesforce Id, or why `id` is not one. A 15-character Id gets its
/// checksum suffix; an 18-character Id must carry the suffix its first 15 characters imply (in
/// any case), so a key that merely looks like an Id, or one whose case was changed, is refused
/// instead of naming some other record.
pub fn canonical(id: &str) -> Result<String, &'static str> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("a Salesforce Id has only letters and digits");
    }
    let (head, suffix) = match id.len() {
        15 => (id, None),
        18 => (&id[..15], Some(&id[15..])),
        _ => return Err("a Salesforce Id has 15 or 18 characters"),
    };
    let expected = suffix_of(head);
    match suffix {
        Some(s) if !s.eq_ignore_ascii_case(&expected) => {
            Err("the last 3 characters of an 18-character Salesforce Id must match the case of its first 15")
        }
        _ => Ok(format!("{head}{expected}")),
    }
}

/// The 18-character form of a 15- or 18-character Id; `None` when `id` is not a valid Id.
pub fn to_18(id: &str) -> Option<String> {
    canonical(id).ok()
}

/// Per block of five characters, which of them are upper case, as one letter of the alphabet.
fn suffix_of(head: &str) -> String {
    head.as_bytes()
        .chunks(5)
        .map(|block| {
            let bits = block
                .iter()
                .enumerate()
                .fold(0usize, |acc, (i, b)| acc | (usize::from(b.is_ascii_uppercase()) << i));
            SUFFIX_ALPHABET[bits] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_suffix() {
        assert_eq!(to_18("001A0000006Vm9r").as_deref(), Some("001A0000006Vm9rIAC"));
        assert_eq!(to_18("001A0000006Vm9rIAC").as_deref(), Some("001A0000006Vm9rIAC"));
        assert_eq!(to_18("001A0000006Vm9riac").as_deref(), Some("001A0000006Vm9rIAC"));
        assert_eq!(to_18("not-an-id"), None);
    }

    #[test]
    fn refuses_what_is_not_an_id() {
        for bad in [
            "003000000000001AAA,003000000000002AAA", // two Ids: Salesforce would delete both
            "003000000000001AA",
            "",
            "003000000000001 AA",
            "003000000000001%2C",
            "001a0000006Vm9rIAC", // case changed: a different record's Id, with the old suffix
            "001A0000006VM9RIAC",
            "00300000000000é",
        ] {
            assert!(canonical(bad).is_err(), "{bad}");
        }
    }
}
