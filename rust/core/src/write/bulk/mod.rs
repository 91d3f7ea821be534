//! BULK: one Bulk API 2.0 ingest job for one request's writes (SPEC §7).
//!
//! ```text
//!  create job ─▶ upload CSV ─▶ UploadComplete ─▶ poll (backing off to 30 s) ─▶ JobComplete | Failed | Aborted
//!                                  │ job timeout, revoked partitions: abort ─────────▶│
//!                                                                                     ▼
//!      successfulResults / failedResults / unprocessedrecords, matched to the writes by key
//! ```
//!
//! Salesforce does not keep result rows in upload order; every row repeats the uploaded columns,
//! so results are matched back by the write's key: the external ID for UPSERT, the `Id` for
//! UPDATE and DELETE (the pipeline never puts one key twice into a job), and the whole row for
//! INSERT (identical rows are interchangeable; they are matched by multiplicity, cells compared as
//! Salesforce prints them). A write in `unprocessedrecords` was not processed and goes again. A
//! write in none of the files (results not recorded or unreadable, the job gone or timed out) has
//! an unknown outcome: UPSERT, UPDATE and DELETE go again (they are idempotent), an INSERT fails
//! with a message saying the record may or may not exist.
//!
//! CSV work (building the upload, reading result files) runs on tokio's blocking threads, not on
//! the I/O threads that every request of the task shares.

pub(crate) mod csv;
mod orphans;

pub(super) use orphans::settle as settle_orphans;

use super::{RequestItem, SendResult, Writer};
use crate::config::{BulkConfig, Operation};
use crate::error::{classify_code, ErrorClass, SalesforceError};
use crate::http::Payload;
use bytes::Bytes;
use reqwest::Method;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Salesforce takes at most 100 MB of CSV per job; rows that would go beyond this stay for the
/// next job.
pub const MAX_UPLOAD_BYTES: usize = 90_000_000;
/// The answer to an upload is a few bytes of JSON at most.
const UPLOAD_ANSWER_BYTES: usize = 1 << 20;
/// Result files repeat the upload plus a few columns.
const MAX_RESULT_BYTES: usize = 256 << 20;
/// The slowest transfer rate an upload or a result download is given time for, beyond
/// `salesforce.request.timeout.ms`: a 90 MB upload may take 30 s + 343 s.
const MIN_TRANSFER_BYTES_PER_SEC: u64 = 256 * 1024;
/// Status polls that fail in a row (no answer, 5xx) before the job is given up: with the backoff
/// to 30 s between them, about ten minutes without an answer.
const MAX_FAILED_POLLS: u32 = 25;
/// Tries of one result file download that fail for a transient cause before its rows are unknown.
const MAX_RESULT_TRIES: u32 = 5;

/// What went wrong with a job as a whole.
#[derive(Debug)]
pub(crate) enum JobError {
    /// Salesforce did not take the job (creation, upload or closing refused or unanswered):
    /// nothing was written.
    NotStarted(SalesforceError),
    /// The connector gave the job up before Salesforce had it (its records' partitions were revoked).
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

impl JobInfo {
    fn finished(&self) -> bool {
        matches!(self.state.as_str(), "JobComplete" | "Failed" | "Aborted")
    }
}

/// One job's writes, as uploaded.
pub(super) struct Upload {
    /// The body: header and the rows that fit.
    body: Bytes,
    columns: Vec<String>,
    /// The column that identifies a row's write: external ID (UPSERT) or `Id`; none for INSERT.
    key_column: Option<usize>,
    /// Indices of the writes in the body, in body order.
    uploaded: Vec<usize>,
    /// Writes that have no CSV form (index → result): they get it without a request. Writes after
    /// the last uploaded or refused one did not fit into the job.
    refused: HashMap<usize, SendResult>,
}

/// How a job ended for the connector, before its result files are read.
enum Ending {
    /// Salesforce finished it (JobComplete, Failed, or Aborted by someone).
    Finished(JobInfo),
    /// The connector aborted it (revoked partitions, job timeout): what it processed until then
    /// is in its result files when Salesforce answers with its state.
    Aborted { info: Option<JobInfo>, why: String },
    /// Salesforce no longer knows the job, or its status could not be read: nothing about its
    /// rows can be learnt.
    Lost(String),
    /// The credentials went away mid-job: the task fails.
    Fatal(SalesforceError),
}

/// A job's CSV, built from its writes (on a blocking thread) before the job is created.
pub(super) async fn prepare(w: &Writer, op: Operation, items: &Arc<[RequestItem]>) -> Upload {
    let (cfg, items) = (Arc::clone(&w.cfg), Arc::clone(items));
    off_runtime(move || build_upload(&cfg, op, &items)).await
}

/// A job Salesforce has taken, and how it ended.
pub(super) struct Submitted<'w> {
    job: Job<'w>,
    ending: Ending,
}

