//! Salesforce record Ids: 15-character case-sensitive, 18-character case-safe.

/// The 18-character form of a 15- or 18-character Id; `None` when `id` is not Id-shaped.
/// The three extra characters encode, per block of five, which characters are upper case.
pub fn to_18(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        18 => Some(format!("{}{}", &id[..15], id[15..].to_ascii_uppercase())),
        15 => {
            const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
            let mut out = id.to_owned();
            for block in id.as_bytes().chunks(5) {
                let bits = block
                    .iter()
                    .enumerate()
                    .fold(0usize, |acc, (i, b)| acc | (usize::from(b.is_ascii_uppercase()) << i));
                out.push(ALPHABET[bits] as char);
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_suffix() {
        assert_eq!(super::to_18("001A0000006Vm9r").as_deref(), Some("001A0000006Vm9rIAC"));
        assert_eq!(super::to_18("001A0000006Vm9rIAC").as_deref(), Some("001A0000006Vm9rIAC"));
        assert_eq!(super::to_18("not-an-id"), None);
    }
}
