//! Record-level write semantics shared by the single-record routes and sObject Collections:
//! insert, update, upsert and delete with Salesforce's record-level rules (createable/updateable,
//! length, email syntax, references, parent lookups by external ID, required fields, unique
//! values). A failure here fails one record; it never touches the store.

use serde_json::{Map, Value};

use crate::state::{match_key, normalize_id, now_ms, FieldDef, FieldType, ObjectDef, Record, Store};
use crate::validate::{is_email, Prepared, SfError};

/// What to restore if an allOrNone request has to roll back: the record as it was before.
pub struct Undo {
    pub object: String,
    pub id: String,
    pub prev: Option<Record>,
}

/// Undoes writes in reverse order (allOrNone rollback).
pub fn rollback(store: &mut Store, undo: Vec<Undo>) {
    for u in undo.into_iter().rev() {
        store.table_mut(&u.object).put(&u.id, u.prev);
        store.records_written = store.records_written.saturating_sub(1);
    }
}

pub enum UpsertError {
    Sf(SfError),
    /// More than one record has the external ID value (HTTP 300 on the single-record route).
    Multiple(Vec<String>),
}

impl From<SfError> for UpsertError {
    fn from(e: SfError) -> Self {
        UpsertError::Sf(e)
    }
}

/// Parses an Id from a URL or a Collections request for object `def`.
/// `Ok(None)` means "not shaped like an Id at all" (the caller chooses the error).
pub fn parse_id_for(def: &ObjectDef, raw: &str) -> Result<Option<String>, SfError> {
    let shaped = (raw.len() == 15 || raw.len() == 18) && raw.bytes().all(|c| c.is_ascii_alphanumeric());
    if !shaped {
        return Ok(None);
    }
    match normalize_id(raw) {
        Some(id) if id.starts_with(&def.key_prefix) => Ok(Some(id)),
        _ => Err(SfError::new(
            400,
            "MALFORMED_ID",
            format!("{} ID: id value of incorrect type: {raw}", def.label),
        )
        .with_fields(&["Id"])),
    }
}

/// A record's state for a write: live, deleted or never seen.
fn existing<'a>(store: &'a Store, def: &ObjectDef, id: &str) -> Result<&'a Record, SfError> {
    match store.table(&def.name).records.get(id) {
        None => Err(SfError::not_found()),
        Some(r) if r.deleted => Err(SfError::entity_is_deleted()),
        Some(r) => Ok(r),
    }
}

pub fn insert(store: &mut Store, def: &ObjectDef, p: &Prepared, undo: Option<&mut Vec<Undo>>) -> Result<String, SfError> {
    if p.id.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(SfError::new(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call")
            .with_fields(&["Id"]));
    }
    let fields = build(store, def, None, p, true)?;
    check_unique(store, def, None, &fields)?;
    let id = store.new_id(&def.key_prefix);
    let now = now_ms();
    let rec = Record { id: id.clone(), fields, created_ms: now, created_us: crate::state::now_us(), modified_ms: now, deleted: false };
    if let Some(u) = undo {
        u.push(Undo { object: def.name.clone(), id: id.clone(), prev: None });
    }
    store.table_mut(&def.name).put(&id, Some(rec));
    store.records_written += 1;
    Ok(id)
}

pub fn update(
    store: &mut Store,
    def: &ObjectDef,
    id: &str,
    p: &Prepared,
    undo: Option<&mut Vec<Undo>>,
) -> Result<(), SfError> {
    let old = existing(store, def, id)?;
    let fields = build(store, def, Some(&old.fields), p, false)?;
    check_unique(store, def, Some(id), &fields)?;
    let mut rec = old.clone();
    if let Some(u) = undo {
        u.push(Undo { object: def.name.clone(), id: id.to_string(), prev: Some(old.clone()) });
    }
    rec.fields = fields;
    rec.modified_ms = now_ms();
    store.table_mut(&def.name).put(id, Some(rec));
    store.records_written += 1;
    Ok(())
}

pub fn delete(store: &mut Store, def: &ObjectDef, id: &str, undo: Option<&mut Vec<Undo>>) -> Result<(), SfError> {
    let old = existing(store, def, id)?;
    let mut rec = old.clone();
    if let Some(u) = undo {
        u.push(Undo { object: def.name.clone(), id: id.to_string(), prev: Some(old.clone()) });
    }
    rec.deleted = true;
    rec.modified_ms = now_ms();
    store.table_mut(&def.name).put(id, Some(rec));
    store.records_written += 1;
    Ok(())
}