/// Creates the job, uploads its CSV and waits until it is over. `None` when no write had a CSV
/// form, so there was no job. The job needs nothing of its writes but `upload` meanwhile.
pub(super) async fn submit<'w>(
    w: &'w Writer,
    op: Operation,
    sobject: &str,
    upload: &Upload,
    abandoned: &AtomicBool,
) -> Result<Option<Submitted<'w>>, JobError> {
    if upload.uploaded.is_empty() {
        return Ok(None);
    }
    let job = Job::start(w, op, sobject, upload, abandoned).await?;
    let ending = job.wait(upload.uploaded.len() as u64, abandoned).await;
    Ok(Some(Submitted { job, ending }))
}

/// One result per write of `items` (the writes `upload` was prepared from), in order: read from
/// the job's result files, or what its ending says of the rows they do not list.
pub(super) async fn results(
    op: Operation,
    items: &Arc<[RequestItem]>,
    mut upload: Upload,
    submitted: Option<Submitted<'_>>,
    abandoned: &AtomicBool,
) -> Result<Vec<SendResult>, JobError> {
    let mut results: Vec<Option<SendResult>> = (0..items.len()).map(|_| None).collect();
    for (i, result) in std::mem::take(&mut upload.refused) {
        results[i] = Some(result);
    }
    if let Some(Submitted { job, ending }) = submitted {
        let aborted_here = matches!(ending, Ending::Aborted { .. });
        job.collect(op, items, upload, ending, &mut results, abandoned).await?;
        if aborted_here {
            job.forget().await;
        }
    }
    Ok(results.into_iter().map(|r| r.unwrap_or(SendResult::NotSent)).collect())
}

/// Runs CPU-bound CSV work on a blocking thread, so that other requests' I/O goes on meanwhile.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The CSV of a job: columns first (the union of the writes' fields), then one line per write,
/// cells made twice rather than kept, so a job's memory is its body.
fn build_upload(cfg: &crate::config::Config, op: Operation, items: &[RequestItem]) -> Upload {
    let mut columns = csv::Columns::new();
    let key_name = match op {
        Operation::Upsert => items.first().map(|first| cfg.upsert_field(&first.sobject).to_owned()),
        Operation::Update | Operation::Delete => Some("Id".to_owned()),
        Operation::Insert => None,
    };
    let key_column = key_name.as_deref().map(|k| columns.column(k));
    let cells = |columns: &mut csv::Columns, item: &RequestItem| {
        let key = match op {
            Operation::Upsert => item.key.as_deref(),
            Operation::Update | Operation::Delete => item.id.as_deref(),
            Operation::Insert => None,
        };
        let leading: Vec<(&str, &str)> = match (&key_name, key) {
            (Some(name), Some(key)) => vec![(name.as_str(), key)],
            _ => vec![],
        };
        let fields: &[u8] = if op == Operation::Delete { &[] } else { &item.fields };
        columns.cells(&leading, fields)
    };
    let mut refused = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let fields: &[u8] = if op == Operation::Delete { &[] } else { &item.fields };
        if csv::unfit_for_bulk(op, fields) {
            refused.insert(
                i,
                SendResult::ViaCollections(
                    "Bulk API cannot carry this record as it is (a text value exactly #N/A, which Bulk API reads as \
                     'clear the field', or an INSERT without fields)"
                        .into(),
                ),
            );
        } else if let Err(why) = cells(&mut columns, item) {
            refused.insert(i, SendResult::Failed(why));
        }
    }
    let mut body = columns.header().into_bytes();
    body.push(b'\n');
    let mut uploaded = Vec::with_capacity(items.len());
    let mut covered = 0;
    for (i, item) in items.iter().enumerate() {
        if refused.contains_key(&i) {
            covered = i + 1;
            continue;
        }
        let Ok(row) = cells(&mut columns, item) else { continue };
        let before = body.len();
        columns.write_line(&row, &mut body);
        if body.len() > MAX_UPLOAD_BYTES && !uploaded.is_empty() {
            body.truncate(before);
            break;
        }
        uploaded.push(i);
        covered = i + 1;
    }
    refused.retain(|&i, _| i < covered);
    Upload { body: Bytes::from(body), columns: columns.names, key_column, uploaded, refused }
}

