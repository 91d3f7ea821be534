//! Bulk API 2.0 ingest jobs as the store keeps them: settings, counters, the daily allowances and
//! each job's state, upload and outcomes. The API handlers and the background processing are in
//! `bulk.rs`.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::clock::{format_datetime, now_ms};

/// Key prefix of Bulk API jobs (AsyncApexJob / BulkJob ids start with 750).
pub const JOB_PREFIX: &str = "750";
pub const DEFAULT_RECORDS_PER_SECOND: u64 = 50_000;
/// Salesforce: at most 150 MB of base64-encoded data per upload, about 100 MB of raw CSV.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;
/// Salesforce: 150,000,000 Bulk API 2.0 records per rolling 24 hours.
pub const DEFAULT_DAILY_RECORDS: u64 = 150_000_000;
/// Salesforce: 15,000 Bulk API batches per rolling 24 hours; Bulk API 2.0 ingest counts one per
/// 10,000 records it processes.
pub const DEFAULT_DAILY_BATCHES: u64 = 15_000;
/// Salesforce splits an ingest job into batches of 10,000 records, processed in parallel.
pub const RECORDS_PER_BATCH: u64 = 10_000;
/// What a job fails with when the rolling 24-hour record allowance runs out while it is processed.
pub const DAILY_RECORDS_MESSAGE: &str = "ExceededQuota : Exceeded the maximum number of records Bulk API 2.0 can process in 24 hours";
/// Salesforce: Get All Jobs returns up to 1000 jobs per request, then a `nextRecordsUrl`.
pub const LIST_PAGE_SIZE: u64 = 1000;
pub const DEFAULT_FAIL_MESSAGE: &str = "InternalServerError : Job processing failed after 10 retries";
const DAY_MS: u64 = 86_400_000;

// ---------------------------------------------------------------------------------------------
// Settings, counters, state
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, serde::Serialize)]
pub struct Settings {
    pub records_per_second: u64,
    pub fail_next_jobs: u64,
    pub fail_message: String,
    pub unprocessed_next_jobs: u64,
    pub process_first: u64,
    /// The next N jobs closed complete normally but record no results (as for batches beyond
    /// the daily batch allocation): result files hold the header only.
    pub results_not_recorded_next_jobs: u64,
    /// The next N jobs closed vanish right after the close is answered, as if deleted in Setup:
    /// their rows are still processed, but every later call on them answers 404 NOT_FOUND.
    pub vanish_next_jobs: u64,
    pub max_upload_bytes: u64,
    pub daily_records_limit: u64,
    pub daily_batches_limit: u64,
    pub seed: u64,
    /// Jobs per page of `GET /jobs/ingest` (Salesforce: up to 1000).
    pub list_page_size: u64,
    /// Rows per internal batch (Salesforce: 10,000); smaller in tests to get many batches.
    pub records_per_batch: u64,
    /// Result files print each cell as the value was stored (numbers, booleans, dates, Ids in
    /// their canonical form) instead of echoing the uploaded bytes.
    pub normalize_echo: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            records_per_second: DEFAULT_RECORDS_PER_SECOND,
            fail_next_jobs: 0,
            fail_message: DEFAULT_FAIL_MESSAGE.into(),
            unprocessed_next_jobs: 0,
            process_first: 0,
            results_not_recorded_next_jobs: 0,
            vanish_next_jobs: 0,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            daily_records_limit: DEFAULT_DAILY_RECORDS,
            daily_batches_limit: DEFAULT_DAILY_BATCHES,
            seed: 0x5EED,
            list_page_size: LIST_PAGE_SIZE,
            records_per_batch: RECORDS_PER_BATCH,
            normalize_echo: false,
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counters {
    pub jobs_created: u64,
    pub jobs_completed: u64,
    pub jobs_failed: u64,
    pub jobs_aborted: u64,
    pub records_processed: u64,
    pub uploads: u64,
}

#[derive(Default)]
pub struct BulkState {
    pub settings: Settings,
    pub counters: Counters,
    pub jobs: HashMap<String, Job>,
    /// Job ids in creation order (listing order).
    pub order: Vec<String>,
    /// (time, records, batches) of each accepted upload, for the rolling 24-hour allowances.
    pub usage: VecDeque<(u64, u64, u64)>,
}

impl BulkState {
    /// Records and batches used in the last 24 hours.
    pub fn used(&self) -> (u64, u64) {
        let cutoff = now_ms().saturating_sub(DAY_MS);
        self.usage.iter().filter(|u| u.0 >= cutoff).fold((0, 0), |(r, b), u| (r + u.1, b + u.2))
    }

