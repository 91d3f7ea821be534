//! Routing of `/services/data/vNN.0/...` (after auth and quota) and the single-record sObject
//! resources: create, read, update, delete, upsert and read/delete by external ID, describe,
//! limits and query.

use serde_json::{json, Map, Value};

use crate::collections;
use crate::dml::{self, UpsertError};
use crate::query;
use crate::server::Reply;
use crate::state::{FieldType, ObjectDef, Store};
use crate::validate::{convert, prepare, SfError};

/// What the route handlers see of a request.
pub struct Ctx<'a> {
    pub method: &'a str,
    pub query: Option<&'a str>,
    /// The parsed JSON body (None when the body is empty).
    pub json: Option<&'a Result<Value, SfError>>,
    /// The body text, for positions in JSON_PARSER_ERROR messages.
    pub raw: &'a str,
    /// The body bytes (decompressed): CSV for Bulk API 2.0 uploads.
    pub body: &'a [u8],
    /// record_error fault rules that apply to this request.
    pub record_rules: &'a [usize],
    /// The 18-character Id of the user the access token acts as.
    pub user: &'a str,
}

impl Ctx<'_> {
    pub fn param(&self, name: &str) -> Option<String> {
        let q = self.query?;
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// The body as a JSON object, or the error Salesforce gives for anything else.
    pub fn body_object(&self) -> Result<&Map<String, Value>, SfError> {
        match self.json {
            None => Err(SfError::new(400, "JSON_PARSER_ERROR", "No content to map due to end-of-input at [line:1, column:0]")),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(Value::Object(m))) => Ok(m),
            Some(Ok(_)) => Err(SfError::new(
                400,
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of sobject from START_ARRAY value [ or request may be missing a required field at [line:1, column:1]",
            )),
        }
    }
}

fn method_not_allowed(method: &str, allowed: &str) -> Reply {
    Reply::error(&SfError::new(
        405,
        "METHOD_NOT_ALLOWED",
        format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
    ))
}

fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// "v62.0" -> 62.0
fn parse_version(v: &str) -> Option<f64> {
    let n = v.strip_prefix('v')?;
    let (major, minor) = n.split_once('.')?;
    if major.is_empty() || minor.is_empty() || !major.bytes().chain(minor.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|x| (20.0..=70.0).contains(x))
}

