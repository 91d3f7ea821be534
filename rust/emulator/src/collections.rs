//! sObject Collections (`/composite/sobjects`): insert, update, upsert and delete of up to 200
//! records in one request. Always HTTP 200 with one result per input record, in request order,
//! unless the request itself is malformed (then HTTP 400 with Salesforce's error array):
//! more than 200 records, a body that does not deserialize, unknown columns or types.
//!
//! `allOrNone=true`: when any record fails nothing is kept; failed records report their error,
//! the others ALL_OR_NONE_OPERATION_ROLLED_BACK.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

use crate::app::{Ctx, Reply};
use crate::dml::{self, ext_field, Undo, UpsertError};
use crate::state::{match_key, normalize_id, ObjectDef, Store};
use crate::validate::{prepare, Prepared, SfError};

pub const MAX_RECORDS: usize = 200;

fn too_many() -> SfError {
    SfError::new(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call")
}

fn rolled_back() -> SfError {
    SfError::new(
        400,
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "Record rolled back because not all records were valid and the request was using AllOrNone header",
    )
    .with_fields(&[])
}

/// `{"allOrNone": bool, "records": [...]}`
fn parse_body<'a>(ctx: &'a Ctx) -> Result<(bool, &'a Vec<Value>), SfError> {
    let body = ctx.body_object()?;
    let all_or_none = match body.get("allOrNone") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
            s.eq_ignore_ascii_case("true")
        }
        Some(_) => {
            return Err(SfError::new(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of boolean for allOrNone"))
        }
    };
    let records = match body.get("records") {
        Some(Value::Array(a)) => a,
        _ => return Err(SfError::new(400, "JSON_PARSER_ERROR", "Cannot deserialize: the request must have a records array")),
    };
    if records.len() > MAX_RECORDS {
        return Err(too_many());
    }
    Ok((all_or_none, records))
}

/// Each record's object (from `attributes.type`, or the URL for upserts) and prepared body.
fn prepare_all(store: &Store, ctx: &Ctx, records: &[Value], url_type: Option<&Arc<ObjectDef>>) -> Result<Vec<(Arc<ObjectDef>, Prepared)>, SfError> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let Value::Object(m) = r else {
            return Err(SfError::new(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sobject from a non-object value"));
        };
        let ty = m.get("attributes").and_then(|a| a.get("type")).and_then(Value::as_str);
        let def = match (ty, url_type) {
            (Some(t), _) => store.object(t).ok_or_else(|| {
                SfError::new(
                    400,
                    "INVALID_TYPE",
                    format!("sObject type '{t}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."),
                )
            })?,
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(SfError::new(
                    400,
                    "INVALID_TYPE",
                    "When creating or updating sObjects, the sObject type must be specified in the attributes of each record",
                ))
            }
        };
        if let Some(u) = url_type {
            if !Arc::ptr_eq(u, &def) {
                return Err(SfError::new(400, "INVALID_TYPE", format!("Record of type {} does not match the URL's sObject type {}", def.name, u.name)));
            }
        }
        let p = prepare(&def, m, ctx.raw)?;
        out.push((def, p));
    }
    Ok(out)
}

enum Outcome {
    /// `new_record`: the record did not exist before this request (its Id vanishes on rollback).
    Ok { id: String, created: Option<bool>, new_record: bool },
    Failed { id: Option<String>, error: SfError },
}

/// Entry `i` of a Collections request as text, for record_error rules that pick records.
fn record_text(ctx: &Ctx, i: usize) -> String {
    match ctx.json {
        Some(Ok(body)) => body["records"].get(i).map(ToString::to_string).unwrap_or_default(),
        _ => ctx.param("ids").and_then(|ids| ids.split(',').nth(i).map(str::to_owned)).unwrap_or_default(),
    }
}

