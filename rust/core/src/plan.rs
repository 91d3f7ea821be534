//! Operation routing (SPEC §2): from a Kafka record to the write Salesforce must perform, or to the
//! reason it cannot be written. Pure logic, no I/O.

use crate::config::{Config, Operation};
use crate::convert::{fields_fragment, scalar_text, ExternalId};
use crate::ids;
use crate::keys::{shown, ExternalIdKind};
use crate::record::{OperationHeader, Record, Value};
use std::sync::Arc;

/// The write one record asks for, in terms Salesforce understands.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWrite {
    /// The SObject written: `salesforce.sobject.type`, or the record's topic with `${topic}`.
    /// A request holds writes of one SObject only.
    pub sobject: Arc<str>,
    /// What is sent: INSERT only in Native ID mode without `salesforce.idempotency.field` (External
    /// ID mode, and that field, turn it into UPSERT).
    pub op: Operation,
    /// Native ID mode: the record's 18-character Id for UPDATE/DELETE. External ID mode: the
    /// external ID value in its canonical form (see `keys`). An INSERT made idempotent (SPEC §12):
    /// the record's `topic:partition:offset`. `None` only for a native INSERT, which needs no key.
    pub key: Option<String>,
    /// The record's fields as a JSON fragment (see `convert`); empty for DELETE. Shared, so that
    /// requests and their retries never copy it.
    pub fields: Arc<[u8]>,
}

impl PlannedWrite {
    /// Two writes with the same ordering key must reach Salesforce in offset order and never share
    /// a request. Keys are already canonical (18-character Ids, canonical decimals); text
    /// external IDs compare case-insensitively, as Salesforce matches them. The SObject is part of
    /// the key (its API name is case-insensitive): external ID `K-1` of a Contact and of an
    /// Account are two records.
    pub fn ordering_key(&self, external_id_mode: bool) -> Option<String> {
        let key = self.key.as_deref()?;
        let mut ordering = self.sobject.to_ascii_lowercase();
        ordering.push('\0');
        if external_id_mode {
            ordering.push_str(&key.to_lowercase());
        } else {
            ordering.push_str(key);
        }
        Some(ordering)
    }
}

/// Where a record is written: its SObject and the kind of that SObject's External ID field.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub sobject: Arc<str>,
    /// Ignored in Native ID mode.
    pub external_id: ExternalIdKind,
}

/// The targets of one batch's records: one for every record, or (`salesforce.sobject.type=${topic}`)
/// one per topic, or why that topic's records cannot be written (a non-recoverable record error).
#[derive(Debug, Clone)]
pub enum Targets {
    Fixed(Target),
    ByTopic(std::collections::HashMap<String, Result<Target, String>>),
}