pub fn dispatch(store: &mut Store, ctx: &Ctx, rest_path: &str) -> Reply {
    let mut segs: Vec<String> = rest_path.split('/').map(decode_segment).collect();
    if segs.len() > 1 && segs.last().is_some_and(String::is_empty) {
        segs.pop();
    }
    let version = segs.remove(0);
    let Some(vnum) = parse_version(&version) else {
        return Reply::error(&SfError::not_found());
    };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = ctx.method;
    match s.as_slice() {
        [] => Reply::json(
            200,
            &json!({
                "sobjects": format!("/services/data/{version}/sobjects"),
                "query": format!("/services/data/{version}/query"),
                "limits": format!("/services/data/{version}/limits"),
                "composite": format!("/services/data/{version}/composite"),
            }),
        ),
        ["limits"] => match m {
            "GET" => limits(store).kind("limits"),
            _ => method_not_allowed(m, "GET,HEAD"),
        },
        ["query"] | ["queryAll"] => match m {
            "GET" => run_query(store, ctx, &version).kind("query"),
            _ => method_not_allowed(m, "GET,HEAD"),
        },
        ["sobjects"] => match m {
            "GET" => global_describe(store, &version).kind("describe"),
            _ => method_not_allowed(m, "GET,HEAD"),
        },
        ["composite", "sobjects"] if vnum >= 42.0 => match m {
            "POST" => collections::insert(store, ctx).kind("collections_insert"),
            "PATCH" => collections::update(store, ctx).kind("collections_update"),
            "DELETE" => collections::delete(store, ctx).kind("collections_delete"),
            _ => method_not_allowed(m, "DELETE,PATCH,POST"),
        },
        ["composite", "sobjects", t, f] if vnum >= 46.0 => match m {
            "PATCH" => with_object(store, t, |store, def| collections::upsert(store, ctx, &def, f)).kind("collections_upsert"),
            _ => method_not_allowed(m, "PATCH"),
        },
        ["sobjects", t] => match m {
            "POST" => with_object(store, t, |store, def| create(store, ctx, &def, &version)).kind("create"),
            "GET" => with_object(store, t, |_, def| {
                Reply::json(200, &json!({"objectDescribe": def.describe(), "recentItems": []}))
            })
            .kind("describe"),
            _ => method_not_allowed(m, "GET,POST,HEAD"),
        },
        ["sobjects", t, "describe"] => match m {
            "GET" => with_object(store, t, |_, def| Reply::json(200, &def.describe())).kind("describe"),
            _ => method_not_allowed(m, "GET,HEAD"),
        },
        ["sobjects", t, id] => match m {
            "GET" => with_object(store, t, |store, def| get_by_id(store, ctx, &def, id, &version)).kind("get"),
            "PATCH" => with_object(store, t, |store, def| update_by_id(store, ctx, &def, id)).kind("update"),
            "DELETE" => with_object(store, t, |store, def| delete_by_id(store, ctx, &def, id)).kind("delete"),
            _ => method_not_allowed(m, "GET,PATCH,DELETE,HEAD"),
        },
        ["sobjects", t, f, v] => match m {
            "GET" => with_object(store, t, |store, def| by_external_id(store, ctx, &def, f, v, &version, "GET")).kind("get"),
            "PATCH" => with_object(store, t, |store, def| upsert(store, ctx, &def, f, v, &version, vnum)).kind("upsert"),
            "DELETE" => with_object(store, t, |store, def| by_external_id(store, ctx, &def, f, v, &version, "DELETE"))
                .kind("delete"),
            _ => method_not_allowed(m, "GET,PATCH,DELETE,HEAD"),
        },
        ["jobs", "ingest", rest @ ..] if vnum >= 41.0 => crate::bulk::route(store, ctx, vnum, rest),
        _ => Reply::error(&SfError::not_found()),
    }
}

/// Runs `f` with the named object, or answers 404 NOT_FOUND for an unknown one.
fn with_object(store: &mut Store, name: &str, f: impl FnOnce(&mut Store, std::sync::Arc<ObjectDef>) -> Reply) -> Reply {
    match store.object(name) {
        Some(def) => f(store, def),
        None => Reply::error(&SfError::not_found()),
    }
}

fn limits(store: &Store) -> Reply {
    let batches_max = store.bulk.settings.daily_batches_limit;
    let (_, batches_used) = store.bulk.used();
    Reply::json(
        200,
        &json!({
            "DailyApiRequests": {"Max": store.api_max, "Remaining": store.api_max.saturating_sub(store.api_used)},
            "DailyBulkApiBatches": {"Max": batches_max, "Remaining": batches_max.saturating_sub(batches_used)},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
        }),
    )
}

fn global_describe(store: &Store, version: &str) -> Reply {
    let mut objects: Vec<_> = store.objects.values().collect();
    objects.sort_by(|a, b| a.name.cmp(&b.name));
    let list: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "name": o.name, "label": o.label, "keyPrefix": o.key_prefix, "custom": o.custom,
                "createable": true, "updateable": true, "deletable": true, "queryable": true,
                "urls": {"sobject": format!("/services/data/{version}/sobjects/{}", o.name)},
            })
        })
        .collect();
    Reply::json(200, &json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list}))
}

fn run_query(store: &Store, ctx: &Ctx, version: &str) -> Reply {
    let Some(q) = ctx.param("q") else {
        return Reply::error(&SfError::new(400, "MALFORMED_QUERY", "A query string has to be specified"));
    };
    match query::parse(&q).and_then(|parsed| query::execute(store, &parsed, version)) {
        Ok(v) => Reply::json(200, &v),
        Err(e) => Reply::error(&e),
    }
}

