//! Executes one request's worth of planned writes against Salesforce: Id resolution (External ID
//! UPDATE/DELETE), the request itself (one record in SINGLE mode, up to 200 in COLLECTIONS mode),
//! and the classification of every record's result. Which writes form a request, in which order
//! and when they are retried is the [`crate::pipeline`]'s business.

mod bulk;
mod collections;
mod parked;
mod resolve;
mod single;

use crate::config::{Config, Operation};
use crate::error::{ErrorClass, SalesforceError};
use crate::http::SalesforceClient;
use crate::keys::ExternalIdKind;
use crate::plan::PlannedWrite;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use resolve::IdCache;

/// The Salesforce answer parsers, for `rust/fuzz` (feature `test-support`): none may panic.
#[cfg(feature = "test-support")]
pub mod fuzzing {
    use crate::config::Operation;

    /// A Collections answer for `count` records of `op`: the classified results, as text.
    pub fn collections_results(status: u16, body: &[u8], count: usize, op: Operation) -> Vec<String> {
        match super::collections::parse_results(status, body, count, op) {
            Ok(results) => results.iter().map(|r| format!("{r:?}")).collect(),
            Err(e) => vec![format!("{e} {:?}", e.class())],
        }
    }

    /// A Bulk API 2.0 result file: its rows, each re-encoded as a CSV line (the matching of
    /// INSERT results depends on that round trip).
    pub fn bulk_result_rows(body: &[u8]) -> Result<Vec<String>, String> {
        let rows = super::bulk::csv::parse(&String::from_utf8_lossy(body))?;
        Ok(rows.iter().map(|r| super::bulk::csv::encode_line(r.iter().map(String::as_str))).collect())
    }

    /// A SOQL answer matched against `keys` on `field`: (key index, Id) pairs.
    pub fn query_ids(body: &[u8], field: &str, keys: &[&str], numeric: bool) -> Vec<(usize, String)> {
        let kind = if numeric {
            crate::keys::ExternalIdKind::Number { precision: 0, scale: 0 }
        } else {
            crate::keys::ExternalIdKind::Text
        };
        super::resolve::ids_in_query_result(body, field, keys, kind).map(|page| page.matches).unwrap_or_default()
    }
}

/// A failure that no record can fix: the task stops with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FatalError(pub String);

/// Why a batch cannot be planned yet (the External ID field's type is still unknown).
#[derive(Debug)]
pub enum NotYet {
    /// Salesforce could not answer describe for a cause that may clear: retry after the backoff.
    Retry(String, Duration),
    Fatal(FatalError),
}

/// Requests that isolating the records at fault in one whole-request refusal may cost beyond the
/// request itself: at least this many, and at most one per record of the request (halving 200
/// records down to single ones costs up to 398; a refusal that names a field costs one). Past the
/// budget the remaining records fail with Salesforce's answer: by then nearly every record of the
/// request has been refused on its own account.
const MIN_SPLIT_BUDGET: usize = 16;

/// The shortest wait before a write is tried again.
pub const MIN_RETRY_BACKOFF: Duration = Duration::from_millis(1);
/// Where a record lives in Kafka, for messages an operator can act on.
#[derive(Debug, Clone)]
pub struct Origin {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The record's key, kept only for writes that do not send it (Native ID INSERT): every
    /// message names the record's key (SPEC §4), and the others carry it as the write's key.
    pub unsent_key: Option<Box<str>>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(key) = &self.unsent_key {
            write!(f, "key '{}', ", crate::keys::shown(key))?;
        }
        write!(f, "topic {} partition {} offset {}", self.topic, self.partition, self.offset)
    }
}

/// One write on its way, with what earlier attempts learnt about it.
#[derive(Debug, Clone)]
pub struct Item {
    pub write: PlannedWrite,
    pub origin: Origin,
    /// The Salesforce Id an UPDATE/DELETE acts on (native key, or resolved from the external ID).
    pub id: Option<String>,
    /// `id` came from the cache and was not confirmed since.
    pub id_from_cache: bool,
    /// A stale cached Id was already evicted once for this write.
    pub re_resolved: bool,
}

impl Item {
    pub fn new(write: PlannedWrite, origin: Origin, external_id_mode: bool) -> Item {
        let id = match (external_id_mode, write.op) {
            (false, Operation::Update | Operation::Delete) => write.key.clone(),
            _ => None,
        };
        Item { write, origin, id, id_from_cache: false, re_resolved: false }
    }
}

/// How a request reaches Salesforce (the pipeline picks it per request in AUTO mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Single,
    Collections,
    /// One Bulk API 2.0 ingest job.
    Bulk,
}