/// Runs one record operation per entry, applying allOrNone and the record_error faults, and
/// builds the results array.
fn run(
    store: &mut Store,
    ctx: &Ctx,
    all_or_none: bool,
    n: usize,
    upsert: bool,
    mut op: impl FnMut(&mut Store, usize, Option<&mut Vec<Undo>>) -> Outcome,
    pre_failed: &HashMap<usize, (Option<String>, SfError)>,
) -> Reply {
    let mut undo: Vec<Undo> = vec![];
    let mut outcomes = Vec::with_capacity(n);
    for i in 0..n {
        if let Some((id, e)) = pre_failed.get(&i) {
            outcomes.push(Outcome::Failed { id: id.clone(), error: e.clone() });
            continue;
        }
        if let Some(e) = store.faults.record_error(ctx.record_rules, &record_text(ctx, i)) {
            outcomes.push(Outcome::Failed { id: None, error: e });
            continue;
        }
        let u = if all_or_none { Some(&mut undo) } else { None };
        outcomes.push(op(store, i, u));
    }
    let any_failed = outcomes.iter().any(|o| matches!(o, Outcome::Failed { .. }));
    if all_or_none && any_failed {
        dml::rollback(store, undo);
    }
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|o| {
            let (id, success, errors, created) = match o {
                Outcome::Ok { id, created, .. } if !(all_or_none && any_failed) => (Some(id), true, vec![], created),
                Outcome::Ok { id, created, new_record } => {
                    ((!new_record).then_some(id), false, vec![rolled_back().collection_error()], created.map(|_| false))
                }
                Outcome::Failed { id, error } => (id, false, vec![error.collection_error()], upsert.then_some(false)),
            };
            let mut m = Map::new();
            m.insert("id".into(), id.map(Value::String).unwrap_or(Value::Null));
            m.insert("success".into(), Value::Bool(success));
            m.insert("errors".into(), Value::Array(errors));
            if upsert {
                m.insert("created".into(), Value::Bool(created.unwrap_or(false)));
            }
            Value::Object(m)
        })
        .collect();
    Reply::json(200, &Value::Array(results)).records(n)
}

pub fn insert(store: &mut Store, ctx: &Ctx) -> Reply {
    let prepared = parse_body(ctx).and_then(|(aon, recs)| Ok((aon, prepare_all(store, ctx, recs, None)?)));
    let (aon, prepared) = match prepared {
        Ok(x) => x,
        Err(e) => return Reply::error(&e),
    };
    let n = prepared.len();
    run(
        store,
        ctx,
        aon,
        n,
        false,
        |store, i, undo| {
            let (def, p) = &prepared[i];
            match dml::insert(store, def, p, undo) {
                Ok(id) => Outcome::Ok { id, created: None, new_record: true },
                Err(error) => Outcome::Failed { id: None, error },
            }
        },
        &HashMap::new(),
    )
}

/// A Collections record error about an Id (no HTTP status of its own; fields empty).
pub(crate) fn id_error(code: &str, message: String) -> SfError {
    SfError::new(400, code, message).with_fields(&[])
}

/// Record-level errors for an Id that names no live record in a Collections request.
pub(crate) fn collection_write_error(e: SfError) -> SfError {
    match e.code.as_str() {
        "NOT_FOUND" => id_error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id".into()),
        "ENTITY_IS_DELETED" => id_error("ENTITY_IS_DELETED", "entity is deleted".into()),
        _ => e,
    }
}

/// Marks every entry whose key occurs more than once in the request.
pub(crate) fn duplicates(keys: &[Option<String>], error: impl Fn(usize) -> (Option<String>, SfError)) -> HashMap<usize, (Option<String>, SfError)> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for k in keys.iter().flatten() {
        *count.entry(k.as_str()).or_default() += 1;
    }
    keys.iter()
        .enumerate()
        .filter(|(_, k)| k.as_deref().is_some_and(|k| count[k] > 1))
        .map(|(i, _)| (i, error(i)))
        .collect()
}

pub fn update(store: &mut Store, ctx: &Ctx) -> Reply {
    let prepared = parse_body(ctx).and_then(|(aon, recs)| Ok((aon, prepare_all(store, ctx, recs, None)?)));
    let (aon, prepared) = match prepared {
        Ok(x) => x,
        Err(e) => return Reply::error(&e),
    };
    // Resolve each record's Id first: missing, malformed and duplicate Ids fail that record only.
    let mut ids: Vec<Result<String, SfError>> = vec![];
    for (def, p) in &prepared {
        ids.push(match &p.id {
            Some(Value::String(raw)) => match dml::parse_id_for(def, raw) {
                Ok(Some(id)) => Ok(id),
                Ok(None) => Err(id_error("MALFORMED_ID", format!("malformed id {raw}"))),
                Err(e) => Err(e),
            },
            _ => Err(id_error("MISSING_ARGUMENT", "Id not specified in an update call".into())),
        });
    }
    let keys: Vec<Option<String>> = ids.iter().map(|r| r.as_ref().ok().cloned()).collect();
    let mut pre = duplicates(&keys, |i| {
        let id = keys[i].clone().unwrap_or_default();
        (Some(id.clone()), id_error("DUPLICATE_VALUE", format!("Duplicate id in list: {id}")))
    });
    for (i, r) in ids.iter().enumerate() {
        if let Err(e) = r {
            let raw = prepared[i].1.id.as_ref().and_then(Value::as_str).map(str::to_string);
            pre.insert(i, (raw, e.clone()));
        }
    }
    let n = prepared.len();
    run(
        store,
        ctx,
        aon,
        n,
        false,
        |store, i, undo| {
            let (def, p) = &prepared[i];
            let id = keys[i].clone().unwrap_or_default();
            match dml::update(store, def, &id, p, undo) {
                Ok(()) => Outcome::Ok { id, created: None, new_record: false },
                Err(e) => Outcome::Failed { id: Some(id), error: collection_write_error(e) },
            }
        },
        &pre,
    )
}

