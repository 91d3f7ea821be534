//! Bulk API 2.0 ingest over HTTP: each test runs its own emulator on a free port.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Emu {
    base: String,
    http: reqwest::Client,
    token: String,
}

async fn emu() -> Emu {
    let (port, _app) = sf_emulator::start("127.0.0.1", 0, false).await.expect("start emulator");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let v: Value = http
        .post(format!("{base}/services/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "test-client-id"), ("client_secret", "test-client-secret")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = v["access_token"].as_str().unwrap().to_string();
    Emu { base, http, token }
}

struct Answer {
    status: u16,
    limit: Option<String>,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

impl Emu {
    fn url(&self, path: &str) -> String {
        format!("{}/services/data/v62.0/jobs/ingest{path}", self.base)
    }
    async fn send(&self, method: &str, path: &str, json: Option<Value>, csv: Option<&str>) -> Answer {
        let mut rb = self.http.request(method.parse().unwrap(), self.url(path)).bearer_auth(&self.token);
        if let Some(j) = json {
            rb = rb.json(&j);
        }
        if let Some(c) = csv {
            rb = rb.header("Content-Type", "text/csv").body(c.to_string());
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let limit = r.headers().get("sforce-limit-info").map(|v| v.to_str().unwrap().to_string());
        let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        Answer { status, limit, content_type, text: r.text().await.unwrap() }
    }
    async fn control(&self, method: &str, path: &str, body: Value) -> Value {
        let r = self.http.request(method.parse().unwrap(), format!("{}/__emulator/{path}", self.base)).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }
    async fn records(&self, object: &str) -> Vec<Value> {
        let r = self.http.get(format!("{}/__emulator/records/{object}", self.base)).send().await.unwrap();
        r.json::<Vec<Value>>().await.unwrap()
    }
    async fn create(&self, job: Value) -> String {
        let a = self.send("POST", "", Some(job), None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json()["id"].as_str().unwrap().to_string()
    }
    /// Create, upload, close; returns the job id.
    async fn run_job(&self, job: Value, csv: &str) -> String {
        let id = self.create(job).await;
        let a = self.send("PUT", &format!("/{id}/batches"), None, Some(csv)).await;
        assert_eq!(a.status, 201, "{}", a.text);
        let a = self.send("PATCH", &format!("/{id}"), Some(json!({"state": "UploadComplete"})), None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        id
    }
    async fn wait_done(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.send("GET", &format!("/{id}"), None, None).await.json();
            if ["JobComplete", "Failed", "Aborted"].contains(&v["state"].as_str().unwrap_or("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "job did not finish: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    /// A result CSV as header + rows of cells (parsed with a tiny RFC 4180 reader).
    async fn results(&self, id: &str, which: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let a = self.send("GET", &format!("/{id}/{which}/"), None, None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(a.content_type.starts_with("text/csv"), "{}", a.content_type);
        let mut rows = parse(&a.text);
        let header = rows.remove(0);
        (header, rows)
    }
}

fn parse(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut cell, mut quoted, mut chars) = (vec![], vec![], String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    rows
}

fn by(header: &[String], rows: &[Vec<String>], col: &str) -> HashMap<String, HashMap<String, String>> {
    let k = header.iter().position(|h| h == col).unwrap();
    rows.iter()
        .map(|r| (r[k].clone(), header.iter().cloned().zip(r.iter().cloned()).collect()))
        .collect()
}

#[tokio::test]
async fn insert_job_lifecycle_results_and_counting() {
    let e = emu().await;
    let a = e.send("POST", "", Some(json!({"object": "contact", "operation": "insert", "contentType": "CSV", "lineEnding": "LF"})), None).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.limit.as_deref().unwrap().starts_with("api-usage="), "{:?}", a.limit);
    let job = a.json();
    let id = job["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("750") && id.len() == 18, "{id}");
    assert_eq!(job["state"], "Open");
    assert_eq!(job["object"], "Contact");
    assert_eq!(job["columnDelimiter"], "COMMA");
    assert_eq!(job["contentUrl"], format!("services/data/v62.0/jobs/ingest/{id}/batches"));

    // Results are not served before the job is finished.
    assert_eq!(e.send("GET", &format!("/{id}/successfulResults"), None, None).await.status, 409);

    let csv = "LastName,FirstName,Email,Description\n\
               Smith,\"Ann, Jr.\",ann@example.com,\"multi\nline \"\"quoted\"\"\"\n\
               ,NoLast,nolast@example.com,\n\
               Jones,,bad-email,x\n\
               Brown,Bob,bob@example.com,#N/A\n";
    let a = e.send("PUT", &format!("/{id}/batches"), None, Some(csv)).await;
    assert_eq!(a.status, 201, "{}", a.text);
    // Bulk API 2.0 takes one upload per job.
    let a = e.send("PUT", &format!("/{id}/batches"), None, Some(csv)).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()[0]["errorCode"], "BULK_API_ERROR");
    assert!(a.json()[0]["message"].as_str().unwrap().contains("only do 'PUT' once"));

    let a = e.send("PATCH", &format!("/{id}"), Some(json!({"state": "UploadComplete"})), None).await;
    assert_eq!(a.status, 200);
    let done = e.wait_done(&id).await;
    assert_eq!(done["state"], "JobComplete", "{done}");
    assert_eq!(done["numberRecordsProcessed"], 4);
    assert_eq!(done["numberRecordsFailed"], 2);

    let (h, ok) = e.results(&id, "successfulResults").await;
    assert_eq!(h, ["sf__Id", "sf__Created", "LastName", "FirstName", "Email", "Description"]);
    let ok = by(&h, &ok, "LastName");
    assert_eq!(ok.len(), 2);
    assert_eq!(ok["Smith"]["sf__Created"], "true");
    assert_eq!(ok["Smith"]["FirstName"], "Ann, Jr.");
    assert_eq!(ok["Smith"]["Description"], "multi\nline \"quoted\"", "uploaded values are echoed as uploaded");
    assert_eq!(ok["Brown"]["Description"], "#N/A");

    let (h, failed) = e.results(&id, "failedResults").await;
    assert_eq!(h, ["sf__Id", "sf__Error", "LastName", "FirstName", "Email", "Description"]);
    let failed = by(&h, &failed, "FirstName");
    assert_eq!(failed["NoLast"]["sf__Error"], "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --");
    assert_eq!(failed["NoLast"]["sf__Id"], "");
    assert!(failed[""]["sf__Error"].starts_with("INVALID_EMAIL_ADDRESS:"), "{:?}", failed[""]);
    let (h, unprocessed) = e.results(&id, "unprocessedrecords").await;
    assert_eq!(h, ["LastName", "FirstName", "Email", "Description"]);
    assert!(unprocessed.is_empty());

    // What landed is what the REST API would hold.
    let recs = e.records("Contact").await;
    assert_eq!(recs.len(), 2);
    let smith = recs.iter().find(|r| r["LastName"] == "Smith").unwrap();
    assert_eq!(smith["Id"], ok["Smith"]["sf__Id"].as_str());
    assert_eq!(smith["Description"], "multi\nline \"quoted\"");
    let brown = recs.iter().find(|r| r["LastName"] == "Brown").unwrap();
    assert!(brown.get("Description").is_none(), "#N/A is null: {brown}");

    // Listing, deleting, and what the request log and counters say.
    let list = e.send("GET", "", None, None).await.json();
    assert_eq!(list["done"], true);
    assert!(list["nextRecordsUrl"].is_null());
    assert_eq!(list["records"][0]["id"], id.as_str());
    assert_eq!(e.send("DELETE", &format!("/{id}"), None, None).await.status, 204);
    assert_eq!(e.send("GET", &format!("/{id}"), None, None).await.status, 404);

    let stats = e.control("GET", "stats", json!({})).await;
    for kind in ["bulk_create", "bulk_upload", "bulk_close", "bulk_poll", "bulk_results", "bulk_list", "bulk_delete"] {
        assert!(stats["by_kind"][kind].as_u64().unwrap_or(0) >= 1, "{kind}: {stats}");
    }
    let bulk = e.control("GET", "bulk", json!({})).await;
    assert_eq!(bulk["jobs_created"], 1);
    assert_eq!(bulk["jobs_completed"], 1);
    assert_eq!(bulk["records_processed"], 4);
    assert_eq!(bulk["uploads"], 1);
}

#[tokio::test]
async fn upsert_update_delete_with_duplicates_ids_and_parent_lookups() {
    let e = emu().await;
    let acc = e
        .run_job(json!({"object": "Account", "operation": "insert"}), "Name,AccountNumber__c\nAcme,A-1\n")
        .await;
    assert_eq!(e.wait_done(&acc).await["state"], "JobComplete");

    let csv = "ExternalId__c,LastName,Account.AccountNumber__c\n\
               X-1,One,A-1\n\
               X-2,Two,\n\
               X-2,TwoAgain,\n\
               X-3,Three,NOPE\n";
    let id = e.run_job(json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "externalid__c"}), csv).await;
    let done = e.wait_done(&id).await;
    assert_eq!(done["externalIdFieldName"], "ExternalId__c");
    assert_eq!(done["numberRecordsFailed"], 3, "{done}");
    let (h, failed) = e.results(&id, "failedResults").await;
    let failed = by(&h, &failed, "LastName");
    assert!(failed["Two"]["sf__Error"].starts_with("DUPLICATE_VALUE:Duplicate external id specified: X-2"), "{:?}", failed["Two"]);
    assert!(failed["TwoAgain"]["sf__Error"].starts_with("DUPLICATE_VALUE:"));
    assert!(failed["Three"]["sf__Error"].starts_with("INVALID_FIELD:Foreign key external ID: NOPE not found"), "{:?}", failed["Three"]);
    let recs = e.records("Contact").await;
    let accounts = e.records("Account").await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["AccountId"], accounts[0]["Id"]);
    let one_id = recs[0]["Id"].as_str().unwrap().to_string();

    // Upsert again: existing (sf__Created false) and new; external IDs match case-insensitively.
    let id = e.run_job(json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "ExternalId__c"}), "EXTERNALID__C,lastname\nx-1,OneB\nX-4,Four\n").await;
    e.wait_done(&id).await;
    let (h, ok) = e.results(&id, "successfulResults").await;
    let ok = by(&h, &ok, "lastname");
    assert_eq!(ok["OneB"]["sf__Created"], "false");
    assert_eq!(ok["OneB"]["sf__Id"], one_id);
    assert_eq!(ok["Four"]["sf__Created"], "true");

    // Update by 15-character Id; duplicates and unknown Ids fail their rows.
    let id15 = &one_id[..15];
    let missing = format!("003{}", &one_id[3..].replace(|c: char| c.is_ascii_digit(), "7"));
    let csv = format!("Id,FirstName\n{id15},Uno\n{missing},Ghost\n");
    let id = e.run_job(json!({"object": "Contact", "operation": "update"}), &csv).await;
    let done = e.wait_done(&id).await;
    assert_eq!(done["numberRecordsProcessed"], 2);
    let recs = e.records("Contact").await;
    assert_eq!(recs.iter().find(|r| r["Id"] == one_id.as_str()).unwrap()["FirstName"], "Uno");
    let (h, failed) = e.results(&id, "failedResults").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0][h.iter().position(|c| c == "FirstName").unwrap()], "Ghost");

    let csv = format!("Id,FirstName\n{one_id},A\n{id15},B\n");
    let id = e.run_job(json!({"object": "Contact", "operation": "update"}), &csv).await;
    let done = e.wait_done(&id).await;
    assert_eq!(done["numberRecordsFailed"], 2, "duplicate Ids in one chunk fail both rows: {done}");

    // Delete: the live one goes, a second delete of it is an error row.
    let id = e.run_job(json!({"object": "Contact", "operation": "delete"}), &format!("Id\n{one_id}\n")).await;
    assert_eq!(e.wait_done(&id).await["numberRecordsFailed"], 0);
    let id = e.run_job(json!({"object": "Contact", "operation": "delete"}), &format!("Id\n{one_id}\n")).await;
    e.wait_done(&id).await;
    let (_, failed) = e.results(&id, "failedResults").await;
    assert_eq!(failed[0][1], "ENTITY_IS_DELETED:entity is deleted:--");
    assert_eq!(failed[0][0], one_id);
    assert_eq!(e.records("Contact").await.len(), 1);
}

#[tokio::test]
async fn create_validation_unknown_columns_and_line_endings() {
    let e = emu().await;
    let bad = |v: Value| async { e.send("POST", "", Some(v), None).await };
    let a = bad(json!({"object": "Nope__c", "operation": "insert"})).await;
    assert_eq!((a.status, a.json()[0]["errorCode"].as_str()), (400, Some("INVALIDJOB")), "{}", a.text);
    let a = bad(json!({"object": "Contact", "operation": "upsert"})).await;
    assert_eq!(a.status, 400);
    assert!(a.json()[0]["message"].as_str().unwrap().contains("An External ID must be specified for upsert"));
    let a = bad(json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "LastName"})).await;
    assert_eq!(a.status, 400);
    assert!(a.json()[0]["message"].as_str().unwrap().contains("does not match an External ID"));
    assert_eq!(bad(json!({"object": "Contact", "operation": "merge"})).await.status, 400);

    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), "LastName,Foo__c\nA,1\n").await;
    let done = e.wait_done(&id).await;
    assert_eq!(done["state"], "Failed");
    assert_eq!(done["errorMessage"], "InvalidBatch : Field name not found : Foo__c");
    assert_eq!(done["numberRecordsProcessed"], 0);
    assert!(e.records("Contact").await.is_empty());

    let id = e.run_job(json!({"object": "Contact", "operation": "insert", "lineEnding": "LF"}), "LastName\r\nA\r\n").await;
    let done = e.wait_done(&id).await;
    assert_eq!(done["errorMessage"], "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF");

    let id = e
        .run_job(json!({"object": "Contact", "operation": "insert", "lineEnding": "CRLF", "columnDelimiter": "SEMICOLON"}), "LastName;Score__c\r\nA;12.5\r\nB;abc\r\n")
        .await;
    let done = e.wait_done(&id).await;
    assert_eq!((done["state"].as_str(), done["numberRecordsFailed"].as_u64()), (Some("JobComplete"), Some(1)));
    let a = e.send("GET", &format!("/{id}/failedResults"), None, None).await;
    assert!(a.text.starts_with("\"sf__Id\";\"sf__Error\";LastName;Score__c\r\n"), "{}", a.text);
    assert!(a.text.contains("is not a valid value for the type xsd:double"), "{}", a.text);
    assert_eq!(e.records("Contact").await[0]["Score__c"], 12.5);
}