/// The time a transfer of `bytes` is given: the request timeout plus the bytes at the slowest
/// rate assumed ([`MIN_TRANSFER_BYTES_PER_SEC`]).
fn transfer_timeout(request_timeout: Duration, bytes: usize) -> Duration {
    request_timeout + Duration::from_millis(bytes as u64 * 1000 / MIN_TRANSFER_BYTES_PER_SEC)
}

/// A job Salesforce has taken (created, data uploaded, closed).
struct Job<'w> {
    w: &'w Writer,
    id: String,
    /// Bytes uploaded: result files are about as large.
    uploaded_bytes: usize,
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
        let job = Job { w, id: info.id, uploaded_bytes: upload.body.len() };
        w.open_job(&job.id);
        if abandoned.load(Ordering::SeqCst) {
            job.give_up().await;
            return Err(JobError::Abandoned);
        }
        let path = format!("/jobs/ingest/{}/batches", job.id);
        let body = Payload { bytes: upload.body.clone(), content_type: "text/csv" };
        let timeout = transfer_timeout(w.cfg.request_timeout, upload.body.len());
        let uploaded = w.client.send_with(Method::PUT, &path, Some(body), "application/json", UPLOAD_ANSWER_BYTES, Some(timeout)).await;
        if let Err(e) = uploaded {
            job.give_up().await;
            return Err(JobError::NotStarted(e));
        }
        // Abandoned while uploading: an open job writes nothing; closing it now would.
        if abandoned.load(Ordering::SeqCst) {
            job.give_up().await;
            return Err(JobError::Abandoned);
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
    /// `bulk.poll.interval.ms` and 30 s. Bounded: `salesforce.bulk.job.timeout.ms` after
    /// UploadComplete the job is aborted; [`MAX_FAILED_POLLS`] polls failing in a row, or a job
    /// Salesforce no longer knows (deleted in Setup), lose it.
    async fn wait(&self, rows: u64, abandoned: &AtomicBool) -> Ending {
        let _waiting = crate::metrics::WaitingJob::new(self.w.client.metrics());
        let first = self.w.cfg.bulk.poll_interval;
        let started = tokio::time::Instant::now();
        let deadline = started + self.w.cfg.bulk.job_timeout;
        let mut interval = first;
        let mut failed_polls = 0;
        loop {
            let until = (tokio::time::Instant::now() + interval).min(deadline);
            if !self.sleep_until(until, abandoned).await {
                return self.abort("its records' partitions were revoked").await;
            }
            if tokio::time::Instant::now() >= deadline {
                let why = format!("not finished within salesforce.bulk.job.timeout.ms={}", self.w.cfg.bulk.job_timeout.as_millis());
                self.w.client.logs().warn(format!("Bulk job {} {why}: aborting it; its records' outcome is unknown until its results are read", self.id));
                return self.abort(&why).await;
            }
            match self.info().await {
                Ok(info) if info.finished() => return Ending::Finished(info),
                Ok(info) => {
                    failed_polls = 0;
                    interval = next_poll(interval, first, started.elapsed(), info.number_records_processed, rows);
                }
                Err(e) if e.status() == Some(404) => return Ending::Lost(format!("Salesforce no longer knows the job ({e})")),
                Err(e) if e.class() == ErrorClass::Fatal => {
                    // Credentials went away mid-job: the task fails; the job finishes at Salesforce
                    // and its records are written again by the next run (not committed here).
                    return Ending::Fatal(e);
                }
                Err(e) => {
                    failed_polls += 1;
                    if failed_polls >= MAX_FAILED_POLLS {
                        self.w.client.logs().warn(format!("Bulk job {}: {failed_polls} status polls failed in a row ({e}); giving the job up", self.id));
                        self.give_up().await;
                        return Ending::Lost(format!("{failed_polls} status polls failed in a row, the last with: {e}"));
                    }
                    interval = (interval * 2).min(BulkConfig::MAX_POLL_INTERVAL);
                    self.w.client.logs().debug(format!("Bulk job {}: status poll failed ({e}); polling again", self.id));
                }
            }
        }
    }

    /// Sleeps until `until`; false when the job's records were abandoned meanwhile.
    async fn sleep_until(&self, until: tokio::time::Instant, abandoned: &AtomicBool) -> bool {
        while tokio::time::Instant::now() < until {
            if abandoned.load(Ordering::SeqCst) {
                return false;
            }
            tokio::time::sleep_until(until.min(tokio::time::Instant::now() + Duration::from_millis(100))).await;
        }
        !abandoned.load(Ordering::SeqCst)
    }

    /// Aborts the running job and reads its state: an aborted job's result files list what it
    /// processed before the abort.
    async fn abort(&self, why: &str) -> Ending {
        let _ = self.set_state("Aborted").await;
        let mut info = None;
        for attempt in 1..=3 {
            match self.info().await {
                Ok(i) if i.finished() => {
                    info = Some(i);
                    break;
                }
                _ => tokio::time::sleep(self.w.cfg.retry.backoff(attempt).clamp(Duration::from_millis(50), Duration::from_secs(1))).await,
            }
        }
        Ending::Aborted { info, why: why.to_owned() }
    }

    /// Reads the results of a job that is over and gives every uploaded write its result.
    async fn collect(
        &self,
        op: Operation,
        items: &Arc<[RequestItem]>,
        upload: Upload,
        ending: Ending,
        results: &mut [Option<SendResult>],
        abandoned: &AtomicBool,
    ) -> Result<(), JobError> {
        self.w.close_job(&self.id);
        let (info, why) = match ending {
            Ending::Finished(info) => (Some(info), None),
            Ending::Aborted { info, why } => (info, Some(why)),
            Ending::Lost(why) => (None, Some(why)),
            Ending::Fatal(e) => return Err(JobError::NotStarted(e)),
        };
        let upload = Arc::new(upload);
        let mut matcher = {
            let (upload, items) = (Arc::clone(&upload), Arc::clone(items));
            off_runtime(move || Matcher::new(op, &upload, &items)).await
        };
        let mut unprocessed = vec![false; items.len()];
        if let Some(info) = &info {
            let succeeded = info.number_records_processed.saturating_sub(info.number_records_failed);
            let files = [
                (ResultFile::Successful, succeeded > 0 || info.state == "Aborted"),
                (ResultFile::Failed, info.number_records_failed > 0 || info.state == "Aborted"),
                (ResultFile::Unprocessed, true),
            ];
            for (file, wanted) in files {
                if !wanted || matcher.left == 0 {
                    continue;
                }
                let Some(body) = self.results(file, abandoned).await? else { continue };
                let (m, found, problem) = off_runtime(move || {
                    let mut m = matcher;
                    let (found, problem) = m.read(file, &body);
                    (m, found, problem)
                })
                .await;
                matcher = m;
                if let Some(problem) = problem {
                    self.w.client.logs().warn(format!(
                        "Bulk job {}: {} cannot be read to the end ({problem}); the {} row(s) read before are kept, \
                         the records not found in any result file have an unknown outcome",
                        self.id,
                        file.path(),
                        found.len()
                    ));
                }
                for (i, row) in found {
                    match row {
                        Found::Written(id) => results[i] = Some(SendResult::Written { id: id.or_else(|| items[i].id.clone()) }),
                        Found::Failed(error) => results[i] = Some(self.row_failure(op, &items[i], &error)),
                        Found::Unprocessed => unprocessed[i] = true,
                    }
                }
            }
        }
        // What Salesforce said of the job as a whole decides for the rows it did not report.
        let state = info.as_ref().map_or("unknown", |i| i.state.as_str());
        let processed_any = info.as_ref().is_some_and(|i| i.number_records_processed > 0);
        let cause = info
            .as_ref()
            .and_then(|i| i.error_message.clone())
            .or(why.clone())
            .unwrap_or_else(|| format!("Bulk job {} ended {state}", self.id));
        let blamed = if state == "Failed" { blamed_column(&cause) } else { None };
        for &i in &upload.uploaded {
            if results[i].is_some() {
                continue;
            }
            let not_processed = unprocessed[i] || (info.is_some() && state != "JobComplete" && !processed_any);
            results[i] = Some(if !not_processed {
                self.unknown(op, &items[i], &format!("Bulk job {} ended {state}{}", self.id, why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()))
            } else if let Some(column) = &blamed {
                if super::carries_any(&items[i].fields, std::slice::from_ref(column)) {
                    SendResult::Failed(format!("Bulk job {} failed: {cause}", self.id))
                } else {
                    SendResult::Retry(format!("Bulk job {} failed before this record: {cause}", self.id))
                }
            } else if state == "Failed" && is_allowance_spent(&cause) {
                // The org's daily Bulk allowance is quota, never a record error (SPEC §7).
                SendResult::WaitForQuota(format!("Bulk job {} failed: {cause}", self.id))
            } else if state == "Failed" {
                SendResult::ViaCollections(format!("Bulk job {} failed: {cause}", self.id))
            } else {
                SendResult::Retry(format!("Bulk job {} did not process this record ({state}): {cause}", self.id))
            });
        }
        Ok(())
    }

    /// A write Salesforce may or may not have done. UPSERT, UPDATE and DELETE are idempotent and go
    /// again; an INSERT sent again could create the record twice.
    fn unknown(&self, op: Operation, item: &RequestItem, cause: &str) -> SendResult {
        match op {
            Operation::Insert => SendResult::Failed(format!(
                "the outcome of this INSERT is unknown: the record may or may not exist in Salesforce (it is not \
                 sent again, which could create it twice). {cause} and its result files do not list the record. \
                 Check in Salesforce before replaying it, or set salesforce.idempotency.field"
            )),
            Operation::Delete => {
                self.w.mark_unsure_deletes(std::slice::from_ref(item));
                SendResult::Retry(format!("outcome unknown, sent again: {cause} and its result files do not list the record"))
            }
            Operation::Upsert | Operation::Update => {
                SendResult::Retry(format!("outcome unknown, sent again: {cause} and its result files do not list the record"))
            }
        }
    }

    /// One result file, fetched with a few tries; `None` when it cannot be had (its rows are then
    /// unknown).
    async fn results(&self, file: ResultFile, abandoned: &AtomicBool) -> Result<Option<Bytes>, JobError> {
        let path = format!("/jobs/ingest/{}/{}/", self.id, file.path());
        let timeout = transfer_timeout(self.w.cfg.request_timeout, self.uploaded_bytes + self.uploaded_bytes / 2);
        for attempt in 1..=MAX_RESULT_TRIES {
            match self.w.client.send_with(Method::GET, &path, None, "text/csv", MAX_RESULT_BYTES, Some(timeout)).await {
                Ok(answer) => return Ok(Some(Bytes::from(answer.body))),
                Err(e) if e.class() == ErrorClass::Fatal => return Err(JobError::NotStarted(e)),
                Err(e) if e.class() == ErrorClass::Recoverable && attempt < MAX_RESULT_TRIES => {
                    let wait = self.w.cfg.retry.backoff(attempt).max(Duration::from_millis(100));
                    // Revoked records wait for nobody: the kept ones are settled with what is known.
                    if !self.sleep_until(tokio::time::Instant::now() + wait, abandoned).await {
                        return Ok(None);
                    }
                }
                Err(e) => {
                    self.w.client.logs().warn(format!("Bulk job {}: cannot read {} ({e})", self.id, file.path()));
                    return Ok(None);
                }
            }
        }
        Ok(None)
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
        self.forget().await;
    }

    /// Deletes a job that is over (best effort).
    async fn forget(&self) {
        let _ = self.w.client.send(Method::DELETE, &format!("/jobs/ingest/{}", self.id), None).await;
        self.w.close_job(&self.id);
    }
}