impl Targets {
    pub fn for_topic(&self, topic: &str) -> Result<&Target, &str> {
        match self {
            Targets::Fixed(target) => Ok(target),
            Targets::ByTopic(by_topic) => match by_topic.get(topic) {
                Some(Ok(target)) => Ok(target),
                Some(Err(why)) => Err(why.as_str()),
                None => Err("no SObject was looked up for this record's topic"),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Write(PlannedWrite),
    /// Nothing to do, by configuration (a tombstone while `salesforce.tombstone.delete=false`).
    Skip,
    /// Cannot be written, whatever Salesforce would say: a non-recoverable record error.
    Reject(String),
}

/// `external_id`: the kind of `salesforce.external.id.field` (from describe); ignored in Native ID
/// mode. The write goes to `salesforce.sobject.type` (see [`plan_record_for`] for `${topic}`).
pub fn plan_record(cfg: &Config, external_id: ExternalIdKind, record: &Record<'_>) -> Plan {
    plan_record_for(cfg, &Target { sobject: Arc::from(cfg.sobject.as_str()), external_id }, record)
}

/// [`plan_record`] into `target`'s SObject.
pub fn plan_record_for(cfg: &Config, target: &Target, record: &Record<'_>) -> Plan {
    let external_id = target.external_id;
    let op = match requested_operation(cfg, record) {
        Ok(op) => op,
        Err(reason) => return Plan::Reject(reason),
    };
    let tombstone = matches!(record.value, Value::Null);
    let op = match (tombstone, op) {
        (false, op) => op,
        (true, Operation::Delete) => Operation::Delete,
        (true, _) if cfg.tombstone_delete => Operation::Delete,
        (true, _) => return Plan::Skip,
    };
    let external_id_field = cfg.external_id_field_for(&target.sobject);
    let op = match (cfg.external_id_mode(), op) {
        (true, _) if external_id_field.is_none() => return Plan::Reject(no_external_id_field(&target.sobject)),
        (true, Operation::Insert) => Operation::Upsert, // idempotent, as the seed promises
        (false, Operation::Upsert) => {
            return Plan::Reject(
                "UPSERT needs an external ID field; this connector runs in Native ID mode \
                 (set salesforce.external.id.field)"
                    .into(),
            )
        }
        (_, op) => op,
    };
    // SPEC §12: a Native ID INSERT becomes an UPSERT on the idempotency field, keyed by where the
    // record was read from Kafka, so writing it again updates the record it created.
    let idempotency_field = cfg.idempotency_field.as_deref().filter(|_| op == Operation::Insert);

    let key = if idempotency_field.is_some() {
        Some(record.idempotency_value())
    } else if op == Operation::Insert {
        None // Native ID mode INSERT: Salesforce assigns the Id, the key is not used
    } else {
        let canonical = key_text(&record.key, op, tombstone).and_then(|text| match external_id_field {
            // A URL path cannot carry these as a segment: every HTTP client resolves them as
            // "this" and "parent" directory, and the request would address another resource.
            Some(_) if cfg.write_mode == crate::config::WriteMode::Single && matches!(text.as_str(), "." | "..") => Err(format!(
                "the key '{text}' cannot be sent in SINGLE mode, where the external ID is a URL path segment; \
                 COLLECTIONS mode sends it in the request body"
            )),
            Some(_) => external_id.canonical_key(&text),
            None => ids::canonical(&text).map_err(|why| {
                format!("{op} in Native ID mode needs a Salesforce record Id as the key, but '{}' is not one: {why}", shown(&text))
            }),
        });
        match canonical {
            Ok(key) => Some(key),
            Err(reason) => return Plan::Reject(reason),
        }
    };

    let fields = if op == Operation::Delete {
        Vec::new()
    } else {
        if let Some(field) = idempotency_field {
            if let Some(name) = field_named(&record.value, field) {
                return Plan::Reject(format!(
                    "the value has a field '{name}', which is salesforce.idempotency.field: the connector fills it with \
                     the record's topic:partition:offset, and a value of the record's own would let two records \
                     share one Salesforce record. Remove the field from the value (e.g. with a ReplaceField SMT)"
                ));
            }
        }
        let value = match without_reserved_fields(&record.value, op, key.as_deref(), cfg.external_id_mode()) {
            Ok(value) => value,
            Err(reason) => return Plan::Reject(reason),
        };
        let ext = external_id_field
            .zip(key.as_deref())
            .map(|(field, key)| ExternalId { field, key, numeric: external_id.is_numeric() });
        match fields_fragment(value.as_ref().unwrap_or(&record.value), ext.as_ref(), cfg.skip_null_fields) {
            Ok(fields) => fields,
            Err(e) => return Plan::Reject(e.0),
        }
    };
    let op = if idempotency_field.is_some() { Operation::Upsert } else { op };
    Plan::Write(PlannedWrite { sobject: Arc::clone(&target.sobject), op, key, fields: Arc::from(fields) })
}

/// Why a record of `sobject` cannot be written in External ID mode without a field for it.
pub fn no_external_id_field(sobject: &str) -> String {
    format!(
        "SObject '{sobject}' has no external ID field: salesforce.external.id.field.map does not list it and \
         salesforce.external.id.field is not set. Add {sobject}:<field> to salesforce.external.id.field.map"
    )
}

/// The name of `value`'s top-level field `field` (Salesforce field names are case-insensitive).
fn field_named<'a>(value: &Value<'a>, field: &str) -> Option<&'a str> {
    let (Value::Struct(fields) | Value::Map(fields)) = value else { return None };
    fields.iter().map(|(name, _)| *name).find(|name| name.eq_ignore_ascii_case(field))
}

/// SPEC §2: nothing in a value may change which SObject or which record a request addresses. The
/// connector writes `attributes` and the Id itself; a value field of either name (in any case:
/// Salesforce field names are case-insensitive) could override them wherever a parser keeps the
/// last duplicate key. An `Id` equal to the key of a Native ID UPDATE is harmless and left out
/// (`Some(value)` without it); `None` means the value is fine as it is.
fn without_reserved_fields<'a>(
    value: &Value<'a>,
    op: Operation,
    key: Option<&str>,
    external_id_mode: bool,
) -> Result<Option<Value<'a>>, String> {
    let (Value::Struct(fields) | Value::Map(fields)) = value else { return Ok(None) };
    let mut drop_id = false;
    for (name, field) in fields {
        if name.eq_ignore_ascii_case("attributes") {
            return Err(format!(
                "the value has a field named '{name}', which is reserved: Salesforce reads it as the record's type"
            ));
        }
        if name.eq_ignore_ascii_case("Id") {
            let same_record = !external_id_mode
                && op == Operation::Update
                && crate::convert::scalar_text(field).and_then(|t| ids::to_18(&t)).as_deref() == key;
            if !same_record {
                return Err(format!(
                    "the value has a field named '{name}', which is reserved: the record key names the record                      (a value's Id may only repeat the key of a Native ID UPDATE)"
                ));
            }
            drop_id = true;
        }
    }
    if !drop_id {
        return Ok(None);
    }
    let kept = fields.iter().filter(|(name, _)| !name.eq_ignore_ascii_case("Id")).cloned().collect();
    Ok(Some(match value {
        Value::Struct(_) => Value::Struct(kept),
        _ => Value::Map(kept),
    }))
}

