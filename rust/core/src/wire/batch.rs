//! Decoder of the batch buffer that `RecordBatchEncoder.java` writes, one per `put()`.

use super::{Reader, WireError};
use crate::record::{OperationHeader, Record, Value};

/// 2: each record ends with its original coordinates when they differ (ARCHITECTURE.md).
const VERSION: u8 = 2;

/// Nesting deeper than this is refused instead of risking the native stack.
pub const MAX_DEPTH: usize = 64;

mod tag {
    pub const NULL: u8 = 0;
    pub const BOOLEAN: u8 = 1;
    pub const INT: u8 = 2;
    pub const FLOAT32: u8 = 3;
    pub const FLOAT64: u8 = 4;
    pub const STRING: u8 = 5;
    pub const BYTES: u8 = 6;
    pub const ARRAY: u8 = 7;
    pub const MAP: u8 = 8;
    pub const STRUCT: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const TIMESTAMP: u8 = 12;
    pub const DECIMAL: u8 = 13;
}

/// Decodes a whole batch. A malformed buffer fails the whole call: it means the two sides disagree
/// on the format, which no record-level handling could make right.
pub fn decode_batch(buf: &[u8]) -> Result<Vec<Record<'_>>, WireError> {
    let mut r = Reader::new(buf, "batch");
    let version = r.u8()?;
    if version != VERSION {
        return Err(r.error(format!("version {version}, expected {VERSION}")));
    }
    let count = r.len()?;
    // Each record takes at least 20 bytes; refuse counts the buffer cannot hold before allocating.
    if count > buf.len() / 20 {
        return Err(r.error(format!("record count {count} exceeds what {} bytes can hold", buf.len())));
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(decode_record(&mut r)?);
    }
    if !r.is_at_end() {
        return Err(r.error("trailing bytes after the last record"));
    }
    Ok(records)
}

fn decode_record<'a>(r: &mut Reader<'a>) -> Result<Record<'a>, WireError> {
    let topic = r.str()?;
    let partition = r.i32()?;
    let offset = r.i64()?;
    let key = decode_value(r, 0)?;
    let value = decode_value(r, 0)?;
    let operation_header = match r.u8()? {
        0 => OperationHeader::Absent,
        1 => OperationHeader::Text(r.str()?),
        2 => OperationHeader::Bytes(r.bytes()?),
        3 => OperationHeader::OtherType(r.str()?),
        kind => return Err(r.error(format!("unknown operation header kind {kind}"))),
    };
    let original = match r.u8()? {
        0 => None,
        1 => Some((r.str()?, r.i32()?, r.i64()?)),
        flag => return Err(r.error(format!("unknown original coordinates flag {flag}"))),
    };
    Ok(Record { topic, partition, offset, key, value, operation_header, original })
}

fn decode_value<'a>(r: &mut Reader<'a>, depth: usize) -> Result<Value<'a>, WireError> {
    if depth > MAX_DEPTH {
        return Err(r.error(format!("values nested deeper than {MAX_DEPTH} levels")));
    }
    Ok(match r.u8()? {
        tag::NULL => Value::Null,
        tag::BOOLEAN => Value::Boolean(r.u8()? != 0),
        tag::INT => Value::Int(r.i64()?),
        tag::FLOAT32 => Value::Float32(r.f32()?),
        tag::FLOAT64 => Value::Float64(r.f64()?),
        tag::STRING => Value::String(r.str()?),
        tag::BYTES => Value::Bytes(r.bytes()?),
        tag::ARRAY => {
            let n = bounded_count(r)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(decode_value(r, depth + 1)?);
            }
            Value::Array(items)
        }
        t @ (tag::MAP | tag::STRUCT) => {
            let n = bounded_count(r)?;
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                let name = r.str()?;
                fields.push((name, decode_value(r, depth + 1)?));
            }
            if t == tag::MAP {
                Value::Map(fields)
            } else {
                Value::Struct(fields)
            }
        }
        tag::DATE => Value::Date(r.i32()?),
        tag::TIME => Value::Time(r.i32()?),
        tag::TIMESTAMP => Value::Timestamp(r.i64()?),
        tag::DECIMAL => {
            let scale = r.i32()?;
            Value::Decimal { scale, unscaled: r.bytes()? }
        }
        t => return Err(r.error(format!("unknown value tag {t}"))),
    })
}

/// Element counts are checked against the bytes left (each element takes at least one byte), so a
/// corrupt count cannot make us allocate gigabytes.
fn bounded_count(r: &mut Reader<'_>) -> Result<usize, WireError> {
    let n = r.len()?;
    let left = r.remaining();
    if n > left {
        return Err(r.error(format!("count {n} exceeds the {left} bytes left")));
    }
    Ok(n)
}

/// Test support: the encoder's counterpart, so tests can build batches the way Java does.
#[cfg(any(test, feature = "test-support"))]
pub mod encode {
    use crate::record::{OperationHeader, Record, Value};