/// Aborts jobs by id (best effort): the task stops while they run.
pub(super) async fn abort(w: &Writer, ids: Vec<String>) {
    for id in ids {
        let job = Job { w, id, uploaded_bytes: 0 };
        job.give_up().await;
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ResultFile {
    Successful,
    Failed,
    Unprocessed,
}

impl ResultFile {
    fn path(self) -> &'static str {
        match self {
            ResultFile::Successful => "successfulResults",
            ResultFile::Failed => "failedResults",
            ResultFile::Unprocessed => "unprocessedrecords",
        }
    }
}

/// What a result file says of one write.
#[derive(Debug, PartialEq)]
enum Found {
    Written(Option<String>),
    Failed(String),
    Unprocessed,
}

/// Finds the write a result row belongs to.
struct Matcher {
    op: Operation,
    columns: Vec<String>,
    key_column: Option<usize>,
    /// [`match_key`] → write, for UPSERT/UPDATE/DELETE.
    by_key: HashMap<String, usize>,
    /// Row as Salesforce prints it ([`canonical_row`]) → writes not matched yet, for INSERT.
    by_row: HashMap<String, Vec<usize>>,
    /// Writes not matched yet.
    left: usize,
}

impl Matcher {
    fn new(op: Operation, upload: &Upload, items: &[RequestItem]) -> Matcher {
        let mut by_key = HashMap::new();
        let mut by_row: HashMap<String, Vec<usize>> = HashMap::new();
        if op == Operation::Insert || upload.key_column.is_none() {
            // The rows as uploaded, read back from the body: one copy of them, only while matching.
            let text = std::str::from_utf8(&upload.body).unwrap_or_default();
            for (row, &i) in csv::Rows::new(text).skip(1).zip(&upload.uploaded) {
                if let Ok((cells, _)) = row {
                    by_row.entry(canonical_row(cells.iter().map(String::as_str))).or_default().push(i);
                }
            }
            for rows in by_row.values_mut() {
                rows.reverse(); // popped from the end: first uploaded, first matched
            }
        } else {
            for &i in &upload.uploaded {
                let key = match op {
                    Operation::Upsert => items[i].key.as_deref(),
                    _ => items[i].id.as_deref(),
                };
                if let Some(key) = key {
                    by_key.insert(match_key(op, key), i);
                }
            }
        }
        Matcher { op, columns: upload.columns.clone(), key_column: upload.key_column, by_key, by_row, left: upload.uploaded.len() }
    }

    /// The writes `body` (one result file) names, and why it could not be read to its end. Rows
    /// read before a fault stand; a row with the wrong number of cells, or a last row without its
    /// line end (a body cut short), is not trusted.
    fn read(&mut self, file: ResultFile, body: &[u8]) -> (Vec<(usize, Found)>, Option<String>) {
        let mut found = Vec::new();
        let text = match std::str::from_utf8(body) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(body),
        };
        let mut rows = csv::Rows::new(&text);
        let header: Vec<String> = match rows.next() {
            Some(Ok((header, _))) => header.iter().map(|h| h.to_lowercase()).collect(),
            Some(Err(e)) => return (found, Some(e)),
            None => return (found, None),
        };
        let position = |name: &str| header.iter().position(|h| *h == name.to_lowercase());
        let positions: Vec<Option<usize>> = self.columns.iter().map(|c| position(c)).collect();
        let (id_at, error_at) = (position("sf__Id"), position("sf__Error"));
        let key_at = self.key_column.and_then(|c| positions[c]);
        if self.key_column.is_some() && key_at.is_none() && !self.by_key.is_empty() {
            return (found, Some("no column of the key the rows are matched by".into()));
        }
        let mut problem = None;
        for row in rows {
            let (cells, ended) = match row {
                Ok(row) => row,
                Err(e) => {
                    problem = Some(e);
                    break;
                }
            };
            if cells.len() != header.len() || !ended {
                problem = Some(if ended { "a row with another number of cells than the header" } else { "the last row is cut short" }.into());
                continue;
            }
            let i = match key_at {
                Some(at) => self.by_key.remove(&match_key(self.op, &cells[at])),
                None => {
                    let row = canonical_row(positions.iter().map(|p| p.map_or("", |p| cells[p].as_str())));
                    self.by_row.get_mut(&row).and_then(Vec::pop)
                }
            };
            let Some(i) = i else { continue };
            self.left -= 1;
            let cell = |at: Option<usize>| at.map(|at| cells[at].clone()).unwrap_or_default();
            found.push((
                i,
                match file {
                    ResultFile::Successful => Found::Written(Some(cell(id_at)).filter(|id| !id.is_empty())),
                    ResultFile::Failed => Found::Failed(cell(error_at)),
                    ResultFile::Unprocessed => Found::Unprocessed,
                },
            ));
        }
        (found, problem)
    }
}

