//! Task metrics (SPEC §10), the API quota guard (SPEC §8) and the task's health, kept with atomics
//! and small locks on the native side. Native threads never call into the JVM: Java gets a
//! snapshot in the progress buffer of every put/flush crossing ([`Metrics::snapshot`]) and
//! publishes it as a JMX MBean.

use crate::logs::Logs;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What an HTTP request to Salesforce was for. Adding a kind: a variant, its name in
/// [`RequestKind::name`], an entry in [`RequestKind::ALL`] (Java shows every name it receives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Collections,
    Single,
    Query,
    Bulk,
    Token,
    Limits,
    /// Describe, versions: startup and type checks.
    Other,
}

impl RequestKind {
    pub const ALL: [RequestKind; 7] = [
        RequestKind::Collections,
        RequestKind::Single,
        RequestKind::Query,
        RequestKind::Bulk,
        RequestKind::Token,
        RequestKind::Limits,
        RequestKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Collections => "requests.collections",
            RequestKind::Single => "requests.single",
            RequestKind::Query => "requests.query",
            RequestKind::Bulk => "requests.bulk",
            RequestKind::Token => "requests.token",
            RequestKind::Limits => "requests.limits",
            RequestKind::Other => "requests.other",
        }
    }

    /// The kind of a request by its path below `/services/data/vNN.0`.
    pub fn of_data_path(path: &str) -> RequestKind {
        let path = path.split('?').next().unwrap_or(path);
        if path.starts_with("/composite/sobjects") {
            RequestKind::Collections
        } else if path.starts_with("/query") {
            RequestKind::Query
        } else if path.starts_with("/limits") {
            RequestKind::Limits
        } else if path.starts_with("/jobs/") {
            RequestKind::Bulk
        } else if path.starts_with("/sobjects/") && !path.ends_with("/describe") {
            RequestKind::Single
        } else {
            RequestKind::Other
        }
    }
}

/// Why the task is held back, as the status API and the logs show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HealthState {
    Ok = 0,
    /// The quota guard holds requests back (SPEC §8).
    QuotaReserve = 1,
    /// Salesforce answers 5xx or not at all; records are retried until it is back.
    SalesforceUnavailable = 2,
    /// The oldest unfinished record is older than `salesforce.health.stall.threshold.ms` (SPEC
    /// §11), and neither of the states above explains it (they take precedence: they name the cause).
    Stalled = 3,
}

/// Consecutive requests that found Salesforce unavailable before the health says so: a single
/// 503 or reset is retried unnoticed.
const UNAVAILABLE_AFTER: u64 = 3;

#[derive(Debug, Clone)]
pub struct Health {
    pub state: HealthState,
    pub since_epoch_ms: i64,
    pub message: String,
}

/// Request latency in microseconds: 4 buckets per power of two (≤ 19 % error), over the current
/// and the previous minute.
struct Latency {
    current: [u64; BUCKETS],
    previous: [u64; BUCKETS],
    window_start: Instant,
}

const BUCKETS: usize = 4 * 40;
const LATENCY_WINDOW: Duration = Duration::from_secs(60);

fn bucket(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize; // ≥ 2
    let sub = ((us >> (exp - 2)) & 3) as usize;
    (4 * (exp - 1) + sub).min(BUCKETS - 1)
}

/// The largest value of a bucket.
fn bucket_upper(index: usize) -> u64 {
    if index < 4 {
        return index as u64;
    }
    let exp = index / 4 + 1;
    let sub = (index % 4) as u64;
    ((4 + sub + 1) << (exp - 2)) - 1
}

impl Latency {
    fn rotate(&mut self, now: Instant) {
        if now.duration_since(self.window_start) >= LATENCY_WINDOW {
            self.previous = if now.duration_since(self.window_start) >= 2 * LATENCY_WINDOW { [0; BUCKETS] } else { self.current };
            self.current = [0; BUCKETS];
            self.window_start = now;
        }
    }

    fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.current.iter().zip(&self.previous).map(|(a, b)| a + b).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_upper(i);
            }
        }
        bucket_upper(BUCKETS - 1)
    }
}

