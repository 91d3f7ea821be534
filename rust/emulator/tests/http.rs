//! HTTP-level tests: each test runs its own emulator on a free port and talks to it over TCP.

use serde_json::{json, Value};
use std::io::{Read, Write};

struct Emu {
    base: String,
    http: reqwest::Client,
}

async fn emu() -> Emu {
    let (port, _app) = sf_emulator::start("127.0.0.1", 0, false).await.expect("start emulator");
    Emu { base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() }
}

impl Emu {
    fn api(&self, path: &str) -> String {
        format!("{}/services/data/v62.0{path}", self.base)
    }
    fn control(&self, path: &str) -> String {
        format!("{}/__emulator/{path}", self.base)
    }
    async fn token_response(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self.http.post(format!("{}/services/oauth2/token", self.base)).form(form).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
    async fn token(&self) -> String {
        let (s, v) = self
            .token_response(&[
                ("grant_type", "client_credentials"),
                ("client_id", "test-client-id"),
                ("client_secret", "test-client-secret"),
            ])
            .await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    }
    /// Sends a request with a bearer token; returns status, limit header and JSON body (Null if empty).
    async fn call(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Option<String>, Value) {
        let mut rb = self.http.request(method.parse().unwrap(), self.api(path)).bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let limit = r.headers().get("sforce-limit-info").map(|v| v.to_str().unwrap().to_string());
        let text = r.text().await.unwrap();
        let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, limit, v)
    }
    async fn control_json(&self, method: &str, path: &str, body: Value) -> Value {
        let r = self.http.request(method.parse().unwrap(), self.control(path)).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }
}