pub use bulk::MAX_UPLOAD_BYTES as MAX_BULK_UPLOAD_BYTES;

/// What one request said about one of its writes.
#[derive(Debug)]
pub enum ItemResult {
    /// Salesforce confirmed the write.
    Written,
    /// Non-recoverable; the message names the record.
    Failed(String),
    /// Transient: try again after a backoff; the message names the cause.
    Retry(String),
    /// Transient, and the record's own (a row lock, `UNKNOWN_EXCEPTION` in its result): retried
    /// like `Retry`, for at most `salesforce.retry.max.duration.ms` (SPEC §11).
    RecordRetry(String),
    /// The daily API quota is spent: try again after `salesforce.api.quota.check.interval.ms`.
    WaitForQuota(String),
    /// The cached Id no longer names a record: resolve again, no backoff needed.
    StaleId,
    /// The write was not sent (it did not fit into the Bulk job): it goes with the next request,
    /// as if it had never left.
    NotSent,
    /// A Bulk job refused this write with others for a cause it did not attribute: the write goes
    /// next through Collections, which answers per record.
    ViaCollections(String),
}

/// What a request learnt about one write, before it is turned into an [`ItemResult`].
#[derive(Debug)]
enum SendResult {
    Written { id: Option<String> },
    Failed(String),
    Retry(String),
    RecordRetry(String),
    WaitForQuota(String),
    StaleId,
    NotSent,
    ViaCollections(String),
}

/// The part of a write a request needs, owned so requests can run on other threads.
#[derive(Clone)]
struct RequestItem {
    /// The same for every item of a request.
    sobject: Arc<str>,
    key: Option<String>,
    id: Option<String>,
    id_from_cache: bool,
    fields: Arc<[u8]>,
}

/// What a request needs of `items[ready]`, owned so that it can go to other threads.
fn request_items(items: &[Item], ready: &[usize]) -> Vec<RequestItem> {
    ready
        .iter()
        .map(|&i| RequestItem {
            sobject: Arc::clone(&items[i].write.sobject),
            key: items[i].write.key.clone(),
            id: items[i].id.clone(),
            id_from_cache: items[i].id_from_cache,
            fields: Arc::clone(&items[i].write.fields),
        })
        .collect()
}

pub struct Writer {
    cfg: Arc<Config>,
    client: Arc<SalesforceClient>,
    ids: IdCache,
    /// The External ID field's kind, from describe (SPEC §2); set once, before the first batch is planned.
    external_id: OnceLock<ExternalIdKind>,
    /// `salesforce.sobject.type=${topic}`: what describe said of each SObject seen so far (by
    /// lower-cased API name): its External ID field's kind, or why its records cannot be written.
    by_topic: std::sync::Mutex<std::collections::HashMap<String, Result<ExternalIdKind, String>>>,
    /// `salesforce.sobject.type`, shared by every write (unused with `${topic}`).
    fixed_sobject: Arc<str>,
    /// Keys of DELETEs whose request got no answer (timeout, broken connection): Salesforce may
    /// have done them. A later not-found for such a key is that DELETE's own effect, not an error.
    unsure_deletes: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Bulk jobs created and not yet finished, so that stopping the task can abort them.
    open_jobs: std::sync::Mutex<std::collections::HashSet<String>>,
    /// SObjects (lower-cased) whose Bulk jobs left by an earlier run were looked for (BULK, AUTO).
    orphans_checked: tokio::sync::Mutex<std::collections::HashSet<String>>,
}

/// Bound of `Writer::unsure_deletes` (it is emptied when full: at worst a retried DELETE of a
/// record that is already gone goes to the DLQ, as without it).
const MAX_UNSURE_DELETES: usize = 10_000;

impl Writer {
    pub fn new(cfg: Arc<Config>, client: Arc<SalesforceClient>) -> Arc<Self> {
        let fixed_sobject = Arc::from(cfg.sobject.as_str());
        Arc::new(Writer {
            cfg,
            client,
            ids: IdCache::new(),
            external_id: OnceLock::new(),
            by_topic: Default::default(),
            fixed_sobject,
            unsure_deletes: Default::default(),
            open_jobs: Default::default(),
            orphans_checked: Default::default(),
        })
    }

    pub fn client(&self) -> &Arc<SalesforceClient> {
        &self.client
    }

    /// What startup validation learned about the External ID field.
    pub fn learned_external_id_kind(&self, kind: ExternalIdKind) {
        let _ = self.external_id.set(kind);
    }