/// One task's counters. Totals only grow; Java derives rates from them.
pub struct Metrics {
    pub records_written: AtomicU64,
    pub records_failed: AtomicU64,
    pub records_retried: AtomicU64,
    pub records_skipped: AtomicU64,
    requests: [AtomicU64; RequestKind::ALL.len()],
    /// Write requests the pipeline sent and the records they carried (records per request).
    pub write_requests: AtomicU64,
    pub write_records: AtomicU64,
    pub token_refreshes: AtomicU64,
    pub id_cache_hits: AtomicU64,
    pub id_cache_misses: AtomicU64,
    /// Bulk API 2.0 jobs under way (from just before creation until done, failed or aborted).
    pub bulk_jobs_open: AtomicI64,
    /// Bulk API 2.0 jobs handed to Salesforce (UploadComplete) whose outcome is awaited.
    pub bulk_jobs_waiting: AtomicI64,
    /// Age of the oldest unfinished record at the last call from Java (0: none).
    oldest_unfinished_ms: AtomicI64,
    stalled: AtomicBool,
    /// The threshold it was measured against, for the health message.
    stall_threshold_ms: AtomicU64,
    /// The last transient cause a record was retried for, for the STALLED message.
    last_retry_cause: Mutex<String>,
    latency: Mutex<Latency>,
    pub quota: QuotaGuard,
    unavailable_streak: AtomicU64,
    last_unavailable: Mutex<String>,
    health: Mutex<Health>,
    logs: Logs,
}

impl Metrics {
    pub fn new(reserve_percent: u64, logs: Logs) -> Metrics {
        Metrics {
            records_written: AtomicU64::new(0),
            records_failed: AtomicU64::new(0),
            records_retried: AtomicU64::new(0),
            records_skipped: AtomicU64::new(0),
            requests: Default::default(),
            write_requests: AtomicU64::new(0),
            write_records: AtomicU64::new(0),
            token_refreshes: AtomicU64::new(0),
            id_cache_hits: AtomicU64::new(0),
            id_cache_misses: AtomicU64::new(0),
            bulk_jobs_open: AtomicI64::new(0),
            bulk_jobs_waiting: AtomicI64::new(0),
            oldest_unfinished_ms: AtomicI64::new(0),
            stalled: AtomicBool::new(false),
            stall_threshold_ms: AtomicU64::new(0),
            last_retry_cause: Mutex::new(String::new()),
            latency: Mutex::new(Latency { current: [0; BUCKETS], previous: [0; BUCKETS], window_start: Instant::now() }),
            quota: QuotaGuard { reserve_percent, ..Default::default() },
            unavailable_streak: AtomicU64::new(0),
            last_unavailable: Mutex::new(String::new()),
            health: Mutex::new(Health { state: HealthState::Ok, since_epoch_ms: epoch_ms(), message: String::new() }),
            logs,
        }
    }

    pub fn count_request(&self, kind: RequestKind) {
        let i = RequestKind::ALL.iter().position(|k| *k == kind).expect("listed");
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self, kind: RequestKind) -> u64 {
        let i = RequestKind::ALL.iter().position(|k| *k == kind).expect("listed");
        self.requests[i].load(Ordering::Relaxed)
    }

    pub fn record_latency(&self, elapsed: Duration) {
        let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        latency.rotate(Instant::now());
        let b = bucket(elapsed.as_micros().min(u64::MAX as u128) as u64);
        latency.current[b] += 1;
    }

    /// Salesforce answered (any status below 500): it is reachable.
    pub fn salesforce_answered(&self) {
        if self.unavailable_streak.swap(0, Ordering::Relaxed) >= UNAVAILABLE_AFTER {
            self.update_health();
        }
    }

    /// A request found Salesforce unavailable (5xx, timeout, connection failure).
    pub fn salesforce_unavailable(&self, why: &str) {
        *self.last_unavailable.lock().unwrap_or_else(|e| e.into_inner()) = why.chars().take(300).collect();
        if self.unavailable_streak.fetch_add(1, Ordering::Relaxed) + 1 == UNAVAILABLE_AFTER {
            self.update_health();
        }
    }

    /// A record goes back to wait for a transient cause (kept for the STALLED message).
    pub fn note_retry_cause(&self, cause: &str) {
        *self.last_retry_cause.lock().unwrap_or_else(|e| e.into_inner()) = cause.chars().take(500).collect();
    }