/// A record as `GET /sobjects/T/id` shows it: attributes, then every field (or `?fields=`).
fn record_json(store: &Store, def: &ObjectDef, id: &str, version: &str, only: Option<String>) -> Result<Value, SfError> {
    let rec = &store.table(&def.name).records[id];
    let mut m = Map::new();
    m.insert("attributes".into(), json!({"type": def.name, "url": format!("/services/data/{version}/sobjects/{}/{}", def.name, id)}));
    let names: Vec<String> = match only {
        Some(list) => {
            let mut out = vec![];
            for n in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let f = def.field(n).ok_or_else(|| SfError::invalid_field(n, &def.name))?;
                out.push(f.name.clone());
            }
            out
        }
        None => def.fields.iter().map(|f| f.name.clone()).collect(),
    };
    for n in names {
        let v = query::read_value(def, rec, &n);
        m.insert(n, v);
    }
    Ok(Value::Object(m))
}

/// The Id in `/sobjects/T/{id}`: not Id-shaped -> 404 (Salesforce reads it as an unknown
/// external ID field), wrong prefix or checksum -> 400 MALFORMED_ID.
fn url_id(def: &ObjectDef, raw: &str) -> Result<String, SfError> {
    match dml::parse_id_for(def, raw)? {
        Some(id) => Ok(id),
        None => Err(SfError::new(404, "NOT_FOUND", format!("Provided external ID field does not exist or is not accessible: {raw}"))),
    }
}

fn live(store: &Store, def: &ObjectDef, id: &str) -> Result<(), SfError> {
    match store.table(&def.name).records.get(id) {
        None => Err(SfError::not_found()),
        Some(r) if r.deleted => Err(SfError::entity_is_deleted()),
        Some(_) => Ok(()),
    }
}

fn get_by_id(store: &Store, ctx: &Ctx, def: &ObjectDef, raw: &str, version: &str) -> Reply {
    let r = url_id(def, raw).and_then(|id| {
        live(store, def, &id)?;
        record_json(store, def, &id, version, ctx.param("fields"))
    });
    match r {
        Ok(v) => Reply::json(200, &v),
        Err(e) => Reply::error(&e),
    }
}

fn create(store: &mut Store, ctx: &Ctx, def: &ObjectDef, version: &str) -> Reply {
    let r = ctx.body_object().and_then(|body| prepare(def, body, ctx.raw)).and_then(|p| {
        if let Some(e) = store.faults.record_error(ctx.record_rules) {
            return Err(e);
        }
        dml::insert(store, def, &p, None)
    });
    match r {
        Ok(id) => {
            let mut reply = Reply::json(201, &json!({"id": id, "success": true, "errors": []}));
            reply.headers.push(("Location", format!("/services/data/{version}/sobjects/{}/{id}", def.name)));
            reply
        }
        Err(e) => Reply::error(&e),
    }
}