    /// `GET /__emulator/bulk`: the settings plus the counters.
    pub fn view(&self) -> Value {
        let (records, batches) = self.used();
        let mut v = serde_json::to_value(&self.settings).unwrap_or_default();
        if let (Value::Object(m), Value::Object(c)) = (&mut v, serde_json::to_value(&self.counters).unwrap_or_default()) {
            m.extend(c);
            m.insert("jobs".into(), json!(self.jobs.len()));
            m.insert("daily_records_used".into(), json!(records));
            m.insert("daily_batches_used".into(), json!(batches));
        }
        v
    }

    /// `POST /__emulator/bulk`: sets the members present.
    pub fn configure(&mut self, v: &Value) -> Result<(), String> {
        let Value::Object(m) = v else { return Err("expected a JSON object".into()) };
        let s = &mut self.settings;
        for (k, x) in m {
            let n = || x.as_u64().ok_or(format!("{k} must be a non-negative integer"));
            match k.as_str() {
                "records_per_second" => s.records_per_second = n()?.max(1),
                "fail_next_jobs" => s.fail_next_jobs = n()?,
                "unprocessed_next_jobs" => s.unprocessed_next_jobs = n()?,
                "process_first" => s.process_first = n()?,
                "results_not_recorded_next_jobs" => s.results_not_recorded_next_jobs = n()?,
                "vanish_next_jobs" => s.vanish_next_jobs = n()?,
                "max_upload_bytes" => s.max_upload_bytes = n()?,
                "daily_records_limit" => s.daily_records_limit = n()?,
                "daily_batches_limit" => s.daily_batches_limit = n()?,
                "seed" => s.seed = n()?,
                "list_page_size" => s.list_page_size = n()?.clamp(1, LIST_PAGE_SIZE),
                "records_per_batch" => s.records_per_batch = n()?.clamp(1, RECORDS_PER_BATCH),
                "normalize_echo" => s.normalize_echo = x.as_bool().ok_or("normalize_echo must be a boolean")?,
                "fail_message" => match x {
                    Value::String(t) => s.fail_message = t.clone(),
                    Value::Null => s.fail_message = DEFAULT_FAIL_MESSAGE.into(),
                    _ => return Err("fail_message must be a string".into()),
                },
                "daily_records_used" => {
                    // Pretend earlier jobs used part of today's allowance.
                    self.usage.push_back((now_ms(), n()?, 0));
                }
                other => return Err(format!("unknown bulk setting {other}")),
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Open,
    UploadComplete,
    InProgress,
    JobComplete,
    Failed,
    Aborted,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Open => "Open",
            JobState::UploadComplete => "UploadComplete",
            JobState::InProgress => "InProgress",
            JobState::JobComplete => "JobComplete",
            JobState::Failed => "Failed",
            JobState::Aborted => "Aborted",
        }
    }
    pub fn finished(self) -> bool {
        matches!(self, JobState::JobComplete | JobState::Failed | JobState::Aborted)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Insert,
    Update,
    Upsert,
    Delete,
    HardDelete,
}

impl Operation {
    pub fn parse(s: &str) -> Option<Operation> {
        Some(match s {
            "insert" => Operation::Insert,
            "update" => Operation::Update,
            "upsert" => Operation::Upsert,
            "delete" => Operation::Delete,
            "hardDelete" => Operation::HardDelete,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
            Operation::HardDelete => "hardDelete",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineEnding {
    Lf,
    Crlf,
}

pub const DELIMITERS: &[(&str, u8)] =
    &[("COMMA", b','), ("TAB", b'\t'), ("PIPE", b'|'), ("SEMICOLON", b';'), ("CARET", b'^'), ("BACKQUOTE", b'`')];

/// What the fault settings decided for a job when it was closed.
#[derive(Clone, Debug)]
pub enum Plan {
    Normal,
    /// End Failed without processing a record.
    FailAll(String),
    /// Process the first K rows, then end Failed; the rest stay unprocessed.
    StopAfter(usize, String),
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Success { id: String, created: bool },
    Failure { id: String, error: String },
}

/// The parsed upload with its columns resolved against the object.
pub struct Parsed {
    pub csv: Csv,
    pub columns: Vec<Column>,
}

pub struct Job {
    pub id: String,
    pub object: String,
    pub operation: Operation,
    pub external_id: Option<String>,
    /// The user whose access token created the job.
    pub created_by: String,
    pub line_ending: LineEnding,
    pub delimiter: (&'static str, u8),
    pub api_version: f64,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub state: JobState,
    pub upload: Option<Bytes>,
    pub plan: Plan,
    /// False when Salesforce records no results for the job (successful and failed result files
    /// hold the header only).
    pub results_recorded: bool,
    /// Gone for the API (deleted in Setup) while its rows are still processed.
    pub vanished: bool,
    pub parsed: Option<Arc<Parsed>>,
    /// Batches not yet done: (next row, end) each; one is drawn at random for every chunk, so
    /// batches run interleaved (in parallel) and in no particular order.
    pub pending: Vec<(usize, usize)>,
    pub batch_size: usize,
    /// Per batch: whether its results are recorded (false beyond the daily batch allocation).
    pub batch_recorded: Vec<bool>,
    /// Draws the batch of each next chunk (seeded per job).
    pub rng: rand::rngs::StdRng,
    /// record_error fault rules that apply to this job's rows.
    pub record_rules: Vec<usize>,
    pub outcomes: Vec<Option<Outcome>>,
    pub processed: u64,
    pub failed: u64,
    pub error_message: Option<String>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub budget: f64,
}

impl Job {
    pub fn info(&self) -> Value {
        let version = format!("v{:.1}", self.api_version);
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("operation".into(), json!(self.operation.name()));
        m.insert("object".into(), json!(self.object));
        m.insert("createdById".into(), json!(self.created_by));
        m.insert("createdDate".into(), json!(format_datetime(self.created_ms)));
        m.insert("systemModstamp".into(), json!(format_datetime(self.modified_ms)));
        m.insert("state".into(), json!(self.state.name()));
        if let Some(f) = &self.external_id {
            m.insert("externalIdFieldName".into(), json!(f));
        }
        m.insert("concurrencyMode".into(), json!("Parallel"));
        m.insert("contentType".into(), json!("CSV"));
        m.insert("apiVersion".into(), json!(self.api_version));
        m.insert("jobType".into(), json!("V2Ingest"));
        m.insert("contentUrl".into(), json!(format!("services/data/{version}/jobs/ingest/{}/batches", self.id)));
        m.insert("lineEnding".into(), json!(if self.line_ending == LineEnding::Lf { "LF" } else { "CRLF" }));
        m.insert("columnDelimiter".into(), json!(self.delimiter.0));
        m.insert("numberRecordsProcessed".into(), json!(self.processed));
        m.insert("numberRecordsFailed".into(), json!(self.failed));
        m.insert("retries".into(), json!(0));
        let busy = match (self.started_ms, self.finished_ms) {
            (Some(s), Some(f)) => f.saturating_sub(s),
            (Some(s), None) => now_ms().saturating_sub(s),
            _ => 0,
        };
        m.insert("totalProcessingTime".into(), json!(busy));
        m.insert("apiActiveProcessingTime".into(), json!(busy));
        m.insert("apexProcessingTime".into(), json!(0));
        if let Some(e) = &self.error_message {
            m.insert("errorMessage".into(), json!(e));
        }
        Value::Object(m)
    }

    /// Whether row `i`'s result is recorded (its batch was within the daily batch allocation).
    pub fn recorded(&self, i: usize) -> bool {
        self.batch_recorded.get(i / self.batch_size.max(1)).copied().unwrap_or(true)
    }

    pub fn finish(&mut self, state: JobState, error: Option<String>, counters: &mut Counters) {
        self.state = state;
        self.error_message = error;
        let now = now_ms();
        self.finished_ms = Some(now);
        self.started_ms.get_or_insert(now);
        self.modified_ms = now;
        match state {
            JobState::JobComplete => counters.jobs_completed += 1,
            JobState::Failed => counters.jobs_failed += 1,
            JobState::Aborted => counters.jobs_aborted += 1,
            _ => {}
        }
    }
}

#[derive(Debug)]
pub struct CsvRow {
    /// The row as uploaded, without its line ending: results echo it unchanged.
    pub raw: String,
    pub cells: Vec<String>,
}

#[derive(Debug)]
pub struct Csv {
    pub header_raw: String,
    pub header: Vec<String>,
    pub rows: Vec<CsvRow>,
}

#[derive(Clone, Debug)]
pub enum Column {
    Id,
    Field(usize),
    /// `Account.AccountNumber__c`: the reference field, its parent type and the parent's field.
    Lookup { field: usize, parent: String, parent_field: String },
}
