//! The test control API under `/__emulator/`: JSON in and out, no auth, never counted towards
//! the quota, never delayed or faulted.

use serde_json::{json, Value};

use crate::app::{App, Reply};
use crate::state::{field_from_json, Client, ObjectDef, Store, DEFAULT_USERNAME};

fn ok(v: Value) -> Reply {
    Reply::json(200, &v)
}

fn bad(msg: impl Into<String>) -> Reply {
    Reply::json(400, &json!({"error": msg.into()}))
}

fn param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

pub fn handle(app: &App, method: &str, path: &str, query: Option<&str>, body: &[u8]) -> Reply {
    let json: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return bad(format!("invalid JSON: {e}")),
        }
    };
    let path = path.trim_end_matches('/');
    let mut store = app.lock();
    match (method, path) {
        ("POST", "reset") => {
            store.reset();
            ok(json!({"ok": true}))
        }
        ("GET", "requests") => ok(json!(store.log)),
        ("DELETE", "requests") => {
            store.log.clear();
            ok(json!({"ok": true}))
        }
        ("GET", "stats") => ok(json!({
            "api_requests": store.api_requests,
            "api_used": store.api_used,
            "api_max": store.api_max,
            "by_kind": store.by_kind,
            "records_written": store.records_written,
            "requests_logged": store.log.len(),
        })),
        ("POST", "clients") => add_client(&mut store, &json),
        ("GET", "latency") => ok(json!({"ms": store.latency_ms})),
        ("POST", "latency") => match json.get("ms").and_then(Value::as_u64) {
            Some(ms) => {
                store.latency_ms = ms;
                ok(json!({"ok": true, "ms": ms}))
            }
            None => bad("expected {\"ms\": N}"),
        },
        ("GET", "bulk") => ok(store.bulk.view()),
        ("POST", "bulk") => match store.bulk.configure(&json) {
            Ok(()) => ok(store.bulk.view()),
            Err(e) => bad(e),
        },
        ("GET", "faults") => ok(json!({"rules": store.faults.list()})),
        ("POST", "faults") => match store.faults.add(&json) {
            Ok(n) => ok(json!({"ok": true, "added": n, "rules": store.faults.rules.len()})),
            Err(e) => bad(e),
        },
        ("DELETE", "faults") => {
            store.faults.clear();
            ok(json!({"ok": true}))
        }
        ("GET", "tokens") => {
            let active: Vec<&String> = store.tokens.keys().collect();
            ok(json!({"issued": store.issued_tokens, "active": active}))
        }
        ("POST", "tokens/revoke") => {
            let n = store.tokens.len();
            store.tokens.clear();
            ok(json!({"ok": true, "revoked": n}))
        }
        ("GET", "session") => ok(json!({"timeout_secs": store.session_timeout_secs})),
        ("POST", "session") => match json.get("timeout_secs").and_then(Value::as_u64) {
            Some(s) => {
                store.session_timeout_secs = s;
                ok(json!({"ok": true, "timeout_secs": s}))
            }
            None => bad("expected {\"timeout_secs\": N}"),
        },
        ("GET", "my_domain") => ok(json!({"login_url": store.my_domain_login_url})),
        ("POST", "my_domain") => match json.get("login_url") {
            Some(Value::String(u)) if u.starts_with("https://") => {
                store.my_domain_login_url = Some(u.clone());
                ok(json!({"ok": true, "login_url": u}))
            }
            Some(Value::Null) => {
                store.my_domain_login_url = None;
                ok(json!({"ok": true, "login_url": null}))
            }
            _ => bad("expected {\"login_url\": \"https://<domain>.my.salesforce.com\"} or null"),
        },
        ("GET", "limits") => ok(json!({"max": store.api_max, "used": store.api_used})),
        ("POST", "limits") => {
            if let Some(m) = json.get("max").and_then(Value::as_u64) {
                store.api_max = m;
            }
            if let Some(u) = json.get("used").and_then(Value::as_u64) {
                store.api_used = u;
            }
            ok(json!({"ok": true, "max": store.api_max, "used": store.api_used}))
        }
        ("POST", "sobjects") => define(&mut store, &json),
        ("GET", "sobjects") => {
            let mut v: Vec<Value> = store.objects.values().map(|d| d.describe()).collect();
            v.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            ok(Value::Array(v))
        }
        ("GET", p) if p.starts_with("records/") => records(&store, &p["records/".len()..], query),
        ("DELETE", p) if p.starts_with("records/") => {
            // Convenience: empty one object's table without a full reset.
            match store.object(&p["records/".len()..]) {
                Some(def) => {
                    store.define(ObjectDef::new(&def.name, Some(&def.label), &def.key_prefix, def.fields.clone()));
                    ok(json!({"ok": true}))
                }
                None => Reply::json(404, &json!({"error": "unknown sobject"})),
            }
        }
        _ => Reply::json(404, &json!({"error": format!("unknown control endpoint {method} /__emulator/{path}")})),
    }
}

fn records(store: &Store, object: &str, query: Option<&str>) -> Reply {
    let Some(def) = store.object(object) else {
        return Reply::json(404, &json!({"error": format!("unknown sobject {object}")}));
    };
    let flag = |name: &str| param(query, name).is_some_and(|v| v == "true" || v == "1");
    let (include_deleted, timed) = (flag("include_deleted"), flag("timestamps"));
    let table = store.table(&def.name);
    let list: Vec<Value> = table
        .order
        .iter()
        .filter_map(|id| table.records.get(id))
        .filter(|r| include_deleted || !r.deleted)
        .map(|r| if timed { Store::record_view_timed(r, include_deleted) } else { Store::record_view(r, include_deleted) })
        .collect();
    ok(Value::Array(list))
}

fn add_client(store: &mut Store, v: &Value) -> Reply {
    let Some(id) = v.get("client_id").and_then(Value::as_str) else {
        return bad("client_id is required");
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    store.clients.insert(
        id.to_string(),
        Client {
            client_id: id.to_string(),
            client_secret: s("client_secret"),
            public_key_pem: s("public_key_pem"),
            username: s("username").unwrap_or_else(|| DEFAULT_USERNAME.to_string()),
        },
    );
    ok(json!({"ok": true}))
}

fn define(store: &mut Store, v: &Value) -> Reply {
    let Some(name) = v.get("name").and_then(Value::as_str) else {
        return bad("name is required");
    };
    let prefix = match v.get("keyPrefix").and_then(Value::as_str) {
        Some(p) if p.len() == 3 && p.bytes().all(|c| c.is_ascii_alphanumeric()) => p.to_string(),
        Some(_) => return bad("keyPrefix must be 3 alphanumeric characters"),
        None => {
            // Next free custom-object prefix: a00, a01, ...
            match (0..3844u32)
                .map(|n| format!("a{}", crate::state::base62_pub(n as u64, 2)))
                .find(|p| !store.prefixes.contains_key(p) || store.prefixes.get(p).is_some_and(|o| o.eq_ignore_ascii_case(name)))
            {
                Some(p) => p,
                None => return bad("no free key prefix"),
            }
        }
    };
    if let Some(owner) = store.prefixes.get(&prefix) {
        if !owner.eq_ignore_ascii_case(name) {
            return bad(format!("keyPrefix {prefix} is already used by {owner}"));
        }
    }
    let mut fields = vec![];
    for f in v.get("fields").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        match field_from_json(f) {
            Ok(fd) => fields.push(fd),
            Err(e) => return bad(e),
        }
    }
    let def = ObjectDef::new(name, v.get("label").and_then(Value::as_str), &prefix, fields);
    let described = def.describe();
    store.define(def);
    ok(described)
}
