//! Decoder of the config buffer: `i32 n` then `n × (str key, str value)`.

use super::{Reader, WireError};
use std::collections::HashMap;

pub fn decode_config(buf: &[u8]) -> Result<HashMap<String, String>, WireError> {
    let mut r = Reader::new(buf, "config");
    let n = r.len()?;
    let mut map = HashMap::with_capacity(n.min(256));
    for _ in 0..n {
        let key = r.str()?;
        let value = r.str()?;
        map.insert(key.to_owned(), value.to_owned());
    }
    if !r.is_at_end() {
        return Err(r.error("trailing bytes"));
    }
    Ok(map)
}

/// The encoder, for tests and benchmarks that drive the core without Java.
pub fn encode_config<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let pairs: Vec<_> = pairs.into_iter().collect();
    let mut w = super::Writer::default();
    w.i32(pairs.len() as i32);
    for (k, v) in pairs {
        w.str(k);
        w.str(v);
    }
    w.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let buf = encode_config([("a", "1"), ("salesforce.client.secret", "s3cr3t")]);
        let map = decode_config(&buf).unwrap();
        assert_eq!(map["a"], "1");
        assert_eq!(map["salesforce.client.secret"], "s3cr3t");
        assert!(decode_config(&buf[..buf.len() - 1]).is_err());
    }
}
