//! The native core of the Salesforce SObject sink connector. No JNI here: the `jni` crate adapts
//! [`SalesforceSink`] to Java, and everything below is tested on its own.
//!
//! Flow of one `put()`: [`wire::batch`] decodes the records, [`plan`] routes each to a write (or a
//! record error), the [`pipeline`] buffers the writes and sends them as requests through [`write`]
//! and [`http`] with tokens from [`auth`]; [`wire::outcome`] hands finished records back to Java
//! at its next call.

pub mod auth;
pub mod config;
pub mod convert;
pub mod error;
pub mod http;
pub mod ids;
pub mod keys;
pub mod logs;
pub mod metrics;
pub mod panics;
pub mod pipeline;
pub mod plan;
pub mod record;
pub mod retry;
mod startup;
pub mod wire;
pub mod write;

use config::Config;
pub use pipeline::FlushScope;
use logs::Logs;
use once_cell::sync::Lazy;
use plan::Plan;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use wire::outcome::Outcome;

/// One tokio runtime per loaded copy of the library (per plugin class loader), shared by every
/// task in it; two threads suffice, the work is waiting on Salesforce.
static RUNTIME: Lazy<tokio::runtime::Runtime> = Lazy::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("salesforce-sink-io")
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
});

/// The longest [`SalesforceSink::abandon`] waits for the records' requests in flight; Java says
/// how long through [`SalesforceSink::abandon_within`] (long on revocation, short on stop).
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Native sinks alive in this copy of the library: +1 in `open`, −1 on drop. The leak check
/// (1,000 open/close cycles from Java) asserts it comes back to where it started.
static LIVE_SINKS: AtomicI64 = AtomicI64::new(0);

pub fn live_sinks() -> i64 {
    LIVE_SINKS.load(Ordering::SeqCst)
}

/// Failures of a whole call; each becomes an exception on the Java side that fails the task.
#[derive(Debug, Error)]
pub enum SinkError {
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("startup validation failed: {0}")]
    Startup(String),
    #[error(transparent)]
    Fatal(#[from] write::FatalError),
    /// Nothing was taken from the call, for a cause that may clear (Salesforce could not answer
    /// describe yet): the caller offers the same records again after `backoff`.
    #[error("{message}")]
    NotReady { message: String, backoff: Duration },
}

/// One connector task's native state: created in `start()`, dropped in `stop()`.
pub struct SalesforceSink {
    cfg: Arc<Config>,
    writer: Arc<write::Writer>,
    pipeline: pipeline::Pipeline,
    client: Arc<http::SalesforceClient>,
    logs: Logs,
    /// Sequence numbers of `write_records`, which has no Java side to number records.
    next_seq: AtomicI64,
}

impl SalesforceSink {
    /// Parses the config buffer and prepares the task; with startup validation on, fetches a token
    /// and checks the external ID field, so a misconfigured task fails at start, not at the first record.
    /// Parses a config buffer as `open` does, without building anything or calling Salesforce:
    /// the validate endpoint reports on its key what a task would refuse at start.
    pub fn check_config(config: &[u8]) -> Result<(), SinkError> {
        let map = wire::config::decode_config(config)?;
        Config::from_map(&map)?;
        Ok(())
    }

    /// `check_config`'s verdict as JNI's `checkConfig` answers it: empty when a task would accept
    /// the config, else `str key, str reason`. Other errors (an unreadable buffer) stay errors.
    pub fn check_config_answer(config: &[u8]) -> Result<Vec<u8>, SinkError> {
        match Self::check_config(config) {
            Ok(()) => Ok(Vec::new()),
            Err(SinkError::Config(e)) => {
                let mut out = wire::Writer::default();
                out.str(&e.key);
                out.str(&e.reason);
                Ok(out.buf)
            }
            Err(other) => Err(other),
        }
    }

    pub fn open(config: &[u8]) -> Result<SalesforceSink, SinkError> {
        let map = wire::config::decode_config(config)?;
        let cfg = Config::from_map(&map)?;
        Self::with_config(cfg)
    }