/// A key as it identifies a row: external IDs match case-insensitively; Ids by their 18-character
/// form (Salesforce may print a 15-character Id back in 18).
fn match_key(op: Operation, key: &str) -> String {
    match op {
        Operation::Upsert => key.to_lowercase(),
        _ => crate::ids::to_18(key).unwrap_or_else(|| key.to_owned()),
    }
}

/// A row as Salesforce may print it back: numbers without trailing zeros or exponent noise,
/// booleans in lower case, date-times in UTC with a `Z`, Ids in 18 characters. Two rows that Salesforce reads alike
/// compare alike.
fn canonical_row<'a>(cells: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for cell in cells {
        out.push_str(&canonical_cell(cell));
        out.push('\u{1f}');
    }
    out
}

fn canonical_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let looks_numeric = cell.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.')
        && cell.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    if looks_numeric {
        if let Ok(n) = cell.parse::<f64>() {
            if n.is_finite() && (cell.len() <= 15 || cell.contains('.')) {
                return Cow::Owned(ryu::Buffer::new().format(n).trim_end_matches(".0").to_owned());
            }
        }
    }
    if cell.len() == 15 || cell.len() == 18 {
        if let Some(id) = crate::ids::to_18(cell) {
            return Cow::Owned(id);
        }
    }
    if cell.eq_ignore_ascii_case("true") || cell.eq_ignore_ascii_case("false") {
        return Cow::Owned(cell.to_ascii_lowercase());
    }
    // 2024-01-02T03:04:05[.000](Z|+0000|+00:00)
    let bytes = cell.as_bytes();
    if bytes.len() >= 20 && bytes[4] == b'-' && bytes[10] == b'T' && bytes[13] == b':' {
        let (main, zone) = cell.split_at(19);
        let zone = zone.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
        let millis = &cell[19..cell.len() - zone.len()];
        let millis = millis.trim_start_matches('.').trim_end_matches('0');
        if matches!(zone, "Z" | "+0000" | "+00:00" | "-0000" | "-00:00") {
            return Cow::Owned(if millis.is_empty() { format!("{main}Z") } else { format!("{main}.{millis}Z") });
        }
    }
    Cow::Borrowed(cell)
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

