//! BULK: one Bulk API 2.0 ingest job for one request's writes (SPEC §7).
//!
//! ```text
//!  create job ─▶ upload CSV ─▶ UploadComplete ─▶ poll (backing off to 30 s) ─▶ JobComplete | Failed | Aborted
//!                                                                                   │
//!             successfulResults / failedResults, matched to the writes by key ◀────┘
//! ```
//!
//! Salesforce does not keep result rows in upload order; every row repeats the uploaded columns,
//! so results are matched back by the write's key: the external ID for UPSERT, the `Id` for
//! UPDATE and DELETE (the pipeline never puts one key twice into a job), and the whole row for
//! INSERT (identical rows are interchangeable; they are matched by multiplicity). A write that is
//! in neither result file was not processed and is tried again.

pub(crate) mod csv;

use super::{RequestItem, SendResult, Writer};
use crate::config::{BulkConfig, Operation};
use crate::error::{classify_code, ErrorClass, SalesforceError};
use crate::http::Payload;
use reqwest::Method;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Salesforce takes at most 100 MB of CSV per job; rows that would go beyond this stay for the
/// next job.
pub const MAX_UPLOAD_BYTES: usize = 90_000_000;
/// The answer to an upload is a few bytes of JSON at most.
const UPLOAD_ANSWER_BYTES: usize = 1 << 20;
/// Result files repeat the upload plus a few columns.
const MAX_RESULT_BYTES: usize = 256 << 20;

/// What went wrong with a job as a whole.
#[derive(Debug)]
pub(crate) enum JobError {
    /// Salesforce did not take the job (creation, upload or closing refused or unanswered):
    /// nothing was written.
    NotStarted(SalesforceError),
    /// The connector gave the job up (its records' partitions were revoked).
    Abandoned,
}

#[derive(serde::Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct JobInfo {
    id: String,
    state: String,
    #[serde(default)]
    number_records_processed: u64,
    #[serde(default)]
    number_records_failed: u64,
    #[serde(default)]
    error_message: Option<String>,
}

/// One job's writes, as uploaded.
struct Upload {
    table: csv::Table,
    /// The body: header and the rows that fit.
    body: Vec<u8>,
    /// Rows (= writes) in the upload; the rest did not fit.
    rows: usize,
    /// The column that identifies a row's write: external ID (UPSERT) or `Id`; none for INSERT.
    key_column: Option<usize>,
}

pub(super) async fn run(
    w: &Writer,
    op: Operation,
    items: &[RequestItem],
    abandoned: &AtomicBool,
) -> Result<Vec<SendResult>, JobError> {
    let upload = build_upload(w, op, items);
    let mut results: Vec<Option<SendResult>> = (0..items.len()).map(|_| None).collect();
    for (i, result) in results.iter_mut().enumerate() {
        if let Some(why) = upload.refused.get(&i) {
            *result = Some(SendResult::Failed(why.clone()));
        }
    }
    let upload = upload.upload;
    for result in results.iter_mut().skip(upload.rows) {
        result.get_or_insert(SendResult::NotSent);
    }
    let Some(first) = items.first() else { return Ok(vec![]) };
    let job = Job::start(w, op, &first.sobject, &upload, abandoned).await?;
    let info = job.wait(upload.rows as u64, abandoned).await?;
    job.collect(op, items, &upload, &info, &mut results, abandoned).await?;
    Ok(results.into_iter().map(|r| r.unwrap_or(SendResult::NotSent)).collect())
}

struct Built {
    upload: Upload,
    /// Writes that have no CSV form (index → why): they fail without a request.
    refused: HashMap<usize, String>,
}

fn build_upload(w: &Writer, op: Operation, items: &[RequestItem]) -> Built {
    let mut table = csv::Table::new();
    let mut refused = HashMap::new();
    let key_name = match op {
        Operation::Upsert => items.first().map(|first| w.upsert_field(&first.sobject).to_owned()),
        Operation::Update | Operation::Delete => Some("Id".to_owned()),
        Operation::Insert => None,
    };
    let key_column = key_name.as_deref().map(|k| table.column(k));
    let mut lines: Vec<Option<String>> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = match op {
            Operation::Upsert => item.key.clone(),
            Operation::Update | Operation::Delete => item.id.clone(),
            Operation::Insert => None,
        };
        let leading: Vec<(&str, &str)> = match (&key_name, &key) {
            (Some(name), Some(key)) => vec![(name.as_str(), key.as_str())],
            _ => vec![],
        };
        let fields: &[u8] = if op == Operation::Delete { &[] } else { &item.fields };
        match table.push_row(&leading, fields) {
            Ok(()) => lines.push(Some(String::new())),
            Err(why) => {
                // Keep row numbers aligned with items: an empty row that is never uploaded.
                table.rows.push(Vec::new());
                refused.insert(i, why);
                lines.push(None);
            }
        }
    }
    let mut body = table.header().into_bytes();
    body.push(b'\n');
    let mut rows = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.is_none() {
            rows = i + 1;
            continue;
        }
        let text = table.line(i);
        if body.len() + text.len() + 1 > MAX_UPLOAD_BYTES && rows > 0 {
            break;
        }
        body.extend_from_slice(text.as_bytes());
        body.push(b'\n');
        rows = i + 1;
    }
    Built { upload: Upload { table, body, rows, key_column }, refused }
}

