//! Executes planned writes against Salesforce: scheduling that keeps per-key order, Id resolution,
//! requests (one record each in SINGLE mode, up to 200 in COLLECTIONS mode) and retries.
//!
//! Scheduling: the writes of a batch are laid out in *waves*. A write goes into the wave after the
//! last wave that holds a write of the same key, so the writes of one key run one wave after
//! another in offset order, and no request ever carries the same key twice. Inside a wave, writes
//! are grouped by operation and cut into requests that run concurrently.

mod collections;
mod resolve;
mod single;

use crate::config::{Config, Operation, WriteMode};
use crate::error::{ErrorClass, SalesforceError};
use crate::http::SalesforceClient;
use crate::keys::ExternalIdKind;
use crate::logs::Logs;
use crate::plan::PlannedWrite;
use crate::record::Record;
use crate::wire::outcome::Outcome;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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
/// request itself. Halving 200 records down to one costs up to 398; a refusal that names a field
/// costs one. Past the budget the remaining records fail with Salesforce's answer.
const SPLIT_BUDGET: usize = 16;

/// The shortest wait before Connect redelivers: Connect ignores `context.timeout(0)` and would
/// otherwise wait for the next offset commit.
const MIN_REDELIVERY_BACKOFF: Duration = Duration::from_millis(1);
/// One write on its way, with what retries learn about it.
struct Item {
    /// Position in the `put()` batch.
    index: usize,
    write: PlannedWrite,
    /// The Salesforce Id an UPDATE/DELETE acts on (native key, or resolved from the external ID).
    id: Option<String>,
    /// `id` came from the cache and was not confirmed in this `put()`.
    id_from_cache: bool,
    /// A stale cached Id was already evicted once for this write.
    re_resolved: bool,
    outcome: Option<Outcome>,
    last_error: Option<String>,
}

/// What one request said about one of its writes.
#[derive(Debug)]
enum ItemResult {
    /// Salesforce confirmed the write; the record's Id when the answer carried one.
    Written { id: Option<String> },
    /// Non-recoverable.
    Failed(String),
    /// Transient: try again after a backoff.
    Retry(String),
    /// The cached Id no longer names a record: resolve again, no backoff needed.
    StaleId,
}

/// The part of a write a request needs, owned so requests can run on other threads.
#[derive(Clone)]
struct RequestItem {
    key: Option<String>,
    id: Option<String>,
    id_from_cache: bool,
    fields: Arc<Vec<u8>>,
}