    /// The External ID field's kind as known so far (text until describe said otherwise).
    pub fn known_external_id_kind(&self) -> ExternalIdKind {
        self.external_id.get().copied().unwrap_or_default()
    }

    /// [`known_external_id_kind`](Self::known_external_id_kind) of one SObject.
    fn kind_of(&self, sobject: &str) -> ExternalIdKind {
        if !self.cfg.sobject_by_topic() {
            return self.known_external_id_kind();
        }
        let checked = self.by_topic.lock().unwrap_or_else(|e| e.into_inner());
        match checked.get(&sobject.to_ascii_lowercase()) {
            Some(Ok(kind)) => *kind,
            _ => ExternalIdKind::default(),
        }
    }

    /// Where the records of a batch go (SPEC §9). With a fixed SObject, every record goes there.
    /// With `${topic}`, each topic names its SObject: checked (describe, External ID field) the
    /// first time it is seen and remembered. A topic that cannot be an API name, or names an
    /// SObject Salesforce does not know, fails its records, not the task; a Salesforce too busy to
    /// answer describe takes nothing of the batch (`NotYet::Retry`), as at start.
    pub async fn targets(&self, topics: &[&str]) -> Result<crate::plan::Targets, NotYet> {
        use crate::plan::{Target, Targets};
        if !self.cfg.sobject_by_topic() {
            let external_id = self.external_id_kind().await?;
            return Ok(Targets::Fixed(Target { sobject: Arc::clone(&self.fixed_sobject), external_id }));
        }
        let mut by_topic = std::collections::HashMap::new();
        for &topic in topics {
            if by_topic.contains_key(topic) {
                continue;
            }
            let target = self.check_topic(topic).await?.map(|external_id| Target { sobject: Arc::from(topic), external_id });
            by_topic.insert(topic.to_owned(), target);
        }
        Ok(Targets::ByTopic(by_topic))
    }

    /// The External ID field kind of the SObject named by `topic`, or why its records fail.
    async fn check_topic(&self, topic: &str) -> Result<Result<ExternalIdKind, String>, NotYet> {
        if let Err(why) = crate::config::check_sobject_name(topic) {
            return Ok(Err(format!(
                "the record's topic '{}' cannot name an SObject (salesforce.sobject.type=${{topic}}): {why}. \
                 Rename the topic to an SObject API name with a RegexRouter SMT, e.g. transforms=route, \
                 transforms.route.type=org.apache.kafka.connect.transforms.RegexRouter, \
                 transforms.route.regex=crm\\.(.*), transforms.route.replacement=$1",
                crate::keys::shown(topic)
            )));
        }
        if let Some(allowed) = self.cfg.sobject_allowed.as_ref().filter(|a| !a.contains(topic)) {
            return Ok(Err(format!(
                "SObject '{topic}' (the record's topic, salesforce.sobject.type=${{topic}}) is not in \
                 salesforce.sobject.allowed ({}): this connector may not write it",
                allowed.shown()
            )));
        }
        let cache_key = topic.to_ascii_lowercase();
        if let Some(known) = self.by_topic.lock().unwrap_or_else(|e| e.into_inner()).get(&cache_key) {
            return Ok(known.clone());
        }
        let checked = match crate::startup::check_sobject(&self.cfg, &self.client, topic, self.cfg.startup_validation).await {
            Ok(kind) => Ok(kind),
            Err(crate::startup::FieldCheck::Wrong(why)) => Err(format!("{why} (salesforce.sobject.type=${{topic}}: the SObject is the record's topic)")),
            Err(crate::startup::FieldCheck::NotYet(e)) => {
                return Err(NotYet::Retry(
                    format!("cannot describe SObject '{topic}' yet: {e}"),
                    self.cfg.retry.backoff(1).max(MIN_RETRY_BACKOFF),
                ))
            }
            Err(crate::startup::FieldCheck::Fatal(why)) => return Err(NotYet::Fatal(FatalError(why))),
        };
        self.by_topic.lock().unwrap_or_else(|e| e.into_inner()).insert(cache_key, checked.clone());
        Ok(checked)
    }