    /// The age of the oldest unfinished record (`None`: nothing unfinished), at each call from
    /// Java: STALLED begins once it is older than `threshold` and ends when it is not.
    pub fn observe_unfinished(&self, oldest: Option<Duration>, threshold: Duration) {
        let age = oldest.unwrap_or_default();
        self.oldest_unfinished_ms.store(age.as_millis().min(i64::MAX as u128) as i64, Ordering::Relaxed);
        self.stall_threshold_ms.store(threshold.as_millis().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        let stalled = oldest.is_some_and(|age| age > threshold);
        if self.stalled.swap(stalled, Ordering::SeqCst) != stalled {
            self.update_health();
        }
    }

    /// `Sforce-Limit-Info` of an answer: usage, and the quota guard's line.
    pub fn observe_api_usage(&self, header: &str) {
        if self.quota.observe(header, &self.logs) {
            self.update_health();
        }
    }

    /// What `GET /limits` said: the guard lets requests go again once the remaining share is back
    /// above the reserve.
    pub fn observe_limits(&self, used: u64, max: u64) {
        self.quota.used.store(used, Ordering::Relaxed);
        self.quota.max.store(max, Ordering::Relaxed);
        if self.quota.active() && !self.quota.below_line(used, max) {
            self.quota.active.store(false, Ordering::SeqCst);
            self.update_health();
        }
    }

    /// Works out the health from the guard and the unavailability streak, and logs a change: one
    /// WARN on entering a held state (with what to do), one INFO on recovery.
    fn update_health(&self) {
        let (state, message) = if self.quota.active() {
            let (used, max) = (self.quota.used.load(Ordering::Relaxed), self.quota.max.load(Ordering::Relaxed));
            (
                HealthState::QuotaReserve,
                format!(
                    "API quota guard: Salesforce reports {used} of {max} daily API requests used, leaving less than the \
                     reserve of {}% (salesforce.api.quota.reserve.percent); no new requests are sent and the partitions \
                     are paused until the remaining share is back above the reserve (checked with GET /limits every \
                     salesforce.api.quota.check.interval.ms). Nothing goes to the DLQ. To resume sooner, raise the org's \
                     API allowance or lower the reserve",
                    self.quota.reserve_percent
                ),
            )
        } else if self.unavailable_streak.load(Ordering::Relaxed) >= UNAVAILABLE_AFTER {
            let why = self.last_unavailable.lock().unwrap_or_else(|e| e.into_inner()).clone();
            (
                HealthState::SalesforceUnavailable,
                format!(
                    "Salesforce is unavailable ({why}); records wait and are retried until it answers again. Check \
                     trust.salesforce.com for the org's instance, the network path and salesforce.instance.url"
                ),
            )
        } else if self.stalled.load(Ordering::SeqCst) {
            let cause = self.last_retry_cause.lock().unwrap_or_else(|e| e.into_inner()).clone();
            (
                HealthState::Stalled,
                format!(
                    "the oldest unfinished record has waited {} ms, longer than salesforce.health.stall.threshold.ms \
                     ({} ms); its partition's offsets cannot be committed past it. {}A record that keeps failing for a \
                     cause of its own (row lock, UNKNOWN_EXCEPTION) goes to the DLQ after salesforce.retry.max.duration.ms; \
                     a slow Bulk job shows in BulkJobsWaiting. Look for the record's WARN/DEBUG lines and Salesforce's \
                     Setup > Bulk Data Load Jobs",
                    self.oldest_unfinished_ms.load(Ordering::Relaxed),
                    self.stall_threshold_ms.load(Ordering::Relaxed),
                    if cause.is_empty() { String::new() } else { format!("Last retried cause: {cause}. ") }
                ),
            )
        } else {
            (HealthState::Ok, String::new())
        };
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if health.state == state {
            return;
        }
        let previous = health.state;
        *health = Health { state, since_epoch_ms: epoch_ms(), message: message.clone() };
        drop(health);
        match state {
            HealthState::Ok => self.logs.info(format!("Salesforce sink recovered from {}: sending again", name(previous))),
            _ => self.logs.warn(format!("{}: {message}", name(state))),
        }
    }

    pub fn health(&self) -> Health {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every metric as (name, value); Java shows what it gets, so a new metric needs no change of
    /// the wire layout. Latencies in microseconds.
    pub fn snapshot(&self, records_buffered: usize, requests_in_flight: usize) -> Vec<(&'static str, i64)> {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).min(i64::MAX as u64) as i64;
        let (p50, p99) = {
            let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
            latency.rotate(Instant::now());
            (latency.quantile(0.50), latency.quantile(0.99))
        };
        let mut out = vec![
            ("records.written", load(&self.records_written)),
            ("records.failed", load(&self.records_failed)),
            ("records.retried", load(&self.records_retried)),
            ("records.skipped", load(&self.records_skipped)),
        ];
        for (kind, count) in RequestKind::ALL.iter().zip(&self.requests) {
            out.push((kind.name(), load(count)));
        }
        out.extend([
            ("request.latency.p50.us", p50 as i64),
            ("request.latency.p99.us", p99 as i64),
            ("write.requests", load(&self.write_requests)),
            ("write.records", load(&self.write_records)),
            ("records.buffered", records_buffered as i64),
            ("requests.in.flight", requests_in_flight as i64),
            ("bulk.jobs.open", self.bulk_jobs_open.load(Ordering::Relaxed)),
            ("bulk.jobs.waiting", self.bulk_jobs_waiting.load(Ordering::Relaxed)),
            ("records.unfinished", records_buffered as i64),
            ("oldest.unfinished.age.ms", self.oldest_unfinished_ms.load(Ordering::Relaxed)),
            ("api.requests.used", load(&self.quota.used)),
            ("api.requests.max", load(&self.quota.max)),
            ("quota.guard.active", self.quota.active() as i64),
            ("token.refreshes", load(&self.token_refreshes)),
            ("id.cache.hits", load(&self.id_cache_hits)),
            ("id.cache.misses", load(&self.id_cache_misses)),
        ]);
        out
    }
}

/// Counts one Bulk API 2.0 job as open for as long as it lives.
pub struct OpenJob<'a>(&'a Metrics);

impl<'a> OpenJob<'a> {
    pub fn new(metrics: &'a Metrics) -> OpenJob<'a> {
        metrics.bulk_jobs_open.fetch_add(1, Ordering::Relaxed);
        OpenJob(metrics)
    }
}

impl Drop for OpenJob<'_> {
    fn drop(&mut self) {
        self.0.bulk_jobs_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one Bulk API 2.0 job as waiting on Salesforce (closed with UploadComplete, its
/// outcome not yet known) for as long as it lives.
pub struct WaitingJob<'a>(&'a Metrics);

impl<'a> WaitingJob<'a> {
    pub fn new(metrics: &'a Metrics) -> WaitingJob<'a> {
        metrics.bulk_jobs_waiting.fetch_add(1, Ordering::Relaxed);
        WaitingJob(metrics)
    }
}

impl Drop for WaitingJob<'_> {
    fn drop(&mut self) {
        self.0.bulk_jobs_waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

fn name(state: HealthState) -> &'static str {
    match state {
        HealthState::Ok => "OK",
        HealthState::QuotaReserve => "QUOTA_RESERVE",
        HealthState::SalesforceUnavailable => "SALESFORCE_UNAVAILABLE",
        HealthState::Stalled => "STALLED",
    }
}

fn epoch_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `Sforce-Limit-Info: api-usage=USED/MAX` → usage figures, the WARNs below 20 % and 5 %
/// remaining, and the quota guard (SPEC §8): once the remaining share falls below
/// `reserve_percent`, the pipeline sends nothing but `GET /limits` until it is back above.
/// `salesforce.max.in.flight.requests` is at most 64: older answers lag by no more.
const MAX_OUT_OF_ORDER: u64 = 64;

#[derive(Default)]
pub struct QuotaGuard {
    pub reserve_percent: u64,
    /// 0 = no warning yet, 1 = warned below 20 %, 2 = warned below 5 %.
    warned: std::sync::atomic::AtomicU8,
    pub used: AtomicU64,
    pub max: AtomicU64,
    active: AtomicBool,
}

impl QuotaGuard {
    pub fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    fn below_line(&self, used: u64, max: u64) -> bool {
        // In u128: the counts come from a response header, and any u64 must neither wrap nor panic.
        let remaining = u128::from(max.saturating_sub(used));
        self.reserve_percent > 0 && max > 0 && remaining * 100 < u128::from(self.reserve_percent) * u128::from(max)
    }

    /// Returns whether the guard just became active. It is released only by [`Metrics::observe_limits`]:
    /// answers of requests sent before the line was crossed may arrive later and must not lift it.
    fn observe(&self, header: &str, logs: &Logs) -> bool {
        let Some((used, max)) = crate::http::parse_api_usage(header) else { return false };
        // Answers of concurrent requests arrive in any order: a smaller count than the last one is
        // an older answer, unless it is smaller by more than requests can be in flight (a new day).
        let known = self.used.load(Ordering::Relaxed);
        if used >= known || known - used > MAX_OUT_OF_ORDER || max != self.max.load(Ordering::Relaxed) {
            self.used.store(used, Ordering::Relaxed);
        }
        self.max.store(max, Ordering::Relaxed);
        if max == 0 {
            return false;
        }
        if self.below_line(used, max) {
            return !self.active.swap(true, Ordering::SeqCst);
        }
        // The guard's own WARN covers these when it is on; without it they are the only warning.
        let remaining = max.saturating_sub(used) as f64 / max as f64;
        let level = if remaining < 0.05 { 2 } else if remaining < 0.20 { 1 } else { 0 };
        let previous = self.warned.fetch_max(level, Ordering::Relaxed);
        if level > previous && remaining * 100.0 >= self.reserve_percent as f64 {
            let pct = if level == 2 { 5 } else { 20 };
            logs.warn(format!(
                "Salesforce daily API quota is below {pct}% remaining: {used} of {max} requests used (api-usage from Sforce-Limit-Info)"
            ));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_near_u64_max_neither_wrap_nor_panic() {
        let guard = QuotaGuard { reserve_percent: 10, ..Default::default() };
        // Found by the response_parsers fuzz target: 100 × (max − used) overflowed a u64.
        assert!(!guard.observe("api-usage=4990/2971381220773012030", &Logs::default()));
        assert!(guard.observe(&format!("api-usage={}/{}", u64::MAX - 1, u64::MAX), &Logs::default()));
    }

    #[test]
    fn buckets_cover_their_values() {
        for v in [0u64, 1, 3, 4, 5, 7, 8, 100, 1_000, 123_456, 10_000_000] {
            let b = bucket(v);
            assert!(bucket_upper(b) >= v, "{v} in bucket {b} up to {}", bucket_upper(b));
            if b > 0 {
                assert!(bucket_upper(b - 1) < v, "{v}");
            }
        }
    }

    #[test]
    fn latency_quantiles() {
        let m = Metrics::new(10, Logs::default());
        for ms in 1..=100 {
            m.record_latency(Duration::from_millis(ms));
        }
        let snap: std::collections::HashMap<_, _> = m.snapshot(0, 0).into_iter().collect();
        let p50 = snap["request.latency.p50.us"];
        let p99 = snap["request.latency.p99.us"];
        assert!((50_000..=60_000).contains(&p50), "{p50}");
        assert!((99_000..=118_000).contains(&p99), "{p99}");
    }

    #[test]
    fn guard_holds_below_the_reserve_and_releases_on_limits() {
        let logs = Logs::default();
        let m = Metrics::new(10, logs.clone());
        m.observe_api_usage("api-usage=8700/10000");
        assert!(!m.quota.active());
        m.observe_api_usage("api-usage=9001/10000");
        assert!(m.quota.active());
        assert_eq!(m.health().state, HealthState::QuotaReserve);
        // A late answer of an earlier request does not lift it, nor lower the count.
        m.observe_api_usage("api-usage=8999/10000");
        assert!(m.quota.active());
        assert_eq!(m.quota.used.load(Ordering::Relaxed), 9001);
        m.observe_limits(9500, 10000);
        assert!(m.quota.active());
        m.observe_limits(0, 10000);
        assert!(!m.quota.active());
        let events = logs.drain();
        let warns: Vec<_> = events.iter().filter(|e| e.level == crate::logs::Level::Warn).collect();
        assert_eq!(warns.len(), 2, "{events:?}"); // below 20 %, then the guard's one WARN
        assert!(warns[1].message.contains("9001 of 10000") && warns[1].message.contains("10%"));
        assert!(events.last().unwrap().message.contains("recovered from QUOTA_RESERVE"));
    }

    #[test]
    fn reserve_zero_is_off() {
        let m = Metrics::new(0, Logs::default());
        m.observe_api_usage("api-usage=10000/10000");
        assert!(!m.quota.active());
    }

    #[test]
    fn unavailable_after_a_streak_and_back() {
        let logs = Logs::default();
        let m = Metrics::new(10, logs.clone());
        m.salesforce_unavailable("HTTP 503");
        m.salesforce_unavailable("HTTP 503");
        assert_eq!(m.health().state, HealthState::Ok);
        m.salesforce_unavailable("HTTP 503");
        assert_eq!(m.health().state, HealthState::SalesforceUnavailable);
        m.salesforce_unavailable("HTTP 503");
        m.salesforce_answered();
        assert_eq!(m.health().state, HealthState::Ok);
        let events = logs.drain();
        assert_eq!(events.len(), 2, "{events:?}");
    }

    #[test]
    fn request_kinds_by_path() {
        assert_eq!(RequestKind::of_data_path("/composite/sobjects"), RequestKind::Collections);
        assert_eq!(RequestKind::of_data_path("/composite/sobjects/Contact/Ext__c"), RequestKind::Collections);
        assert_eq!(RequestKind::of_data_path("/sobjects/Contact/003"), RequestKind::Single);
        assert_eq!(RequestKind::of_data_path("/sobjects/Contact/describe"), RequestKind::Other);
        assert_eq!(RequestKind::of_data_path("/query?q=SELECT"), RequestKind::Query);
        assert_eq!(RequestKind::of_data_path("/limits"), RequestKind::Limits);
    }
}
