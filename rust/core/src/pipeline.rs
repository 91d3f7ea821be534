//! The asynchronous write pipeline (SPEC §6): records wait in a buffer, leave it as requests, and
//! come back as outcomes that Java collects on the task thread.
//!
//! ```text
//!  submit() ──▶ waiting (by sequence number) ──dispatch──▶ in flight ──results──▶ finished
//!                  ▲        │                                  │                    │
//!                  └────────┴──── transient failure: back, ◀───┘                    ▼
//!                                 after a backoff                         drained by Java
//! ```
//!
//! Rules the dispatcher keeps:
//! - A write is sent only when no earlier write of its key is waiting or in flight, so per-key
//!   order holds across `put()` calls, requests and retries; a request never holds a key twice.
//! - A request of one operation is sent when `batch.size` writes of it are ready, when the oldest
//!   of them has waited `linger.ms`, or at once while someone flushes.
//! - At most `max.in.flight.requests` requests run at once.
//! - Transient failures go back to waiting with a capped exponential backoff, for as long as they
//!   last; only Salesforce's final word (written, or a record error) finishes a record.
//!
//! Records are known by the sequence numbers Java gives them; Java maps them back to Kafka
//! offsets and commits only below the first unfinished one.

use crate::config::{Config, Operation, WriteMode};
use crate::logs::Logs;
use crate::metrics::Metrics;
use crate::plan::{self, Plan, PlannedWrite};
use crate::record::Record;
use crate::wire::outcome::Outcome;
use crate::write::{FatalError, Item, ItemResult, Origin, Via, Writer, MIN_RETRY_BACKOFF};
use smallvec::{smallvec, SmallVec};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What Java learns from each call: outcomes finished since the last call, and the buffer's fill.
#[derive(Debug, Default)]
pub struct Progress {
    pub finished: Vec<(i64, Outcome)>,
    /// Records submitted and neither finished nor abandoned (waiting or in flight).
    pub unfinished: usize,
    pub requests_in_flight: usize,
    /// How long the oldest unfinished record has been in the buffer (SPEC §11: STALLED).
    pub oldest_unfinished: Option<Duration>,
    /// How long the unfinished writes would take to drain at the observed round trip (see
    /// `State::drain_estimate`); zero until a request answered.
    pub drain_estimate: Duration,
}

/// What a flush sends without lingering. The commit before a revocation keeps part-filled Bulk
/// jobs back: a job that mixes partitions is aborted when one of them is revoked, so sending it
/// then would cost the org a job and its kept rows a second write (SPEC §7). Their records stay
/// unfinished; the next owner (or this task, for the partitions it keeps) sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushScope {
    Everything,
    KeepPartFilledJobs,
}

/// Writes waiting to be sent, one entry per write; an entry stands for several records when
/// `coalesce.updates` merged them. A BULK task holds 200,000 writes by default, waiting or in
/// flight, so their size is the task's memory (docs/operations.md).
struct Entry {
    item: Item,
    ledger: Ledger,
    /// When the write could first be sent (nothing of its key in flight, no backoff pending): the
    /// number of the next request then. Requests numbered below it were in flight or done; a
    /// part-filled request waits for them to answer, since their answers free more writes.
    ready_after: Option<u64>,
    not_before: Option<Instant>,
}

/// What the buffer knows of a write besides the write itself. It travels beside the write while
/// a request has it, and comes back with it (the request owns the `Item`s it sends).
struct Ledger {
    /// One record, or several when coalesced: no allocation for the one.
    seqs: SmallVec<[i64; 1]>,
    /// The ordering key, hashed; `None` for keyless native INSERTs.
    key: Option<KeyHash>,
    arrived: Instant,
    attempts: u32,
    /// When a cause of the record's own (row lock, `UNKNOWN_EXCEPTION`) first failed it:
    /// `salesforce.retry.max.duration.ms` counts from here (SPEC §11).
    failing_since: Option<Instant>,
    /// A Bulk job refused the write without attributing a cause: it goes through Collections.
    via_collections: bool,
}

/// A Bulk job's ledgers while Salesforce processes it: 40 bytes a write instead of 80 (times as
/// nanoseconds before `epoch`; a coalesced write's further records aside).
struct ParkedLedgers {
    epoch: Instant,
    rows: Vec<ParkedLedger>,
    /// Coalesced writes: every sequence number but the first, by row.
    more_seqs: Vec<(usize, SmallVec<[i64; 1]>)>,
}

struct ParkedLedger {
    first_seq: i64,
    key: u64,
    arrived_ns_before: u64,
    /// `u64::MAX`: none.
    failing_ns_before: u64,
    attempts: u32,
    has_key: bool,
    via_collections: bool,
}

impl ParkedLedgers {
    fn pack(ledgers: Vec<Ledger>) -> ParkedLedgers {
        let epoch = Instant::now();
        let before = |at: Instant| epoch.saturating_duration_since(at).as_nanos().min(u64::MAX as u128 - 1) as u64;
        let mut more_seqs = Vec::new();
        // A new vector: `collect` would reuse the ledgers' allocation, twice the size needed.
        let mut rows = Vec::with_capacity(ledgers.len());
        for (row, ledger) in ledgers.into_iter().enumerate() {
            if ledger.seqs.len() > 1 {
                more_seqs.push((row, ledger.seqs[1..].into()));
            }
            rows.push(ParkedLedger {
                first_seq: ledger.seqs[0],
                key: ledger.key.map_or(0, |k| k.0),
                arrived_ns_before: before(ledger.arrived),
                failing_ns_before: ledger.failing_since.map_or(u64::MAX, before),
                attempts: ledger.attempts,
                has_key: ledger.key.is_some(),
                via_collections: ledger.via_collections,
            });
        }
        ParkedLedgers { epoch, rows, more_seqs }
    }