#[tokio::test]
async fn state_machine_abort_delete_rules_and_rate() {
    let e = emu().await;
    e.control("POST", "bulk", json!({"records_per_second": 200})).await;
    let csv: String = std::iter::once("LastName\n".to_string()).chain((0..1000).map(|i| format!("L{i}\n"))).collect();
    let id = e.create(json!({"object": "Contact", "operation": "insert"})).await;
    // Closing needs an Open job; deleting an Open job is refused.
    assert_eq!(e.send("DELETE", &format!("/{id}"), None, None).await.status, 409);
    e.send("PUT", &format!("/{id}/batches"), None, Some(&csv)).await;
    e.send("PATCH", &format!("/{id}"), Some(json!({"state": "UploadComplete"})), None).await;
    assert_eq!(e.send("PUT", &format!("/{id}/batches"), None, Some(&csv)).await.status, 409, "no upload after close");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = e.send("GET", &format!("/{id}"), None, None).await.json();
    assert_eq!(v["state"], "InProgress", "{v}");
    let n = v["numberRecordsProcessed"].as_u64().unwrap();
    assert!(n > 0 && n < 1000 && n % 200 == 0, "processed in chunks at ~200/s: {n}");
    let a = e.send("PATCH", &format!("/{id}"), Some(json!({"state": "Aborted"})), None).await;
    assert_eq!(a.json()["state"], "Aborted");
    let stats = e.control("GET", "stats", json!({})).await;
    assert_eq!(stats["by_kind"]["bulk_abort"], 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = e.send("GET", &format!("/{id}"), None, None).await.json();
    let processed = v["numberRecordsProcessed"].as_u64().unwrap();
    assert_eq!(e.records("Contact").await.len() as u64, processed, "nothing processed after the abort");
    let (_, ok) = e.results(&id, "successfulResults").await;
    let (_, unprocessed) = e.results(&id, "unprocessedrecords").await;
    assert_eq!(ok.len() as u64, processed);
    assert_eq!(ok.len() + unprocessed.len(), 1000);
    // Results are shuffled, not in upload order.
    let names: Vec<&str> = ok.iter().map(|r| r[2].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n[1..].parse::<u32>().unwrap());
    assert_ne!(names, sorted);
    assert_eq!(e.send("PATCH", &format!("/{id}"), Some(json!({"state": "UploadComplete"})), None).await.status, 409);
    assert_eq!(e.send("DELETE", &format!("/{id}"), None, None).await.status, 204);
}

#[tokio::test]
async fn injected_failures_limits_faults_and_reset() {
    let e = emu().await;
    let s = e.control("POST", "bulk", json!({"fail_next_jobs": 1, "fail_message": "boom"})).await;
    assert_eq!(s["fail_next_jobs"], 1);
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), "LastName\nA\nB\n").await;
    let done = e.wait_done(&id).await;
    assert_eq!((done["state"].as_str(), done["errorMessage"].as_str()), (Some("Failed"), Some("boom")));
    let (_, unprocessed) = e.results(&id, "unprocessedrecords").await;
    assert_eq!(unprocessed.len(), 2);
    assert!(e.records("Contact").await.is_empty());

    e.control("POST", "bulk", json!({"unprocessed_next_jobs": 1, "process_first": 3})).await;
    let csv: String = std::iter::once("LastName\n".to_string()).chain((0..10).map(|i| format!("L{i}\n"))).collect();
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), &csv).await;
    let done = e.wait_done(&id).await;
    assert_eq!(done["state"], "Failed");
    assert_eq!(done["numberRecordsProcessed"], 3);
    assert_eq!(e.results(&id, "successfulResults").await.1.len(), 3);
    assert_eq!(e.results(&id, "unprocessedrecords").await.1.len(), 7);
    // The next job is normal again.
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), "LastName\nZ\n").await;
    assert_eq!(e.wait_done(&id).await["state"], "JobComplete");

    // Upload size and daily record allowance.
    e.control("POST", "bulk", json!({"max_upload_bytes": 10, "daily_records_limit": 20})).await;
    let id = e.create(json!({"object": "Contact", "operation": "insert"})).await;
    let a = e.send("PUT", &format!("/{id}/batches"), None, Some("LastName\nAAAAAAAAAA\n")).await;
    assert_eq!(a.status, 400, "{}", a.text);
    e.control("POST", "bulk", json!({"max_upload_bytes": 1000})).await;
    // Salesforce: beyond the records allowance the rest of the job is not processed and the job
    // fails. Used so far: the 10-row batch of the second job and the 1-row batch of the third.
    let a = e.send("PUT", &format!("/{id}/batches"), None, Some(&csv)).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(e.send("PATCH", &format!("/{id}"), Some(json!({"state": "UploadComplete"})), None).await.status, 200);
    let done = e.wait_done(&id).await;
    assert_eq!(done["state"], "Failed", "{done}");
    assert!(done["errorMessage"].as_str().unwrap().starts_with("ExceededQuota"), "{done}");
    assert_eq!(e.results(&id, "unprocessedrecords").await.1.len(), 10);
    let limits = e.http.get(format!("{}/services/data/v62.0/limits", e.base)).bearer_auth(&e.token).send().await.unwrap();
    let limits: Value = limits.json().await.unwrap();
    assert_eq!(limits["DailyBulkApiBatches"]["Remaining"], 15000 - 2, "two processed batches: {limits}");

    // Fault rules apply to the bulk endpoints.
    e.control("POST", "faults", json!({"kind": "status", "status": 503, "error_code": "SERVER_UNAVAILABLE", "message": "down", "path_contains": "/jobs/ingest/", "method": "GET", "count": 1})).await;
    assert_eq!(e.send("GET", &format!("/{id}"), None, None).await.status, 503);
    assert_eq!(e.send("GET", &format!("/{id}"), None, None).await.status, 200);

    // Reset clears jobs, settings and counters.
    e.control("POST", "reset", json!({})).await;
    let s = e.control("GET", "bulk", json!({})).await;
    assert_eq!((s["jobs"].as_u64(), s["jobs_created"].as_u64(), s["max_upload_bytes"].as_u64()), (Some(0), Some(0), Some(100 * 1024 * 1024)));
}