pub fn upsert(store: &mut Store, ctx: &Ctx, def: &Arc<ObjectDef>, field: &str) -> Reply {
    let idx = match ext_field(def, field) {
        Ok(i) => i,
        Err(e) => return Reply::error(&e),
    };
    let prepared = parse_body(ctx).and_then(|(aon, recs)| Ok((aon, prepare_all(store, ctx, recs, Some(def))?)));
    let (aon, mut prepared) = match prepared {
        Ok(x) => x,
        Err(e) => return Reply::error(&e),
    };
    let fname = def.fields[idx].name.clone();
    let key_of = |p: &Prepared| p.values.iter().find(|(i, _)| *i == idx).map(|(_, v)| v.clone()).filter(|v| !v.is_null());
    let keys: Vec<Option<Value>> = prepared.iter().map(|(_, p)| key_of(p)).collect();
    let match_keys: Vec<Option<String>> = keys.iter().map(|k| k.as_ref().and_then(match_key)).collect();
    let mut pre = duplicates(&match_keys, |i| {
        let shown = keys[i].as_ref().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default();
        (None, SfError::new(400, "DUPLICATE_VALUE", format!("Duplicate external id specified: {shown}")).with_fields(&[&fname]))
    });
    for (i, k) in keys.iter().enumerate() {
        if k.is_none() {
            pre.insert(i, (None, SfError::new(400, "MISSING_ARGUMENT", format!("{fname} not specified")).with_fields(&[])));
        }
    }
    let n = prepared.len();
    run(
        store,
        ctx,
        aon,
        n,
        true,
        |store, i, undo| {
            let key = keys[i].clone().unwrap_or(Value::Null);
            let (d, p) = &mut prepared[i];
            match dml::upsert(store, d, idx, &key, p, false, undo) {
                Ok((id, created)) => Outcome::Ok { id, created: Some(created), new_record: created },
                Err(UpsertError::Sf(error)) => Outcome::Failed { id: None, error },
                Err(UpsertError::Multiple(ids)) => Outcome::Failed {
                    id: None,
                    error: SfError::new(
                        300,
                        "DUPLICATE_EXTERNAL_ID",
                        format!("{fname}: more than one record found for external id field: [{}]", ids.join(", ")),
                    )
                    .with_fields(&[]),
                },
            }
        },
        &pre,
    )
}

pub fn delete(store: &mut Store, ctx: &Ctx) -> Reply {
    let Some(list) = ctx.param("ids") else {
        return Reply::error(&SfError::new(400, "MISSING_ARGUMENT", "ids parameter is required"));
    };
    let aon = ctx.param("allOrNone").is_some_and(|s| s.eq_ignore_ascii_case("true"));
    let raw: Vec<String> = list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if raw.len() > MAX_RECORDS {
        return Reply::error(&too_many());
    }
    let mut targets: Vec<Result<(Arc<ObjectDef>, String), SfError>> = vec![];
    for r in &raw {
        targets.push(match normalize_id(r) {
            Some(id) => match store.object_of_id(&id) {
                Some(def) => Ok((def, id)),
                None => Err(id_error("MALFORMED_ID", format!("malformed id {r}"))),
            },
            None => Err(id_error("MALFORMED_ID", format!("malformed id {r}"))),
        });
    }
    let keys: Vec<Option<String>> = targets.iter().map(|t| t.as_ref().ok().map(|(_, id)| id.clone())).collect();
    let mut pre = duplicates(&keys, |i| {
        let id = keys[i].clone().unwrap_or_default();
        (Some(id.clone()), id_error("DUPLICATE_VALUE", format!("Duplicate id in list: {id}")))
    });
    for (i, t) in targets.iter().enumerate() {
        if let Err(e) = t {
            pre.insert(i, (Some(raw[i].clone()), e.clone()));
        }
    }
    let n = raw.len();
    run(
        store,
        ctx,
        aon,
        n,
        false,
        |store, i, undo| {
            let Ok((def, id)) = &targets[i] else { unreachable!("pre-failed") };
            match dml::delete(store, def, id, undo) {
                Ok(()) => Outcome::Ok { id: id.clone(), created: None, new_record: false },
                Err(e) => Outcome::Failed { id: Some(id.clone()), error: collection_write_error(e) },
            }
        },
        &pre,
    )
}
