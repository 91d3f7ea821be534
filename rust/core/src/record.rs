//! The record model the native side works on: what Java encoded, borrowed from the batch buffer.

/// A Connect value as it crossed the JNI boundary (see `wire::batch` for the encoding).
/// Strings and byte arrays borrow from the batch buffer: decoding copies nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Boolean(bool),
    Int(i64),
    Float32(f32),
    Float64(f64),
    String(&'a str),
    Bytes(&'a [u8]),
    Array(Vec<Value<'a>>),
    Map(Vec<(&'a str, Value<'a>)>),
    Struct(Vec<(&'a str, Value<'a>)>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Milliseconds since midnight.
    Time(i32),
    /// Milliseconds since the epoch, UTC.
    Timestamp(i64),
    /// Unscaled two's-complement big-endian integer and scale, as `java.math.BigDecimal` holds it.
    Decimal { scale: i32, unscaled: &'a [u8] },
}

impl Value<'_> {
    /// The Connect-facing name of the value's type with its article ("an integer"), for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Boolean(_) => "a Boolean",
            Value::Int(_) => "an integer",
            Value::Float32(_) | Value::Float64(_) => "a floating-point number",
            Value::String(_) => "a String",
            Value::Bytes(_) => "a byte array",
            Value::Array(_) => "an array",
            Value::Map(_) => "a Map",
            Value::Struct(_) => "a Struct",
            Value::Date(_) => "a Date",
            Value::Time(_) => "a Time",
            Value::Timestamp(_) => "a Timestamp",
            Value::Decimal { .. } => "a Decimal",
        }
    }
}

/// The operation header as found on the record, before it is interpreted.
#[derive(Debug, Clone, PartialEq)]
pub enum OperationHeader<'a> {
    Absent,
    Text(&'a str),
    Bytes(&'a [u8]),
    /// A header of another Java type; carries the type's name.
    OtherType(&'a str),
}

/// One Kafka record of a `put()` batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Value<'a>,
    pub value: Value<'a>,
    pub operation_header: OperationHeader<'a>,
    /// Topic, partition and offset the record was read from, when an SMT changed them
    /// (`SinkRecord.originalTopic()` and friends, Kafka 3.6+); `None` when they are the ones above.
    pub original: Option<(&'a str, i32, i64)>,
}

impl Record<'_> {
    /// Where the record lives in Kafka, for messages an operator can act on.
    pub fn coordinates(&self) -> String {
        format!("topic {} partition {} offset {}", self.topic, self.partition, self.offset)
    }

    /// `salesforce.idempotency.field`'s value (SPEC §12): `<topic>:<partition>:<offset>` of the
    /// record as read from Kafka, before SMTs. No two records share it, whatever SMTs rename.
    pub fn idempotency_value(&self) -> String {
        let (topic, partition, offset) = self.original.unwrap_or((self.topic, self.partition, self.offset));
        format!("{topic}:{partition}:{offset}")
    }

    /// [`coordinates`](Self::coordinates) with the key in front when it is a String or integer:
    /// SPEC §4 wants the key in every record error.
    pub fn location(&self) -> String {
        match crate::convert::scalar_text(&self.key) {
            Some(key) => format!("key '{key}', {}", self.coordinates()),
            None => self.coordinates(),
        }
    }
}