/// Live records of `def` whose `field` equals `key` (text compared case-insensitively).
pub fn find(store: &Store, def: &ObjectDef, field: &FieldDef, key: &Value) -> Vec<String> {
    match match_key(key) {
        Some(k) => store.table(&def.name).find_by(&field.name, &k),
        None => vec![],
    }
}

/// Upsert by `ext` (an External ID / idLookup field, or Id) with value `key`.
/// Returns the record Id and whether it was created.
pub fn upsert(
    store: &mut Store,
    def: &ObjectDef,
    ext: usize,
    key: &Value,
    p: &mut Prepared,
    update_only: bool,
    undo: Option<&mut Vec<Undo>>,
) -> Result<(String, bool), UpsertError> {
    let field = &def.fields[ext];
    if p.id.as_ref().is_some_and(|v| !v.is_null()) && field.ftype != FieldType::Id {
        return Err(SfError::new(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Id. Please check the security settings of this field and verify that it is read/write for your profile or permission set.")
            .with_fields(&["Id"])
            .into());
    }
    let matches = find(store, def, field, key);
    match matches.len() {
        0 => {
            if update_only || field.ftype == FieldType::Id {
                return Err(SfError::not_found().into());
            }
            if !p.values.iter().any(|(i, _)| *i == ext) {
                p.values.push((ext, key.clone()));
            }
            Ok((insert(store, def, p, undo)?, true))
        }
        1 => {
            // The matched record keeps its stored key text unless the body sets it.
            update(store, def, &matches[0], p, undo)?;
            Ok((matches[0].clone(), false))
        }
        _ => Err(UpsertError::Multiple(matches)),
    }
}

fn unable_to_write(f: &FieldDef) -> SfError {
    SfError::new(
        400,
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        format!(
            "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
            f.name
        ),
    )
    .with_fields(&[&f.name])
}

/// The record's fields after applying `p` to `base`, or the first record-level error.
fn build(
    store: &Store,
    def: &ObjectDef,
    base: Option<&Map<String, Value>>,
    p: &Prepared,
    create: bool,
) -> Result<Map<String, Value>, SfError> {
    let mut fields = base.cloned().unwrap_or_default();
    for (idx, v) in &p.values {
        let f = &def.fields[*idx];
        if (create && !f.createable) || (!create && !f.updateable) {
            return Err(unable_to_write(f));
        }
        let v = check_value(store, f, v)?;
        set(&mut fields, f, v);
    }
    for l in &p.lookups {
        let f = &def.fields[l.field];
        if (create && !f.createable) || (!create && !f.updateable) {
            return Err(unable_to_write(f));
        }
        let v = resolve_parent(store, l.parent.as_str(), l.key.as_ref())?;
        set(&mut fields, f, v);
    }
    let missing: Vec<&str> = def
        .fields
        .iter()
        .filter(|f| !f.nillable && f.createable && !f.defaulted_on_create)
        .filter(|f| fields.get(&f.name).is_none_or(Value::is_null))
        .map(|f| f.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(SfError::new(400, "REQUIRED_FIELD_MISSING", format!("Required fields are missing: [{}]", missing.join(", ")))
            .with_fields(&missing));
    }
    Ok(fields)
}

/// `null` clears a field; a checkbox cannot be null in Salesforce and becomes false.
fn set(fields: &mut Map<String, Value>, f: &FieldDef, v: Value) {
    if v.is_null() {
        if f.ftype == FieldType::Boolean {
            fields.insert(f.name.clone(), Value::Bool(false));
        } else {
            fields.remove(&f.name);
        }
    } else {
        fields.insert(f.name.clone(), v);
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 255 {
        format!("{}...", s.chars().take(255).collect::<String>())
    } else {
        s.to_string()
    }
}

fn check_value(store: &Store, f: &FieldDef, v: &Value) -> Result<Value, SfError> {
    let Value::String(s) = v else {
        if let Value::Number(n) = v {
            check_number(f, n)?;
        }
        return Ok(v.clone());
    };
    if f.ftype.is_text() || f.ftype == FieldType::Base64 {
        if f.length > 0 && s.chars().count() > f.length as usize {
            return Err(SfError::new(
                400,
                "STRING_TOO_LONG",
                format!("{}: data value too large: {} (max length={})", f.label, shorten(s), f.length),
            )
            .with_fields(&[&f.name]));
        }
        if f.ftype == FieldType::Email && !is_email(s) {
            return Err(SfError::new(400, "INVALID_EMAIL_ADDRESS", format!("{}: invalid email address: {s}", f.label))
                .with_fields(&[&f.name]));
        }
    }
    if f.ftype == FieldType::Reference {
        let wrong_type =
            || SfError::new(400, "MALFORMED_ID", format!("{}: id value of incorrect type: {s}", f.label)).with_fields(&[&f.name]);
        let id = normalize_id(s).ok_or_else(wrong_type)?;
        let Some((obj, rec)) = store.get_record(&id) else {
            let known_type = store.prefixes.get(&id[..3]);
            return Err(match known_type {
                Some(t) if !f.reference_to.iter().any(|r| r.eq_ignore_ascii_case(t)) => SfError::new(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    format!("{}: id value of incorrect type: {s}", f.label),
                )
                .with_fields(&[&f.name]),
                _ => SfError::new(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id").with_fields(&[&f.name]),
            });
        };
        if !f.reference_to.iter().any(|r| r.eq_ignore_ascii_case(&obj.name)) {
            return Err(SfError::new(400, "FIELD_INTEGRITY_EXCEPTION", format!("{}: id value of incorrect type: {s}", f.label))
                .with_fields(&[&f.name]));
        }
        if rec.deleted {
            return Err(SfError::new(400, "ENTITY_IS_DELETED", "entity is deleted").with_fields(&[&f.name]));
        }
        return Ok(Value::String(id));
    }
    Ok(v.clone())
}

/// A double may have at most precision - scale digits left of the point, an int at most `digits`.
fn check_number(f: &FieldDef, n: &serde_json::Number) -> Result<(), SfError> {
    let int_digits = match f.ftype {
        FieldType::Int if f.digits > 0 => f.digits,
        t if t.is_double() && f.precision > 0 => f.precision.saturating_sub(f.scale),
        _ => return Ok(()),
    };
    let limit = 10f64.powi(int_digits as i32);
    if n.as_f64().is_some_and(|x| x.is_finite() && x.abs() < limit) {
        return Ok(());
    }
    Err(SfError::new(
        400,
        "NUMBER_OUTSIDE_VALID_RANGE",
        format!("{}: value outside of valid range on numeric field: {n}", f.label),
    )
    .with_fields(&[&f.name]))
}

/// `"Account": {"AccountNumber__c": "A-1"}` -> the parent's Id.
fn resolve_parent(store: &Store, parent: &str, key: Option<&(String, Value)>) -> Result<Value, SfError> {
    let Some((fname, value)) = key else { return Ok(Value::Null) };
    let pdef = store
        .object(parent)
        .ok_or_else(|| SfError::new(400, "INVALID_TYPE", format!("sObject type '{parent}' is not supported.")))?;
    let pf = pdef
        .field(fname)
        .filter(|f| f.external_id || f.id_lookup)
        .ok_or_else(|| SfError::new(400, "INVALID_FIELD", format!("Field {fname} is not an External ID or indexed field for {}", pdef.name)))?;
    let shown = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let ids = find(store, &pdef, pf, value);
    match ids.len() {
        1 => Ok(Value::String(ids[0].clone())),
        0 => Err(SfError::new(
            400,
            "INVALID_FIELD",
            format!("Foreign key external ID: {shown} not found for field {} in entity {}", pf.name, pdef.name),
        )
        .with_fields(&[])),
        _ => Err(SfError::new(
            400,
            "DUPLICATE_EXTERNAL_ID",
            format!("Foreign key external ID: {shown} matched more than one record for field {} in entity {}", pf.name, pdef.name),
        )
        .with_fields(&[])),
    }
}

fn check_unique(store: &Store, def: &ObjectDef, self_id: Option<&str>, fields: &Map<String, Value>) -> Result<(), SfError> {
    for f in def.fields.iter().filter(|f| f.unique && f.ftype != FieldType::Id) {
        let Some(k) = fields.get(&f.name).and_then(match_key) else { continue };
        let ids = store.table(&def.name).find_by(&f.name, &k);
        if let Some(other) = ids.iter().find(|i| Some(i.as_str()) != self_id) {
            return Err(SfError::new(
                400,
                "DUPLICATE_VALUE",
                format!("duplicate value found: {} duplicates value on record with id: {other}", f.name),
            )
            .with_fields(&[&f.name]));
        }
    }
    Ok(())
}

/// The external ID field named in a URL: it must exist and be an External ID or idLookup field.
pub fn ext_field(def: &ObjectDef, name: &str) -> Result<usize, SfError> {
    def.field_index(name)
        .filter(|&i| def.fields[i].external_id || def.fields[i].id_lookup)
        .ok_or_else(|| SfError::new(404, "NOT_FOUND", format!("Provided external ID field does not exist or is not accessible: {name}")))
}