fn requested_operation(cfg: &Config, record: &Record<'_>) -> Result<Operation, String> {
    let Some(header_name) = &cfg.header_routing else { return Ok(cfg.operation) };
    let text = match &record.operation_header {
        OperationHeader::Absent => return Ok(cfg.operation),
        OperationHeader::Text(s) => *s,
        OperationHeader::Bytes(b) => std::str::from_utf8(b).map_err(|_| {
            format!("operation header '{header_name}' holds {} bytes that are not UTF-8 text", b.len())
        })?,
        OperationHeader::OtherType(java_type) => {
            return Err(format!(
                "operation header '{header_name}' is a {java_type}; expected a string or bytes holding INSERT, UPDATE, DELETE or UPSERT"
            ))
        }
    };
    // salesforce.operation.header.mapping first (Debezium's c/r/u/d), case-insensitively; values
    // it does not list keep their usual meaning.
    let trimmed = text.trim();
    if let Some((_, op)) = cfg.header_mapping.iter().find(|(value, _)| value.eq_ignore_ascii_case(trimmed)) {
        return Ok(*op);
    }
    Operation::parse(text).ok_or_else(|| {
        // Escaped: the value goes into logs and DLQ headers, where raw control characters do harm.
        let shown = shown(text);
        let mapped = if cfg.header_mapping.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = cfg.header_mapping.iter().map(|(v, op)| format!("{v}:{op}")).collect();
            format!(", or a value of salesforce.operation.header.mapping ({})", pairs.join(","))
        };
        format!("operation header '{header_name}' has unknown value '{shown}'; expected INSERT, UPDATE, DELETE or UPSERT{mapped}")
    })
}