/// A token of a newly registered client acting as `username` (client-credentials flow).
async fn token_for(e: &Emu, client_id: &str, username: &str) -> Value {
    e.control("POST", "clients", json!({"client_id": client_id, "client_secret": "s", "username": username})).await;
    let r = e.http.post(format!("{}/services/oauth2/token", e.base))
        .form(&[("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", "s")])
        .send().await.unwrap();
    r.json().await.unwrap()
}

#[tokio::test]
async fn get_all_jobs_pages_filters_and_created_by_the_token_user() {
    let e = emu().await;
    let mine = e.create(json!({"object": "Contact", "operation": "insert"})).await;
    // createdById is the user of the token's identity URL.
    let info = e.send("GET", &format!("/{mine}"), None, None).await.json();
    let me: Value = e.http.post(format!("{}/services/oauth2/token", e.base))
        .form(&[("grant_type", "client_credentials"), ("client_id", "test-client-id"), ("client_secret", "test-client-secret")])
        .send().await.unwrap().json().await.unwrap();
    let my_user = me["id"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    assert!(my_user.starts_with("005") && my_user.len() == 18, "{my_user}");
    assert_eq!(info["createdById"], my_user.as_str());

    // Another client with its own username: its own stable user, the same on every token.
    let other = token_for(&e, "other-app", "etl@example.com").await;
    let other_user = other["id"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    assert!(other_user.starts_with("005") && other_user != my_user, "{other_user}");
    let again = token_for(&e, "other-app", "ETL@example.com").await;
    assert!(again["id"].as_str().unwrap().ends_with(&other_user));
    let r = e.http.post(e.url("")).bearer_auth(other["access_token"].as_str().unwrap())
        .json(&json!({"object": "Account", "operation": "insert"})).send().await.unwrap();
    let theirs: Value = r.json().await.unwrap();
    assert_eq!(theirs["createdById"], other_user.as_str());

    for _ in 0..3 {
        e.create(json!({"object": "Contact", "operation": "insert"})).await;
    }
    e.control("POST", "bulk", json!({"list_page_size": 2})).await;
    // Paging: 5 jobs, 2 a page, through nextRecordsUrl; every documented field is there.
    let mut seen = vec![];
    let mut url = e.url("");
    loop {
        let page: Value = e.http.get(&url).bearer_auth(&e.token).send().await.unwrap().json().await.unwrap();
        for j in page["records"].as_array().unwrap() {
            for k in ["id", "operation", "object", "createdById", "createdDate", "systemModstamp", "state", "concurrencyMode",
                "contentType", "apiVersion", "jobType", "lineEnding", "columnDelimiter"] {
                assert!(!j[k].is_null(), "{k} missing in {j}");
            }
            assert!(j.get("numberRecordsProcessed").is_none());
            seen.push(j["id"].as_str().unwrap().to_string());
        }
        if page["done"] == true {
            assert!(page["nextRecordsUrl"].is_null());
            break;
        }
        let next = page["nextRecordsUrl"].as_str().unwrap();
        assert!(next.starts_with("/services/data/v62.0/jobs/ingest?") && next.contains("queryLocator="), "{next}");
        url = format!("{}{next}", e.base);
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.contains(&mine) && seen.contains(&theirs["id"].as_str().unwrap().to_string()));

    // Filters: only Bulk API 2.0 ingest jobs in parallel mode exist, none with PK chunking.
    let e = &e;
    let count = |q: &'static str| async move {
        let v = e.send("GET", q, None, None).await.json();
        v["records"].as_array().map(Vec::len).unwrap_or(usize::MAX)
    };
    e.control("POST", "bulk", json!({"list_page_size": 1000})).await;
    assert_eq!(count("?jobType=V2Ingest").await, 5);
    assert_eq!(count("?jobType=Classic").await, 0);
    assert_eq!(count("?concurrencyMode=Parallel").await, 5);
    assert_eq!(count("?isPkChunkingEnabled=true").await, 0);
    assert_eq!(count("?isPkChunkingEnabled=false").await, 5);
    assert_eq!(e.send("GET", "?queryLocator=bogus", None, None).await.status, 400);
}

#[tokio::test]
async fn results_not_recorded_the_rows_are_written_the_files_hold_headers_only() {
    let e = emu().await;
    e.control("POST", "bulk", json!({"results_not_recorded_next_jobs": 1})).await;
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), "LastName,Email\nA,a@example.com\nB,bad\n").await;
    let done = e.wait_done(&id).await;
    assert_eq!((done["state"].as_str(), done["numberRecordsProcessed"].as_u64()), (Some("JobComplete"), Some(2)), "{done}");
    assert_eq!(e.records("Contact").await.len(), 1, "the good row is written");
    let (h, ok) = e.results(&id, "successfulResults").await;
    assert_eq!(h, ["sf__Id", "sf__Created", "LastName", "Email"]);
    assert!(ok.is_empty(), "{ok:?}");
    let (h, failed) = e.results(&id, "failedResults").await;
    assert_eq!(h, ["sf__Id", "sf__Error", "LastName", "Email"]);
    assert!(failed.is_empty(), "{failed:?}");
    assert!(e.results(&id, "unprocessedrecords").await.1.is_empty());
    // Only the next N jobs.
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), "LastName\nC\n").await;
    e.wait_done(&id).await;
    assert_eq!(e.results(&id, "successfulResults").await.1.len(), 1);
}