/// A job Salesforce has taken (created, data uploaded, closed).
struct Job<'w> {
    w: &'w Writer,
    id: String,
}

impl<'w> Job<'w> {
    async fn start(w: &'w Writer, op: Operation, sobject: &str, upload: &Upload, abandoned: &AtomicBool) -> Result<Job<'w>, JobError> {
        let mut spec = serde_json::json!({
            "object": sobject,
            "operation": operation_name(op, &w.cfg.bulk),
            "contentType": "CSV",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        });
        if op == Operation::Upsert {
            spec["externalIdFieldName"] = serde_json::json!(w.upsert_field(sobject));
        }
        let created = w
            .client
            .send(Method::POST, "/jobs/ingest", Some(spec.to_string().as_bytes()))
            .await
            .map_err(JobError::NotStarted)?;
        let info: JobInfo = serde_json::from_slice(&created.body).map_err(|e| {
            JobError::NotStarted(SalesforceError::BadAnswer(format!("Bulk job creation answered without a job: {e}")))
        })?;
        let job = Job { w, id: info.id };
        w.open_job(&job.id);
        if abandoned.load(Ordering::SeqCst) {
            job.give_up().await;
            return Err(JobError::Abandoned);
        }
        let path = format!("/jobs/ingest/{}/batches", job.id);
        let body = Payload { bytes: &upload.body, content_type: "text/csv" };
        if let Err(e) = w.client.send_with(Method::PUT, &path, Some(body), "application/json", UPLOAD_ANSWER_BYTES).await {
            job.give_up().await;
            return Err(JobError::NotStarted(e));
        }
        if let Err(e) = job.set_state("UploadComplete").await {
            // The job may have been closed and the answer lost: the status tells.
            match job.info().await {
                Ok(info) if info.state != "Open" => {}
                _ => {
                    job.give_up().await;
                    return Err(JobError::NotStarted(e));
                }
            }
        }
        Ok(job)
    }

    async fn set_state(&self, state: &str) -> Result<(), SalesforceError> {
        let body = serde_json::json!({ "state": state }).to_string();
        self.w.client.send(Method::PATCH, &format!("/jobs/ingest/{}", self.id), Some(body.as_bytes())).await.map(|_| ())
    }

    async fn info(&self) -> Result<JobInfo, SalesforceError> {
        let answer = self.w.client.send(Method::GET, &format!("/jobs/ingest/{}", self.id), None).await?;
        serde_json::from_slice(&answer.body).map_err(|e| SalesforceError::BadAnswer(format!("Bulk job status is not a job: {e}")))
    }

    /// Polls until the job is over: first after `bulk.poll.interval.ms`, then when the job should
    /// be done at the rate it has shown so far (doubling the wait while it shows none), between
    /// `bulk.poll.interval.ms` and 30 s. Failed polls are polled again: the job runs on at
    /// Salesforce whatever the connection does.
    async fn wait(&self, rows: u64, abandoned: &AtomicBool) -> Result<JobInfo, JobError> {
        let first = self.w.cfg.bulk.poll_interval;
        let started = tokio::time::Instant::now();
        let mut interval = first;
        loop {
            self.sleep(interval, abandoned).await?;
            match self.info().await {
                Ok(info) if matches!(info.state.as_str(), "JobComplete" | "Failed" | "Aborted") => return Ok(info),
                Ok(info) => interval = next_poll(interval, first, started.elapsed(), info.number_records_processed, rows),
                Err(e) if e.class() == ErrorClass::Fatal => {
                    // Credentials went away mid-job: the task fails; the job finishes at Salesforce
                    // and its records are written again by the next run (not committed here).
                    return Err(JobError::NotStarted(e));
                }
                Err(e) => {
                    interval = (interval * 2).min(BulkConfig::MAX_POLL_INTERVAL);
                    self.w.client.logs().debug(format!("Bulk job {}: status poll failed ({e}); polling again", self.id));
                }
            }
        }
    }

    /// Sleeps, waking early when the job's records are abandoned (then aborts the job).
    async fn sleep(&self, interval: Duration, abandoned: &AtomicBool) -> Result<(), JobError> {
        let until = tokio::time::Instant::now() + interval;
        while tokio::time::Instant::now() < until {
            if abandoned.load(Ordering::SeqCst) {
                self.give_up().await;
                return Err(JobError::Abandoned);
            }
            tokio::time::sleep_until(until.min(tokio::time::Instant::now() + Duration::from_millis(100))).await;
        }
        Ok(())
    }

    /// Reads the results of a finished job and gives every uploaded write its result.
    async fn collect(
        &self,
        op: Operation,
        items: &[RequestItem],
        upload: &Upload,
        info: &JobInfo,
        results: &mut [Option<SendResult>],
        abandoned: &AtomicBool,
    ) -> Result<(), JobError> {
        self.w.close_job(&self.id);
        let mut matcher = Matcher::new(op, upload);
        let succeeded = info.number_records_processed.saturating_sub(info.number_records_failed);
        if succeeded > 0 {
            for row in self.results("successfulResults", abandoned).await? {
                if let Some(i) = matcher.find(&row) {
                    let id = row.get("sf__id").filter(|id| !id.is_empty()).cloned();
                    results[i] = Some(SendResult::Written { id: id.or_else(|| items[i].id.clone()) });
                }
            }
        }
        if info.number_records_failed > 0 {
            for row in self.results("failedResults", abandoned).await? {
                if let Some(i) = matcher.find(&row) {
                    let error = row.get("sf__error").map(String::as_str).unwrap_or("");
                    results[i] = Some(self.row_failure(op, &items[i], error));
                }
            }
        }
        if info.state == "JobComplete" {
            return Ok(());
        }
        // Failed or Aborted: what was not processed is retried, unless the job's cause is a
        // column that some writes carry (those writes fail, the rest go again without it).
        let cause = info.error_message.clone().unwrap_or_else(|| format!("Bulk job {} ended {}", self.id, info.state));
        let blamed = blamed_column(&cause).and_then(|c| upload.table.column_index(&c));
        for (i, result) in results.iter_mut().enumerate().take(upload.rows) {
            if result.is_some() {
                continue;
            }
            let carries = blamed.is_some_and(|c| upload.table.rows[i].iter().any(|(col, v)| *col == c && !v.is_empty()));
            *result = Some(if carries {
                SendResult::Failed(format!("Bulk job {} failed: {cause}", self.id))
            } else if blamed.is_some() || info.state == "Aborted" {
                SendResult::Retry(format!("Bulk job {} ended {} before this record: {cause}", self.id, info.state))
            } else {
                SendResult::ViaCollections(format!("Bulk job {} failed: {cause}", self.id))
            });
        }
        Ok(())
    }

    /// One result file as rows of (lower-cased column name → cell), fetched until it arrives.
    async fn results(&self, which: &str, abandoned: &AtomicBool) -> Result<Vec<HashMap<String, String>>, JobError> {
        let path = format!("/jobs/ingest/{}/{which}/", self.id);
        let mut attempt = 0;
        loop {
            match self.w.client.send_with(Method::GET, &path, None, "text/csv", MAX_RESULT_BYTES).await {
                Ok(answer) => {
                    let text = String::from_utf8_lossy(&answer.body);
                    let rows = csv::parse(&text).map_err(|e| {
                        JobError::NotStarted(SalesforceError::BadAnswer(format!("Bulk job {} {which} is not CSV: {e}", self.id)))
                    })?;
                    let mut rows = rows.into_iter();
                    let header: Vec<String> = rows.next().unwrap_or_default().iter().map(|h| h.to_lowercase()).collect();
                    return Ok(rows.map(|row| header.iter().cloned().zip(row).collect()).collect());
                }
                Err(e) if e.class() == ErrorClass::Recoverable => {
                    attempt += 1;
                    self.sleep(self.w.cfg.retry.backoff(attempt).max(Duration::from_millis(100)), abandoned).await?;
                }
                // Results that cannot be read leave their records unmatched: they are tried again.
                Err(e) if e.class() == ErrorClass::Fatal => return Err(JobError::NotStarted(e)),
                Err(e) => {
                    self.w.client.logs().warn(format!("Bulk job {}: cannot read {which} ({e}); its records are written again", self.id));
                    return Ok(vec![]);
                }
            }
        }
    }

    /// A failed row's `sf__Error` (`CODE:message:fields --`) as the write's result.
    fn row_failure(&self, op: Operation, item: &RequestItem, error: &str) -> SendResult {
        let (code, message) = error.split_once(':').unwrap_or(("", error));
        let code = code.trim();
        let message = message.trim().trim_end_matches("--").trim().trim_end_matches(':');
        let class = classify_code(code, message, None);
        let gone = matches!(code, "NOT_FOUND" | "ENTITY_IS_DELETED" | "INVALID_CROSS_REFERENCE_KEY" | "INVALID_ID_FIELD")
            && matches!(op, Operation::Update | Operation::Delete);
        let text = format!("{code}: {message} (Bulk job {}, sf__Error)", self.id);
        self.w.result_for(op, item, class, gone, text)
    }

    /// Aborts and deletes a job whose records are no longer this task's (best effort).
    async fn give_up(&self) {
        let _ = self.set_state("Aborted").await;
        let _ = self.w.client.send(Method::DELETE, &format!("/jobs/ingest/{}", self.id), None).await;
        self.w.close_job(&self.id);
    }
}

/// Aborts jobs by id (best effort): the task stops while they run.
pub(super) async fn abort(w: &Writer, ids: Vec<String>) {
    for id in ids {
        let job = Job { w, id };
        job.give_up().await;
    }
}

/// Finds the write a result row belongs to.
struct Matcher<'u> {
    upload: &'u Upload,
    /// Key column value (lower-cased) → row, for UPSERT/UPDATE/DELETE.
    by_key: HashMap<String, usize>,
    /// Whole line → rows not matched yet, for INSERT.
    by_line: HashMap<String, Vec<usize>>,
}