    fn unpack(self) -> Vec<Ledger> {
        let ParkedLedgers { epoch, rows, more_seqs } = self;
        let at = |ns: u64| epoch.checked_sub(Duration::from_nanos(ns)).unwrap_or(epoch);
        let mut ledgers: Vec<Ledger> = rows
            .into_iter()
            .map(|row| Ledger {
                seqs: smallvec![row.first_seq],
                key: row.has_key.then_some(KeyHash(row.key)),
                arrived: at(row.arrived_ns_before),
                attempts: row.attempts,
                failing_since: (row.failing_ns_before != u64::MAX).then(|| at(row.failing_ns_before)),
                via_collections: row.via_collections,
            })
            .collect();
        for (row, seqs) in more_seqs {
            ledgers[row].seqs.extend(seqs);
        }
        ledgers
    }
}

/// A write's ordering key (`PlannedWrite::ordering_key`), hashed to 8 bytes: the buffer keeps one
/// per write and one per key in flight. Two keys that hash alike only wait for each other, so
/// order is never lost; coalescing, which would merge them, compares the keys themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct KeyHash(u64);

impl KeyHash {
    fn of(write: &PlannedWrite, external_id_mode: bool) -> Option<KeyHash> {
        use std::hash::{Hash, Hasher};
        let key = write.ordering_key(external_id_mode)?;
        #[cfg(test)]
        if tests::EVERY_KEY_COLLIDES.with(std::cell::Cell::get) {
            return Some(KeyHash(0));
        }
        // Fixed keys: the same key hashes alike in every part of the buffer.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        Some(KeyHash(hasher.finish()))
    }
}

/// One request (or Bulk job) on its way.
struct Request {
    number: u64,
    op: Operation,
    via: Via,
    items: Vec<Item>,
    /// One per item, in the same order.
    ledgers: Vec<Ledger>,
    /// Set when the request's records are abandoned: no further HTTP call of it starts.
    abandoned: Arc<std::sync::atomic::AtomicBool>,
}

/// `bulk.linger.ms` times this is the longest the oldest write of an open Bulk job waits while
/// more keep arriving.
const MAX_BULK_LINGERS: u32 = 12;

#[derive(Default)]
struct State {
    /// By the first sequence number of the entry: iteration order is offset order. Boxed: a
    /// B-tree filled in order leaves its nodes half empty, and an empty slot of a boxed entry
    /// costs 8 bytes instead of the entry's size.
    waiting: BTreeMap<i64, Box<Entry>>,
    /// Sequence numbers of the writes in flight.
    in_flight: HashSet<i64>,
    /// Keys of entries in flight: later writes of them wait.
    busy_keys: HashSet<KeyHash>,
    /// For coalescing (`salesforce.coalesce.updates`; empty without it): the last waiting entry of
    /// each key.
    last_waiting: HashMap<KeyHash, i64>,
    requests_in_flight: usize,
    /// Numbers of the requests in flight, and the number the next one gets.
    in_flight_requests: std::collections::BTreeSet<u64>,
    /// Numbers of the Bulk jobs in flight.
    jobs_in_flight: HashSet<u64>,
    /// Per request in flight: when its oldest write arrived.
    request_arrived: HashMap<u64, Instant>,
    /// Per request in flight: its records and the flag that stops it when they are abandoned.
    request_flags: HashMap<u64, (Vec<i64>, Arc<std::sync::atomic::AtomicBool>)>,
    next_request: u64,
    finished: Vec<(i64, Outcome)>,
    unfinished: usize,
    /// Sequence numbers given up while in flight: their results are dropped.
    abandoned: HashSet<i64>,
    flushing: usize,
    /// Flushers that also send part-filled Bulk jobs (`FlushScope::Everything`).
    flushing_jobs: usize,
    /// The last dispatch round kept a part-filled job back, and kept no write back for a backoff.
    held_for_jobs: bool,
    deferred: bool,
    fatal: Option<String>,
    closed: bool,
    /// While the quota guard holds requests back: when `GET /limits` is read next, and whether
    /// that read is under way.
    quota_next_check: Option<Instant>,
    quota_checking: bool,
    /// How often the dispatcher looked at the buffer: a task that only waits must not spin (SPEC §11).
    dispatch_rounds: u64,
    /// When each Collections or single-record request in flight was sent, for `round_trip_us`.
    sent_at: HashMap<u64, Instant>,
    /// Smoothed round trip of one write request (µs); 0 until one answered.
    round_trip_us: u64,
}

struct Shared {
    cfg: Arc<Config>,
    writer: Arc<Writer>,
    logs: Logs,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// Something for the dispatcher: new entries, a finished request, a flush.
    wake: Notify,
    /// Something for flushers: records finished, or a fatal error.
    progress: Notify,
    /// Requests in flight, so that closing drops them at once instead of waiting for Salesforce.
    requests: Mutex<tokio::task::JoinSet<()>>,
}

pub struct Pipeline {
    shared: Arc<Shared>,
    dispatcher: tokio::task::JoinHandle<()>,
    runtime: tokio::runtime::Handle,
}

/// How long stopping a task spends aborting its Bulk jobs in the background.
const ABORT_JOBS_WAIT: Duration = Duration::from_secs(10);

impl Pipeline {
    pub fn start(runtime: &tokio::runtime::Runtime, cfg: Arc<Config>, writer: Arc<Writer>, logs: Logs) -> Pipeline {
        let metrics = Arc::clone(writer.client().metrics());
        let shared = Arc::new(Shared {
            cfg,
            writer,
            logs,
            metrics,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            progress: Notify::new(),
            requests: Mutex::new(tokio::task::JoinSet::new()),
        });
        let dispatcher = runtime.spawn(supervised(Arc::clone(&shared), "dispatcher", dispatch_loop(Arc::clone(&shared))));
        Pipeline { shared, dispatcher, runtime: runtime.handle().clone() }
    }