#[tokio::test]
async fn normalize_echo_prints_stored_values_not_the_uploaded_bytes() {
    let e = emu().await;
    let csv = "LastName,Score__c,Active__c,Last_Contacted__c,Preferred_Time__c,Description,Email\n\
               \"Smith, J\",7.50,TRUE,2024-01-05T10:00:00+02:00,09:30:00,\"kept \"\"as is\"\"\",bad\n\
               Jones,12,false,2024-01-05T10:00:00Z,,#N/A,j@example.com\n";
    // Default: the uploaded bytes, as Salesforce documents ("field data … provided in the upload").
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), csv).await;
    e.wait_done(&id).await;
    let (h, ok) = e.results(&id, "successfulResults").await;
    assert_eq!(by(&h, &ok, "LastName")["Jones"]["Score__c"], "12");

    e.control("POST", "bulk", json!({"normalize_echo": true})).await;
    let (h, ok) = e.results(&id, "successfulResults").await;
    let jones = &by(&h, &ok, "LastName")["Jones"];
    assert_eq!((jones["Score__c"].as_str(), jones["Active__c"].as_str()), ("12.0", "false"));
    assert_eq!(jones["Last_Contacted__c"], "2024-01-05T10:00:00.000Z");
    assert_eq!(jones["Description"], "#N/A");
    let (h, failed) = e.results(&id, "failedResults").await;
    let smith = &by(&h, &failed, "LastName")["Smith, J"];
    assert_eq!((smith["Score__c"].as_str(), smith["Active__c"].as_str()), ("7.5", "true"));
    assert_eq!(smith["Last_Contacted__c"], "2024-01-05T08:00:00.000Z");
    assert_eq!(smith["Preferred_Time__c"], "09:30:00.000Z");
    assert_eq!(smith["Description"], "kept \"as is\"");
    assert!(smith["sf__Error"].starts_with("INVALID_EMAIL_ADDRESS:"), "{smith:?}");

    // Ids print in their 18-character form.
    let contact = e.records("Contact").await[0]["Id"].as_str().unwrap().to_string();
    let id = e.run_job(json!({"object": "Contact", "operation": "update"}), &format!("Id,FirstName\n{},X\n", &contact[..15])).await;
    e.wait_done(&id).await;
    let (_, ok) = e.results(&id, "successfulResults").await;
    assert_eq!(ok[0][2], contact);
}