/// A failed job's message that says the org's daily Bulk allowance is spent (`ExceededQuota`, the
/// documented Bulk API error code for it).
fn is_allowance_spent(message: &str) -> bool {
    message.contains("ExceededQuota") || message.contains("LIMIT_EXCEEDED")
}

/// The column a failed job's message blames ("InvalidBatch : Field name not found : Foo__c").
fn blamed_column(message: &str) -> Option<String> {
    let rest = message.split("Field name not found").nth(1)?;
    let column = rest.trim_start_matches([' ', ':']).split([' ', ',', ';']).next()?.trim();
    (!column.is_empty()).then(|| column.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_come_when_the_job_should_be_done() {
        let s = Duration::from_secs;
        // 20,000 of 100,000 rows in 2 s: the rest takes 8 s more.
        assert_eq!(next_poll(s(2), s(2), s(2), 20_000, 100_000), Duration::from_millis(8_800));
        // Nothing processed yet: back off.
        assert_eq!(next_poll(s(2), s(2), s(2), 0, 100_000), s(4));
        // Never below the first interval, never above 30 s.
        assert_eq!(next_poll(s(2), s(2), s(2), 99_999, 100_000), s(2));
        assert_eq!(next_poll(s(2), s(2), s(2), 1, 100_000), s(30));
    }

    #[test]
    fn blamed_column_from_salesforce_messages() {
        assert_eq!(blamed_column("InvalidBatch : Field name not found : Foo__c").as_deref(), Some("Foo__c"));
        assert_eq!(blamed_column("ClientInputError : LineEnding is invalid"), None);
    }

    #[test]
    fn transfers_get_time_by_their_size() {
        assert_eq!(transfer_timeout(Duration::from_secs(30), 0), Duration::from_secs(30));
        assert_eq!(transfer_timeout(Duration::from_secs(30), 90_000_000), Duration::from_millis(30_000 + 343_322));
    }

    #[test]
    fn cells_compare_as_salesforce_prints_them() {
        assert_eq!(canonical_cell("1.50"), canonical_cell("1.5"));
        assert_eq!(canonical_cell("2"), canonical_cell("2.0"));
        assert_eq!(canonical_cell("TRUE"), canonical_cell("true"));
        assert_eq!(canonical_cell("2024-01-02T03:04:05.000Z"), canonical_cell("2024-01-02T03:04:05.000+0000"));
        assert_eq!(canonical_cell("2024-01-02T03:04:05Z"), canonical_cell("2024-01-02T03:04:05.000+00:00"));
        assert_ne!(canonical_cell("007"), canonical_cell("7.1"));
        assert_eq!(canonical_cell("A-1"), "A-1");
        assert_eq!(canonical_cell("1.0E7"), canonical_cell("10000000"));
        assert_eq!(canonical_cell("12.0"), canonical_cell("12"));
        assert_eq!(canonical_cell("0018d00000AbCdE"), canonical_cell("0018d00000AbCdEAAZ".get(..15).map(crate::ids::to_18).unwrap().unwrap().as_str()));
        // Long digit strings (phone numbers, account numbers) are text, not numbers.
        assert_ne!(canonical_cell("12345678901234567890"), canonical_cell("12345678901234567891"));
    }

    fn items(keys: &[&str]) -> Arc<[RequestItem]> {
        keys.iter()
            .map(|k| RequestItem {
                sobject: Arc::from("Contact"),
                key: Some(k.to_string()),
                id: None,
                id_from_cache: false,
                fields: Arc::from(format!(r#""LastName":"{k}""#).into_bytes()),
            })
            .collect()
    }

    fn config(pairs: &[(&str, &str)]) -> crate::config::Config {
        let mut map = crate::config::tests::base();
        map.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        crate::config::Config::from_map(&map).unwrap()
    }

    fn upsert_upload(keys: &[&str]) -> (Upload, Arc<[RequestItem]>) {
        let cfg = config(&[("salesforce.external.id.field", "Ext__c"), ("salesforce.operation", "UPSERT")]);
        let items = items(keys);
        (build_upload(&cfg, Operation::Upsert, &items), items)
    }

    #[test]
    fn a_result_file_cut_short_keeps_the_rows_before_the_cut() {
        let (upload, items) = upsert_upload(&["k-1", "k-12", "k-2"]);
        let mut m = Matcher::new(Operation::Upsert, &upload, &items);
        // k-12 cut to "k-1" must not match k-1: a last row without its line end is not trusted.
        let body = "\u{feff}\"sf__Id\",\"sf__Created\",Ext__c,LastName\n\"003A\",\"true\",k-2,k-2\n\"003B\",\"true\",k-1";
        let (found, problem) = m.read(ResultFile::Successful, body.as_bytes());
        assert_eq!(found, vec![(2, Found::Written(Some("003A".into())))]);
        assert!(problem.unwrap().contains("cut short"));
        let (found, problem) = m.read(ResultFile::Successful, b"\"sf__Id\",\"sf__Created\",Ext__c,LastName\n\"003C\",\"true\",k-1,\"k-1\n");
        assert!(found.is_empty() && problem.is_some());
        assert_eq!(m.left, 2);
    }

    #[test]
    fn insert_rows_match_by_multiplicity_and_by_value() {
        let cfg = config(&[("salesforce.operation", "INSERT")]);
        let mut items: Vec<RequestItem> = items(&["a", "a", "b"]).to_vec();
        items[2].fields = Arc::from(&br#""LastName":"b","N__c":1.50"#[..]);
        let items: Arc<[RequestItem]> = items.into();
        let upload = build_upload(&cfg, Operation::Insert, &items);
        let mut m = Matcher::new(Operation::Insert, &upload, &items);
        let body = "sf__Id,sf__Created,N__c,LastName\n003B,true,1.5,b\n003A,true,,a\n003Z,true,,z\n";
        let (found, problem) = m.read(ResultFile::Successful, body.as_bytes());
        assert_eq!(problem, None);
        assert_eq!(found, vec![(2, Found::Written(Some("003B".into()))), (0, Found::Written(Some("003A".into())))]);
        assert_eq!(m.left, 1);
    }
}