impl<'u> Matcher<'u> {
    fn new(op: Operation, upload: &'u Upload) -> Matcher<'u> {
        let mut by_key = HashMap::new();
        let mut by_line: HashMap<String, Vec<usize>> = HashMap::new();
        for row in 0..upload.rows {
            if upload.table.rows[row].is_empty() {
                continue;
            }
            match (op, upload.key_column) {
                (Operation::Insert, _) | (_, None) => by_line.entry(upload.table.line(row)).or_default().push(row),
                (_, Some(c)) => {
                    if let Some((_, key)) = upload.table.rows[row].iter().find(|(col, _)| *col == c) {
                        by_key.insert(key.to_lowercase(), row);
                    }
                }
            }
        }
        for rows in by_line.values_mut() {
            rows.reverse(); // popped from the end: first uploaded, first matched
        }
        Matcher { upload, by_key, by_line }
    }

    fn find(&mut self, row: &HashMap<String, String>) -> Option<usize> {
        let table = &self.upload.table;
        if let Some(c) = self.upload.key_column {
            let key = row.get(&table.columns[c].to_lowercase())?;
            return self.by_key.remove(&key.to_lowercase());
        }
        let cells: Vec<&str> = table.columns.iter().map(|c| row.get(&c.to_lowercase()).map(String::as_str).unwrap_or("")).collect();
        let line = csv::encode_line(cells.into_iter());
        self.by_line.get_mut(&line)?.pop()
    }
}

/// The wait before the next status poll: when the rows left should be done at the rate seen so far
/// (plus a tenth), else twice the last wait; never below the first wait nor above 30 s.
fn next_poll(last: Duration, first: Duration, elapsed: Duration, processed: u64, rows: u64) -> Duration {
    let wait = if processed > 0 && processed < rows && !elapsed.is_zero() {
        let per_row = elapsed.as_secs_f64() / processed as f64;
        Duration::from_secs_f64(per_row * (rows - processed) as f64 * 1.1)
    } else {
        last * 2
    };
    wait.clamp(first, BulkConfig::MAX_POLL_INTERVAL.max(first))
}

fn operation_name(op: Operation, bulk: &BulkConfig) -> &'static str {
    match op {
        Operation::Insert => "insert",
        Operation::Update => "update",
        Operation::Upsert => "upsert",
        Operation::Delete if bulk.hard_delete => "hardDelete",
        Operation::Delete => "delete",
    }
}