#[tokio::test]
async fn result_download_faults_bom_and_truncated_body() {
    let e = emu().await;
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), "LastName\nA\nB\nC\n").await;
    e.wait_done(&id).await;
    e.control("POST", "faults", json!({"rules": [
        {"kind": "bom", "path_contains": "successfulResults", "count": 1},
        {"kind": "truncate", "path_contains": "successfulResults", "count": 1}]})).await;
    let r = e.http.get(e.url(&format!("/{id}/successfulResults/"))).bearer_auth(&e.token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF\"sf__Id\""), "{:?}", String::from_utf8_lossy(&bytes[..20]));
    assert_eq!(bytes.iter().filter(|&&c| c == b'\n').count(), 4, "the whole file behind the BOM");

    let r = e.http.get(e.url(&format!("/{id}/successfulResults/"))).bearer_auth(&e.token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let err = r.bytes().await.expect_err("the body is cut short");
    assert!(err.is_body() || err.is_decode(), "{err:?}");

    // Each fired once; the next download is whole, and the log names the faults.
    assert_eq!(e.results(&id, "successfulResults").await.1.len(), 3);
    let log = e.control("GET", "requests", json!({})).await;
    let faults: Vec<&str> = log.as_array().unwrap().iter().filter_map(|x| x["fault"].as_str()).collect();
    assert_eq!(faults, ["bom", "truncate"]);
}