    pub fn with_config(cfg: Config) -> Result<SalesforceSink, SinkError> {
        test_hook(&cfg, "open");
        let cfg = Arc::new(cfg);
        let logs = Logs::default();
        let http = http::build_http(&cfg).map_err(SinkError::Startup)?;
        let tokens = auth::TokenProvider::shared(&cfg, http.clone());
        let metrics = Arc::new(metrics::Metrics::new(cfg.quota_reserve_percent, logs.clone()));
        let client = Arc::new(http::SalesforceClient::new(&cfg, http, tokens, Arc::clone(&metrics), logs.clone()));
        let writer = write::Writer::new(Arc::clone(&cfg), Arc::clone(&client));
        if cfg.startup_validation {
            if let Some(kind) = RUNTIME.block_on(startup::validate(&cfg, &client, &logs))? {
                writer.learned_external_id_kind(kind);
            }
        }
        logs.info(format!(
            "Salesforce sink task {} ready: {} into {} ({:?} mode{}, write mode {:?})",
            cfg.task_id,
            cfg.operation,
            cfg.sobject,
            if cfg.external_id_mode() { "External ID" } else { "Native ID" },
            match (&cfg.external_id_field, &cfg.idempotency_field) {
                (Some(f), _) => format!(" on {f}"),
                (None, Some(f)) => format!(", INSERT as UPSERT on idempotency field {f}"),
                (None, None) => String::new(),
            },
            cfg.write_mode,
        ));
        let pipeline = pipeline::Pipeline::start(&RUNTIME, Arc::clone(&cfg), Arc::clone(&writer), logs.clone());
        LIVE_SINKS.fetch_add(1, Ordering::SeqCst);
        Ok(SalesforceSink { cfg, writer, pipeline, client, logs, next_seq: AtomicI64::new(0) })
    }

    /// Decodes one `put()` batch, numbers its records `first_seq..`, and hands them to the
    /// pipeline without waiting for Salesforce; returns the progress buffer (records finished
    /// since the last call, the pipeline's fill, logs).
    pub fn put(&self, batch: &[u8], first_seq: i64) -> Result<Vec<u8>, SinkError> {
        test_hook(&self.cfg, "put");
        let records = wire::batch::decode_batch(batch)?;
        let progress = self.submit(&records, first_seq)?;
        Ok(self.encode(&progress))
    }

    /// Waits up to `timeout` for every submitted record to finish (0: just collect what did);
    /// `scope` says whether part-filled Bulk jobs go too (not before a revocation).
    pub fn flush(&self, timeout: Duration, scope: FlushScope) -> Result<Vec<u8>, SinkError> {
        let progress = if timeout.is_zero() {
            self.pipeline.progress()?
        } else {
            RUNTIME.block_on(self.pipeline.flush(timeout.min(self.cfg.put_time_budget), scope))?
        };
        Ok(self.encode(&progress))
    }

    /// The progress buffer: outcomes, the metrics snapshot, the health and the logs since the last call.
    fn encode(&self, progress: &pipeline::Progress) -> Vec<u8> {
        let metrics = self.client.metrics();
        metrics.observe_unfinished(progress.oldest_unfinished, self.cfg.stall_threshold);
        let mut snapshot = metrics.snapshot(progress.unfinished, progress.requests_in_flight);
        // Read by Java's back-pressure (by name, like every metric): see `State::drain_estimate`.
        snapshot.push(("buffer.drain.estimate.ms", i64::try_from(progress.drain_estimate.as_millis()).unwrap_or(i64::MAX)));
        wire::outcome::encode_progress(progress, &snapshot, &metrics.health(), &self.logs.drain())
    }

    /// The task's metrics and health (SPEC §10), for tests.
    pub fn metrics(&self) -> &metrics::Metrics {
        self.client.metrics()
    }

    /// How often the pipeline's dispatcher has looked at the buffer (tests: no busy-waiting).
    pub fn dispatch_rounds(&self) -> u64 {
        self.pipeline.dispatch_rounds()
    }

    /// The typed core of [`flush`](Self::flush), for tests and benchmarks (no put time budget).
    pub fn wait(&self, timeout: Duration) -> Result<pipeline::Progress, SinkError> {
        self.wait_within(timeout, FlushScope::Everything)
    }

    /// [`wait`](Self::wait) with the scope of a flush.
    pub fn wait_within(&self, timeout: Duration, scope: FlushScope) -> Result<pipeline::Progress, SinkError> {
        Ok(RUNTIME.block_on(self.pipeline.flush(timeout, scope))?)
    }

    /// Gives up the unfinished records among these sequence numbers (revoked partitions), after
    /// their requests in flight answered (at most [`CLOSE_WAIT`] or the request timeout).
    pub fn abandon(&self, seqs: &[u8]) -> Result<(), SinkError> {
        self.abandon_within(seqs, self.cfg.request_timeout.min(CLOSE_WAIT))
    }

