//! Bulk API 2.0 ingest (`/services/data/vNN.0/jobs/ingest`): jobs that take one CSV upload,
//! are closed with `UploadComplete`, then processed asynchronously by a background task at a
//! configurable rate, and answer with successful, failed and unprocessed record results.
//!
//! Records go through the same validation and DML code as the REST API (`validate.rs`,
//! `dml.rs`, the duplicate rules of `collections.rs`), in chunks of 200 rows as Salesforce
//! processes them: duplicate keys inside one chunk fail those rows, as in one sObject
//! Collections request. Result rows come back in a seeded shuffled order, never upload order,
//! since Salesforce does not promise any order.
//!
//! Wordings that no public source confirmed are marked (unverified) in ARCHITECTURE.md.

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::collections::{collection_write_error, duplicates, id_error};
use crate::dml::{self, UpsertError};
use crate::rest::Ctx;
use crate::server::{App, Reply};
use crate::state::{format_datetime, match_key, normalize_id, now_ms, FieldType, ObjectDef, Store};
use crate::validate::{convert, Lookup, Prepared, SfError};

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
/// Salesforce processes a job's records in chunks of 200 (one DML call each).
pub const CHUNK: usize = 200;
/// Salesforce: Get All Jobs returns up to 1000 jobs per request, then a `nextRecordsUrl`.
pub const LIST_PAGE_SIZE: u64 = 1000;
pub const DEFAULT_FAIL_MESSAGE: &str = "InternalServerError : Job processing failed after 10 retries";
const DAY_MS: u64 = 86_400_000;
const TICK: Duration = Duration::from_millis(10);
/// Rows one job may process per tick, so one huge job never holds the store lock for long
/// (REST requests keep flowing); caps a job at about 1,000,000 rows per second.
const MAX_ROWS_PER_TICK: usize = 10_000;

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
    order: Vec<String>,
    /// (time, records, batches) of each accepted upload, for the rolling 24-hour allowances.
    usage: VecDeque<(u64, u64, u64)>,
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
    fn finished(self) -> bool {
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
    fn parse(s: &str) -> Option<Operation> {
        Some(match s {
            "insert" => Operation::Insert,
            "update" => Operation::Update,
            "upsert" => Operation::Upsert,
            "delete" => Operation::Delete,
            "hardDelete" => Operation::HardDelete,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
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

const DELIMITERS: &[(&str, u8)] =
    &[("COMMA", b','), ("TAB", b'\t'), ("PIPE", b'|'), ("SEMICOLON", b';'), ("CARET", b'^'), ("BACKQUOTE", b'`')];

/// What the fault settings decided for a job when it was closed.
#[derive(Clone, Debug)]
enum Plan {
    Normal,
    /// End Failed without processing a record.
    FailAll(String),
    /// Process the first K rows, then end Failed; the rest stay unprocessed.
    StopAfter(usize, String),
}

#[derive(Clone, Debug)]
enum Outcome {
    Success { id: String, created: bool },
    Failure { id: String, error: String },
}

/// The parsed upload with its columns resolved against the object.
pub struct Parsed {
    csv: Csv,
    columns: Vec<Column>,
}

pub struct Job {
    pub id: String,
    pub object: String,
    pub operation: Operation,
    pub external_id: Option<String>,
    /// The user whose access token created the job.
    created_by: String,
    line_ending: LineEnding,
    delimiter: (&'static str, u8),
    api_version: f64,
    created_ms: u64,
    modified_ms: u64,
    pub state: JobState,
    upload: Option<Bytes>,
    plan: Plan,
    /// False when Salesforce records no results for the job (successful and failed result files
    /// hold the header only).
    results_recorded: bool,
    /// Gone for the API (deleted in Setup) while its rows are still processed.
    vanished: bool,
    parsed: Option<Arc<Parsed>>,
    /// Batches not yet done: (next row, end) each; one is drawn at random for every chunk, so
    /// batches run interleaved (in parallel) and in no particular order.
    pending: Vec<(usize, usize)>,
    batch_size: usize,
    /// Per batch: whether its results are recorded (false beyond the daily batch allocation).
    batch_recorded: Vec<bool>,
    /// Draws the batch of each next chunk (seeded per job).
    rng: rand::rngs::StdRng,
    /// record_error fault rules that apply to this job's rows.
    record_rules: Vec<usize>,
    outcomes: Vec<Option<Outcome>>,
    processed: u64,
    failed: u64,
    error_message: Option<String>,
    started_ms: Option<u64>,
    finished_ms: Option<u64>,
    budget: f64,
}

impl Job {
    fn info(&self) -> Value {
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
    fn recorded(&self, i: usize) -> bool {
        self.batch_recorded.get(i / self.batch_size.max(1)).copied().unwrap_or(true)
    }

    fn finish(&mut self, state: JobState, error: Option<String>, counters: &mut Counters) {
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

// ---------------------------------------------------------------------------------------------
// CSV (RFC 4180)
// ---------------------------------------------------------------------------------------------

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

fn line_ending_error(e: LineEnding) -> String {
    format!(
        "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {}",
        if e == LineEnding::Lf { "LF" } else { "CRLF" }
    )
}

/// Parses CSV: quoted fields may hold delimiters, doubled quotes and line breaks; rows end with
/// the job's line ending (a row ending the other way fails the job, as in Salesforce); empty
/// lines are skipped. The first row is the header.
pub fn parse_csv(data: &str, delim: u8, ending: LineEnding) -> Result<Csv, String> {
    let b = data.as_bytes();
    let n = b.len();
    let mut rows: Vec<CsvRow> = vec![];
    let mut i = 0;
    while i < n {
        let start = i;
        let end;
        let mut cells = vec![];
        loop {
            let mut cell = String::new();
            if b[i] == b'"' {
                i += 1;
                let mut seg = i;
                loop {
                    if i >= n {
                        return Err(format!(
                            "ClientInputError : Failed to parse CSV: a quoted field in row {} is not closed",
                            rows.len() + 1
                        ));
                    }
                    if b[i] == b'"' {
                        if i + 1 < n && b[i + 1] == b'"' {
                            cell.push_str(&data[seg..=i]);
                            i += 2;
                            seg = i;
                            continue;
                        }
                        cell.push_str(&data[seg..i]);
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                cells.push(cell);
                if i >= n {
                    end = n;
                    break;
                }
                if b[i] == delim {
                    i += 1;
                    if i >= n {
                        cells.push(String::new());
                        end = n;
                        break;
                    }
                    continue;
                }
                if b[i] == b'\n' {
                    if ending == LineEnding::Crlf {
                        return Err(line_ending_error(ending));
                    }
                    end = i;
                    i += 1;
                    break;
                }
                if b[i] == b'\r' && i + 1 < n && b[i + 1] == b'\n' {
                    if ending == LineEnding::Lf {
                        return Err(line_ending_error(ending));
                    }
                    end = i;
                    i += 2;
                    break;
                }
                return Err(format!(
                    "ClientInputError : Failed to parse CSV: unexpected character after a closing quote in row {}",
                    rows.len() + 1
                ));
            }
            let seg = i;
            while i < n && b[i] != delim && b[i] != b'\n' {
                i += 1;
            }
            let mut stop = i;
            if i < n && b[i] == b'\n' {
                if stop > seg && b[stop - 1] == b'\r' {
                    if ending == LineEnding::Lf {
                        return Err(line_ending_error(ending));
                    }
                    stop -= 1;
                } else if ending == LineEnding::Crlf && stop != start {
                    return Err(line_ending_error(ending));
                }
            }
            cell.push_str(&data[seg..stop]);
            cells.push(cell);
            if i >= n {
                end = n;
                break;
            }
            if b[i] == delim {
                i += 1;
                if i >= n {
                    cells.push(String::new());
                    end = n;
                    break;
                }
                continue;
            }
            end = stop;
            i += 1;
            break;
        }
        let raw = &data[start..end];
        if raw.is_empty() {
            continue;
        }
        rows.push(CsvRow { raw: raw.to_string(), cells });
    }
    if rows.is_empty() {
        return Err("InvalidBatch : Empty CSV file".into());
    }
    let head = rows.remove(0);
    let header = head.cells.iter().map(|c| c.trim().to_string()).collect();
    Ok(Csv { header_raw: head.raw, header, rows })
}

/// Data rows in an upload (quote-aware line count less the header and empty lines), for the
/// daily allowance, without building the rows.
pub fn count_rows(data: &[u8]) -> u64 {
    let (mut rows, mut in_quotes, mut line_has_data) = (0u64, false, false);
    for &c in data {
        match c {
            b'"' => {
                in_quotes = !in_quotes;
                line_has_data = true;
            }
            b'\n' if !in_quotes => {
                if line_has_data {
                    rows += 1;
                }
                line_has_data = false;
            }
            b'\r' => {}
            _ => line_has_data = true,
        }
    }
    if line_has_data {
        rows += 1;
    }
    rows.saturating_sub(1)
}

// ---------------------------------------------------------------------------------------------
// Columns and rows
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Column {
    Id,
    Field(usize),
    /// `Account.AccountNumber__c`: the reference field, its parent type and the parent's field.
    Lookup { field: usize, parent: String, parent_field: String },
}

fn resolve_columns(def: &ObjectDef, header: &[String]) -> Result<Vec<Column>, String> {
    let not_found = |h: &str| format!("InvalidBatch : Field name not found : {h}");
    let mut out = vec![];
    for h in header {
        if h.eq_ignore_ascii_case("id") {
            out.push(Column::Id);
        } else if let Some(idx) = def.field_index(h) {
            out.push(Column::Field(idx));
        } else if let Some((rel, pf)) = h.split_once('.') {
            let idx = def.relationship(rel).ok_or_else(|| not_found(h))?;
            let parent = def.fields[idx].reference_to.first().cloned().ok_or_else(|| not_found(h))?;
            out.push(Column::Lookup { field: idx, parent, parent_field: pf.to_string() });
        } else {
            return Err(not_found(h));
        }
    }
    Ok(out)
}

/// One CSV row as a Prepared body: an empty cell leaves the field alone, `#N/A` sets it to null.
fn prepare_row(def: &ObjectDef, columns: &[Column], header: &[String], cells: &[String]) -> Result<Prepared, SfError> {
    if cells.len() != columns.len() {
        return Err(SfError::new(
            400,
            "INVALID_FIELD",
            format!("The row has {} columns but the header has {}", cells.len(), columns.len()),
        )
        .with_fields(&[]));
    }
    let mut p = Prepared::default();
    for (col_no, (col, cell)) in columns.iter().zip(cells).enumerate() {
        if cell.is_empty() {
            continue;
        }
        let null = cell == "#N/A";
        match col {
            Column::Id => p.id = Some(if null { Value::Null } else { Value::String(cell.clone()) }),
            Column::Field(idx) => {
                let f = &def.fields[*idx];
                let v = if null {
                    Value::Null
                } else {
                    convert(f, &Value::String(cell.clone()), "", &header[col_no]).map_err(|_| {
                        SfError::new(
                            400,
                            "INVALID_FIELD",
                            format!(
                                "Failed to deserialize field at col {}. Due to, '{cell}' is not a valid value for the type xsd:{}",
                                col_no + 1,
                                xsd_type(f.ftype)
                            ),
                        )
                        .with_fields(&[&f.name])
                    })?
                };
                p.values.retain(|(i, _)| i != idx);
                p.values.push((*idx, v));
            }
            Column::Lookup { field, parent, parent_field } => p.lookups.push(Lookup {
                field: *field,
                parent: parent.clone(),
                key: (!null).then(|| (parent_field.clone(), Value::String(cell.clone()))),
            }),
        }
    }
    Ok(p)
}

fn xsd_type(t: FieldType) -> &'static str {
    match t {
        FieldType::Date => "date",
        FieldType::Datetime => "dateTime",
        FieldType::Time => "time",
        FieldType::Boolean => "boolean",
        FieldType::Int => "int",
        FieldType::Double | FieldType::Currency | FieldType::Percent => "double",
        _ => "string",
    }
}

/// `REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --`
fn sf_error_text(e: &SfError) -> String {
    let fields = e.fields.clone().unwrap_or_default().join(",");
    let sep = if fields.is_empty() { "" } else { " " };
    format!("{}:{}:{fields}{sep}--", e.code, e.message)
}

/// The Id in a row for update/delete, or the row's error.
fn row_id(def: &ObjectDef, p: &Prepared, op: Operation) -> Result<String, SfError> {
    match &p.id {
        Some(Value::String(raw)) => match dml::parse_id_for(def, raw)? {
            Some(id) => Ok(id),
            None => Err(id_error("MALFORMED_ID", format!("malformed id {raw}"))),
        },
        _ => Err(id_error("MISSING_ARGUMENT", format!("Id not specified in an {} call", op.name()))),
    }
}

/// Processes rows `range` of a job as one chunk against the store.
fn process_chunk(
    store: &mut Store,
    def: &Arc<ObjectDef>,
    op: Operation,
    ext: Option<usize>,
    parsed: &Parsed,
    range: std::ops::Range<usize>,
    rules: &[usize],
) -> Vec<Outcome> {
    let rows = &parsed.csv.rows[range];
    let mut prepared: Vec<Result<Prepared, SfError>> =
        rows.iter().map(|r| prepare_row(def, &parsed.columns, &parsed.csv.header, &r.cells)).collect();
    let fail = |id: Option<String>, e: &SfError| Outcome::Failure { id: id.unwrap_or_default(), error: sf_error_text(e) };
    let mut out: Vec<Option<Outcome>> = prepared.iter().map(|r| r.as_ref().err().map(|e| fail(None, e))).collect();
    match op {
        Operation::Insert => {
            for (i, p) in prepared.iter().enumerate() {
                if let Ok(p) = p {
                    if let Some(e) = store.faults.record_error(rules) {
                        out[i] = Some(fail(None, &e));
                        continue;
                    }
                    out[i] = Some(match dml::insert(store, def, p, None) {
                        Ok(id) => Outcome::Success { id, created: true },
                        Err(e) => fail(None, &e),
                    });
                }
            }
        }
        Operation::Update | Operation::Delete | Operation::HardDelete => {
            let ids: Vec<Option<Result<String, SfError>>> =
                prepared.iter().map(|p| p.as_ref().ok().map(|p| row_id(def, p, op))).collect();
            let keys: Vec<Option<String>> = ids.iter().map(|r| r.as_ref().and_then(|r| r.as_ref().ok().cloned())).collect();
            let dups = duplicates(&keys, |i| {
                let id = keys[i].clone().unwrap_or_default();
                (Some(id.clone()), id_error("DUPLICATE_VALUE", format!("Duplicate id in list: {id}")))
            });
            for (i, p) in prepared.iter().enumerate() {
                let Ok(p) = p else { continue };
                if let Some((id, e)) = dups.get(&i) {
                    out[i] = Some(fail(id.clone(), e));
                    continue;
                }
                let id = match &ids[i] {
                    Some(Ok(id)) => id.clone(),
                    Some(Err(e)) => {
                        out[i] = Some(fail(None, e));
                        continue;
                    }
                    None => continue,
                };
                if let Some(e) = store.faults.record_error(rules) {
                    out[i] = Some(fail(Some(id), &e));
                    continue;
                }
                let r = match op {
                    Operation::Update => dml::update(store, def, &id, p, None),
                    Operation::Delete => dml::delete(store, def, &id, None),
                    _ => dml::delete(store, def, &id, None).map(|()| store.table_mut(&def.name).put(&id, None)),
                };
                out[i] = Some(match r {
                    Ok(()) => Outcome::Success { id, created: false },
                    Err(e) => fail(Some(id), &collection_write_error(e)),
                });
            }
        }
        Operation::Upsert => {
            let idx = ext.unwrap_or(0);
            let f = &def.fields[idx];
            let by_id = f.ftype == FieldType::Id;
            let key_of = |p: &Prepared| -> Option<Value> {
                if by_id {
                    p.id.clone().filter(|v| !v.is_null())
                } else {
                    p.values.iter().find(|(i, _)| *i == idx).map(|(_, v)| v.clone()).filter(|v| !v.is_null())
                }
            };
            let keys: Vec<Option<Value>> = prepared.iter().map(|p| p.as_ref().ok().and_then(key_of)).collect();
            let match_keys: Vec<Option<String>> = keys
                .iter()
                .map(|k| k.as_ref().and_then(|v| if by_id { v.as_str().and_then(normalize_id) } else { match_key(v) }))
                .collect();
            let dups = duplicates(&match_keys, |i| {
                let shown = keys[i].as_ref().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default();
                (None, SfError::new(400, "DUPLICATE_VALUE", format!("Duplicate external id specified: {shown}")).with_fields(&[&f.name]))
            });
            for (i, p) in prepared.iter_mut().enumerate() {
                let Ok(p) = p else { continue };
                if let Some((id, e)) = dups.get(&i) {
                    out[i] = Some(fail(id.clone(), e));
                    continue;
                }
                let Some(key) = keys[i].clone() else {
                    out[i] = Some(fail(None, &id_error("MISSING_ARGUMENT", format!("{} not specified", f.name))));
                    continue;
                };
                if let Some(e) = store.faults.record_error(rules) {
                    out[i] = Some(fail(None, &e));
                    continue;
                }
                if by_id {
                    p.id = None;
                }
                out[i] = Some(match dml::upsert(store, def, idx, &key, p, false, None) {
                    Ok((id, created)) => Outcome::Success { id, created },
                    Err(UpsertError::Sf(e)) => fail(None, &collection_write_error(e)),
                    Err(UpsertError::Multiple(ids)) => fail(
                        None,
                        &id_error(
                            "DUPLICATE_EXTERNAL_ID",
                            format!("{}: more than one record found for external id field: [{}]", f.name, ids.join(", ")),
                        ),
                    ),
                });
            }
        }
    }
    out.into_iter().map(|o| o.unwrap_or_else(|| fail(None, &id_error("UNKNOWN_EXCEPTION", "not processed".into())))).collect()
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

fn err(status: u16, code: &str, message: impl Into<String>) -> Reply {
    Reply::error(&SfError::new(status, code, message))
}

fn invalid_state(job: &Job, wanted: &str) -> Reply {
    err(409, "INVALIDJOBSTATE", format!("Job {} is in state {}; {wanted}", job.id, job.state.name()))
}

/// `/jobs/ingest[/...]` after the version: `rest` is what follows `jobs/ingest`.
pub fn route(store: &mut Store, ctx: &Ctx, vnum: f64, rest: &[&str]) -> Reply {
    let m = ctx.method;
    let not_allowed = |allowed: &str| {
        err(405, "METHOD_NOT_ALLOWED", format!("HTTP Method '{m}' not allowed. Allowed are {allowed}"))
    };
    match rest {
        [] => match m {
            "POST" => create(store, ctx, vnum).kind("bulk_create"),
            "GET" => list(store, ctx, vnum).kind("bulk_list"),
            _ => not_allowed("GET,POST"),
        },
        [id] => match m {
            "GET" => with_job_ref(store, id, |_, job| Reply::json(200, &job.info())).kind("bulk_poll"),
            "PATCH" => patch(store, ctx, id),
            "DELETE" => delete(store, id).kind("bulk_delete"),
            _ => not_allowed("GET,PATCH,DELETE"),
        },
        [id, "batches"] => match m {
            "PUT" => upload(store, ctx, id).kind("bulk_upload"),
            _ => not_allowed("PUT"),
        },
        [id, which] => {
            let kind = match which.to_ascii_lowercase().as_str() {
                "successfulresults" => ResultKind::Successful,
                "failedresults" => ResultKind::Failed,
                "unprocessedrecords" => ResultKind::Unprocessed,
                _ => return Reply::error(&SfError::not_found()),
            };
            match m {
                "GET" => results(store, id, kind).kind("bulk_results"),
                _ => not_allowed("GET"),
            }
        }
        _ => Reply::error(&SfError::not_found()),
    }
}

fn job_key(raw: &str) -> Option<String> {
    normalize_id(raw).filter(|id| id.starts_with(JOB_PREFIX))
}

fn with_job(store: &mut Store, raw: &str, f: impl FnOnce(&mut BulkState, &str) -> Reply) -> Reply {
    match job_key(raw).filter(|id| store.bulk.jobs.get(id).is_some_and(|j| !j.vanished)) {
        Some(id) => f(&mut store.bulk, &id),
        None => Reply::error(&SfError::not_found()),
    }
}

/// Wraps `with_job` for handlers that only read the job.
fn with_job_ref(store: &mut Store, raw: &str, f: impl FnOnce(&BulkState, &Job) -> Reply) -> Reply {
    with_job(store, raw, |bulk, id| f(bulk, &bulk.jobs[id]))
}

fn create(store: &mut Store, ctx: &Ctx, vnum: f64) -> Reply {
    let body = match ctx.body_object() {
        Ok(b) => b,
        Err(e) => return Reply::error(&e),
    };
    let invalid = |msg: String| err(400, "INVALIDJOB", msg);
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(object) = text("object") else { return invalid("InvalidJob : Object is required".into()) };
    let Some(def) = store.object(&object) else { return invalid(format!("InvalidJob : Unable to find object: {object}")) };
    let op_name = text("operation").unwrap_or_default();
    let Some(operation) = Operation::parse(&op_name) else {
        return invalid(format!("InvalidJob : Invalid operation: '{op_name}'. Valid values are insert, update, upsert, delete, hardDelete"));
    };
    if let Some(ct) = text("contentType") {
        if ct != "CSV" {
            return invalid(format!("InvalidJob : Invalid contentType: '{ct}'. The only valid value is CSV"));
        }
    }
    let line_ending = match text("lineEnding").as_deref() {
        None | Some("LF") => LineEnding::Lf,
        Some("CRLF") => LineEnding::Crlf,
        Some(o) => return invalid(format!("InvalidJob : Invalid lineEnding: '{o}'. Valid values are LF, CRLF")),
    };
    let delimiter = match text("columnDelimiter") {
        None => DELIMITERS[0],
        Some(d) => match DELIMITERS.iter().find(|(n, _)| *n == d) {
            Some(x) => *x,
            None => return invalid(format!("InvalidJob : Invalid columnDelimiter: '{d}'")),
        },
    };
    let external_id = match (operation, text("externalIdFieldName").filter(|s| !s.is_empty())) {
        (Operation::Upsert, None) => {
            return invalid(format!(
                "InvalidJob : External ID was blank for {}. An External ID must be specified for upsert.",
                def.name
            ))
        }
        (Operation::Upsert, Some(f)) => match def.field(&f).filter(|fd| fd.external_id || fd.id_lookup) {
            Some(fd) => Some(fd.name.clone()),
            None => {
                return invalid(format!(
                    "InvalidJob : Field name provided, {f} does not match an External ID, Salesforce Id, or indexed field for {}",
                    def.name
                ))
            }
        },
        (_, _) => None,
    };
    let id = store.new_id(JOB_PREFIX);
    let now = now_ms();
    let job = Job {
        id: id.clone(),
        object: def.name.clone(),
        operation,
        external_id,
        created_by: ctx.user.to_string(),
        line_ending,
        delimiter,
        api_version: vnum,
        created_ms: now,
        modified_ms: now,
        state: JobState::Open,
        upload: None,
        plan: Plan::Normal,
        results_recorded: true,
        vanished: false,
        parsed: None,
        pending: vec![],
        batch_size: RECORDS_PER_BATCH as usize,
        batch_recorded: vec![],
        rng: rand::rngs::StdRng::seed_from_u64(0),
        record_rules: vec![],
        outcomes: vec![],
        processed: 0,
        failed: 0,
        error_message: None,
        started_ms: None,
        finished_ms: None,
        budget: 0.0,
    };
    let info = job.info();
    store.bulk.jobs.insert(id.clone(), job);
    store.bulk.order.push(id);
    store.bulk.counters.jobs_created += 1;
    Reply::json(200, &info)
}

/// Get All Jobs: every ingest job of the org (any user), filtered by the documented parameters,
/// `list_page_size` (1000) at a time with a `nextRecordsUrl` holding a query locator.
fn list(store: &Store, ctx: &Ctx, vnum: f64) -> Reply {
    let param = |k: &str| ctx.param(k);
    // Every job here is a Bulk API 2.0 (V2Ingest) job in parallel mode without PK chunking
    // (a Bulk API 1.0 feature), so each filter keeps all jobs or none.
    let keep = param("isPkChunkingEnabled").is_none_or(|v| !v.eq_ignore_ascii_case("true"))
        && param("jobType").is_none_or(|v| v == "V2Ingest")
        && param("concurrencyMode").is_none_or(|v| v.eq_ignore_ascii_case("parallel"));
    let offset = match param("queryLocator") {
        None => 0,
        Some(l) => match l.strip_prefix(LOCATOR_PREFIX).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => return err(400, "INVALID_QUERY_LOCATOR", "invalid query locator"),
        },
    };
    let jobs: Vec<&Job> = if keep { store.bulk.order.iter().filter_map(|id| store.bulk.jobs.get(id)).filter(|j| !j.vanished).collect() } else { vec![] };
    let page = store.bulk.settings.list_page_size.max(1) as usize;
    let records: Vec<Value> = jobs
        .iter()
        .skip(offset)
        .take(page)
        .map(|j| {
            let mut v = j.info();
            if let Value::Object(m) = &mut v {
                for k in ["numberRecordsProcessed", "numberRecordsFailed", "retries", "totalProcessingTime",
                    "apiActiveProcessingTime", "apexProcessingTime", "errorMessage"] {
                    m.remove(k);
                }
            }
            v
        })
        .collect();
    let done = offset + page >= jobs.len();
    let next = (!done).then(|| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for k in ["isPkChunkingEnabled", "jobType", "concurrencyMode"] {
            if let Some(v) = param(k) {
                q.append_pair(k, &v);
            }
        }
        q.append_pair("queryLocator", &format!("{LOCATOR_PREFIX}{}", offset + page));
        format!("/services/data/v{vnum:.1}/jobs/ingest?{}", q.finish())
    });
    Reply::json(200, &json!({"done": done, "records": records, "nextRecordsUrl": next}))
}

/// Query locators of Get All Jobs: an opaque-looking prefix and the offset of the next page.
const LOCATOR_PREFIX: &str = "01gEmuLocator-";

fn upload(store: &mut Store, ctx: &Ctx, raw_id: &str) -> Reply {
    let rows = count_rows(ctx.body);
    let body = ctx.body;
    let reply = with_job(store, raw_id, |bulk, id| {
        let max = bulk.settings.max_upload_bytes;
        let job = &bulk.jobs[id];
        if job.state != JobState::Open {
            return invalid_state(job, "data can be uploaded only while the job is Open");
        }
        if job.upload.is_some() {
            return err(
                400,
                "BULK_API_ERROR",
                format!("Found multiple contents for job: <{id}>, please 'Close' / 'Abort' / 'Delete' the current Job then create a new Job and make sure you only do 'PUT' once on a given Job."),
            );
        }
        if body.len() as u64 > max {
            return err(
                400,
                "BULK_API_ERROR",
                format!("The upload is {} bytes; one upload may hold at most {max} bytes of CSV data", body.len()),
            );
        }
        bulk.counters.uploads += 1;
        let job = bulk.jobs.get_mut(id).expect("job");
        job.upload = Some(Bytes::copy_from_slice(body));
        job.modified_ms = now_ms();
        Reply::empty(201)
    });
    reply.records(rows as usize)
}

fn patch(store: &mut Store, ctx: &Ctx, raw_id: &str) -> Reply {
    let state = match ctx.body_object() {
        Ok(b) => b.get("state").and_then(Value::as_str).unwrap_or("").to_string(),
        Err(e) => return Reply::error(&e),
    };
    let kind = if state == "Aborted" { "bulk_abort" } else { "bulk_close" };
    with_job(store, raw_id, |bulk, id| {
        let settings = &mut bulk.settings;
        let job = bulk.jobs.get_mut(id).expect("job");
        match state.as_str() {
            "UploadComplete" => {
                if job.state != JobState::Open {
                    return invalid_state(job, "only an Open job can be set to UploadComplete");
                }
                job.plan = if settings.fail_next_jobs > 0 {
                    settings.fail_next_jobs -= 1;
                    Plan::FailAll(settings.fail_message.clone())
                } else if settings.unprocessed_next_jobs > 0 {
                    settings.unprocessed_next_jobs -= 1;
                    Plan::StopAfter(settings.process_first as usize, settings.fail_message.clone())
                } else {
                    Plan::Normal
                };
                if settings.results_not_recorded_next_jobs > 0 {
                    settings.results_not_recorded_next_jobs -= 1;
                    job.results_recorded = false;
                }
                if settings.vanish_next_jobs > 0 {
                    settings.vanish_next_jobs -= 1;
                    job.vanished = true;
                }
                job.state = JobState::UploadComplete;
                job.modified_ms = now_ms();
            }
            "Aborted" => {
                if job.state.finished() {
                    return invalid_state(job, "a finished job cannot be aborted");
                }
                job.finish(JobState::Aborted, None, &mut bulk.counters);
            }
            other => {
                return err(400, "INVALIDJOBSTATE", format!("Invalid state '{other}': a job can be set to UploadComplete or Aborted"))
            }
        }
        Reply::json(200, &job.info())
    })
    .kind(kind)
}

fn delete(store: &mut Store, raw_id: &str) -> Reply {
    with_job(store, raw_id, |bulk, id| {
        let job = &bulk.jobs[id];
        if matches!(job.state, JobState::Open | JobState::InProgress) {
            return invalid_state(job, "a job can be deleted once it is UploadComplete, JobComplete, Aborted or Failed");
        }
        bulk.jobs.remove(id);
        bulk.order.retain(|j| j != id);
        Reply::empty(204)
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ResultKind {
    Successful,
    Failed,
    Unprocessed,
}

/// A per-job variation of the seed (FNV-1a of the job Id).
fn salt(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, c| (h ^ c as u64).wrapping_mul(0x100_0000_01b3))
}

fn csv_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn results(store: &mut Store, raw_id: &str, kind: ResultKind) -> Reply {
    let object = job_key(raw_id).and_then(|id| store.bulk.jobs.get(&id).map(|j| j.object.clone())).and_then(|o| store.object(&o));
    let normalize = store.bulk.settings.normalize_echo;
    with_job_ref(store, raw_id, |bulk, job| {
        if !job.state.finished() {
            return invalid_state(job, "results are available once the job is JobComplete, Failed or Aborted");
        }
        let d = (job.delimiter.1 as char).to_string();
        let nl = if job.line_ending == LineEnding::Lf { "\n" } else { "\r\n" };
        let header_raw = job.parsed.as_ref().map(|p| p.csv.header_raw.clone());
        let with_header = |prefix: &[&str]| -> String {
            let mut cols: Vec<String> = prefix.iter().map(|c| csv_quote(c)).collect();
            if let Some(h) = &header_raw {
                cols.push(h.clone());
            }
            cols.join(&d)
        };
        let mut lines: Vec<String> = vec![];
        let mut body_rows: Vec<String> = vec![];
        let def = object.as_deref();
        let echo = |p: &Parsed, i: usize| -> String {
            match def.filter(|_| normalize) {
                Some(def) => normalized_row(def, p, i, job.delimiter.1),
                None => p.csv.rows[i].raw.clone(),
            }
        };
        match (kind, &job.parsed) {
            (ResultKind::Unprocessed, None) => {
                // Never parsed (the job failed before): what was uploaded, as uploaded.
                let text = job.upload.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
                return Reply::csv(200, text).records(0);
            }
            (ResultKind::Unprocessed, Some(p)) => {
                lines.push(p.csv.header_raw.clone());
                for (i, row) in p.csv.rows.iter().enumerate() {
                    if job.outcomes.get(i).is_none_or(Option::is_none) {
                        body_rows.push(row.raw.clone());
                    }
                }
            }
            (ResultKind::Successful, p) => {
                lines.push(with_header(&["sf__Id", "sf__Created"]));
                if let Some(p) = p.as_ref().filter(|_| job.results_recorded) {
                    for (i, o) in job.outcomes.iter().enumerate().filter(|(i, _)| job.recorded(*i)) {
                        if let Some(Outcome::Success { id, created }) = o {
                            let mut cols = vec![csv_quote(id), csv_quote(if *created { "true" } else { "false" })];
                            cols.push(echo(p, i));
                            body_rows.push(cols.join(&d));
                        }
                    }
                }
            }
            (ResultKind::Failed, p) => {
                lines.push(with_header(&["sf__Id", "sf__Error"]));
                if let Some(p) = p.as_ref().filter(|_| job.results_recorded) {
                    for (i, o) in job.outcomes.iter().enumerate().filter(|(i, _)| job.recorded(*i)) {
                        if let Some(Outcome::Failure { id, error }) = o {
                            let mut cols = vec![csv_quote(id), csv_quote(error)];
                            cols.push(echo(p, i));
                            body_rows.push(cols.join(&d));
                        }
                    }
                }
            }
        }
        // Salesforce promises no order: a seeded shuffle makes clients that assume one fail.
        let mut rng = rand::rngs::StdRng::seed_from_u64(bulk.settings.seed ^ salt(&job.id) ^ kind as u64);
        body_rows.shuffle(&mut rng);
        let n = body_rows.len();
        lines.extend(body_rows);
        let mut text = lines.join(nl);
        text.push_str(nl);
        Reply::csv(200, text).records(n)
    })
}

/// One uploaded row as Salesforce would print the stored values: numbers as Java prints a double
/// (or a whole number for int fields), booleans as `true`/`false`, dateTimes in UTC with
/// milliseconds, Ids in their 18-character form; text, lookups, `#N/A` and cells that do not
/// convert are kept as uploaded.
fn normalized_row(def: &ObjectDef, p: &Parsed, row: usize, delim: u8) -> String {
    let cells = &p.csv.rows[row].cells;
    let printed: Vec<String> = p
        .columns
        .iter()
        .zip(cells)
        .map(|(col, cell)| {
            let stored = match col {
                _ if cell.is_empty() || cell == "#N/A" => None,
                Column::Id => normalize_id(cell),
                Column::Field(idx) => stored_text(&def.fields[*idx], cell),
                Column::Lookup { .. } => None,
            };
            let text = stored.as_deref().unwrap_or(cell);
            let special = |c: char| c == delim as char || matches!(c, '"' | '\r' | '\n');
            if text.contains(special) {
                csv_quote(text)
            } else {
                text.to_string()
            }
        })
        .collect();
    printed.join(&(delim as char).to_string())
}

fn stored_text(f: &crate::state::FieldDef, cell: &str) -> Option<String> {
    let v = convert(f, &Value::String(cell.to_string()), "", &f.name).ok()?;
    match (f.ftype, &v) {
        (FieldType::Id | FieldType::Reference, Value::String(s)) => normalize_id(s),
        (_, Value::Bool(b)) => Some(b.to_string()),
        (FieldType::Int, Value::Number(n)) => Some(n.to_string()),
        (_, Value::Number(n)) => n.as_f64().map(java_double),
        (FieldType::Datetime, Value::String(s)) => datetime_utc(s),
        (FieldType::Time, Value::String(s)) => Some(format!("{}.{:03}Z", &s[..8], fraction_ms(&s[8..]))),
        _ => None,
    }
}

/// Java's `Double.toString`: `1.5`, `10.0`, `1.0E7`, `1.0E-4`.
fn java_double(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || (1e-3..1e7).contains(&a) {
        let t = format!("{x}");
        return if t.contains('.') { t } else { format!("{t}.0") };
    }
    let t = format!("{x:E}");
    match t.split_once('E') {
        Some((m, e)) if !m.contains('.') => format!("{m}.0E{e}"),
        _ => t,
    }
}

/// Milliseconds of a `.SSS…` fraction (empty: 0).
fn fraction_ms(rest: &str) -> u64 {
    let digits: String = rest.strip_prefix('.').unwrap_or("").chars().take_while(char::is_ascii_digit).collect();
    format!("{digits:0<3}")[..3].parse().unwrap_or(0)
}

/// A valid dateTime (`is_datetime`) in UTC with milliseconds: `2024-01-05T08:30:00.000Z`.
fn datetime_utc(s: &str) -> Option<String> {
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<i64>().ok());
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &s[19..];
    let zone_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let ms = fraction_ms(&rest[..zone_at]) as i64;
    let zone = &rest[zone_at..];
    let offset_min = match zone.as_bytes().first() {
        Some(b'+') | Some(b'-') => {
            let digits: String = zone[1..].chars().filter(char::is_ascii_digit).collect();
            let (hh, mm) = (digits.get(0..2)?.parse::<i64>().ok()?, digits.get(2..4)?.parse::<i64>().ok()?);
            if zone.starts_with('-') { -(hh * 60 + mm) } else { hh * 60 + mm }
        }
        _ => 0,
    };
    // Days from civil (Howard Hinnant's algorithm), then back through `format_datetime`.
    let (yy, m) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let epoch_ms = ((days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60) * 1000 + ms).max(0) as u64;
    Some(format_datetime(epoch_ms).replace("+0000", "Z"))
}

// ---------------------------------------------------------------------------------------------
// Background processing
// ---------------------------------------------------------------------------------------------

/// Runs forever: every tick, starts closed jobs (parsing their upload outside the store lock)
/// and advances running ones by `records_per_second × elapsed`, whole chunks at a time.
pub async fn run(app: Arc<App>) {
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        start_jobs(&app);
        advance_jobs(&app, dt);
    }
}

fn start_jobs(app: &App) {
    let starting: Vec<(String, Option<Bytes>, u8, LineEnding, String, f64)> = {
        let mut store = app.lock();
        let mut out = vec![];
        for id in store.bulk.order.clone() {
            let job = store.bulk.jobs.get_mut(&id).expect("listed job");
            if job.state == JobState::UploadComplete {
                job.state = JobState::InProgress;
                job.started_ms = Some(now_ms());
                job.modified_ms = now_ms();
                out.push((id, job.upload.clone(), job.delimiter.1, job.line_ending, job.object.clone(), job.api_version));
            }
        }
        out
    };
    for (id, upload, delim, ending, object, version) in starting {
        let parsed = match &upload {
            None => Err("InvalidBatch : No data was uploaded for this job".to_string()),
            Some(b) => std::str::from_utf8(b)
                .map_err(|_| "ClientInputError : The CSV data is not valid UTF-8".to_string())
                .and_then(|text| parse_csv(text, delim, ending)),
        };
        let mut store = app.lock();
        let def = store.object(&object);
        // Row-level faults: rules matching the job's upload (`PUT …/jobs/ingest/<id>/batches`).
        let rules = store.faults.record_rules("PUT", &format!("/services/data/v{version:.1}/jobs/ingest/{id}/batches"));
        let bulk = &mut store.bulk;
        let (batch_size, seed) = (bulk.settings.records_per_batch.max(1) as usize, bulk.settings.seed ^ salt(&id));
        let Some(job) = bulk.jobs.get_mut(&id) else { continue };
        if job.state != JobState::InProgress {
            continue;
        }
        let result = parsed.and_then(|csv| {
            let def = def.ok_or_else(|| format!("InvalidJob : Unable to find object: {object}"))?;
            let columns = resolve_columns(&def, &csv.header)?;
            Ok(Parsed { csv, columns })
        });
        match result {
            Err(msg) => job.finish(JobState::Failed, Some(msg), &mut bulk.counters),
            Ok(p) => {
                let rows = p.csv.rows.len();
                job.outcomes = vec![None; rows];
                job.batch_size = batch_size;
                job.pending = (0..rows).step_by(batch_size).map(|b| (b, (b + batch_size).min(rows))).collect();
                job.batch_recorded = vec![true; job.pending.len()];
                job.rng = rand::rngs::StdRng::seed_from_u64(seed);
                job.record_rules = rules;
                job.parsed = Some(Arc::new(p));
                if let Plan::FailAll(msg) = job.plan.clone() {
                    job.finish(JobState::Failed, Some(msg), &mut bulk.counters);
                }
            }
        }
    }
}

fn advance_jobs(app: &App, dt: f64) {
    let mut store = app.lock();
    let rate = store.bulk.settings.records_per_second.max(1) as f64;
    for id in store.bulk.order.clone() {
        let Some(job) = store.bulk.jobs.get_mut(&id) else { continue };
        let Some(parsed) = job.parsed.clone().filter(|_| job.state == JobState::InProgress) else { continue };
        job.budget = (job.budget + dt * rate).min(rate.max(CHUNK as f64));
        let (op, object, ext_name, plan) = (job.operation, job.object.clone(), job.external_id.clone(), job.plan.clone());
        let total = parsed.csv.rows.len();
        let stop_at = match &plan {
            Plan::StopAfter(k, _) => (*k).min(total),
            _ => total,
        };
        let Some(def) = store.object(&object) else {
            let bulk = &mut store.bulk;
            let job = bulk.jobs.get_mut(&id).expect("job");
            job.finish(JobState::Failed, Some(format!("InvalidJob : Unable to find object: {object}")), &mut bulk.counters);
            continue;
        };
        let ext = ext_name.as_deref().and_then(|f| def.field_index(f));
        let mut this_tick = 0;
        loop {
            let bulk = &mut store.bulk;
            let (records_limit, batches_limit) = (bulk.settings.daily_records_limit, bulk.settings.daily_batches_limit);
            let (records_used, batches_used) = bulk.used();
            let job = bulk.jobs.get_mut(&id).expect("job");
            let done = job.processed as usize;
            if job.pending.is_empty() || done >= stop_at {
                match &plan {
                    Plan::StopAfter(_, msg) if stop_at < total => job.finish(JobState::Failed, Some(msg.clone()), &mut bulk.counters),
                    _ => job.finish(JobState::JobComplete, None, &mut bulk.counters),
                }
                break;
            }
            // Batches run in parallel: each chunk comes from a batch drawn at random.
            let pick = job.rng.gen_range(0..job.pending.len());
            let (start, batch_end) = job.pending[pick];
            let batch_size = job.batch_size;
            if start % batch_size == 0 {
                // A batch starting: it counts towards the daily allowances. Beyond the records
                // allowance the rest of the job is not processed and the job fails; beyond the
                // batch allocation it runs, but its results are not recorded.
                let rows = (batch_end - start) as u64;
                if records_used + rows > records_limit {
                    job.finish(JobState::Failed, Some(DAILY_RECORDS_MESSAGE.into()), &mut bulk.counters);
                    break;
                }
                job.batch_recorded[start / batch_size] = batches_used < batches_limit;
                bulk.usage.push_back((now_ms(), rows, 1));
            }
            let job = bulk.jobs.get_mut(&id).expect("job");
            let end = (start + CHUNK - (start % batch_size) % CHUNK).min(batch_end).min(start + (stop_at - done));
            let need = (end - start) as f64;
            if job.budget < need || this_tick >= MAX_ROWS_PER_TICK {
                // Not started after all: let the batch count again when it really starts.
                if start % batch_size == 0 {
                    bulk.usage.pop_back();
                }
                break;
            }
            this_tick += end - start;
            job.budget -= need;
            let rules = job.record_rules.clone();
            let outcomes = process_chunk(&mut store, &def, op, ext, &parsed, start..end, &rules);
            let bulk = &mut store.bulk;
            let job = bulk.jobs.get_mut(&id).expect("job");
            for (k, o) in outcomes.into_iter().enumerate() {
                if matches!(o, Outcome::Failure { .. }) {
                    job.failed += 1;
                }
                job.outcomes[start + k] = Some(o);
            }
            if end == batch_end {
                job.pending.swap_remove(pick);
            } else {
                job.pending[pick].0 = end;
            }
            job.processed += need as u64;
            job.modified_ms = now_ms();
            bulk.counters.records_processed += need as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(c: &Csv) -> Vec<Vec<&str>> {
        c.rows.iter().map(|r| r.cells.iter().map(String::as_str).collect()).collect()
    }

    #[test]
    fn quoted_fields_with_delimiters_quotes_and_newlines() {
        let data = "Name,Description\n\"Smith, John\",\"He said \"\"hi\"\"\nand left\"\nplain,\n";
        let c = parse_csv(data, b',', LineEnding::Lf).unwrap();
        assert_eq!(c.header, ["Name", "Description"]);
        assert_eq!(cells(&c), [vec!["Smith, John", "He said \"hi\"\nand left"], vec!["plain", ""]]);
        assert_eq!(c.rows[0].raw, "\"Smith, John\",\"He said \"\"hi\"\"\nand left\"");
        assert_eq!(c.rows[1].raw, "plain,");
    }

    #[test]
    fn crlf_rows_and_embedded_crlf() {
        let data = "A,B\r\n1,\"x\r\ny\"\r\n2,3";
        let c = parse_csv(data, b',', LineEnding::Crlf).unwrap();
        assert_eq!(cells(&c), [vec!["1", "x\r\ny"], vec!["2", "3"]]);
    }

    #[test]
    fn wrong_line_ending_fails_like_salesforce() {
        let e = parse_csv("A,B\r\n1,2\r\n", b',', LineEnding::Lf).unwrap_err();
        assert_eq!(e, "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF");
        let e = parse_csv("A,B\n1,2\n", b',', LineEnding::Crlf).unwrap_err();
        assert!(e.ends_with("Current LineEnding setting is CRLF"), "{e}");
    }

    #[test]
    fn unterminated_quote_and_junk_after_quote() {
        assert!(parse_csv("A\n\"abc\n", b',', LineEnding::Lf).unwrap_err().contains("not closed"));
        assert!(parse_csv("A,B\n\"a\"b,c\n", b',', LineEnding::Lf).unwrap_err().contains("closing quote"));
    }

    #[test]
    fn other_delimiters_utf8_and_empty_lines() {
        let c = parse_csv("Name|Tags\n\nZoë|a;b\n\n", b'|', LineEnding::Lf).unwrap();
        assert_eq!(cells(&c), [vec!["Zoë", "a;b"]]);
        assert_eq!(parse_csv("\n\n", b',', LineEnding::Lf).unwrap_err(), "InvalidBatch : Empty CSV file");
    }

    #[test]
    fn empty_quoted_and_trailing_empty_cells() {
        let c = parse_csv("A,B,C\n\"\",,\n", b',', LineEnding::Lf).unwrap();
        assert_eq!(cells(&c), [vec!["", "", ""]]);
    }

    #[test]
    fn row_count_is_quote_aware() {
        assert_eq!(count_rows(b"A,B\n1,\"x\ny\"\n2,3\n\n"), 2);
        assert_eq!(count_rows(b"A,B\r\n1,2\r\n3,4"), 2);
        assert_eq!(count_rows(b"A\n"), 0);
    }

    #[test]
    fn stored_values_print_like_salesforce() {
        assert_eq!(java_double(1.5), "1.5");
        assert_eq!(java_double(10.0), "10.0");
        assert_eq!(java_double(12_345_678.0), "1.2345678E7");
        assert_eq!(java_double(0.0001), "1.0E-4");
        assert_eq!(datetime_utc("2024-01-05T10:00:00+02:00").unwrap(), "2024-01-05T08:00:00.000Z");
        assert_eq!(datetime_utc("2024-03-01T00:30:00.5-0100").unwrap(), "2024-03-01T01:30:00.500Z");
        assert_eq!(datetime_utc("2024-12-31T23:59:59Z").unwrap(), "2024-12-31T23:59:59.000Z");
    }

    #[test]
    fn error_text_format() {
        let e = SfError::new(400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]").with_fields(&["LastName"]);
        assert_eq!(sf_error_text(&e), "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --");
        let e = SfError::new(404, "ENTITY_IS_DELETED", "entity is deleted").with_fields(&[]);
        assert_eq!(sf_error_text(&e), "ENTITY_IS_DELETED:entity is deleted:--");
    }

    #[test]
    fn unknown_columns_fail_and_relationship_columns_resolve() {
        let def = crate::state::default_objects().into_iter().find(|o| o.name == "Contact").unwrap();
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cols = resolve_columns(&def, &h(&["lastname", "Account.AccountNumber__c", "ID"])).unwrap();
        assert!(matches!(cols[0], Column::Field(_)));
        assert!(matches!(&cols[1], Column::Lookup { parent, .. } if parent == "Account"));
        assert!(matches!(cols[2], Column::Id));
        assert_eq!(resolve_columns(&def, &h(&["LastName", "Foo__c"])).unwrap_err(), "InvalidBatch : Field name not found : Foo__c");
    }
}