#[tokio::test]
async fn a_vanished_job_answers_404_everywhere_but_its_rows_are_written() {
    let e = emu().await;
    e.control("POST", "bulk", json!({"vanish_next_jobs": 1})).await;
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), "LastName\nA\nB\n").await;
    for (method, path) in [("GET", format!("/{id}")), ("GET", format!("/{id}/successfulResults/")), ("GET", format!("/{id}/failedResults/")),
        ("GET", format!("/{id}/unprocessedrecords/")), ("DELETE", format!("/{id}"))] {
        let a = e.send(method, &path, None, None).await;
        assert_eq!((a.status, a.json()[0]["errorCode"].as_str()), (404, Some("NOT_FOUND")), "{method} {path}: {}", a.text);
    }
    let a = e.send("PATCH", &format!("/{id}"), Some(json!({"state": "Aborted"})), None).await;
    assert_eq!(a.status, 404);
    assert!(e.send("GET", "", None, None).await.json()["records"].as_array().unwrap().is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.records("Contact").await.len() < 2 {
        assert!(Instant::now() < deadline, "the rows of a vanished job are still written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The next job is normal.
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), "LastName\nC\n").await;
    assert_eq!(e.wait_done(&id).await["state"], "JobComplete");
}

fn names_csv(n: usize) -> String {
    std::iter::once("LastName\n".to_string()).chain((0..n).map(|i| format!("L{i}\n"))).collect()
}