fn update_by_id(store: &mut Store, ctx: &Ctx, def: &ObjectDef, raw: &str) -> Reply {
    let r = url_id(def, raw).and_then(|id| {
        let body = ctx.body_object()?;
        let p = prepare(def, body, ctx.raw)?;
        if let Some(Value::String(body_id)) = &p.id {
            if crate::state::normalize_id(body_id).as_deref() != Some(id.as_str()) {
                return Err(SfError::new(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Id. Please check the security settings of this field and verify that it is read/write for your profile or permission set.").with_fields(&["Id"]));
            }
        }
        live(store, def, &id)?;
        if let Some(e) = store.faults.record_error(ctx.record_rules) {
            return Err(e);
        }
        dml::update(store, def, &id, &p, None)
    });
    match r {
        Ok(()) => Reply::empty(204),
        Err(e) => Reply::error(&e),
    }
}

fn delete_by_id(store: &mut Store, ctx: &Ctx, def: &ObjectDef, raw: &str) -> Reply {
    let r = url_id(def, raw).and_then(|id| {
        live(store, def, &id)?;
        if let Some(e) = store.faults.record_error(ctx.record_rules) {
            return Err(e);
        }
        dml::delete(store, def, &id, None)
    });
    match r {
        Ok(()) => Reply::empty(204),
        Err(e) => Reply::error(&e),
    }
}

/// The external ID field named in a URL: it must exist and be an External ID or idLookup field.
pub fn ext_field(def: &ObjectDef, name: &str) -> Result<usize, SfError> {
    def.field_index(name)
        .filter(|&i| def.fields[i].external_id || def.fields[i].id_lookup)
        .ok_or_else(|| SfError::new(404, "NOT_FOUND", format!("Provided external ID field does not exist or is not accessible: {name}")))
}

/// The URL's external ID value as a field value (numbers for numeric fields).
fn url_key(def: &ObjectDef, idx: usize, v: &str) -> Result<Value, SfError> {
    let f = &def.fields[idx];
    if f.ftype == FieldType::Id {
        return Ok(Value::String(v.to_string()));
    }
    convert(f, &Value::String(v.to_string()), "", &f.name)
}

fn multiple_choices(def: &ObjectDef, ids: &[String], version: &str) -> Reply {
    let urls: Vec<String> = ids.iter().map(|id| format!("/services/data/{version}/sobjects/{}/{id}", def.name)).collect();
    Reply::json(300, &json!(urls))
}

fn by_external_id(store: &mut Store, ctx: &Ctx, def: &ObjectDef, f: &str, v: &str, version: &str, method: &str) -> Reply {
    let idx = match ext_field(def, f) {
        Ok(i) => i,
        Err(e) => return Reply::error(&e),
    };
    let key = match url_key(def, idx, v) {
        Ok(k) => k,
        Err(_) => return Reply::error(&SfError::not_found()),
    };
    let ids = dml::find(store, def, &def.fields[idx], &key);
    match ids.len() {
        0 => Reply::error(&SfError::not_found()),
        1 if method == "GET" => match record_json(store, def, &ids[0], version, ctx.param("fields")) {
            Ok(v) => Reply::json(200, &v),
            Err(e) => Reply::error(&e),
        },
        1 => {
            if let Some(e) = store.faults.record_error(ctx.record_rules) {
                return Reply::error(&e);
            }
            match dml::delete(store, def, &ids[0], None) {
                Ok(()) => Reply::empty(204),
                Err(e) => Reply::error(&e),
            }
        }
        _ => multiple_choices(def, &ids, version),
    }
}

fn upsert(store: &mut Store, ctx: &Ctx, def: &ObjectDef, f: &str, v: &str, version: &str, vnum: f64) -> Reply {
    let prepared = ext_field(def, f).and_then(|idx| {
        let key = url_key(def, idx, v)?;
        let body = ctx.body_object()?;
        let p = prepare(def, body, ctx.raw)?;
        // The body may repeat the external ID only with the URL's value.
        if let Some((_, bv)) = p.values.iter().find(|(i, _)| *i == idx) {
            if crate::state::match_key(bv) != crate::state::match_key(&key) {
                return Err(SfError::new(
                    400,
                    "INVALID_FIELD",
                    format!(
                        "The value of the external ID field {} in the request body ({}) does not match the value in the URL ({v})",
                        def.fields[idx].name,
                        bv.as_str().map(str::to_string).unwrap_or_else(|| bv.to_string())
                    ),
                )
                .with_fields(&[&def.fields[idx].name]));
            }
        }
        if let Some(e) = store.faults.record_error(ctx.record_rules) {
            return Err(e);
        }
        Ok((idx, key, p))
    });
    let (idx, key, mut p) = match prepared {
        Ok(x) => x,
        Err(e) => return Reply::error(&e),
    };
    let update_only = ctx.param("updateOnly").is_some_and(|s| s.eq_ignore_ascii_case("true"));
    match dml::upsert(store, def, idx, &key, &mut p, update_only, None) {
        Ok((id, true)) => {
            let mut reply = Reply::json(201, &json!({"id": id, "success": true, "errors": [], "created": true}));
            reply.headers.push(("Location", format!("/services/data/{version}/sobjects/{}/{id}", def.name)));
            reply
        }
        // Before API v46 an upsert that updated answered 204 with no body.
        Ok((_, false)) if vnum < 46.0 => Reply::empty(204),
        Ok((id, false)) => Reply::json(200, &json!({"id": id, "success": true, "errors": [], "created": false})),
        Err(UpsertError::Sf(e)) => Reply::error(&e),
        Err(UpsertError::Multiple(ids)) => multiple_choices(def, &ids, version),
    }
}