    pub fn batch(records: &[Record<'_>]) -> Vec<u8> {
        let mut w = crate::wire::Writer::default();
        w.u8(super::VERSION);
        w.i32(records.len() as i32);
        for rec in records {
            w.str(rec.topic);
            w.i32(rec.partition);
            w.i64(rec.offset);
            value(&mut w, &rec.key);
            value(&mut w, &rec.value);
            match &rec.operation_header {
                OperationHeader::Absent => w.u8(0),
                OperationHeader::Text(s) => {
                    w.u8(1);
                    w.str(s)
                }
                OperationHeader::Bytes(b) => {
                    w.u8(2);
                    bytes(&mut w, b)
                }
                OperationHeader::OtherType(s) => {
                    w.u8(3);
                    w.str(s)
                }
            }
            match rec.original {
                None => w.u8(0),
                Some((topic, partition, offset)) => {
                    w.u8(1);
                    w.str(topic);
                    w.i32(partition);
                    w.i64(offset)
                }
            }
        }
        w.buf
    }

    fn bytes(w: &mut crate::wire::Writer, b: &[u8]) {
        w.i32(b.len() as i32);
        w.buf.extend_from_slice(b);
    }

    fn value(w: &mut crate::wire::Writer, v: &Value<'_>) {
        use super::tag::*;
        match v {
            Value::Null => w.u8(NULL),
            Value::Boolean(b) => {
                w.u8(BOOLEAN);
                w.u8(*b as u8)
            }
            Value::Int(i) => {
                w.u8(INT);
                w.i64(*i)
            }
            Value::Float32(f) => {
                w.u8(FLOAT32);
                w.buf.extend_from_slice(&f.to_be_bytes())
            }
            Value::Float64(f) => {
                w.u8(FLOAT64);
                w.buf.extend_from_slice(&f.to_be_bytes())
            }
            Value::String(s) => {
                w.u8(STRING);
                w.str(s)
            }
            Value::Bytes(b) => {
                w.u8(BYTES);
                bytes(w, b)
            }
            Value::Array(items) => {
                w.u8(ARRAY);
                w.i32(items.len() as i32);
                items.iter().for_each(|i| value(w, i));
            }
            Value::Map(fields) | Value::Struct(fields) => {
                w.u8(if matches!(v, Value::Map(_)) { MAP } else { STRUCT });
                w.i32(fields.len() as i32);
                for (k, f) in fields {
                    w.str(k);
                    value(w, f);
                }
            }
            Value::Date(d) => {
                w.u8(DATE);
                w.i32(*d)
            }
            Value::Time(t) => {
                w.u8(TIME);
                w.i32(*t)
            }
            Value::Timestamp(t) => {
                w.u8(TIMESTAMP);
                w.i64(*t)
            }
            Value::Decimal { scale, unscaled } => {
                w.u8(DECIMAL);
                w.i32(*scale);
                bytes(w, unscaled)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(key: Value<'a>, value: Value<'a>, header: OperationHeader<'a>) -> Record<'a> {
        Record { topic: "contacts", partition: 3, offset: 42, key, value, operation_header: header, original: None }
    }

    #[test]
    fn round_trips_every_tag() {
        let value = Value::Struct(vec![
            ("n", Value::Null),
            ("b", Value::Boolean(true)),
            ("i", Value::Int(-7)),
            ("f", Value::Float32(1.5)),
            ("d", Value::Float64(2.25)),
            ("s", Value::String("héllo")),
            ("y", Value::Bytes(&[0, 255])),
            ("a", Value::Array(vec![Value::String("x"), Value::Int(1)])),
            ("m", Value::Map(vec![("k", Value::String("v"))])),
            ("date", Value::Date(19000)),
            ("time", Value::Time(3_600_000)),
            ("ts", Value::Timestamp(1_700_000_000_123)),
            ("dec", Value::Decimal { scale: 2, unscaled: &[0x30, 0x39] }),
        ]);
        let records = vec![
            record(Value::String("k1"), value, OperationHeader::Text("UPSERT")),
            record(Value::Null, Value::Null, OperationHeader::Bytes(b"DELETE")),
            record(Value::Int(5), Value::Map(vec![]), OperationHeader::OtherType("java.lang.Integer")),
            record(Value::Int(5), Value::Map(vec![]), OperationHeader::Absent),
            Record { original: Some(("crm.Contact", 7, 1 << 40)), ..record(Value::Null, Value::Map(vec![]), OperationHeader::Absent) },
        ];
        let buf = encode::batch(&records);
        assert_eq!(decode_batch(&buf).unwrap(), records);
    }

    #[test]
    fn rejects_truncated_and_corrupt_buffers() {
        let buf = encode::batch(&[record(Value::String("k"), Value::Map(vec![]), OperationHeader::Absent)]);
        for cut in 0..buf.len() {
            assert!(decode_batch(&buf[..cut]).is_err(), "cut at {cut} must fail");
        }
        let mut bad = buf.clone();
        bad[0] = 9;
        assert!(decode_batch(&bad).unwrap_err().reason.contains("version"));
        let mut huge = vec![VERSION];
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_batch(&huge).is_err());
    }

    #[test]
    fn refuses_unbounded_nesting() {
        let mut v = Value::Null;
        for _ in 0..(MAX_DEPTH + 2) {
            v = Value::Array(vec![v]);
        }
        let buf = encode::batch(&[record(Value::Null, v, OperationHeader::Absent)]);
        assert!(decode_batch(&buf).unwrap_err().reason.contains("nested"));
    }
}