    /// The External ID field's kind, asking describe the first time when startup validation did
    /// not (keys cannot be checked without it).
    pub async fn external_id_kind(&self) -> Result<ExternalIdKind, NotYet> {
        if let Some(kind) = self.external_id.get() {
            return Ok(*kind);
        }
        if !self.external_id_mode() && self.cfg.idempotency_field.is_none() {
            return Ok(ExternalIdKind::Text);
        }
        match crate::startup::check_sobject(&self.cfg, &self.client, &self.cfg.sobject, self.cfg.startup_validation).await {
            Ok(kind) => Ok(*self.external_id.get_or_init(|| kind)),
            Err(crate::startup::FieldCheck::NotYet(e)) => {
                Err(NotYet::Retry(e.to_string(), self.cfg.retry.backoff(1).max(MIN_RETRY_BACKOFF)))
            }
            Err(crate::startup::FieldCheck::Wrong(why) | crate::startup::FieldCheck::Fatal(why)) => {
                Err(NotYet::Fatal(FatalError(format!("startup validation failed: {why}"))))
            }
        }
    }

    fn external_id_mode(&self) -> bool {
        self.cfg.external_id_mode()
    }

    /// See [`Config::upsert_field`].
    fn upsert_field(&self, sobject: &str) -> &str {
        self.cfg.upsert_field(sobject)
    }

    /// The Collections request bodies these writes become, without sending anything (Ids that
    /// would need a lookup are left as the key). For the conversion benchmark and for diagnostics.
    pub fn render(&self, writes: &[PlannedWrite]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut sobjects: Vec<&Arc<str>> = writes.iter().map(|w| &w.sobject).collect();
        sobjects.sort();
        sobjects.dedup();
        for (op, sobject) in [Operation::Insert, Operation::Upsert, Operation::Update, Operation::Delete]
            .into_iter()
            .flat_map(|op| sobjects.iter().map(move |s| (op, *s)))
        {
            let items: Vec<RequestItem> = writes
                .iter()
                .filter(|w| w.op == op && w.sobject == *sobject)
                .map(|w| RequestItem {
                    sobject: Arc::clone(&w.sobject),
                    key: w.key.clone(),
                    id: w.key.clone(),
                    id_from_cache: false,
                    fields: Arc::clone(&w.fields),
                })
                .collect();
            for chunk in items.chunks(self.cfg.batch_size) {
                out.extend_from_slice(&collections::body(self, op, chunk));
                out.push(b'\n');
            }
        }
        out
    }