fn indexes(rows: &[Vec<String>], col: usize) -> Vec<usize> {
    let mut v: Vec<usize> = rows.iter().map(|r| r[col][1..].parse().unwrap()).collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn batches_run_in_parallel_in_random_order_so_a_partial_failure_leaves_gaps() {
    let e = emu().await;
    e.control("POST", "bulk", json!({"records_per_batch": 100, "unprocessed_next_jobs": 1, "process_first": 450})).await;
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), &names_csv(1000)).await;
    let done = e.wait_done(&id).await;
    assert_eq!((done["state"].as_str(), done["numberRecordsProcessed"].as_u64()), (Some("Failed"), Some(450)), "{done}");
    let (_, ok) = e.results(&id, "successfulResults").await;
    let (_, unprocessed) = e.results(&id, "unprocessedrecords").await;
    let (ok, left) = (indexes(&ok, 2), indexes(&unprocessed, 0));
    assert_eq!((ok.len(), left.len()), (450, 550));
    assert_ne!(ok, (0..450).collect::<Vec<_>>(), "not a done prefix");
    assert!(left.iter().any(|&i| i < 450) && ok.iter().any(|&i| i >= 450), "gaps on both sides");
    // Every batch is done in chunks of 200 from its start (here a batch is one chunk of 100):
    // several batches were started and not all finished, i.e. they ran interleaved.
    let touched: std::collections::BTreeSet<usize> = ok.iter().map(|i| i / 100).collect();
    assert!(touched.len() >= 5, "{touched:?}");
    assert_eq!(e.records("Contact").await.len(), 450);
}