fn key_text(key: &Value<'_>, op: Operation, tombstone: bool) -> Result<String, String> {
    match scalar_text(key) {
        Some(text) if !text.trim().is_empty() => Ok(text),
        Some(_) => Err(format!("{op} needs a record key, but the key is empty")),
        None if matches!(key, Value::Null) && tombstone => {
            Err("tombstone (null value) with a null key: there is no record to DELETE".into())
        }
        None if matches!(key, Value::Null) => Err(format!("{op} needs a record key, but the key is null")),
        None => Err(format!(
            "{op} needs a String or integer key, but the key is {}",
            key.type_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::base;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        let mut m = base();
        for (k, v) in pairs {
            m.insert((*k).into(), (*v).into());
        }
        Config::from_map(&m).unwrap()
    }

    fn plan_record(cfg: &Config, record: &Record<'_>) -> Plan {
        super::plan_record(cfg, ExternalIdKind::Text, record)
    }

    fn rec<'a>(key: Value<'a>, value: Value<'a>, header: OperationHeader<'a>) -> Record<'a> {
        Record { topic: "t", partition: 0, offset: 0, key, value, operation_header: header, original: None }
    }

    fn fields<'a>() -> Value<'a> {
        Value::Map(vec![("LastName", Value::String("L"))])
    }

    fn op_of(p: Plan) -> Operation {
        match p {
            Plan::Write(w) => w.op,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn native_id_mode_table() {
        let c = cfg(&[("salesforce.operation.header.enabled", "true")]);
        let r = |h| rec(Value::String("003000000000001AAA"), fields(), OperationHeader::Text(h));
        assert!(matches!(plan_record(&c, &r("INSERT")), Plan::Write(PlannedWrite { op: Operation::Insert, key: None, .. })));
        assert_eq!(op_of(plan_record(&c, &r("update"))), Operation::Update);
        assert_eq!(op_of(plan_record(&c, &r("Delete"))), Operation::Delete);
        assert!(matches!(plan_record(&c, &r("UPSERT")), Plan::Reject(m) if m.contains("Native ID mode")));
        // INSERT ignores the key, whatever it is
        let struct_key = rec(Value::Struct(vec![]), fields(), OperationHeader::Absent);
        assert_eq!(op_of(plan_record(&c, &struct_key)), Operation::Insert);
    }

    #[test]
    fn external_id_mode_table() {
        let c = cfg(&[
            ("salesforce.external.id.field", "ExternalId__c"),
            ("salesforce.operation.header.enabled", "true"),
        ]);
        let r = |h| rec(Value::Int(42), fields(), OperationHeader::Text(h));
        match plan_record(&c, &r("INSERT")) {
            Plan::Write(w) => assert_eq!((w.op, w.key.as_deref()), (Operation::Upsert, Some("42"))),
            other => panic!("{other:?}"),
        }
        assert_eq!(op_of(plan_record(&c, &r("UPDATE"))), Operation::Update);
        assert_eq!(op_of(plan_record(&c, &r("DELETE"))), Operation::Delete);
        assert_eq!(op_of(plan_record(&c, &r("UPSERT"))), Operation::Upsert);
    }

    #[test]
    fn idempotency_field_turns_native_inserts_into_upserts_on_kafka_coordinates() {
        let c = cfg(&[("salesforce.idempotency.field", "Kafka_Offset__c"), ("salesforce.operation.header.enabled", "true")]);
        let r = |h, original| Record { topic: "Contact", partition: 3, offset: 42, original, ..rec(Value::Null, fields(), OperationHeader::Text(h)) };
        match plan_record(&c, &r("INSERT", None)) {
            Plan::Write(w) => {
                assert_eq!((w.op, w.key.as_deref()), (Operation::Upsert, Some("Contact:3:42")));
                // the field itself is sent by the request (as the upsert's key), never in the fragment
                assert_eq!(String::from_utf8(w.fields.to_vec()).unwrap(), r#""LastName":"L""#);
            }
            other => panic!("{other:?}"),
        }
        // a renaming SMT: the original coordinates make the value, the topic still routes
        match plan_record(&c, &r("INSERT", Some(("crm.Contact", 0, 7)))) {
            Plan::Write(w) => assert_eq!((w.key.as_deref(), &*w.sobject), (Some("crm.Contact:0:7"), "Contact")),
            other => panic!("{other:?}"),
        }
        // UPDATE and DELETE are untouched: the key is the record Id
        let id = || Value::String("003000000000001AAA");
        let upd = plan_record(&c, &rec(id(), fields(), OperationHeader::Text("UPDATE")));
        assert!(matches!(upd, Plan::Write(PlannedWrite { op: Operation::Update, key: Some(ref k), .. }) if k == "003000000000001AAA"));
        // a value of its own in the field would let two records meet in one Salesforce record
        let carrying = rec(Value::Null, Value::Map(vec![("LastName", Value::String("L")), ("kafka_offset__C", Value::String("x"))]), OperationHeader::Absent);
        assert!(matches!(plan_record(&c, &carrying), Plan::Reject(m) if m.contains("salesforce.idempotency.field") && m.contains("kafka_offset__C")), "{:?}", plan_record(&c, &carrying));
        // without the key: a plain INSERT, as before
        assert!(matches!(plan_record(&cfg(&[]), &r("INSERT", None)), Plan::Write(PlannedWrite { op: Operation::Insert, key: None, .. })));
    }

    #[test]
    fn external_id_field_map_names_each_sobjects_field() {
        let c = cfg(&[
            ("salesforce.sobject.type", "${topic}"),
            ("salesforce.operation", "UPSERT"),
            ("salesforce.external.id.field.map", "Contact:ExternalId__c,Account:AccountNumber__c"),
        ]);
        let to = |sobject: &str| Target { sobject: Arc::from(sobject), external_id: ExternalIdKind::Text };
        let value = |field: &'static str| Value::Map(vec![("Name", Value::String("N")), (field, Value::String("A-1"))]);
        let r = |v| rec(Value::String("A-1"), v, OperationHeader::Absent);
        // each SObject's own field is dropped from the value when it repeats the key...
        match plan_record_for(&c, &to("Account"), &r(value("AccountNumber__c"))) {
            Plan::Write(w) => assert_eq!(String::from_utf8(w.fields.to_vec()).unwrap(), r#""Name":"N""#),
            other => panic!("{other:?}"),
        }
        // ...and another SObject's field is an ordinary field
        match plan_record_for(&c, &to("Contact"), &r(value("AccountNumber__c"))) {
            Plan::Write(w) => assert!(String::from_utf8(w.fields.to_vec()).unwrap().contains("AccountNumber__c")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(plan_record_for(&c, &to("Lead"), &r(value("X"))), Plan::Reject(m) if m.contains("Lead:<field>")));
    }

    #[test]
    fn header_routing_rejects_what_it_cannot_read() {
        let c = cfg(&[("salesforce.operation.header.enabled", "true")]);
        let k = || Value::String("003000000000001AAA");
        let bad = [
            OperationHeader::Text("MERGE"),
            OperationHeader::Bytes(&[0xff, 0xfe]),
            OperationHeader::OtherType("java.lang.Integer"),
        ];
        for h in bad {
            assert!(matches!(plan_record(&c, &rec(k(), fields(), h)), Plan::Reject(m) if m.contains("operation header")));
        }
        assert_eq!(op_of(plan_record(&c, &rec(k(), fields(), OperationHeader::Bytes(b"DELETE")))), Operation::Delete);
        // routing disabled: the header is ignored
        let off = cfg(&[]);
        assert_eq!(op_of(plan_record(&off, &rec(k(), fields(), OperationHeader::Text("MERGE")))), Operation::Insert);
    }

    #[test]
    fn header_mapping_for_debezium() {
        let c = cfg(&[
            ("salesforce.external.id.field", "Ext__c"),
            ("salesforce.operation", "UPSERT"),
            ("salesforce.operation.header.enabled", "true"),
            ("salesforce.operation.header.name", "__op"),
            ("salesforce.operation.header.mapping", "c:UPSERT,r:UPSERT,u:UPSERT,d:DELETE"),
        ]);
        let r = |h| rec(Value::String("K"), fields(), OperationHeader::Text(h));
        assert_eq!(op_of(plan_record(&c, &r("c"))), Operation::Upsert);
        assert_eq!(op_of(plan_record(&c, &r("U"))), Operation::Upsert);
        assert_eq!(op_of(plan_record(&c, &r("D"))), Operation::Delete);
        assert_eq!(op_of(plan_record(&c, &rec(Value::String("K"), fields(), OperationHeader::Bytes(b"d")))), Operation::Delete);
        // a Debezium delete turned into a tombstone by the SMT, header kept
        assert_eq!(op_of(plan_record(&c, &rec(Value::String("K"), Value::Null, OperationHeader::Text("d")))), Operation::Delete);
        // unmapped values keep their usual meaning
        assert_eq!(op_of(plan_record(&c, &r("update"))), Operation::Update);
        match plan_record(&c, &r("t")) {
            Plan::Reject(m) => assert!(m.contains("'t'") && m.contains("c:UPSERT,r:UPSERT,u:UPSERT,d:DELETE"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tombstones() {
        let k = || Value::String("K");
        let skip = cfg(&[("salesforce.external.id.field", "Ext__c")]);
        assert_eq!(plan_record(&skip, &rec(k(), Value::Null, OperationHeader::Absent)), Plan::Skip);
        let del = cfg(&[("salesforce.external.id.field", "Ext__c"), ("salesforce.tombstone.delete", "true")]);
        assert_eq!(op_of(plan_record(&del, &rec(k(), Value::Null, OperationHeader::Absent))), Operation::Delete);
        assert!(matches!(
            plan_record(&del, &rec(Value::Null, Value::Null, OperationHeader::Absent)),
            Plan::Reject(m) if m.contains("null key")
        ));
    }

    #[test]
    fn keys_and_values_that_cannot_be_written() {
        let c = cfg(&[("salesforce.external.id.field", "Ext__c"), ("salesforce.operation", "UPSERT")]);
        for key in [Value::Null, Value::Struct(vec![]), Value::Map(vec![]), Value::Bytes(b"k"), Value::Float64(1.0), Value::String(" ")] {
            assert!(matches!(plan_record(&c, &rec(key, fields(), OperationHeader::Absent)), Plan::Reject(_)));
        }
        let string_value = rec(Value::String("k"), Value::String("{}"), OperationHeader::Absent);
        assert!(matches!(plan_record(&c, &string_value), Plan::Reject(m) if m.contains("String")));
    }

    #[test]
    fn native_keys_are_ids_in_their_18_character_form() {
        let c = cfg(&[("salesforce.operation", "DELETE")]);
        let key_of = |k: &'static str| match plan_record(&c, &rec(Value::String(k), fields(), OperationHeader::Absent)) {
            Plan::Write(w) => Ok(w.key.unwrap()),
            Plan::Reject(m) => Err(m),
            Plan::Skip => panic!(),
        };
        assert_eq!(key_of("001A0000006Vm9r").unwrap(), "001A0000006Vm9rIAC");
        assert_eq!(key_of("001A0000006Vm9riac").unwrap(), "001A0000006Vm9rIAC");
        // issue 8, item 1: a comma list would delete both records in one Collections DELETE
        let err = key_of("003000000000001AAA,003000000000002AAA").unwrap_err();
        assert!(err.contains("'003000000000001AAA,003000000000002AAA' is not one"), "{err}");
        for bad in ["003000000000001AAA/../x", "%2C", "00300000000001", "0030000000000010000", "003000000000001AAB"] {
            assert!(key_of(bad).is_err(), "{bad}");
        }
        let w = |sobject: &str, key: &str| PlannedWrite { sobject: sobject.into(), op: Operation::Update, key: Some(key.into()), fields: Arc::default() };
        assert_eq!(w("Contact", "Key-A").ordering_key(true), w("contact", "key-a").ordering_key(true));
        // one external ID on two SObjects names two records
        assert_ne!(w("Contact", "K").ordering_key(true), w("Account", "K").ordering_key(true));
    }

    #[test]
    fn numeric_external_ids_are_canonical_decimals() {
        let c = cfg(&[("salesforce.external.id.field", "Num__c"), ("salesforce.operation", "UPSERT")]);
        let kind = ExternalIdKind::Number { precision: 18, scale: 0 };
        let plan = |k: Value<'static>| super::plan_record(&c, kind, &rec(k, fields(), OperationHeader::Absent));
        assert!(matches!(plan(Value::String("007")), Plan::Write(w) if w.key.as_deref() == Some("7")));
        assert!(matches!(plan(Value::Int(-12)), Plan::Write(w) if w.key.as_deref() == Some("-12")));
        for bad in ["NaN", "inf", "+5", ".5", "1e3", "abc", "1.5"] {
            assert!(matches!(plan(Value::String(bad)), Plan::Reject(_)), "{bad}");
        }
    }

    #[test]
    fn reserved_field_names_cannot_retarget_a_request() {
        let c = cfg(&[("salesforce.operation.header.enabled", "true")]);
        let id = "003000000000001AAA";
        let with = |name: &'static str, v: Value<'static>, op: &'static str| {
            plan_record(&c, &rec(Value::String(id), Value::Map(vec![("LastName", Value::String("L")), (name, v)]), OperationHeader::Text(op)))
        };
        let account = || Value::Map(vec![("type", Value::String("Account"))]);
        for op in ["INSERT", "UPDATE"] {
            assert!(matches!(with("attributes", account(), op), Plan::Reject(m) if m.contains("reserved")), "{op}");
            assert!(matches!(with("ATTRIBUTES", account(), op), Plan::Reject(m) if m.contains("reserved")), "{op}");
            assert!(matches!(with("id", Value::String("003000000000002AAA"), op), Plan::Reject(m) if m.contains("reserved")), "{op}");
        }
        assert!(matches!(with("Id", Value::String("003000000000001AAA"), "INSERT"), Plan::Reject(_)));
        // an UPDATE's Id equal to its key (in either form) is left out of the fields
        match with("Id", Value::String("003000000000001"), "UPDATE") {
            Plan::Write(w) => assert_eq!(String::from_utf8(w.fields.to_vec()).unwrap(), r#""LastName":"L""#),
            other => panic!("{other:?}"),
        }
        let ext = cfg(&[("salesforce.external.id.field", "Ext__c"), ("salesforce.operation", "UPDATE")]);
        let r = rec(Value::String("k"), Value::Map(vec![("Id", Value::String(id))]), OperationHeader::Absent);
        assert!(matches!(plan_record(&ext, &r), Plan::Reject(m) if m.contains("reserved")));
    }
}