    /// Gives up the unfinished records among these sequence numbers after their requests in
    /// flight answered, or after `wait` (capped by the put time budget): on revocation Java waits
    /// up to the request timeout, so that no older write lands after the next owner's newer one;
    /// a stopping task waits briefly, within Connect's graceful shutdown (SPEC §11).
    pub fn abandon_within(&self, seqs: &[u8], wait: Duration) -> Result<(), SinkError> {
        let seqs = wire::decode_seqs(seqs)?;
        RUNTIME.block_on(self.pipeline.abandon(&seqs, wait.min(self.cfg.put_time_budget)));
        Ok(())
    }

    /// The typed core of [`put`](Self::put), for tests and benchmarks.
    pub fn submit(&self, records: &[record::Record<'_>], first_seq: i64) -> Result<pipeline::Progress, SinkError> {
        let mut topics: Vec<&str> = Vec::new();
        if self.cfg.sobject_by_topic() {
            topics = records.iter().map(|r| r.topic).collect();
            topics.sort_unstable();
            topics.dedup();
        }
        let targets = match RUNTIME.block_on(self.writer.targets(&topics)) {
            Ok(targets) => targets,
            // Without the field's type no key can be checked: the records are not taken, and
            // Connect offers them again (Java throws RetriableException).
            Err(write::NotYet::Retry(why, backoff)) => {
                return Err(SinkError::NotReady {
                    message: format!("cannot learn the type of the external ID field from describe yet: {why}"),
                    backoff,
                })
            }
            Err(write::NotYet::Fatal(e)) => return Err(e.into()),
        };
        Ok(self.pipeline.submit(records, first_seq, &targets)?)
    }

    /// `put()` as a synchronous call, for tests and benchmarks: submits, waits up to the put
    /// time budget, and gives up what is still unfinished then (`Outcome::Retry`: submit it again).
    /// Outcomes in record order.
    pub fn write_records(&self, records: &[record::Record<'_>]) -> Result<(Vec<Outcome>, Duration), SinkError> {
        let first = self.next_seq.fetch_add(records.len() as i64, Ordering::SeqCst);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut collect = |progress: pipeline::Progress| {
            for (seq, outcome) in progress.finished {
                if let Some(slot) = usize::try_from(seq - first).ok().and_then(|i| outcomes.get_mut(i)) {
                    *slot = Some(outcome);
                }
            }
        };
        collect(self.submit(records, first)?);
        collect(RUNTIME.block_on(self.pipeline.flush(self.cfg.put_time_budget, FlushScope::Everything))?);
        let unfinished: Vec<i64> = (first..first + records.len() as i64).collect();
        RUNTIME.block_on(self.pipeline.abandon(&unfinished, self.cfg.request_timeout));
        let outcomes = outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Retry("not finished within the put time budget".into())))
            .collect();
        Ok((outcomes, write::MIN_RETRY_BACKOFF))
    }

    /// What `put()` would send for this batch in COLLECTIONS mode, without sending it: the
    /// conversion path alone (decode, route, convert, build bodies), for benchmarks and diagnostics.
    pub fn render(&self, batch: &[u8]) -> Result<Vec<u8>, SinkError> {
        test_hook(&self.cfg, "render");
        let records = wire::batch::decode_batch(batch)?;
        let kind = self.writer.known_external_id_kind();
        let writes: Vec<plan::PlannedWrite> = records
            .iter()
            .filter_map(|r| {
                let target = plan::Target {
                    sobject: std::sync::Arc::from(if self.cfg.sobject_by_topic() { r.topic } else { self.cfg.sobject.as_str() }),
                    external_id: kind,
                };
                match plan::plan_record_for(&self.cfg, &target, r) {
                    Plan::Write(w) => Some(w),
                    _ => None,
                }
            })
            .collect();
        Ok(self.writer.render(&writes))
    }

    /// Log events not yet handed to Java, in the outcome buffer's log layout.
    pub fn drain_logs(&self) -> Vec<u8> {
        test_hook(&self.cfg, "drainLogs");
        wire::outcome::encode_logs(&self.logs.drain())
    }

    pub fn api_requests_sent(&self) -> u64 {
        self.client.requests_sent()
    }

    pub fn close(self) {
        test_hook(&self.cfg, "close");
    }
}

impl Drop for SalesforceSink {
    fn drop(&mut self) {
        LIVE_SINKS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Panics in `entry_point` (`open`, `put`, `render`, `drainLogs`, `close`) when the test-only
/// environment variable [`config::TEST_PANIC_ENV`] names this sink's connector for it.
fn test_hook(cfg: &Config, entry_point: &str) {
    cfg.test_hook(entry_point);
}