pub struct Writer {
    cfg: Arc<Config>,
    client: Arc<SalesforceClient>,
    ids: IdCache,
    logs: Logs,
    /// The External ID field's kind, from describe (SPEC §2); set once, before the first batch is planned.
    external_id: OnceLock<ExternalIdKind>,
    /// Keys of DELETEs whose request got no answer (timeout, broken connection): Salesforce may
    /// have done them. A later not-found for such a key is that DELETE's own effect, not an error.
    unsure_deletes: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Bound of `Writer::unsure_deletes` (it is emptied when full: at worst a retried DELETE of a
/// record that is already gone goes to the DLQ, as without it).
const MAX_UNSURE_DELETES: usize = 10_000;

impl Writer {
    pub fn new(cfg: Arc<Config>, client: Arc<SalesforceClient>, logs: Logs) -> Arc<Self> {
        Arc::new(Writer { cfg, client, ids: IdCache::new(), logs, external_id: OnceLock::new(), unsure_deletes: Default::default() })
    }

    /// What startup validation learned about the External ID field.
    pub fn learned_external_id_kind(&self, kind: ExternalIdKind) {
        let _ = self.external_id.set(kind);
    }

    /// The External ID field's kind as known so far (text until describe said otherwise).
    pub fn known_external_id_kind(&self) -> ExternalIdKind {
        self.external_id.get().copied().unwrap_or_default()
    }

    /// The External ID field's kind, asking describe the first time when startup validation did
    /// not (keys cannot be checked without it).
    pub async fn external_id_kind(&self) -> Result<ExternalIdKind, NotYet> {
        if let Some(kind) = self.external_id.get() {
            return Ok(*kind);
        }
        if !self.external_id_mode() {
            return Ok(ExternalIdKind::Text);
        }
        match crate::startup::external_id_kind(&self.cfg, &self.client).await {
            Ok(kind) => Ok(*self.external_id.get_or_init(|| kind)),
            Err(e) if e.class() == ErrorClass::Fatal => Err(NotYet::Fatal(self.fatal(&e))),
            Err(e) => Err(NotYet::Retry(e.to_string(), self.cfg.retry.backoff(1).max(MIN_REDELIVERY_BACKOFF))),
        }
    }

    fn external_id_mode(&self) -> bool {
        self.cfg.external_id_field.is_some()
    }

    /// Writes `writes` (index into `records`, write) and records each one's outcome in `outcomes`.
    /// Returns the backoff Connect should wait before redelivering when some writes are left as
    /// `Retry`. `records` only name the records in messages, and only when something fails.
    pub async fn write(
        self: &Arc<Self>,
        records: &[Record<'_>],
        writes: Vec<(usize, PlannedWrite)>,
        outcomes: &mut [Outcome],
    ) -> Result<Duration, FatalError> {
        let mut items: Vec<Item> = writes
            .into_iter()
            .map(|(index, write)| {
                let id = match (self.external_id_mode(), write.op) {
                    (false, Operation::Update | Operation::Delete) => write.key.clone(),
                    _ => None,
                };
                Item { index, write, id, id_from_cache: false, re_resolved: false, outcome: None, last_error: None }
            })
            .collect();

        let waves = self.schedule(&items);
        // A put() must end well before the consumer's max.poll.interval.ms (issue 8, item 8): no
        // new wave or retry starts past the budget, and what is left goes back to Connect.
        let deadline = Instant::now() + self.cfg.put_time_budget;
        let mut retry_backoff = Duration::ZERO;
        let mut stop: Option<&str> = None;
        for wave in waves {
            if stop.is_none() && Instant::now() >= deadline {
                stop = Some("not attempted within this put()'s time budget; Connect will redeliver it");
                retry_backoff = MIN_REDELIVERY_BACKOFF;
            }
            if let Some(why) = stop {
                for &i in &wave {
                    items[i].outcome = Some(Outcome::Retry(why.into()));
                }
                continue;
            }
            if let Some(backoff) = self.write_wave(records, &mut items, &wave, deadline).await? {
                retry_backoff = backoff.max(MIN_REDELIVERY_BACKOFF);
                stop = Some("not attempted: an earlier write of the same batch is waiting to be retried");
            }
        }
        for item in items {
            outcomes[item.index] = item.outcome.unwrap_or_else(|| Outcome::Retry("not attempted".into()));
        }
        Ok(retry_backoff)
    }

    /// The Collections request bodies these writes become, without sending anything (Ids that
    /// would need a lookup are left as the key). For the conversion benchmark and for diagnostics.
    pub fn render(&self, writes: &[PlannedWrite]) -> Vec<u8> {
        let mut out = Vec::new();
        for op in [Operation::Insert, Operation::Upsert, Operation::Update, Operation::Delete] {
            let items: Vec<RequestItem> = writes
                .iter()
                .filter(|w| w.op == op)
                .map(|w| RequestItem {
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

    fn schedule(&self, items: &[Item]) -> Vec<Vec<usize>> {
        schedule(items.iter().map(|i| &i.write), self.external_id_mode())
    }

    /// Runs one wave to the end. `Some(backoff)` when retries ran out and writes are left pending.
    async fn write_wave(
        self: &Arc<Self>,
        records: &[Record<'_>],
        items: &mut [Item],
        wave: &[usize],
        deadline: Instant,
    ) -> Result<Option<Duration>, FatalError> {
        let mut retries = 0u32;
        loop {
            let pending: Vec<usize> = wave.iter().copied().filter(|&i| items[i].outcome.is_none()).collect();
            if pending.is_empty() {
                return Ok(None);
            }
            let mut backoff_needed = false;
            for (i, result) in self.attempt(records, items, &pending).await? {
                let item = &mut items[i];
                match result {
                    ItemResult::Written { id } => {
                        if id.is_some() {
                            item.id = id;
                        }
                        self.remember(item);
                        item.outcome = Some(Outcome::Written);
                    }
                    ItemResult::Failed(message) => item.outcome = Some(Outcome::Failed(message)),
                    ItemResult::Retry(message) => {
                        item.last_error = Some(message);
                        backoff_needed = true;
                    }
                    ItemResult::StaleId => {
                        if let Some(key) = &item.write.key {
                            self.ids.evict(key);
                        }
                        item.id = None;
                        item.id_from_cache = false;
                        item.re_resolved = true;
                    }
                }
            }
            if !backoff_needed {
                continue; // only stale Ids: resolve them again at once
            }
            let out_of_time = Instant::now() + self.cfg.retry.backoff(retries + 1) >= deadline;
            if retries >= self.cfg.retry.max_attempts || out_of_time {
                let backoff = self.cfg.retry.backoff(retries + 1);
                for &i in wave {
                    let item = &mut items[i];
                    if item.outcome.is_none() {
                        let cause = item.last_error.take().unwrap_or_else(|| "waiting for a retry".into());
                        item.outcome = Some(Outcome::Retry(format!(
                            "{} (after {} attempt(s){}; Connect will redeliver)",
                            cause,
                            retries + 1,
                            if out_of_time { ", at the end of this put()'s time budget" } else { "" }
                        )));
                    }
                }
                return Ok(Some(backoff));
            }
            retries += 1;
            let backoff = self.cfg.retry.backoff(retries);
            self.logs.debug(format!(
                "{} write(s) hit a transient error; retry {} of {} in {} ms",
                wave.iter().filter(|&&i| items[i].outcome.is_none()).count(),
                retries,
                self.cfg.retry.max_attempts,
                backoff.as_millis()
            ));
            tokio::time::sleep(backoff).await;
        }
    }

    /// Keeps the Id cache in step with what Salesforce just confirmed.
    fn remember(&self, item: &Item) {
        if let Some(key) = &item.write.key {
            self.settle_unsure_delete(key);
        }
        let (Some(key), true) = (&item.write.key, self.external_id_mode()) else { return };
        match item.write.op {
            Operation::Delete => self.ids.evict(key),
            // An upsert's answer is a fresh resolution (Salesforce matched the external ID just
            // now). An UPDATE only used the cached Id: re-inserting it would keep a mapping alive
            // past its 7 days for as long as the key keeps being written.
            Operation::Upsert => {
                if let Some(id) = &item.id {
                    self.ids.insert(key, id);
                }
            }
            Operation::Update | Operation::Insert => {}
        }
    }

    /// One try of every pending write of a wave: resolve Ids, then send the requests concurrently.
    async fn attempt(
        self: &Arc<Self>,
        records: &[Record<'_>],
        items: &mut [Item],
        pending: &[usize],
    ) -> Result<Vec<(usize, ItemResult)>, FatalError> {
        let mut results = Vec::with_capacity(pending.len());
        let mut ready: Vec<usize> = Vec::with_capacity(pending.len());
        let needs_id: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|&i| self.external_id_mode() && matches!(items[i].write.op, Operation::Update | Operation::Delete) && items[i].id.is_none())
            .collect();
        if !needs_id.is_empty() {
            for (i, resolution) in self.resolve(items, &needs_id).await? {
                match resolution {
                    resolve::Resolution::Found { id, from_cache } => {
                        items[i].id = Some(id);
                        items[i].id_from_cache = from_cache;
                    }
                    resolve::Resolution::Missing => results.push((i, self.missing(&items[i]))),
                    resolve::Resolution::Failed(result) => results.push((i, result)),
                }
            }
        }
        let settled: std::collections::HashSet<usize> = results.iter().map(|(i, _)| *i).collect();
        ready.extend(pending.iter().copied().filter(|i| !settled.contains(i)));

        // Group by operation, then cut into requests.
        let chunk_size = match self.cfg.write_mode {
            WriteMode::Single => 1,
            WriteMode::Collections => self.cfg.batch_size,
        };
        let mut requests: Vec<(Operation, Vec<usize>)> = Vec::new();
        for op in [Operation::Insert, Operation::Upsert, Operation::Update, Operation::Delete] {
            let of_op: Vec<usize> = ready.iter().copied().filter(|&i| items[i].write.op == op).collect();
            for chunk in of_op.chunks(chunk_size) {
                requests.push((op, chunk.to_vec()));
            }
        }

        // SINGLE runs as many one-record requests at once as COLLECTIONS runs batches: a wave
        // never holds a key twice, so order per key is kept either way.
        let semaphore = Arc::new(tokio::sync::Semaphore::new(self.cfg.max_in_flight.max(1)));
        let mut running = tokio::task::JoinSet::new();
        for (op, indices) in requests {
            let request: Vec<RequestItem> = indices
                .iter()
                .map(|&i| RequestItem {
                    key: items[i].write.key.clone(),
                    id: items[i].id.clone(),
                    id_from_cache: items[i].id_from_cache,
                    fields: Arc::clone(&items[i].write.fields),
                })
                .collect();
            let this = Arc::clone(self);
            let permit = Arc::clone(&semaphore).acquire_owned().await.expect("semaphore never closes");
            running.spawn(async move {
                let out = this.send(op, request, Arc::new(AtomicUsize::new(SPLIT_BUDGET))).await;
                drop(permit);
                (indices, out)
            });
        }
        while let Some(joined) = running.join_next().await {
            let (indices, out) = joined.map_err(|e| FatalError(format!("native write task failed: {e}")))?;
            let out = out?;
            results.extend(indices.into_iter().zip(out));
        }
        for (i, result) in results.iter_mut() {
            if let ItemResult::Failed(message) | ItemResult::Retry(message) = result {
                *message = self.describe(&items[*i], &records[items[*i].index], message);
            }
        }
        Ok(results)
    }

    /// One request, returning one result per write in request order. A Collections request that
    /// Salesforce refuses as a whole with HTTP 400 is narrowed down to the records at fault, at
    /// most `budget` extra requests in all (see [`SPLIT_BUDGET`]).
    fn send(
        self: Arc<Self>,
        op: Operation,
        request: Vec<RequestItem>,
        budget: Arc<AtomicUsize>,
    ) -> futures_lite::BoxFuture<Result<Vec<ItemResult>, FatalError>> {
        Box::pin(async move {
            let outcome = match self.cfg.write_mode {
                WriteMode::Single => single::send(&self, op, &request[0]).await.map(|r| vec![r]),
                WriteMode::Collections => collections::send(&self, op, &request).await,
            };
            match outcome {
                Ok(results) => Ok(results),
                Err(e) => match e.class() {
                    ErrorClass::Fatal => Err(self.fatal(&e)),
                    ErrorClass::Recoverable => {
                        if op == Operation::Delete && may_have_happened(&e) {
                            self.mark_unsure_deletes(&request);
                        }
                        Ok(request.iter().map(|_| ItemResult::Retry(e.to_string())).collect())
                    }
                    ErrorClass::NonRecoverable if request.len() > 1 && e.status() == Some(400) => {
                        self.isolate(op, request, e, budget).await
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
        request: Vec<RequestItem>,
        e: SalesforceError,
        budget: Arc<AtomicUsize>,
    ) -> Result<Vec<ItemResult>, FatalError> {
        let named = named_fields(&e);
        let carrying: Vec<bool> = request.iter().map(|item| carries_any(&item.fields, &named)).collect();
        let at_fault = carrying.iter().filter(|&&c| c).count();
        let failed = |why: String| ItemResult::Failed(why);
        if at_fault == request.len() {
            return Ok(request.iter().map(|_| failed(e.to_string())).collect());
        }
        if at_fault > 0 {
            if !take(&budget, 1) {
                return Ok(request.iter().map(|_| failed(exhausted(&e))).collect());
            }
            let rest: Vec<RequestItem> =
                request.iter().zip(&carrying).filter(|(_, &c)| !c).map(|(item, _)| item.clone()).collect();
            let mut rest_results = Arc::clone(&self).send(op, rest, budget).await?.into_iter();
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
        let mut results = Arc::clone(&self).send(op, left, Arc::clone(&budget)).await?;
        results.extend(self.send(op, right, budget).await?);
        Ok(results)
    }

    /// The result of a single-record error, including the not-found rules of DELETE and stale Ids.
    fn classify_single(&self, op: Operation, item: &RequestItem, e: &SalesforceError) -> ItemResult {
        let gone = matches!(e.code(), Some("NOT_FOUND" | "ENTITY_IS_DELETED"));
        self.result_for(op, item, e.class(), gone, e.to_string())
    }

    fn result_for(&self, op: Operation, item: &RequestItem, class: ErrorClass, gone: bool, message: String) -> ItemResult {
        if gone && matches!(op, Operation::Update | Operation::Delete) {
            if item.id_from_cache {
                return ItemResult::StaleId;
            }
            if op == Operation::Delete && self.cfg.ignore_missing_deletes {
                return ItemResult::Written { id: None };
            }
            if op == Operation::Delete && item.key.as_deref().is_some_and(|k| self.settle_unsure_delete(k)) {
                return ItemResult::Written { id: None };
            }
        }
        match class {
            ErrorClass::Recoverable => ItemResult::Retry(message),
            _ => ItemResult::Failed(message),
        }
    }

    /// Remembers the DELETEs of a request that got no answer: Salesforce may have done them.
    fn mark_unsure_deletes(&self, request: &[RequestItem]) {
        let mut unsure = self.unsure_deletes.lock().unwrap_or_else(|e| e.into_inner());
        if unsure.len() + request.len() > MAX_UNSURE_DELETES {
            unsure.clear();
        }
        unsure.extend(request.iter().filter_map(|i| i.key.as_deref()).map(|k| self.unsure_key(k)));
    }

    /// Forgets `key` as an unanswered DELETE; true when it was one (so a not-found now is the
    /// effect of that DELETE, which Salesforce did before the answer was lost).
    fn settle_unsure_delete(&self, key: &str) -> bool {
        let mut unsure = self.unsure_deletes.lock().unwrap_or_else(|e| e.into_inner());
        !unsure.is_empty() && unsure.remove(&self.unsure_key(key))
    }

    /// Text external IDs match case-insensitively; Native Ids are canonical and case matters.
    fn unsure_key(&self, key: &str) -> String {
        if self.external_id_mode() {
            key.to_lowercase()
        } else {
            key.to_owned()
        }
    }

    /// No record carries this external ID.
    fn missing(&self, item: &Item) -> ItemResult {
        if item.write.op == Operation::Delete && self.cfg.ignore_missing_deletes {
            return ItemResult::Written { id: None };
        }
        if item.write.op == Operation::Delete && item.write.key.as_deref().is_some_and(|k| self.settle_unsure_delete(k)) {
            return ItemResult::Written { id: None };
        }
        let field = self.cfg.external_id_field.as_deref().unwrap_or("?");
        let what = if item.write.op == Operation::Update { " (UPDATE never creates; use UPSERT to create)" } else { "" };
        ItemResult::Failed(format!(
            "NOT_FOUND: no {} record has {}='{}'{}",
            self.cfg.sobject,
            field,
            item.write.key.as_deref().unwrap_or(""),
            what
        ))
    }

    /// The message an operator reads in the DLQ or the task status: operation, SObject, key,
    /// Salesforce's answer and where the record lives in Kafka.
    fn describe(&self, item: &Item, record: &Record<'_>, cause: &str) -> String {
        let key = match &item.write.key {
            Some(k) => format!(" key '{k}'"),
            None => String::new(),
        };
        // A write without a key (Native ID INSERT) still names the record's key where it has one.
        let location = if item.write.key.is_some() { record.coordinates() } else { record.location() };
        format!("{} {}{} failed: {} [{}]", item.write.op, self.cfg.sobject, key, cause, location)
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
        "{e} (Salesforce refused the whole request; the record at fault could not be isolated within {SPLIT_BUDGET} \
         extra requests, so every record of it is reported)"
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

/// Lays writes out in waves (see the module doc): indices into `writes`, wave by wave, each wave
/// in offset order.
pub fn schedule<'a>(writes: impl Iterator<Item = &'a PlannedWrite>, external_id_mode: bool) -> Vec<Vec<usize>> {
    let mut last_wave: HashMap<String, usize> = HashMap::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for (i, write) in writes.enumerate() {
        let wave = match write.ordering_key(external_id_mode) {
            Some(key) => {
                let wave = last_wave.get(&key).map_or(0, |w| w + 1);
                last_wave.insert(key, wave);
                wave
            }
            None => 0,
        };
        if waves.len() <= wave {
            waves.resize_with(wave + 1, Vec::new);
        }
        waves[wave].push(i);
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(op: Operation, key: Option<&str>) -> PlannedWrite {
        PlannedWrite { op, key: key.map(str::to_owned), fields: Arc::default() }
    }

    #[test]
    fn same_key_goes_to_later_waves_in_order() {
        use Operation::*;
        let writes = [
            w(Upsert, Some("a")),
            w(Upsert, Some("b")),
            w(Delete, Some("A")), // same key as "a", case-insensitively
            w(Upsert, Some("c")),
            w(Upsert, Some("a")),
            w(Update, Some("b")),
        ];
        assert_eq!(schedule(writes.iter(), true), vec![vec![0, 1, 3], vec![2, 5], vec![4]]);
    }

    #[test]
    fn native_inserts_have_no_key_and_never_wait() {
        use Operation::*;
        let writes = [
            w(Update, Some("003000000000001AAA")), // keys arrive canonical from `plan`
            w(Insert, None),
            w(Delete, Some("003000000000001AAA")),
            w(Insert, None),
        ];
        assert_eq!(schedule(writes.iter(), false), vec![vec![0, 1, 3], vec![2]]);
    }
}

/// Just enough of a boxed future for the recursive split above, without another crate.
mod futures_lite {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}