    /// Plans `records` (sequence numbers `first_seq..`) and adds their writes to the buffer.
    /// Records that need no request (skipped, refused) finish at once.
    /// `targets`: where each record goes (its SObject and External ID field kind), or why it cannot.
    pub fn submit(&self, records: &[Record<'_>], first_seq: i64, targets: &plan::Targets) -> Result<Progress, FatalError> {
        let cfg = &self.shared.cfg;
        let external_id_mode = cfg.external_id_mode();
        let now = Instant::now();
        let mut topic: Option<Arc<str>> = None;
        let mut skipped = 0usize;
        {
            let mut state = self.lock();
            for (i, record) in records.iter().enumerate() {
                let seq = first_seq + i as i64;
                let planned = match targets.for_topic(record.topic) {
                    Ok(target) => plan::plan_record_for(cfg, target, record),
                    Err(why) => Plan::Reject(why.to_owned()),
                };
                match planned {
                    Plan::Skip => {
                        skipped += 1;
                        state.finished.push((seq, Outcome::Skipped));
                    }
                    Plan::Reject(reason) => {
                        self.shared.metrics.records_failed.fetch_add(1, Relaxed);
                        state.finished.push((seq, Outcome::Failed(format!("{reason} [{}]", record.location()))));
                    }
                    Plan::Write(write) => {
                        let topic = match &topic {
                            Some(t) if **t == *record.topic => Arc::clone(t),
                            _ => Arc::clone(topic.insert(Arc::from(record.topic))),
                        };
                        let unsent_key = match write.key {
                            None => crate::convert::scalar_text(&record.key).map(String::into_boxed_str),
                            Some(_) => None,
                        };
                        let origin = Origin { topic, partition: record.partition, offset: record.offset, unsent_key };
                        state.unfinished += 1;
                        state.add(seq, write, origin, now, cfg, external_id_mode);
                    }
                }
            }
        }
        if skipped > 0 {
            self.shared.metrics.records_skipped.fetch_add(skipped as u64, Relaxed);
            self.shared.logs.debug(format!("skipped {skipped} tombstone(s): salesforce.tombstone.delete=false"));
        }
        self.shared.wake.notify_one();
        self.progress()
    }

    /// Outcomes finished since the last call, without waiting.
    pub fn progress(&self) -> Result<Progress, FatalError> {
        let mut state = self.lock();
        if let Some(fatal) = &state.fatal {
            return Err(FatalError(fatal.clone()));
        }
        let oldest_unfinished = state.oldest_arrival().map(|at| at.elapsed());
        Ok(Progress {
            finished: std::mem::take(&mut state.finished),
            unfinished: state.unfinished,
            requests_in_flight: state.requests_in_flight,
            oldest_unfinished,
            drain_estimate: state.drain_estimate(&self.shared.cfg),
        })
    }

    /// Sends what waits without lingering (part-filled Bulk jobs only for `FlushScope::Everything`)
    /// and waits until nothing is unfinished, or nothing but kept jobs, or `timeout`.
    pub async fn flush(&self, timeout: Duration, scope: FlushScope) -> Result<Progress, FatalError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let keep_jobs = scope == FlushScope::KeepPartFilledJobs;
        let first_round = {
            let mut state = self.lock();
            state.flushing += 1;
            state.flushing_jobs += usize::from(!keep_jobs);
            state.dispatch_rounds
        };
        self.shared.wake.notify_one();
        loop {
            let notified = self.shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.lock();
                if state.unfinished == 0 || state.fatal.is_some() {
                    break;
                }
                // A round since the flush began sent everything it could and kept jobs back:
                // what waits now waits for them.
                let only_kept_jobs = state.dispatch_rounds > first_round
                    && state.requests_in_flight == 0
                    && state.held_for_jobs
                    && !state.deferred;
                if keep_jobs && only_kept_jobs {
                    break;
                }
                if state.dispatch_rounds > first_round && self.nothing_can_finish_before(&state, deadline.into_std()) {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        {
            let mut state = self.lock();
            state.flushing -= 1;
            state.flushing_jobs -= usize::from(!keep_jobs);
        }
        self.progress()
    }

    /// No write can finish before `deadline`: none is in flight, and every waiting one waits out
    /// a backoff past it, or the quota guard holds until past it. So it is while Salesforce is
    /// down: a flush that waited on would only hold up a rebalance or a stop (SPEC §11).
    fn nothing_can_finish_before(&self, state: &State, deadline: Instant) -> bool {
        if state.requests_in_flight > 0 || state.waiting.is_empty() {
            return false;
        }
        let quota_holds = self.shared.metrics.quota.active()
            && !state.quota_checking
            && state.quota_next_check.is_some_and(|next| next >= deadline);
        quota_holds || state.waiting.values().all(|e| e.not_before.is_some_and(|t| t >= deadline))
    }

    /// Gives up the unfinished records among `seqs` (their partitions were revoked): they never
    /// finish here, and their offsets are never committed by this task. Writes in flight cannot
    /// be recalled: this waits up to `wait` for them to answer, so that the partitions' next
    /// owner, which writes the same records again, is not overtaken by this task's old writes.
    pub async fn abandon(&self, seqs: &[i64], wait: Duration) {
        let mut state = self.lock();
        let wanted: HashSet<i64> = seqs.iter().copied().collect();
        let before = state.unfinished;
        let waiting_ids: Vec<i64> = state.waiting.keys().copied().collect();
        for id in waiting_ids {
            let entry = state.waiting.get_mut(&id).expect("listed");
            let n = entry.ledger.seqs.len();
            entry.ledger.seqs.retain(|s| !wanted.contains(&*s));
            let dropped = n - entry.ledger.seqs.len();
            state.unfinished -= dropped;
            if state.waiting[&id].ledger.seqs.is_empty() {
                let entry = state.waiting.remove(&id).expect("listed");
                if let Some(key) = &entry.ledger.key {
                    if state.last_waiting.get(key) == Some(&id) {
                        state.last_waiting.remove(key);
                    }
                }
            }
        }
        for (seqs, flag) in state.request_flags.values() {
            if seqs.iter().any(|s| wanted.contains(s)) {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let in_flight: Vec<i64> = state.in_flight.iter().copied().filter(|s| wanted.contains(s)).collect();
        for seq in in_flight {
            if state.abandoned.insert(seq) {
                state.unfinished -= 1;
            }
        }
        state.finished.retain(|(seq, _)| !wanted.contains(seq));
        let dropped = before - state.unfinished;
        drop(state);
        if dropped > 0 {
            self.shared.logs.debug(format!("abandoned {dropped} unfinished record(s) of revoked partitions"));
        }
        self.shared.progress.notify_waiters();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let still = self.lock().in_flight.iter().filter(|s| wanted.contains(s)).count();
            if still == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.shared.logs.warn(format!(
                    "{still} write(s) of revoked partitions still had no answer after {} ms; the partitions' next \
                     owner may write those records before these requests land",
                    wait.as_millis()
                ));
                return;
            }
        }
    }

    /// How often the dispatcher has looked at the buffer (tests: no busy-waiting).
    pub fn dispatch_rounds(&self) -> u64 {
        self.lock().dispatch_rounds
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Pipeline {
    /// Stops sending at once, even while Salesforce hangs: requests in flight are dropped with
    /// their connections; their records were never committed.
    fn drop(&mut self) {
        self.lock().closed = true;
        self.dispatcher.abort();
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).abort_all();
        self.shared.wake.notify_one();
        if self.shared.writer.open_jobs() > 0 {
            let writer = Arc::clone(&self.shared.writer);
            self.runtime.spawn(async move {
                let _ = tokio::time::timeout(ABORT_JOBS_WAIT, writer.abort_open_jobs()).await;
            });
        }
    }
}

impl Ledger {
    /// A record-level transient failure: retried while `salesforce.retry.max.duration.ms` since
    /// its first such failure has not passed, then a record error with the last cause.
    fn retry_within_bound(&mut self, cause: String, cfg: &Config, now: Instant) -> ItemResult {
        let since = *self.failing_since.get_or_insert(now);
        match cfg.retry_max_duration {
            Some(max) if now.saturating_duration_since(since) >= max => ItemResult::Failed(format!(
                "{cause} (still failing after {} ms of retries: salesforce.retry.max.duration.ms={})",
                now.saturating_duration_since(since).as_millis(),
                max.as_millis()
            )),
            _ => ItemResult::Retry(cause),
        }
    }
}

impl State {
    fn add(&mut self, seq: i64, write: PlannedWrite, origin: Origin, now: Instant, cfg: &Config, external_id_mode: bool) {
        let key = KeyHash::of(&write, external_id_mode);
        if let (true, Some(key)) = (cfg.coalesce_updates, key) {
            if let Some(last) = self.last_waiting.get(&key).and_then(|id| self.waiting.get_mut(id)) {
                let same_key = last.item.write.ordering_key(external_id_mode) == write.ordering_key(external_id_mode);
                if let Some(merged) = coalesce(&last.item.write, &write, &last.item.origin, &origin).filter(|_| same_key) {
                    last.item.write = merged;
                    last.ledger.seqs.push(seq);
                    return;
                }
            }
            self.last_waiting.insert(key, seq);
        }
        let item = Item::new(write, origin, external_id_mode);
        let ledger = Ledger { seqs: smallvec![seq], key, arrived: now, attempts: 0, failing_since: None, via_collections: false };
        let entry = Entry { item, ledger, ready_after: None, not_before: None };
        self.waiting.insert(seq, Box::new(entry));
    }

    /// When the oldest unfinished write arrived: the first waiting one (sequence numbers grow with
    /// arrival, and a retried write keeps its place) or the oldest in flight.
    fn oldest_arrival(&self) -> Option<Instant> {
        let waiting = self.waiting.values().next().map(|e| e.ledger.arrived);
        let in_flight = self.request_arrived.values().min().copied();
        waiting.into_iter().chain(in_flight).min()
    }

    /// Requests to send now, and when to look again (`None`: only when woken).
    fn take_requests(&mut self, cfg: &Config, now: Instant) -> (Vec<Request>, Option<Instant>) {
        let free = cfg.max_in_flight.saturating_sub(self.requests_in_flight);
        self.held_for_jobs = false;
        self.deferred = false;
        let mut next_wake: Option<Instant> = None;
        let mut wake_at = |t: Instant| next_wake = Some(next_wake.map_or(t, |n: Instant| n.min(t)));
        if free == 0 {
            return (vec![], None);
        }
        // The first waiting write of each key that is not in flight, by operation and SObject, in offset order.
        let mut seen: HashSet<KeyHash> = HashSet::new();
        let mut deferred = false;
        // By operation and SObject: a request writes one SObject (Collections upsert names it in
        // its path), so `${topic}` records of different topics never share one.
        let mut ready: BTreeMap<(u8, Arc<str>), Vec<i64>> = BTreeMap::new();
        for (&id, entry) in &self.waiting {
            if let Some(key) = entry.ledger.key {
                if self.busy_keys.contains(&key) || !seen.insert(key) {
                    continue;
                }
            }
            if let Some(t) = entry.not_before.filter(|t| *t > now) {
                wake_at(t);
                deferred = true;
                continue;
            }
            ready.entry((op_rank(entry.item.write.op), Arc::clone(&entry.item.write.sobject))).or_default().push(id);
        }
        self.deferred = deferred;
        for ids in ready.values() {
            for id in ids {
                let entry = self.waiting.get_mut(id).expect("ready");
                entry.ready_after.get_or_insert(self.next_request);
            }
        }
        let mut requests = Vec::new();
        let mut groups: Vec<Vec<i64>> = ready.into_values().collect();
        // Operations whose oldest write waited longest go first.
        groups.sort_by_key(|ids| ids[0]);
        for ids in groups {
            if requests.len() == free {
                break;
            }
            // Writes a Bulk job refused without saying why go through Collections, which answers
            // per record.
            let (bulk, per_request): (Vec<i64>, Vec<i64>) = match cfg.write_mode {
                WriteMode::Bulk | WriteMode::Auto => ids.iter().partition(|id| !self.waiting[*id].ledger.via_collections),
                WriteMode::Single | WriteMode::Collections => (vec![], ids),
            };
            let jobs = match cfg.write_mode {
                WriteMode::Bulk => !bulk.is_empty(),
                WriteMode::Auto => bulk.len() >= cfg.bulk.threshold,
                WriteMode::Single | WriteMode::Collections => false,
            };
            let per_request = if jobs {
                self.take_jobs(&bulk, cfg, now, free, &mut requests, &mut wake_at);
                per_request
            } else {
                // AUTO below the threshold: everything through Collections, in offset order.
                let mut all = bulk;
                all.extend(per_request);
                all.sort_unstable();
                all
            };
            let (via, batch_size) = match cfg.write_mode {
                WriteMode::Single => (Via::Single, 1),
                _ => (Via::Collections, cfg.batch_size),
            };
            self.take_batches(&per_request, via, batch_size, cfg, now, free, &mut requests, &mut wake_at);
        }
        self.requests_in_flight += requests.len();
        (requests, next_wake)
    }

    /// Collections (or single-record) requests from one operation's ready writes.
    #[allow(clippy::too_many_arguments)]
    fn take_batches(
        &mut self,
        ids: &[i64],
        via: Via,
        batch_size: usize,
        cfg: &Config,
        now: Instant,
        free: usize,
        requests: &mut Vec<Request>,
        wake_at: &mut impl FnMut(Instant),
    ) {
        // Requests numbered below this one have all answered.
        let answered_below = self.in_flight_requests.first().copied().unwrap_or(u64::MAX);
        for chunk in ids.chunks(batch_size) {
            if requests.len() == free {
                return;
            }
            // A part-filled request waits for more writes: those Kafka brings (`linger.ms`
            // after the oldest arrived) and those that requests in flight will free when they
            // answer (their answers wake the dispatcher). Writes of repeated keys thus travel
            // together, as in waves, instead of in ever smaller requests.
            let arrived = chunk.iter().map(|id| self.waiting[id].ledger.arrived).min().expect("non-empty");
            let ready_after = chunk.iter().filter_map(|id| self.waiting[id].ready_after).max().unwrap_or(0);
            let brought_by_kafka = arrived + cfg.linger;
            let due = chunk.len() == batch_size || self.flushing > 0 || (brought_by_kafka <= now && answered_below >= ready_after);
            if !due {
                if brought_by_kafka > now {
                    wake_at(brought_by_kafka);
                }
                return;
            }
            requests.push(self.send_off(chunk, via));
        }
    }

    /// Bulk API 2.0 jobs from one operation's ready writes (SPEC §7). A job is closed when it is
    /// full, `bulk.linger.ms` after its last write arrived with no other job running, or when its
    /// oldest write has waited `MAX_BULK_LINGERS` lingers. AUTO gets here once `bulk.threshold` writes wait, and then
    /// fills its jobs the same way: a backlog becomes a few full jobs, not many small ones.
    fn take_jobs(
        &mut self,
        ids: &[i64],
        cfg: &Config,
        now: Instant,
        free: usize,
        requests: &mut Vec<Request>,
        wake_at: &mut impl FnMut(Instant),
    ) {
        let mut rest = ids;
        while !rest.is_empty() && requests.len() < free {
            // As many writes as the job takes, by count and by the size of their CSV.
            let mut bytes = 0usize;
            let mut n = 0;
            for id in rest.iter().take(cfg.bulk.max_records_per_job) {
                let item = &self.waiting[id].item;
                bytes += item.write.fields.len() + item.write.key.as_ref().map_or(0, String::len) + 8;
                if n > 0 && bytes > crate::write::MAX_BULK_UPLOAD_BYTES {
                    break;
                }
                n += 1;
            }
            let chunk = &rest[..n];
            let full = n == cfg.bulk.max_records_per_job || n < rest.len().min(cfg.bulk.max_records_per_job);
            let last_arrived = chunk.iter().map(|id| self.waiting[id].ledger.arrived).max().expect("non-empty");
            let first_arrived = chunk.iter().map(|id| self.waiting[id].ledger.arrived).min().expect("non-empty");
            // A steady trickle would keep an open job from ever closing: the oldest write waits
            // at most this long.
            let oldest_due = first_arrived + cfg.bulk.linger * MAX_BULK_LINGERS;
            let quiet_due = last_arrived + cfg.bulk.linger;
            // A part-filled job also waits for the jobs in flight: while they run, the task is
            // often paused for back-pressure, and the quiet that follows is no end of the stream.
            let quiet = quiet_due <= now && self.jobs_in_flight.is_empty();
            let due = full || self.flushing_jobs > 0 || quiet || oldest_due <= now;
            if !due {
                self.held_for_jobs = true;
                // Past its quiet time the job waits for the jobs in flight, and their answers wake
                // the dispatcher: a deadline already passed would make it spin (SPEC §11).
                wake_at(if quiet_due > now { quiet_due.min(oldest_due) } else { oldest_due });
                return;
            }
            requests.push(self.send_off(chunk, Via::Bulk));
            rest = &rest[n..];
        }
    }

    /// Moves `ids` from waiting to in flight as one request.
    fn send_off(&mut self, ids: &[i64], via: Via) -> Request {
        let (items, ledgers): (Vec<Item>, Vec<Ledger>) = ids
            .iter()
            .map(|id| {
                let entry = self.waiting.remove(id).expect("ready");
                (entry.item, entry.ledger)
            })
            .unzip();
        for (id, ledger) in ids.iter().zip(&ledgers) {
            self.in_flight.extend(ledger.seqs.iter().copied());
            if let Some(key) = ledger.key {
                self.busy_keys.insert(key);
                if self.last_waiting.get(&key) == Some(id) {
                    self.last_waiting.remove(&key);
                }
            }
        }
        let number = self.next_request;
        self.next_request += 1;
        if via != Via::Bulk {
            self.sent_at.insert(number, Instant::now());
        }
        // Jobs run for minutes: part-filled requests do not wait for their answers (see `take_batches`).
        if via == Via::Bulk {
            self.jobs_in_flight.insert(number);
        } else {
            self.in_flight_requests.insert(number);
        }
        let abandoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seqs = ledgers.iter().flat_map(|l| l.seqs.iter().copied()).collect();
        self.request_flags.insert(number, (seqs, Arc::clone(&abandoned)));
        if let Some(oldest) = ledgers.iter().map(|l| l.arrived).min() {
            self.request_arrived.insert(number, oldest);
        }
        Request { number, op: items[0].write.op, via, items, ledgers, abandoned }
    }

    /// Applies one request's results.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        number: u64,
        items: Vec<Item>,
        ledgers: Vec<Ledger>,
        results: Result<Vec<ItemResult>, FatalError>,
        cfg: &Config,
        metrics: &Metrics,
        now: Instant,
    ) {
        self.observe_round_trip(number, now);
        self.requests_in_flight -= 1;
        self.in_flight_requests.remove(&number);
        self.jobs_in_flight.remove(&number);
        self.request_flags.remove(&number);
        self.request_arrived.remove(&number);
        let results: Vec<Option<ItemResult>> = match results {
            Ok(results) => results.into_iter().map(Some).collect(),
            Err(fatal) => {
                self.fatal.get_or_insert(fatal.0);
                items.iter().map(|_| None).collect::<Vec<_>>()
            }
        };
        // Salesforce wrote other records of this request: a record's own transient failure (a row
        // lock) is no sign of overload, and its first retry rides along with the next request of
        // its operation instead of waiting out a backoff and travelling alone.
        let request_went_through = results.iter().any(|r| matches!(r, Some(ItemResult::Written)));
        for ((item, mut ledger), result) in items.into_iter().zip(ledgers).zip(results) {
            if let Some(key) = &ledger.key {
                self.busy_keys.remove(key);
            }
            for seq in &ledger.seqs {
                self.in_flight.remove(seq);
            }
            ledger.seqs.retain(|s| !self.abandoned.remove(&*s));
            if ledger.seqs.is_empty() {
                continue;
            }
            let result = match result {
                Some(ItemResult::RecordRetry(cause)) => Some(ledger.retry_within_bound(cause, cfg, now)),
                other => other,
            };
            if let Some(ItemResult::Retry(cause)) = &result {
                metrics.note_retry_cause(cause);
            }
            let counter = match &result {
                Some(ItemResult::Written) => Some(&metrics.records_written),
                Some(ItemResult::Failed(_)) => Some(&metrics.records_failed),
                Some(ItemResult::NotSent) => None, // never sent
                _ => Some(&metrics.records_retried),
            };
            if let Some(counter) = counter {
                counter.fetch_add(ledger.seqs.len() as u64, Relaxed);
            }
            match result {
                Some(ItemResult::Written) => self.finish(&ledger.seqs, Outcome::Written),
                Some(ItemResult::Failed(message)) => self.finish(&ledger.seqs, Outcome::Failed(message)),
                Some(ItemResult::StaleId | ItemResult::NotSent) => self.back(item, ledger, None, cfg),
                Some(ItemResult::ViaCollections(_)) => {
                    ledger.attempts += 1;
                    ledger.via_collections = true;
                    self.back(item, ledger, None, cfg);
                }
                Some(ItemResult::WaitForQuota(_)) => {
                    ledger.attempts += 1;
                    self.back(item, ledger, Some(now + cfg.quota_check_interval), cfg);
                }
                Some(ItemResult::Retry(_)) if request_went_through && ledger.attempts == 0 => {
                    ledger.attempts += 1;
                    self.back(item, ledger, None, cfg);
                }
                // `retry_within_bound` made every RecordRetry a Retry or a Failed above.
                Some(ItemResult::Retry(_) | ItemResult::RecordRetry(_)) | None => {
                    ledger.attempts += 1;
                    let backoff = cfg.retry.backoff(ledger.attempts).max(MIN_RETRY_BACKOFF);
                    self.back(item, ledger, Some(now + backoff), cfg);
                }
            }
        }
    }

    fn observe_round_trip(&mut self, number: u64, now: Instant) {
        if let Some(sent) = self.sent_at.remove(&number) {
            let us = u64::try_from(now.saturating_duration_since(sent).as_micros()).unwrap_or(u64::MAX);
            self.round_trip_us = if self.round_trip_us == 0 { us } else { (self.round_trip_us * 4 + us) / 5 };
        }
    }

    /// How long the unfinished writes would take to finish at the observed round trip: a key's
    /// writes go one round trip at a time, and one round trip carries at most
    /// `max.in.flight.requests` × `batch.size` writes. Java holds the buffer within what a task
    /// can finish while its partitions are revoked, so a rebalance replays little (SPEC §11).
    /// Bulk jobs take minutes whatever waits: they are not estimated here.
    fn drain_estimate(&self, cfg: &Config) -> Duration {
        if self.round_trip_us == 0 || cfg.write_mode == WriteMode::Bulk {
            return Duration::ZERO;
        }
        let mut chains: HashMap<KeyHash, u64> = HashMap::new();
        for key in self.waiting.values().filter_map(|e| e.ledger.key).chain(self.busy_keys.iter().copied()) {
            *chains.entry(key).or_default() += 1;
        }
        let longest_chain = chains.values().copied().max().unwrap_or(0);
        let per_round_trip = match cfg.write_mode {
            WriteMode::Single => cfg.max_in_flight,
            _ => cfg.max_in_flight * cfg.batch_size,
        }
        .max(1) as u64;
        let writes = (self.waiting.len() + self.in_flight.len()) as u64;
        let round_trips = longest_chain.max(writes.div_ceil(per_round_trip));
        Duration::from_micros(self.round_trip_us.saturating_mul(round_trips))
    }

    fn finish(&mut self, seqs: &[i64], outcome: Outcome) {
        self.unfinished -= seqs.len();
        for &seq in seqs {
            self.finished.push((seq, outcome.clone()));
        }
    }

    /// Returns a write to the buffer at its place in offset order.
    fn back(&mut self, item: Item, ledger: Ledger, not_before: Option<Instant>, cfg: &Config) {
        let id = ledger.seqs[0];
        if let (true, Some(key)) = (cfg.coalesce_updates, ledger.key) {
            // Later waiting writes of the key keep their place behind it; coalescing goes on
            // with the last of them, or with this one if it is the only one.
            self.last_waiting.entry(key).or_insert(id);
        }
        self.waiting.insert(id, Box::new(Entry { item, ledger, ready_after: None, not_before }));
    }
}

/// Operations in a fixed order, so requests of one operation group together.
fn op_rank(op: Operation) -> u8 {
    match op {
        Operation::Insert => 0,
        Operation::Upsert => 1,
        Operation::Update => 2,
        Operation::Delete => 3,
    }
}

/// `salesforce.coalesce.updates`: a waiting UPSERT or UPDATE absorbs the next write of its key
/// when that is an UPDATE, or an UPSERT following an UPSERT (later fields win). Never across a
/// DELETE or an INSERT, and never across partitions (offsets of different partitions must be
/// able to finish apart). An UPDATE followed by an UPSERT stays two writes: the UPDATE may fail
/// for a missing record where the merged UPSERT would create it.
fn coalesce(earlier: &PlannedWrite, later: &PlannedWrite, earlier_origin: &Origin, later_origin: &Origin) -> Option<PlannedWrite> {
    let compatible = matches!(
        (earlier.op, later.op),
        (Operation::Upsert, Operation::Upsert | Operation::Update) | (Operation::Update, Operation::Update)
    );
    if !compatible || earlier_origin.partition != later_origin.partition || earlier_origin.topic != later_origin.topic {
        return None;
    }
    let fields = crate::convert::merge_fragments(&earlier.fields, &later.fields)?;
    Some(PlannedWrite { sobject: Arc::clone(&earlier.sobject), op: earlier.op, key: earlier.key.clone(), fields: Arc::from(fields) })
}

/// Runs one of the sink's background tasks (the dispatcher, a request, a quota check). A panic in
/// it makes the sink fatal with the panic's message (SPEC §11): every later call throws and the
/// task fails, instead of records that stay in flight forever behind a task that looks healthy.
async fn supervised(shared: Arc<Shared>, task: &'static str, work: impl std::future::Future<Output = ()>) {
    if let Err(panic) = crate::panics::CatchUnwind::new(work).await {
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.fatal.get_or_insert_with(|| format!("native panic in the {task} task: {panic}"));
        drop(state);
        shared.progress.notify_waiters();
        shared.wake.notify_one();
    }
}

async fn dispatch_loop(shared: Arc<Shared>) {
    loop {
        let now = Instant::now();
        let (requests, next_wake) = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.closed {
                return;
            }
            state.dispatch_rounds += 1;
            if state.fatal.is_some() {
                (vec![], None)
            } else if shared.metrics.quota.active() {
                // SPEC §8: nothing but GET /limits until the remaining share is back above the
                // reserve; requests already in flight finish.
                (vec![], Some(quota_check_due(&shared, &mut state, now)))
            } else {
                state.quota_next_check = None;
                state.take_requests(&shared.cfg, now)
            }
        };
        // A flusher that keeps part-filled jobs back learns from the round itself that nothing
        // else is left to send.
        shared.progress.notify_waiters();
        if !requests.is_empty() {
            shared.cfg.test_hook("dispatcher");
        }
        {
            let mut running = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
            // Forget the requests that answered; a panic in one was caught by `supervised`.
            while running.try_join_next().is_some() {}
            for Request { number, op, via, mut items, ledgers, abandoned } in requests {
                let shared = Arc::clone(&shared);
                running.spawn(supervised(Arc::clone(&shared), "request", async move {
                    shared.cfg.test_hook("request");
                    // What the request learns (resolved Ids) stays with the write for its retries.
                    // A Bulk job's ledgers wait packed, as its writes do (`write::parked`).
                    let (results, ledgers) = if via == Via::Bulk {
                        let parked = ParkedLedgers::pack(ledgers);
                        (shared.writer.execute(op, via, &mut items, &abandoned).await, parked.unpack())
                    } else {
                        (shared.writer.execute(op, via, &mut items, &abandoned).await, ledgers)
                    };
                    {
                        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                        state.settle(number, items, ledgers, results, &shared.cfg, &shared.metrics, Instant::now());
                    }
                    shared.wake.notify_one();
                    shared.progress.notify_waiters();
                }));
            }
        }
        match next_wake {
            Some(at) => {
                let _ = tokio::time::timeout_at(at.into(), shared.wake.notified()).await;
            }
            None => shared.wake.notified().await,
        }
    }
}

/// While the quota guard holds: starts the `GET /limits` read when it is due (one at a time, every
/// `salesforce.api.quota.check.interval.ms`) and returns when the dispatcher should look again.
fn quota_check_due(shared: &Arc<Shared>, state: &mut State, now: Instant) -> Instant {
    let interval = shared.cfg.quota_check_interval;
    let due = *state.quota_next_check.get_or_insert(now + interval);
    if due > now || state.quota_checking {
        return if due > now { due } else { now + interval };
    }
    state.quota_checking = true;
    state.quota_next_check = Some(now + interval);
    let shared = Arc::clone(shared);
    tokio::spawn(supervised(Arc::clone(&shared), "quota check", async move {
        match read_daily_limits(&shared).await {
            Ok((used, max)) => {
                shared.logs.debug(format!("GET /limits: {used} of {max} daily API requests used"));
                shared.metrics.observe_limits(used, max);
            }
            Err(e) => shared.logs.debug(format!("GET /limits failed, read again in {} ms: {e}", shared.cfg.quota_check_interval.as_millis())),
        }
        shared.state.lock().unwrap_or_else(|e| e.into_inner()).quota_checking = false;
        shared.wake.notify_one();
    }));
    now + interval
}

/// `DailyApiRequests` of `GET /services/data/vNN.0/limits`, as (used, max).
async fn read_daily_limits(shared: &Shared) -> Result<(u64, u64), String> {
    let answer = shared.writer.client().send(reqwest::Method::GET, "/limits", None).await.map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|e| format!("not JSON: {e}"))?;
    let daily = &json["DailyApiRequests"];
    match (daily["Max"].as_u64(), daily["Remaining"].as_u64()) {
        (Some(max), Some(remaining)) => Ok((max.saturating_sub(remaining), max)),
        _ => Err("no DailyApiRequests.Max/Remaining in the answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::base;

    thread_local! {
        /// Makes every ordering key hash alike on this thread, to show what a collision does.
        pub(super) static EVERY_KEY_COLLIDES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn ledgers_come_back_as_they_were_parked() {
        let now = Instant::now();
        let ledger = |n: i64| Ledger {
            seqs: (0..=n % 3).map(|k| n * 10 + k).collect(),
            key: (n % 2 == 0).then_some(KeyHash(n as u64 * 7919)),
            arrived: now - Duration::from_millis(n as u64 * 13),
            attempts: n as u32 % 5,
            failing_since: (n % 3 == 1).then(|| now - Duration::from_micros(n as u64)),
            via_collections: n % 4 == 3,
        };
        let shown = |l: &Ledger| format!("{:?} {:?} {:?} {} {:?} {}", l.seqs, l.key, l.arrived, l.attempts, l.failing_since, l.via_collections);
        let ledgers: Vec<Ledger> = (0..50).map(ledger).collect();
        let before: Vec<String> = ledgers.iter().map(shown).collect();
        let back = ParkedLedgers::pack(ledgers).unpack();
        assert_eq!(back.iter().map(shown).collect::<Vec<_>>(), before);
    }

    fn upsert(key: &str, fields: &str) -> PlannedWrite {
        PlannedWrite { sobject: Arc::from("Contact"), op: Operation::Upsert, key: Some(key.into()), fields: Arc::from(fields.as_bytes()) }
    }

    #[test]
    fn keys_that_hash_alike_are_never_coalesced_and_only_wait_for_each_other() {
        let mut map = base();
        map.insert("salesforce.operation".into(), "UPSERT".into());
        map.insert("salesforce.external.id.field".into(), "ExternalId__c".into());
        map.insert("salesforce.coalesce.updates".into(), "true".into());
        let cfg = Config::from_map(&map).unwrap();
        EVERY_KEY_COLLIDES.with(|c| c.set(true));
        let mut state = State::default();
        let now = Instant::now();
        let origin = |offset| Origin { topic: Arc::from("t"), partition: 0, offset, unsent_key: None };
        for (seq, (key, fields)) in [("a", r#""LastName":"A1""#), ("b", r#""LastName":"B""#), ("a", r#""LastName":"A2""#)].into_iter().enumerate() {
            state.add(seq as i64, upsert(key, fields), origin(seq as i64), now, &cfg, true);
        }
        EVERY_KEY_COLLIDES.with(|c| c.set(false));
        let waiting: Vec<(String, String)> = state
            .waiting
            .values()
            .map(|e| (e.item.write.key.clone().unwrap(), String::from_utf8(e.item.write.fields.to_vec()).unwrap()))
            .collect();
        let expected = [("a", r#""LastName":"A1""#), ("b", r#""LastName":"B""#), ("a", r#""LastName":"A2""#)];
        assert_eq!(waiting, expected.map(|(k, f)| (k.to_owned(), f.to_owned())));
        // Alike hashes make the writes wait for each other: one goes at a time, the first first.
        state.flushing = 1;
        let (requests, _) = state.take_requests(&cfg, now);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].items.len(), 1);
        assert_eq!(requests[0].ledgers[0].seqs.as_slice(), &[0]);
    }

    #[test]
    fn writes_of_one_key_coalesce_without_a_collision() {
        let mut map = base();
        map.insert("salesforce.operation".into(), "UPSERT".into());
        map.insert("salesforce.external.id.field".into(), "ExternalId__c".into());
        map.insert("salesforce.coalesce.updates".into(), "true".into());
        let cfg = Config::from_map(&map).unwrap();
        let mut state = State::default();
        let now = Instant::now();
        let origin = |offset| Origin { topic: Arc::from("t"), partition: 0, offset, unsent_key: None };
        state.add(0, upsert("a", r#""LastName":"A1""#), origin(0), now, &cfg, true);
        state.add(1, upsert("A", r#""LastName":"A2""#), origin(1), now, &cfg, true);
        assert_eq!(state.waiting.len(), 1);
        assert_eq!(state.waiting[&0].ledger.seqs.as_slice(), &[0, 1]);
    }
}