#[tokio::test]
async fn row_level_faults_land_in_failed_results_in_sf_error_format() {
    let e = emu().await;
    e.control("POST", "faults", json!({"seed": 3, "rules": [{"kind": "record_error", "path_contains": "/jobs/ingest", "probability": 0.3}]})).await;
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), &names_csv(300)).await;
    let done = e.wait_done(&id).await;
    let failed_n = done["numberRecordsFailed"].as_u64().unwrap() as usize;
    assert!(failed_n > 30 && failed_n < 200, "{done}");
    let (h, failed) = e.results(&id, "failedResults").await;
    assert_eq!(failed.len(), failed_n);
    let err = h.iter().position(|c| c == "sf__Error").unwrap();
    assert!(failed.iter().all(|r| r[err] == "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--"), "{:?}", failed[0]);
    assert!(failed.iter().all(|r| r[0].is_empty()), "inserts that failed have no Id");
    assert_eq!(e.records("Contact").await.len(), 300 - failed_n);

    // Update and upsert rows too; an update's failed row names its Id.
    e.control("DELETE", "faults", json!({})).await;
    e.control("POST", "faults", json!({"rules": [{"kind": "record_error", "path_contains": "/jobs/ingest", "count": 1, "error_code": "UNABLE_TO_LOCK_ROW"}]})).await;
    let some = e.records("Contact").await[0]["Id"].as_str().unwrap().to_string();
    let id = e.run_job(json!({"object": "Contact", "operation": "update"}), &format!("Id,FirstName\n{some},X\n")).await;
    e.wait_done(&id).await;
    let (_, failed) = e.results(&id, "failedResults").await;
    assert_eq!(failed[0][0], some);
    assert!(failed[0][1].starts_with("UNABLE_TO_LOCK_ROW:"));
}

#[tokio::test]
async fn beyond_the_batch_allocation_rows_are_written_without_results() {
    let e = emu().await;
    e.control("POST", "bulk", json!({"records_per_batch": 10, "daily_batches_limit": 2})).await;
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), &names_csv(50)).await;
    let done = e.wait_done(&id).await;
    assert_eq!((done["state"].as_str(), done["numberRecordsProcessed"].as_u64()), (Some("JobComplete"), Some(50)), "{done}");
    assert_eq!(e.records("Contact").await.len(), 50, "every row written");
    let (_, ok) = e.results(&id, "successfulResults").await;
    let ok = indexes(&ok, 2);
    assert_eq!(ok.len(), 20, "only the first two batches processed have results: {ok:?}");
    let batches: std::collections::BTreeSet<usize> = ok.iter().map(|i| i / 10).collect();
    assert_eq!(batches.len(), 2);
    assert!(e.results(&id, "unprocessedrecords").await.1.is_empty());
    let bulk = e.control("GET", "bulk", json!({})).await;
    assert_eq!(bulk["daily_batches_used"], 5);
}

#[tokio::test]
async fn beyond_the_records_allowance_the_job_fails_with_the_rest_unprocessed() {
    let e = emu().await;
    e.control("POST", "bulk", json!({"records_per_batch": 10, "daily_records_limit": 25})).await;
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), &names_csv(50)).await;
    let done = e.wait_done(&id).await;
    assert_eq!(done["state"], "Failed", "{done}");
    assert!(done["errorMessage"].as_str().unwrap().starts_with("ExceededQuota"), "{done}");
    assert_eq!(done["numberRecordsProcessed"], 20);
    assert_eq!(e.records("Contact").await.len(), 20);
    assert_eq!(e.results(&id, "unprocessedrecords").await.1.len(), 30);
    // The allowance is spent: the next job fails at once, nothing written.
    let id = e.run_job(json!({"object": "Contact", "operation": "insert"}), &names_csv(10)).await;
    assert_eq!(e.wait_done(&id).await["numberRecordsProcessed"], 0);
}