/// The column a failed job's message blames ("InvalidBatch : Field name not found : Foo__c").
fn blamed_column(message: &str) -> Option<String> {
    let rest = message.split("Field name not found").nth(1)?;
    let column = rest.trim_start_matches([' ', ':']).split([' ', ',', ';']).next()?.trim();
    (!column.is_empty()).then(|| column.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn polls_come_when_the_job_should_be_done() {
        use std::time::Duration;
        let s = Duration::from_secs;
        // 20,000 of 100,000 rows in 2 s: the rest takes 8 s more.
        assert_eq!(super::next_poll(s(2), s(2), s(2), 20_000, 100_000), Duration::from_millis(8_800));
        // Nothing processed yet: back off.
        assert_eq!(super::next_poll(s(2), s(2), s(2), 0, 100_000), s(4));
        // Never below the first interval, never above 30 s.
        assert_eq!(super::next_poll(s(2), s(2), s(2), 99_999, 100_000), s(2));
        assert_eq!(super::next_poll(s(2), s(2), s(2), 1, 100_000), s(30));
    }

    #[test]
    fn blamed_column_from_salesforce_messages() {
        assert_eq!(super::blamed_column("InvalidBatch : Field name not found : Foo__c").as_deref(), Some("Foo__c"));
        assert_eq!(super::blamed_column("ClientInputError : LineEnding is invalid"), None);
    }
}
