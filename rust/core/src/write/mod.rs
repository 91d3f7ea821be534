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
use crate::logs::Logs;
use crate::plan::PlannedWrite;
use crate::record::Record;
use crate::wire::outcome::Outcome;
use std::collections::HashMap;
use std::sync::Arc;
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

    /// A SOQL answer matched against `keys` on `field`: (key index, Id) pairs.
    pub fn query_ids(body: &[u8], field: &str, keys: &[&str], numeric: bool) -> Vec<(usize, String)> {
        super::resolve::ids_in_query_result(body, field, keys, numeric)
    }
}

/// A failure that no record can fix: the task stops with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FatalError(pub String);

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
    /// Whether the external ID field holds numbers (known from describe); numbers are not quoted in SOQL.
    external_id_numeric: bool,
    /// Keys of DELETEs whose request got no answer (timeout, broken connection): Salesforce may
    /// have done them. A later not-found for such a key is that DELETE's own effect, not an error.
    unsure_deletes: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Bound of `Writer::unsure_deletes` (it is emptied when full: at worst a retried DELETE of a
/// record that is already gone goes to the DLQ, as without it).
const MAX_UNSURE_DELETES: usize = 10_000;

impl Writer {
    pub fn new(cfg: Arc<Config>, client: Arc<SalesforceClient>, logs: Logs, external_id_numeric: bool) -> Arc<Self> {
        Arc::new(Writer { cfg, client, ids: IdCache::new(), logs, external_id_numeric, unsure_deletes: Default::default() })
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
        let mut retry_backoff = Duration::ZERO;
        let mut gave_up = false;
        for wave in waves {
            if gave_up {
                for &i in &wave {
                    items[i].outcome = Some(Outcome::Retry(
                        "not attempted: an earlier write of the same batch is waiting to be retried".into(),
                    ));
                }
                continue;
            }
            if let Some(backoff) = self.write_wave(records, &mut items, &wave).await? {
                retry_backoff = backoff;
                gave_up = true;
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
            if retries >= self.cfg.retry.max_attempts {
                let backoff = self.cfg.retry.backoff(retries + 1);
                for &i in wave {
                    let item = &mut items[i];
                    if item.outcome.is_none() {
                        let cause = item.last_error.take().unwrap_or_else(|| "waiting for a retry".into());
                        item.outcome = Some(Outcome::Retry(format!(
                            "{} (after {} attempts; Connect will redeliver)",
                            cause,
                            retries + 1
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
            Operation::Upsert | Operation::Update => {
                if let Some(id) = &item.id {
                    self.ids.insert(key, id);
                }
            }
            Operation::Insert => {}
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

        let in_flight = match self.cfg.write_mode {
            WriteMode::Single => 1,
            WriteMode::Collections => self.cfg.max_in_flight,
        };
        let semaphore = Arc::new(tokio::sync::Semaphore::new(in_flight));
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
                let out = this.send(op, request).await;
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

    /// One request (or, for a Collections request that Salesforce refuses as a whole, its halves),
    /// returning one result per write in request order.
    fn send(self: Arc<Self>, op: Operation, request: Vec<RequestItem>) -> futures_lite::BoxFuture<Result<Vec<ItemResult>, FatalError>> {
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
                        if op == Operation::Delete && matches!(e, SalesforceError::Timeout(_) | SalesforceError::Connection(_)) {
                            self.mark_unsure_deletes(&request);
                        }
                        Ok(request.iter().map(|_| ItemResult::Retry(e.to_string())).collect())
                    }
                    // One bad record can make Salesforce refuse a whole Collections request with a
                    // 400 (a body it cannot parse): split it so the good records still land. Other
                    // refusals (quota, permissions, unknown object) hold for every record alike.
                    ErrorClass::NonRecoverable if request.len() > 1 && e.status() == Some(400) => {
                        let mut left = request;
                        let right = left.split_off(left.len() / 2);
                        let mut results = Arc::clone(&self).send(op, left).await?;
                        results.extend(self.send(op, right).await?);
                        Ok(results)
                    }
                    ErrorClass::NonRecoverable => Ok(request.iter().map(|item| self.classify_single(op, item, &e)).collect()),
                },
            }
        })
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
        unsure.extend(request.iter().filter_map(|i| i.key.as_deref()).map(str::to_lowercase));
    }

    /// Forgets `key` as an unanswered DELETE; true when it was one (so a not-found now is the
    /// effect of that DELETE, which Salesforce did before the answer was lost).
    fn settle_unsure_delete(&self, key: &str) -> bool {
        let mut unsure = self.unsure_deletes.lock().unwrap_or_else(|e| e.into_inner());
        !unsure.is_empty() && unsure.remove(&key.to_lowercase())
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
        let advice = match e {
            SalesforceError::TokenRefused { error, .. } => crate::auth::token_advice(error, &self.cfg.auth),
            _ => "",
        };
        FatalError(format!("Salesforce refused the connector's credentials: {e}. {advice}"))
    }
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
            w(Update, Some("003000000000001")),
            w(Insert, None),
            w(Delete, Some("003000000000001AAA")), // the same record in its 18-character form
            w(Insert, None),
        ];
        assert_eq!(schedule(writes.iter(), false), vec![vec![0, 1, 3], vec![2]]);
    }
}

/// Just enough of a boxed future for the recursive split above, without another crate.
mod futures_lite {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}