#[tokio::test]
async fn client_credentials_token_flow() {
    let e = emu().await;
    let (s, v) = e
        .token_response(&[("grant_type", "client_credentials"), ("client_id", "test-client-id"), ("client_secret", "test-client-secret")])
        .await;
    assert_eq!(s, 200);
    for k in ["access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    assert!(v.get("expires_in").is_none());
    assert_eq!(v["instance_url"], e.base);
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["access_token"].as_str().unwrap().starts_with("00D"));
    assert!(v["issued_at"].as_str().unwrap().parse::<u64>().is_ok());

    let (s, v) = e
        .token_response(&[("grant_type", "client_credentials"), ("client_id", "test-client-id"), ("client_secret", "wrong")])
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_client")));
    assert_eq!(v["error_description"], "invalid client credentials");
    let (s, v) = e.token_response(&[("grant_type", "client_credentials"), ("client_id", "nope"), ("client_secret", "x")]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_client_id")));
    let (s, v) = e.token_response(&[("grant_type", "password")]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("unsupported_grant_type")));

    // Token requests are not API calls.
    let stats = e.http.get(e.control("stats")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(stats["api_requests"], 0);
    assert_eq!(stats["by_kind"]["token"], 4);
}

#[tokio::test]
async fn jwt_bearer_flow() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let e = emu().await;
    let (private, public) = rsa_key_pair();
    let (private, public) = (private.as_bytes(), public.as_str());
    e.control_json(
        "POST",
        "clients",
        json!({"client_id": "jwt-app", "public_key_pem": public, "username": "svc@example.com"}),
    )
    .await;
    let key = EncodingKey::from_rsa_pem(private).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let assertion = |claims: Value| encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
    let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let good = json!({"iss": "jwt-app", "sub": "svc@example.com", "aud": "https://login.salesforce.com", "exp": now + 170});

    let (s, v) = e.token_response(&[("grant_type", grant), ("assertion", &assertion(good.clone()))]).await;
    assert_eq!(s, 200, "{v}");
    let token = v["access_token"].as_str().unwrap().to_string();
    let (s, _, _) = e.call(&token, "GET", "/limits", None).await;
    assert_eq!(s, 200);

    let cases = [
        (json!({"iss": "other"}), "invalid_client_id", "client identifier invalid"),
        (json!({"sub": "someone@else.com"}), "invalid_grant", "user hasn't approved this consumer"),
        (json!({"aud": "https://example.com"}), "invalid_grant", "audience is invalid"),
        (json!({"exp": now + 600}), "invalid_grant", "invalid assertion"),
        (json!({"exp": now - 10}), "invalid_grant", "invalid assertion"),
    ];
    for (patch, err, desc) in cases {
        let mut claims = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let (s, v) = e.token_response(&[("grant_type", grant), ("assertion", &assertion(claims))]).await;
        assert_eq!((s, v["error"].as_str(), v["error_description"].as_str()), (400, Some(err), Some(desc)), "{patch}");
    }
    // Wrong algorithm (HS256) and a tampered signature.
    let hs = encode(&Header::new(Algorithm::HS256), &good, &EncodingKey::from_secret(b"k")).unwrap();
    let (s, v) = e.token_response(&[("grant_type", grant), ("assertion", &hs)]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    // Change one character in the middle of the signature (the last one may carry only padding bits).
    let signed = assertion(good.clone());
    let at = signed.rfind('.').unwrap() + 20;
    let replacement = if &signed[at..at + 1] == "A" { "B" } else { "A" };
    let tampered = format!("{}{}{}", &signed[..at], replacement, &signed[at + 1..]);
    let (s, v) = e.token_response(&[("grant_type", grant), ("assertion", &tampered)]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    // The instance URL the request went to is no audience; the sandbox login URL is, and so is
    // the org's My Domain login URL once the org has one.
    let with_aud = |aud: &str| {
        let mut claims = good.clone();
        claims["aud"] = json!(aud);
        assertion(claims)
    };
    let my_domain = "https://acme-dev-ed.my.salesforce.com";
    let (s, v) = e.token_response(&[("grant_type", grant), ("assertion", &with_aud(&e.base))]).await;
    assert_eq!((s, v["error_description"].as_str()), (400, Some("audience is invalid")), "{v}");
    let (s, v) = e.token_response(&[("grant_type", grant), ("assertion", &with_aud(my_domain))]).await;
    assert_eq!((s, v["error_description"].as_str()), (400, Some("audience is invalid")), "{v}");
    let (s, v) = e.token_response(&[("grant_type", grant), ("assertion", &with_aud("https://test.salesforce.com"))]).await;
    assert_eq!(s, 200, "{v}");
    e.control_json("POST", "my_domain", json!({"login_url": my_domain})).await;
    let (s, v) = e.token_response(&[("grant_type", grant), ("assertion", &with_aud(my_domain))]).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = e.token_response(&[("grant_type", grant), ("assertion", &with_aud(&e.base))]).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn create_then_get_and_update() {
    let e = emu().await;
    let t = e.token().await;
    // Sent as the text 1234.50; Salesforce keeps the double 1234.5.
    let body: Value = serde_json::from_str(r#"{"lastname":"Doe","Email":"j@example.com","Score__c":1234.50,"Birthdate":"1990-02-03"}"#).unwrap();
    let (s, limit, v) = e.call(&t, "POST", "/sobjects/contact/", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(limit.as_deref(), Some("api-usage=1/100000"));
    assert_eq!(v["success"], true);
    assert_eq!(v["errors"], json!([]));
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("003") && id.len() == 18);

    let (s, _, rec) = e.call(&t, "GET", &format!("/sobjects/Contact/{}", &id[..15]), None).await;
    assert_eq!(s, 200);
    assert_eq!(rec["Id"], id.as_str());
    assert_eq!(rec["LastName"], "Doe");
    assert_eq!(rec["attributes"]["type"], "Contact");
    assert_eq!(rec["Active__c"], false);

    // Exact decimal text is kept.
    let raw = e.http.get(e.control("records/Contact")).send().await.unwrap().text().await.unwrap();
    assert!(raw.contains("\"Score__c\":1234.5,"), "kept as a double: {raw}");

    let (s, _, _) = e.call(&t, "PATCH", &format!("/sobjects/Contact/{id}"), Some(json!({"Phone": "123", "Email": null}))).await;
    assert_eq!(s, 204);
    let recs = e.http.get(e.control("records/contact")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(recs[0]["Phone"], "123");
    assert!(recs[0].get("Email").is_none());

    // Field errors.
    let (s, _, v) = e.call(&t, "POST", "/sobjects/Contact", Some(json!({"FirstName": "x"}))).await;
    assert_eq!(s, 400);
    assert_eq!(v, json!([{"message": "Required fields are missing: [LastName]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]}]));
    let (s, _, v) = e.call(&t, "POST", "/sobjects/Contact", Some(json!({"LastName": "x".repeat(81)}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (400, Some("STRING_TOO_LONG")));
    let (s, _, v) = e.call(&t, "POST", "/sobjects/Contact", Some(json!({"LastName": "x", "Bogus": 1}))).await;
    assert_eq!((s, v[0]["message"].as_str()), (400, Some("No such column 'Bogus' on sobject of type Contact")));
    let (s, _, v) = e.call(&t, "POST", "/sobjects/Contact", Some(json!({"LastName": "x", "Birthdate": "2020-13-45"}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (400, Some("JSON_PARSER_ERROR")));
    let (s, _, v) = e.call(&t, "PATCH", "/sobjects/Contact/001A0000006Vm9rIAC", Some(json!({"Phone": "1"}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (400, Some("MALFORMED_ID")));
    let (s, _, v) = e.call(&t, "PATCH", "/sobjects/Nope__c/003A0000006Vm9rIAC", Some(json!({"Phone": "1"}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (404, Some("NOT_FOUND")));
}

#[tokio::test]
async fn upsert_created_updated_and_parent_lookup() {
    let e = emu().await;
    let t = e.token().await;
    let (s, _, v) = e.call(&t, "PATCH", "/sobjects/Account/AccountNumber__c/A-1", Some(json!({"Name": "Acme"}))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["created"], true);
    let acc = v["id"].as_str().unwrap().to_string();
    let (s, _, v) = e.call(&t, "PATCH", "/sobjects/Account/accountnumber__c/a-1", Some(json!({"Industry": "Tech"}))).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"id": acc, "success": true, "errors": [], "created": false}));

    let (s, _, v) = e.call(&t, "PATCH", "/sobjects/Account/AccountNumber__c/A-2?updateOnly=true", Some(json!({"Name": "x"}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (404, Some("NOT_FOUND")));
    let (s, _, v) = e.call(&t, "PATCH", "/sobjects/Account/Name/Acme", Some(json!({"Industry": "x"}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (404, Some("NOT_FOUND")));
    let (s, _, v) = e.call(&t, "PATCH", "/sobjects/Account/AccountNumber__c/A-1", Some(json!({"AccountNumber__c": "A-9"}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (400, Some("INVALID_FIELD")));

    // Parent by external ID.
    let (s, _, v) = e
        .call(&t, "PATCH", "/sobjects/Contact/ExternalId__c/C-1", Some(json!({"LastName": "L", "Account": {"AccountNumber__c": "A-1"}})))
        .await;
    assert_eq!(s, 201, "{v}");
    let recs = e.http.get(e.control("records/Contact")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(recs[0]["AccountId"], acc.as_str());
    assert_eq!(recs[0]["ExternalId__c"], "C-1");
    let (s, _, v) = e
        .call(&t, "PATCH", "/sobjects/Contact/ExternalId__c/C-2", Some(json!({"LastName": "L", "Account": {"AccountNumber__c": "A-404"}})))
        .await;
    assert_eq!(s, 400);
    assert_eq!(v[0]["message"], "Foreign key external ID: A-404 not found for field AccountNumber__c in entity Account");

    // Several matches on a non-unique idLookup field -> 300.
    for n in ["x1", "x2"] {
        let (s, _, _) = e.call(&t, "PATCH", &format!("/sobjects/MyObject__c/ExternalId__c/{n}"), Some(json!({"Secondary_Key__c": "dup"}))).await;
        assert_eq!(s, 201);
    }
    let (s, _, v) = e.call(&t, "PATCH", "/sobjects/MyObject__c/Secondary_Key__c/dup", Some(json!({"Name": "n"}))).await;
    assert_eq!(s, 300);
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (s, _, _) = e.call(&t, "GET", "/sobjects/MyObject__c/Secondary_Key__c/dup", None).await;
    assert_eq!(s, 300);
    let (s, _, v) = e.call(&t, "GET", "/sobjects/MyObject__c/ExternalId__c/X1", None).await;
    assert_eq!((s, v["ExternalId__c"].as_str()), (200, Some("x1")));
}

#[tokio::test]
async fn collections_insert_with_one_bad_record_and_all_or_none() {
    let e = emu().await;
    let t = e.token().await;
    let body = |aon: bool| {
        json!({"allOrNone": aon, "records": [
            {"attributes": {"type": "Contact"}, "LastName": "A", "ExternalId__c": "e1"},
            {"attributes": {"type": "Contact"}, "LastName": "x".repeat(81)},
            {"attributes": {"type": "Contact"}, "LastName": "C"},
        ]})
    };
    let (s, _, v) = e.call(&t, "POST", "/composite/sobjects", Some(body(false))).await;
    assert_eq!(s, 200, "{v}");
    let r = v.as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["success"], true);
    assert_eq!(r[1]["success"], false);
    assert_eq!(r[1]["id"], Value::Null);
    assert_eq!(r[1]["errors"][0]["statusCode"], "STRING_TOO_LONG");
    assert_eq!(r[1]["errors"][0]["fields"], json!(["LastName"]));
    assert_eq!(r[2]["success"], true);

    // allOrNone: nothing written; the valid ones say ALL_OR_NONE_OPERATION_ROLLED_BACK.
    e.call(&t, "DELETE", &format!("/composite/sobjects?ids={},{}", r[0]["id"].as_str().unwrap(), r[2]["id"].as_str().unwrap()), None).await;
    let (s, _, v) = e.call(&t, "POST", "/composite/sobjects", Some(body(true))).await;
    assert_eq!(s, 200);
    assert_eq!(v[0]["errors"][0]["statusCode"], "ALL_OR_NONE_OPERATION_ROLLED_BACK");
    assert_eq!(v[1]["errors"][0]["statusCode"], "STRING_TOO_LONG");
    assert_eq!(v[2]["errors"][0]["statusCode"], "ALL_OR_NONE_OPERATION_ROLLED_BACK");
    let recs = e.http.get(e.control("records/Contact")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(recs, json!([]));

    // Request-level errors: unknown column, more than 200 records.
    let (s, _, v) = e
        .call(&t, "POST", "/composite/sobjects", Some(json!({"records": [{"attributes": {"type": "Contact"}, "LastName": "A", "Nope": 1}]})))
        .await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (400, Some("INVALID_FIELD")));
    let many: Vec<Value> = (0..201).map(|i| json!({"attributes": {"type": "Contact"}, "LastName": format!("n{i}")})).collect();
    let (s, _, v) = e.call(&t, "POST", "/composite/sobjects", Some(json!({"records": many}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (400, Some("EXCEEDED_ID_LIMIT")));

    // Upsert collection: duplicates inside the request fail, the others proceed.
    let (s, _, v) = e
        .call(
            &t,
            "PATCH",
            "/composite/sobjects/Contact/ExternalId__c",
            Some(json!({"records": [
                {"attributes": {"type": "Contact"}, "LastName": "U1", "ExternalId__c": "u1"},
                {"attributes": {"type": "Contact"}, "LastName": "D", "ExternalId__c": "dup"},
                {"attributes": {"type": "Contact"}, "LastName": "D", "ExternalId__c": "DUP"},
            ]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["created"], true);
    assert_eq!(v[1]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
    assert_eq!(v[2]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
    let (_, _, v) = e
        .call(&t, "PATCH", "/composite/sobjects/Contact/ExternalId__c", Some(json!({"records": [{"attributes": {"type": "Contact"}, "ExternalId__c": "u1", "Phone": "9"}]})))
        .await;
    assert_eq!((v[0]["success"].as_bool(), v[0]["created"].as_bool()), (Some(true), Some(false)));

    let log = e.http.get(e.control("requests")).send().await.unwrap().json::<Value>().await.unwrap();
    let kinds: Vec<&str> = log.as_array().unwrap().iter().map(|x| x["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"collections_insert") && kinds.contains(&"collections_upsert") && kinds.contains(&"collections_delete"));
    assert_eq!(log[1]["records"], 3);
}

#[tokio::test]
async fn delete_twice_and_query() {
    let e = emu().await;
    let t = e.token().await;
    let mut ids = vec![];
    for (n, ext) in [("a", "k'1"), ("b", "k2"), ("c", "k3")] {
        let (_, _, v) = e.call(&t, "POST", "/sobjects/Contact", Some(json!({"LastName": n, "ExternalId__c": ext}))).await;
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let q = r"SELECT Id, ExternalId__c FROM Contact WHERE ExternalId__c IN ('k\'1','K2','nope')";
    let r = e.http.get(e.api("/query")).query(&[("q", q)]).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["totalSize"], 2);
    assert_eq!(v["done"], true);
    assert_eq!(v["records"][0]["ExternalId__c"], "k'1");
    assert_eq!(v["records"][0]["attributes"]["type"], "Contact");

    let (s, _, _) = e.call(&t, "DELETE", &format!("/sobjects/Contact/{}", ids[0]), None).await;
    assert_eq!(s, 204);
    let (s, _, v) = e.call(&t, "DELETE", &format!("/sobjects/Contact/{}", ids[0]), None).await;
    assert_eq!((s, v[0]["errorCode"].as_str(), v[0]["message"].as_str()), (404, Some("ENTITY_IS_DELETED"), Some("entity is deleted")));
    let (s, _, v) = e.call(&t, "PATCH", &format!("/sobjects/Contact/{}", ids[0]), Some(json!({"Phone": "1"}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (404, Some("ENTITY_IS_DELETED")));
    let never = "003A0000006Vm9rIAC";
    let (s, _, v) = e.call(&t, "DELETE", &format!("/sobjects/Contact/{never}"), None).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (404, Some("NOT_FOUND")));

    // Deleted records vanish from queries, stay visible with include_deleted.
    let r = e.http.get(e.api("/query")).query(&[("q", q)]).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["totalSize"], 1);
    let all = e.http.get(e.control("records/Contact?include_deleted=true")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[0]["IsDeleted"], true);

    // Collections delete: deleted and never-existing Ids fail per record.
    let (s, _, v) = e.call(&t, "DELETE", &format!("/composite/sobjects?ids={},{},{never}&allOrNone=false", ids[1], ids[0]), None).await;
    assert_eq!(s, 200);
    assert_eq!(v[0]["success"], true);
    assert_eq!(v[1]["errors"][0]["statusCode"], "ENTITY_IS_DELETED");
    assert_eq!(v[2]["success"], false);

    let r = e.http.get(e.api("/query")).query(&[("q", "SELECT Id FROM Contact WHERE")]).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()[0]["errorCode"], "MALFORMED_QUERY");
    let long = format!("SELECT Id FROM Contact WHERE ExternalId__c IN ('{}')", "x".repeat(17000));
    let r = e.http.get(e.api("/query")).query(&[("q", long)]).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 414);
}

#[tokio::test]
async fn unauthorized_after_revoke_and_expiry() {
    let e = emu().await;
    let t = e.token().await;
    let (s, _, _) = e.call(&t, "GET", "/limits", None).await;
    assert_eq!(s, 200);
    e.control_json("POST", "tokens/revoke", json!({})).await;
    let (s, limit, v) = e.call(&t, "GET", "/limits", None).await;
    assert_eq!(s, 401);
    assert!(limit.is_some());
    assert_eq!(v, json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]));
    let r = e.http.get(e.api("/limits")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    e.control_json("POST", "session", json!({"timeout_secs": 0})).await;
    let t = e.token().await;
    let (s, _, _) = e.call(&t, "GET", "/limits", None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn quota_exhaustion() {
    let e = emu().await;
    let t = e.token().await;
    e.control_json("POST", "limits", json!({"max": 3, "used": 1})).await;
    let (s, limit, v) = e.call(&t, "GET", "/limits", None).await;
    assert_eq!(s, 200);
    assert_eq!(limit.as_deref(), Some("api-usage=2/3"));
    assert_eq!(v["DailyApiRequests"], json!({"Max": 3, "Remaining": 1}));
    let (s, _, _) = e.call(&t, "GET", "/limits", None).await;
    assert_eq!(s, 200);
    let (s, limit, v) = e.call(&t, "POST", "/sobjects/Contact", Some(json!({"LastName": "x"}))).await;
    assert_eq!(s, 403);
    assert_eq!(limit.as_deref(), Some("api-usage=3/3"));
    assert_eq!(v, json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]));
    let recs = e.http.get(e.control("records/Contact")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(recs, json!([]));
}

#[tokio::test]
async fn gzip_request_and_response() {
    let e = emu().await;
    let t = e.token().await;
    let body = serde_json::to_vec(&json!({"LastName": "Zipped"})).unwrap();
    let mut enc = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
    enc.write_all(&body).unwrap();
    let gz = enc.finish().unwrap();
    // reqwest (with the gzip feature) sends Accept-Encoding: gzip and decodes the answer.
    let r = e
        .http
        .post(e.api("/sobjects/Contact"))
        .bearer_auth(&t)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(gz.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], true);

    // Without Accept-Encoding the answer is plain.
    let plain = reqwest::Client::builder().no_gzip().build().unwrap();
    let r = plain.get(e.api(&format!("/sobjects/Contact/{}", v["id"].as_str().unwrap()))).bearer_auth(&t).send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());

    let log = e.http.get(e.control("requests")).send().await.unwrap().json::<Value>().await.unwrap();
    let create = log.as_array().unwrap().iter().find(|x| x["kind"] == "create").unwrap();
    assert_eq!(create["request_content_encoding"], "gzip");
    assert_eq!(create["response_content_encoding"], "gzip");
    assert_eq!(create["request_body_bytes"], gz.len());
    assert_eq!(create["request_body_decoded_bytes"], body.len());
    assert_eq!(create["counted"], true);
    let get = log.as_array().unwrap().iter().find(|x| x["kind"] == "get").unwrap();
    assert_eq!(get["response_content_encoding"], Value::Null);

    // Raw check that the body really is gzip on the wire (blocking I/O off the runtime thread).
    let addr = e.base.trim_start_matches("http://").to_string();
    let resp = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET /services/data/v62.0/limits HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = vec![];
        s.read_to_end(&mut resp).unwrap();
        resp
    })
    .await
    .unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..split]).to_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let mut out = String::new();
    flate2::read::GzDecoder::new(&resp[split + 4..]).read_to_string(&mut out).unwrap();
    assert!(out.contains("DailyApiRequests"));
}

#[tokio::test]
async fn faults_status_reset_slow_and_record_errors() {
    let e = emu().await;
    let t = e.token().await;
    e.control_json(
        "POST",
        "faults",
        json!({"seed": 1, "rules": [
            {"kind": "status", "method": "POST", "path_contains": "/sobjects/Contact", "status": 503, "error_code": "SERVER_UNAVAILABLE", "count": 1},
            {"kind": "reset", "path_contains": "/sobjects/Account", "count": 1},
            {"kind": "record_error", "path_contains": "/composite/sobjects", "error_code": "UNABLE_TO_LOCK_ROW", "count": 1},
        ]}),
    )
    .await;
    let (s, _, v) = e.call(&t, "POST", "/sobjects/Contact", Some(json!({"LastName": "x"}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (503, Some("SERVER_UNAVAILABLE")));
    let (s, _, _) = e.call(&t, "POST", "/sobjects/Contact", Some(json!({"LastName": "x"}))).await;
    assert_eq!(s, 201);

    let r = e.http.post(e.api("/sobjects/Account")).bearer_auth(&t).json(&json!({"Name": "A"})).send().await;
    assert!(r.is_err(), "connection should be dropped");
    let recs = e.http.get(e.control("records/Account")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(recs, json!([]));

    let (s, _, v) = e
        .call(&t, "POST", "/composite/sobjects", Some(json!({"records": [
            {"attributes": {"type": "Contact"}, "LastName": "r1"},
            {"attributes": {"type": "Contact"}, "LastName": "r2"},
        ]})))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v[0]["errors"][0]["statusCode"], "UNABLE_TO_LOCK_ROW");
    assert_eq!(v[1]["success"], true);

    // Slow: the client times out, yet the record was written.
    e.control_json("DELETE", "faults", json!({})).await;
    e.control_json("POST", "faults", json!({"rules": [{"kind": "slow", "delay_ms": 1500}]})).await;
    let r = e
        .http
        .post(e.api("/sobjects/Contact"))
        .bearer_auth(&t)
        .timeout(std::time::Duration::from_millis(300))
        .json(&json!({"LastName": "slow"}))
        .send()
        .await;
    assert!(r.is_err());
    let recs = e.http.get(e.control("records/Contact")).send().await.unwrap().json::<Value>().await.unwrap();
    assert!(recs.as_array().unwrap().iter().any(|r| r["LastName"] == "slow"));
}

#[tokio::test]
async fn faults_that_commit_without_an_answer_and_delays_that_reorder() {
    let e = emu().await;
    let t = e.token().await;
    let names = |recs: Value| -> Vec<String> {
        recs.as_array().unwrap().iter().map(|r| r["LastName"].as_str().unwrap().to_string()).collect()
    };
    let contacts = || async { e.http.get(e.control("records/Contact")).send().await.unwrap().json::<Value>().await.unwrap() };

    // commit_then_reset: the record is written, the client only sees a broken connection.
    e.control_json("POST", "faults", json!({"rules": [{"kind": "commit_then_reset", "count": 1}]})).await;
    let r = e.http.post(e.api("/sobjects/Contact")).bearer_auth(&t).json(&json!({"LastName": "dropped"})).send().await;
    assert!(r.is_err(), "the connection should be dropped after the write");
    assert_eq!(names(contacts().await), ["dropped"]);

    // commit_late: the client gives up first; the write still lands, later.
    e.control_json("DELETE", "faults", json!({})).await;
    e.control_json("POST", "faults", json!({"rules": [{"kind": "commit_late", "delay_ms": 800, "count": 1}]})).await;
    let r = e
        .http
        .post(e.api("/sobjects/Contact"))
        .bearer_auth(&t)
        .timeout(std::time::Duration::from_millis(200))
        .json(&json!({"LastName": "late"}))
        .send()
        .await;
    assert!(r.is_err(), "the client should time out");
    assert_eq!(names(contacts().await), ["dropped"], "written before its delay ran out");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(names(contacts().await), ["dropped", "late"]);
    let log = e.http.get(e.control("requests")).send().await.unwrap().json::<Value>().await.unwrap();
    let late = log.as_array().unwrap().iter().find(|r| r["fault"] == "commit_late").unwrap();
    assert_eq!(late["status"], 201, "the log shows the write's own status: {late}");

    // delay: requests sent in order commit out of order.
    e.control_json("DELETE", "faults", json!({})).await;
    e.control_json("DELETE", "records/Contact", json!({})).await;
    e.control_json("POST", "faults", json!({"seed": 3, "rules": [{"kind": "delay", "delay_ms": 400}]})).await;
    let sent: Vec<String> = (0..8).map(|i| format!("d{i}")).collect();
    let mut calls = Vec::new();
    for name in &sent {
        let request = e.http.post(e.api("/sobjects/Contact")).bearer_auth(&t).json(&json!({"LastName": name}));
        calls.push(tokio::spawn(async move { request.send().await.unwrap().status().as_u16() }));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), 201);
    }
    let stored = names(contacts().await);
    let mut sorted = stored.clone();
    sorted.sort();
    assert_eq!(sorted, sent);
    assert_ne!(stored, sent, "a random delay before each write should reorder some of them");
}

#[tokio::test]
async fn number_fields_keep_what_salesforce_keeps() {
    let e = emu().await;
    let t = e.token().await;
    let r = e.http.post(e.control("sobjects")).json(&json!({"name": "Num__c", "fields": [{"name": "Big__c", "type": "long"}]})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "Salesforce has no long field type");
    e.control_json("POST", "sobjects", json!({"name": "Num__c", "fields": [
        {"name": "Count__c", "type": "int", "digits": 3},
        {"name": "Price__c", "type": "currency", "precision": 5, "scale": 2},
    ]}))
    .await;
    let (_, _, d) = e.call(&t, "GET", "/sobjects/Num__c/describe", None).await;
    let field = |n: &str| d["fields"].as_array().unwrap().iter().find(|f| f["name"] == n).unwrap().clone();
    assert_eq!((field("Count__c")["type"].clone(), field("Count__c")["digits"].clone()), (json!("int"), json!(3)));
    assert_eq!((field("Price__c")["precision"].clone(), field("Price__c")["scale"].clone()), (json!(5), json!(2)));

    let (s, _, v) = e.call(&t, "POST", "/sobjects/Num__c", Some(json!({"Count__c": 999, "Price__c": 999.999}))).await;
    assert_eq!(s, 201, "{v}");
    let rec = e.http.get(e.control("records/Num__c")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!((rec[0]["Count__c"].as_i64(), rec[0]["Price__c"].as_f64()), (Some(999), Some(999.999)), "API writes keep the decimals");
    for (body, field) in [(json!({"Count__c": 1000}), "Count__c"), (json!({"Price__c": 1000}), "Price__c")] {
        let (s, _, v) = e.call(&t, "POST", "/sobjects/Num__c", Some(body)).await;
        assert_eq!((s, v[0]["errorCode"].as_str(), v[0]["fields"][0].as_str()), (400, Some("NUMBER_OUTSIDE_VALID_RANGE"), Some(field)), "{v}");
    }
    let (s, _, v) = e.call(&t, "POST", "/sobjects/Num__c", Some(json!({"Count__c": 1.5}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (400, Some("JSON_PARSER_ERROR")), "{v}");
}

#[tokio::test]
async fn describe_define_and_reset() {
    let e = emu().await;
    let t = e.token().await;
    let (s, _, v) = e.call(&t, "GET", "/sobjects/Contact/describe", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["keyPrefix"], "003");
    let ext = v["fields"].as_array().unwrap().iter().find(|f| f["name"] == "ExternalId__c").unwrap();
    assert_eq!((ext["externalId"].as_bool(), ext["idLookup"].as_bool(), ext["unique"].as_bool()), (Some(true), Some(true), Some(true)));
    let acc = v["fields"].as_array().unwrap().iter().find(|f| f["name"] == "AccountId").unwrap();
    assert_eq!(acc["referenceTo"], json!(["Account"]));
    assert_eq!(acc["relationshipName"], "Account");

    e.control_json(
        "POST",
        "sobjects",
        json!({"name": "Widget__c", "keyPrefix": "a05", "fields": [
            {"name": "Code__c", "type": "string", "length": 10, "externalId": true, "unique": true},
            {"name": "Size__c", "type": "double", "nillable": false},
        ]}),
    )
    .await;
    let (s, _, v) = e.call(&t, "PATCH", "/sobjects/widget__c/code__c/W1", Some(json!({"Size__c": 3}))).await;
    assert_eq!(s, 201, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("a05"));
    let (s, _, v) = e.call(&t, "PATCH", "/sobjects/Widget__c/Code__c/W2", Some(json!({}))).await;
    assert_eq!((s, v[0]["errorCode"].as_str()), (400, Some("REQUIRED_FIELD_MISSING")));

    e.control_json("POST", "reset", json!({})).await;
    let (s, _, _) = e.call(&t, "GET", "/limits", None).await;
    assert_eq!(s, 401, "tokens are cleared by reset");
    let t = e.token().await;
    let (s, _, _) = e.call(&t, "GET", "/sobjects/Widget__c/describe", None).await;
    assert_eq!(s, 404);
}

/// A fresh 2048-bit key pair per run (PKCS#8 private, SPKI public): no key is committed.
fn rsa_key_pair() -> (String, String) {
    let dir = std::env::temp_dir().join(format!("sf-emulator-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl must be installed");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", private.to_str().unwrap()]);
    run(&["pkey", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
    let pair = (std::fs::read_to_string(&private).unwrap(), std::fs::read_to_string(&public).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    pair
}