    fn open_job(&self, id: &str) {
        self.open_jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_owned());
    }

    fn close_job(&self, id: &str) {
        self.open_jobs.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    fn open_job_ids(&self) -> std::collections::HashSet<String> {
        self.open_jobs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Bulk jobs created and not finished yet.
    pub fn open_jobs(&self) -> usize {
        self.open_jobs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Aborts and deletes the Bulk jobs still running (the task stops): Salesforce would otherwise
    /// go on writing records whose offsets were never committed, behind the back of the next owner.
    pub async fn abort_open_jobs(&self) {
        let ids: Vec<String> = self.open_jobs.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        bulk::abort(self, ids).await;
    }

    /// Keeps the Id cache in step with what Salesforce just confirmed.
    fn remember(&self, item: &Item) {
        let sobject = &item.write.sobject;
        if let Some(key) = &item.write.key {
            self.settle_unsure_delete(sobject, key);
        }
        let (Some(key), true) = (&item.write.key, self.external_id_mode()) else { return };
        match item.write.op {
            Operation::Delete => self.ids.evict(sobject, key),
            // An upsert's answer is a fresh resolution (Salesforce matched the external ID just
            // now). An UPDATE only used the cached Id: re-inserting it would keep a mapping alive
            // past its 7 days for as long as the key keeps being written.
            Operation::Upsert => {
                if let Some(id) = &item.id {
                    self.ids.insert(sobject, key, id);
                }
            }
            Operation::Update | Operation::Insert => {}
        }
    }

    /// One try of `items`, all of operation `op` and of one SObject, as one request (the caller sizes it): Ids are
    /// resolved first where needed, then the request is sent. One result per item, in order; the
    /// items keep what was learnt (resolved Ids) for a retry.
    ///
    /// `abandoned`: set when the records' partitions were revoked meanwhile; no further HTTP call
    /// of this request starts then (an Id lookup is not followed by its write, a split half is not
    /// sent), so the partitions' next owner is never overtaken by more than the call in flight.
    pub async fn execute(
        self: &Arc<Self>,
        op: Operation,
        via: Via,
        items: &mut Vec<Item>,
        abandoned: &Arc<AtomicBool>,
    ) -> Result<Vec<ItemResult>, FatalError> {
        if self.client.metrics().quota.active() {
            return Ok(items.iter().map(|_| ItemResult::NotSent).collect());
        }
        if self.cfg.write_mode.uses_bulk() {
            if let Some(first) = items.first() {
                bulk::settle_orphans(self, &first.write.sobject, abandoned).await;
            }
        }
        let mut results: Vec<Option<SendResult>> = (0..items.len()).map(|_| None).collect();
        let needs_id: Vec<usize> = (0..items.len())
            .filter(|&i| self.external_id_mode() && matches!(op, Operation::Update | Operation::Delete) && items[i].id.is_none())
            .collect();
        if !needs_id.is_empty() {
            for (i, resolution) in self.resolve(items, &needs_id, via).await? {
                match resolution {
                    resolve::Resolution::Found { id, from_cache } => {
                        items[i].id = Some(id);
                        items[i].id_from_cache = from_cache;
                    }
                    resolve::Resolution::Missing => results[i] = Some(self.missing(&items[i])),
                    resolve::Resolution::Failed(result) => results[i] = Some(result),
                }
            }
        }
        let ready: Vec<usize> = (0..items.len()).filter(|&i| results[i].is_none()).collect();
        if !ready.is_empty() {
            if abandoned.load(Ordering::SeqCst) {
                return Ok(items.iter().map(|_| ItemResult::Retry("abandoned: the partition was revoked".into())).collect());
            }
            let sent = match via {
                Via::Bulk => self.send_job(op, items, &ready, abandoned).await?,
                _ => {
                    let request = request_items(items, &ready);
                    let budget = Arc::new(AtomicUsize::new(request.len().max(MIN_SPLIT_BUDGET)));
                    Arc::clone(self).send(op, via, request, budget, Arc::clone(abandoned)).await?
                }
            };
            for (i, result) in ready.into_iter().zip(sent) {
                results[i] = Some(result);
            }
        }
        Ok(items
            .iter_mut()
            .zip(results)
            .map(|(item, result)| match result.expect("every item has a result") {
                SendResult::Written { id } => {
                    if id.is_some() {
                        item.id = id;
                    }
                    self.remember(item);
                    ItemResult::Written
                }
                SendResult::Failed(cause) => ItemResult::Failed(self.describe(item, &cause)),
                SendResult::Retry(cause) => ItemResult::Retry(self.describe(item, &cause)),
                SendResult::RecordRetry(cause) => ItemResult::RecordRetry(self.describe(item, &cause)),
                SendResult::WaitForQuota(cause) => ItemResult::WaitForQuota(self.describe(item, &cause)),
                SendResult::StaleId => {
                    if let Some(key) = &item.write.key {
                        self.ids.evict(&item.write.sobject, key);
                    }
                    item.id = None;
                    item.id_from_cache = false;
                    item.re_resolved = true;
                    ItemResult::StaleId
                }
                SendResult::NotSent => ItemResult::NotSent,
                SendResult::ViaCollections(cause) => ItemResult::ViaCollections(self.describe(item, &cause)),
            })
            .collect())
    }

    /// One Bulk API 2.0 job for the writes `ready` of `items`; one result per write of `ready`, in order.
    async fn send_job(
        &self,
        op: Operation,
        items: &mut Vec<Item>,
        ready: &[usize],
        abandoned: &AtomicBool,
    ) -> Result<Vec<SendResult>, FatalError> {
        let metrics = self.client.metrics();
        if metrics.quota.active() {
            return Ok(ready.iter().map(|_| SendResult::NotSent).collect());
        }
        metrics.write_requests.fetch_add(1, Ordering::Relaxed);
        metrics.write_records.fetch_add(ready.len() as u64, Ordering::Relaxed);
        // Open from its creation until this call ends (done, failed, aborted, or dropped at stop).
        let _open = crate::metrics::OpenJob::new(metrics);
        let request: Arc<[RequestItem]> = request_items(items, ready).into();
        let upload = bulk::prepare(self, op, &request).await;
        let sobject = Arc::clone(&request[0].sobject);
        drop(request);
        // While Salesforce processes the job (seconds to minutes, with more jobs in flight), its
        // writes wait packed: the job needs only its CSV body until its results are read.
        let parked = parked::Parked::pack(std::mem::take(items));
        parked::return_freed_pages();
        let submitted = bulk::submit(self, op, &sobject, &upload, abandoned).await;
        *items = parked.unpack();
        let request: Arc<[RequestItem]> = request_items(items, ready).into();
        let outcome = match submitted {
            Ok(submitted) => bulk::results(op, &request, upload, submitted, abandoned).await,
            Err(e) => Err(e),
        };
        let error = match outcome {
            Ok(results) => return Ok(results),
            Err(bulk::JobError::Abandoned) => {
                if op == Operation::Delete {
                    self.mark_unsure_deletes(&request);
                }
                return Ok(request.iter().map(|_| SendResult::Retry("abandoned: the partition was revoked".into())).collect());
            }
            Err(bulk::JobError::NotStarted(e)) => e,
        };
        if op == Operation::Delete {
            self.mark_unsure_deletes(&request);
        }
        let result = |e: &SalesforceError| match e.class() {
            ErrorClass::Fatal => unreachable!("handled below"),
            // The org's daily Bulk allowance (records or batches) is quota, never a record error (SPEC §7).
            // A concurrency limit (REQUEST_LIMIT_EXCEEDED "ConcurrentPerOrgLongTxn") clears in seconds: not quota.
            _ if e.is_daily_quota() || e.code().is_some_and(|c| c.contains("LIMIT_EXCEEDED") && c != "REQUEST_LIMIT_EXCEEDED") => {
                SendResult::WaitForQuota(format!("Bulk job refused: {e}"))
            }
            ErrorClass::Recoverable => SendResult::Retry(format!("Bulk job not started: {e}")),
            ErrorClass::NonRecoverable => SendResult::ViaCollections(format!("Bulk job refused: {e}")),
        };
        if error.class() == ErrorClass::Fatal {
            return Err(self.fatal(&error));
        }
        Ok(request.iter().map(|_| result(&error)).collect())
    }

    /// One request, returning one result per write in request order. A Collections request that
    /// Salesforce refuses as a whole with HTTP 400 is narrowed down to the records at fault, at
    /// most `budget` extra requests in all (see [`MIN_SPLIT_BUDGET`]).
    fn send(
        self: Arc<Self>,
        op: Operation,
        via: Via,
        request: Vec<RequestItem>,
        budget: Arc<AtomicUsize>,
        abandoned: Arc<AtomicBool>,
    ) -> futures_lite::BoxFuture<Result<Vec<SendResult>, FatalError>> {
        Box::pin(async move {
            if abandoned.load(Ordering::SeqCst) {
                return Ok(request.iter().map(|_| SendResult::Retry("abandoned: the partition was revoked".into())).collect());
            }
            // The guard turned on while this request looked Ids up or split a refused request: the
            // write waits, so no more than the requests in flight go past the reserve line.
            if self.client.metrics().quota.active() {
                return Ok(request.iter().map(|_| SendResult::NotSent).collect());
            }
            let metrics = self.client.metrics();
            metrics.write_requests.fetch_add(1, Ordering::Relaxed);
            metrics.write_records.fetch_add(request.len() as u64, Ordering::Relaxed);
            let outcome = match via {
                Via::Single => single::send(&self, op, &request[0]).await.map(|r| vec![r]),
                Via::Collections | Via::Bulk => collections::send(&self, op, &request).await,
            };
            match outcome {
                Ok(results) => Ok(results),
                Err(e) => match e.class() {
                    ErrorClass::Fatal => Err(self.fatal(&e)),
                    ErrorClass::Recoverable => {
                        if op == Operation::Delete && may_have_happened(&e) {
                            self.mark_unsure_deletes(&request);
                        }
                        if e.is_daily_quota() {
                            return Ok(request.iter().map(|_| SendResult::WaitForQuota(e.to_string())).collect());
                        }
                        if concerns_records(&e) {
                            return Ok(request.iter().map(|_| SendResult::RecordRetry(e.to_string())).collect());
                        }
                        Ok(request.iter().map(|_| SendResult::Retry(e.to_string())).collect())
                    }
                    ErrorClass::NonRecoverable if request.len() > 1 && e.status() == Some(400) => {
                        self.isolate(op, via, request, e, budget, abandoned).await
                    }
                    // Other refusals (quota, permissions, unknown object) hold for every record alike.
                    ErrorClass::NonRecoverable => Ok(request.iter().map(|item| self.classify_single(op, item, &e)).collect()),
                },
            }
        })
    }

    /// One bad record can make Salesforce refuse a whole Collections request with a 400 (a body
    /// it cannot parse, a field the SObject does not have). When the answer names fields, the
    /// records that carry them fail and the others go again in one request; otherwise the request
    /// is halved. Either way at most `budget` more requests are spent.
    async fn isolate(
        self: Arc<Self>,
        op: Operation,
        via: Via,
        request: Vec<RequestItem>,
        e: SalesforceError,
        budget: Arc<AtomicUsize>,
        abandoned: Arc<AtomicBool>,
    ) -> Result<Vec<SendResult>, FatalError> {
        let named = named_fields(&e);
        let carrying: Vec<bool> = request.iter().map(|item| carries_any(&item.fields, &named)).collect();
        let at_fault = carrying.iter().filter(|&&c| c).count();
        let failed = |why: String| SendResult::Failed(why);
        if at_fault == request.len() {
            return Ok(request.iter().map(|_| failed(e.to_string())).collect());
        }
        if at_fault > 0 {
            if !take(&budget, 1) {
                return Ok(request.iter().map(|_| failed(exhausted(&e))).collect());
            }
            let rest: Vec<RequestItem> =
                request.iter().zip(&carrying).filter(|(_, &c)| !c).map(|(item, _)| item.clone()).collect();
            let mut rest_results = Arc::clone(&self).send(op, via, rest, budget, abandoned).await?.into_iter();
            return Ok(carrying
                .iter()
                .map(|&c| if c { failed(e.to_string()) } else { rest_results.next().expect("one result per record") })
                .collect());
        }
        if !take(&budget, 2) {
            return Ok(request.iter().map(|_| failed(exhausted(&e))).collect());
        }
        let mut left = request;
        let right = left.split_off(left.len() / 2);
        let mut results = Arc::clone(&self).send(op, via, left, Arc::clone(&budget), Arc::clone(&abandoned)).await?;
        results.extend(self.send(op, via, right, budget, abandoned).await?);
        Ok(results)
    }

    /// The result of a single-record error (never transient: see `send`), including the not-found rules of DELETE and stale Ids.
    fn classify_single(&self, op: Operation, item: &RequestItem, e: &SalesforceError) -> SendResult {
        let gone = matches!(e.code(), Some("NOT_FOUND" | "ENTITY_IS_DELETED"));
        self.result_for(op, item, e.class(), gone, e.to_string())
    }

    fn result_for(&self, op: Operation, item: &RequestItem, class: ErrorClass, gone: bool, message: String) -> SendResult {
        if gone && matches!(op, Operation::Update | Operation::Delete) {
            if item.id_from_cache {
                return SendResult::StaleId;
            }
            if op == Operation::Delete && self.cfg.ignore_missing_deletes {
                return SendResult::Written { id: None };
            }
            if op == Operation::Delete && item.key.as_deref().is_some_and(|k| self.settle_unsure_delete(&item.sobject, k)) {
                return SendResult::Written { id: None };
            }
        }
        match class {
            // Every caller passes one record's own result (a Collections entry, a Bulk row, a
            // refusal of that record alone): its transient causes are bounded (SPEC §11).
            ErrorClass::Recoverable => SendResult::RecordRetry(message),
            _ => SendResult::Failed(message),
        }
    }

    /// Remembers the DELETEs of a request that got no answer: Salesforce may have done them.
    fn mark_unsure_deletes(&self, request: &[RequestItem]) {
        let mut unsure = self.unsure_deletes.lock().unwrap_or_else(|e| e.into_inner());
        if unsure.len() + request.len() > MAX_UNSURE_DELETES {
            unsure.clear();
        }
        unsure.extend(request.iter().filter_map(|i| Some(self.unsure_key(&i.sobject, i.key.as_deref()?))));
    }

    /// Forgets `key` as an unanswered DELETE; true when it was one (so a not-found now is the
    /// effect of that DELETE, which Salesforce did before the answer was lost).
    fn settle_unsure_delete(&self, sobject: &str, key: &str) -> bool {
        let mut unsure = self.unsure_deletes.lock().unwrap_or_else(|e| e.into_inner());
        !unsure.is_empty() && unsure.remove(&self.unsure_key(sobject, key))
    }

    /// Text external IDs match case-insensitively; Native Ids are canonical and case matters.
    /// External IDs are unique per SObject only.
    fn unsure_key(&self, sobject: &str, key: &str) -> String {
        let mut unsure = sobject.to_ascii_lowercase();
        unsure.push('\0');
        if self.external_id_mode() {
            unsure.push_str(&key.to_lowercase());
        } else {
            unsure.push_str(key);
        }
        unsure
    }

    /// No record carries this external ID.
    fn missing(&self, item: &Item) -> SendResult {
        if item.write.op == Operation::Delete && self.cfg.ignore_missing_deletes {
            return SendResult::Written { id: None };
        }
        if item.write.op == Operation::Delete && item.write.key.as_deref().is_some_and(|k| self.settle_unsure_delete(&item.write.sobject, k)) {
            return SendResult::Written { id: None };
        }
        let field = self.upsert_field(&item.write.sobject);
        let what = if item.write.op == Operation::Update { " (UPDATE never creates; use UPSERT to create)" } else { "" };
        SendResult::Failed(format!(
            "NOT_FOUND: no {} record has {}='{}'{}",
            item.write.sobject,
            field,
            crate::keys::shown(item.write.key.as_deref().unwrap_or("")),
            what
        ))
    }

    /// The message an operator reads in the DLQ or the task status: operation, SObject, key,
    /// Salesforce's answer and where the record lives in Kafka.
    fn describe(&self, item: &Item, cause: &str) -> String {
        let key = match &item.write.key {
            Some(k) => format!(" key '{}'", crate::keys::shown(k)),
            None => String::new(),
        };
        format!("{} {}{} failed: {} [{}]", item.write.op, item.write.sobject, key, cause, item.origin)
    }

    fn fatal(&self, e: &SalesforceError) -> FatalError {
        FatalError(match e {
            SalesforceError::TokenRefused { status: 200, .. } => format!(
                "the token endpoint {}/services/oauth2/token answered without an access token ({e}); \
                 a proxy or a maintenance page may stand in between. Fix: check salesforce.instance.url and salesforce.proxy.url",
                self.cfg.instance_url
            ),
            SalesforceError::TokenRefused { error, .. } => format!(
                "Salesforce refused the connector's credentials: {e}. Fix: {}",
                crate::auth::token_advice(error, &self.cfg.auth)
            ),
            e if e.status() == Some(407) => format!(
                "the proxy refused the request with HTTP 407 Proxy Authentication Required. Fix: check \
                 salesforce.proxy.username and salesforce.proxy.password ({e})"
            ),
            e if e.status() == Some(401) => format!(
                "Salesforce refused a freshly issued access token ({e}). Fix: check that the integration user \
                 is active, has the API Enabled permission and that the Connected App's policies admit it"
            ),
            e => format!("Salesforce refused the connector's credentials: {e}"),
        })
    }
}

/// Whether a transient refusal of a whole request is about its records (a row lock or
/// `UNKNOWN_EXCEPTION` answered below 500, e.g. to a SINGLE write), so that retrying it is bounded
/// by `salesforce.retry.max.duration.ms`; 5xx/429, timeouts, connection failures and limits are
/// outages that keep waiting (SPEC §11).
fn concerns_records(e: &SalesforceError) -> bool {
    e.status().is_some_and(|s| s < 500 && s != 429) && !e.code().is_some_and(|c| c.contains("LIMIT_EXCEEDED"))
}

/// Whether a failed request may still have been carried out: no answer arrived, or a gateway
/// answered in Salesforce's place (502/503/504 can come after the write was committed).
fn may_have_happened(e: &SalesforceError) -> bool {
    matches!(e, SalesforceError::Timeout(_) | SalesforceError::Connection(_)) || matches!(e.status(), Some(502..=504))
}

/// Takes `n` requests from a split budget; false when it has run out.
fn take(budget: &AtomicUsize, n: usize) -> bool {
    budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(n)).is_ok()
}

fn exhausted(e: &SalesforceError) -> String {
    format!(
        "{e} (Salesforce refused the whole request again and again; the records at fault could not be told apart \
         within one extra request per record, so every record left is reported)"
    )
}

/// The fields a whole-request refusal blames: Salesforce's `fields`, or the column its
/// `INVALID_FIELD` message names ("No such column 'X' on sobject of type T").
fn named_fields(e: &SalesforceError) -> Vec<String> {
    let SalesforceError::Rejected { errors, .. } = e else { return vec![] };
    let mut named: Vec<String> = errors.iter().flat_map(|err| err.fields.iter().cloned()).collect();
    for err in errors {
        if let Some(rest) = err.message.split("No such column '").nth(1) {
            if let Some(column) = rest.split('\'').next() {
                named.push(column.to_owned());
            }
        }
    }
    named.retain(|f| !f.is_empty());
    named
}

/// Whether a fields fragment has a top-level field of one of `names` (case-insensitive, as
/// Salesforce field names are). Parses the fragment: only ever on the error path.
fn carries_any(fields: &[u8], names: &[String]) -> bool {
    if names.is_empty() || fields.is_empty() {
        return false;
    }
    let mut object = Vec::with_capacity(fields.len() + 2);
    object.push(b'{');
    object.extend_from_slice(fields);
    object.push(b'}');
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(&object) else { return false };
    map.keys().any(|k| names.iter().any(|n| n.split('.').next().is_some_and(|top| top.eq_ignore_ascii_case(k))))
}

/// Just enough of a boxed future for the recursive split above, without another crate.
mod futures_lite {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}
