//! The native core of the Salesforce SObject sink connector. No JNI here: the `jni` crate adapts
//! [`SalesforceSink`] to Java, and everything below is tested on its own.
//!
//! Flow of one `put()`: [`wire::batch`] decodes the records, [`plan`] routes each to a write (or a
//! record error), [`write`] sends them through [`http`] with tokens from [`auth`], and
//! [`wire::outcome`] encodes one outcome per record for Java.

pub mod auth;
pub mod config;
pub mod convert;
pub mod error;
pub mod http;
pub mod ids;
pub mod logs;
pub mod plan;
pub mod record;
pub mod retry;
mod startup;
pub mod wire;
pub mod write;

use config::Config;
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
}

/// One connector task's native state: created in `start()`, dropped in `stop()`.
pub struct SalesforceSink {
    cfg: Arc<Config>,
    writer: Arc<write::Writer>,
    client: Arc<http::SalesforceClient>,
    logs: Logs,
}

impl SalesforceSink {
    /// Parses the config buffer and prepares the task; with startup validation on, fetches a token
    /// and checks the external ID field, so a misconfigured task fails at start, not at the first record.
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
        let client = Arc::new(http::SalesforceClient::new(&cfg, http, tokens, logs.clone()));
        let external_id_numeric = if cfg.startup_validation {
            RUNTIME.block_on(startup::validate(&cfg, &client, &logs))?
        } else {
            false
        };
        let writer = write::Writer::new(Arc::clone(&cfg), Arc::clone(&client), logs.clone(), external_id_numeric);
        logs.info(format!(
            "Salesforce sink task {} ready: {} into {} ({:?} mode{}, write mode {:?})",
            cfg.task_id,
            cfg.operation,
            cfg.sobject,
            if cfg.external_id_field.is_some() { "External ID" } else { "Native ID" },
            cfg.external_id_field.as_deref().map(|f| format!(" on {f}")).unwrap_or_default(),
            cfg.write_mode,
        ));
        LIVE_SINKS.fetch_add(1, Ordering::SeqCst);
        Ok(SalesforceSink { cfg, writer, client, logs })
    }

    /// Decodes, converts and writes one `put()` batch; returns the outcome buffer.
    pub fn put(&self, batch: &[u8]) -> Result<Vec<u8>, SinkError> {
        test_hook(&self.cfg, "put");
        let records = wire::batch::decode_batch(batch)?;
        let (outcomes, backoff) = self.write_records(&records)?;
        Ok(wire::outcome::encode_outcomes(&outcomes, backoff, &self.logs.drain()))
    }

    /// The typed core of [`put`](Self::put), for tests and benchmarks.
    pub fn write_records(&self, records: &[record::Record<'_>]) -> Result<(Vec<Outcome>, Duration), SinkError> {
        let mut outcomes = vec![Outcome::Skipped; records.len()];
        let mut writes = Vec::with_capacity(records.len());
        let mut skipped = 0usize;
        for (i, record) in records.iter().enumerate() {
            match plan::plan_record(&self.cfg, record) {
                Plan::Write(w) => writes.push((i, w)),
                Plan::Skip => skipped += 1,
                Plan::Reject(reason) => outcomes[i] = Outcome::Failed(format!("{reason} [{}]", record.location())),
            }
        }
        if skipped > 0 {
            self.logs.debug(format!("skipped {skipped} tombstone(s): salesforce.tombstone.delete=false"));
        }
        let backoff = if writes.is_empty() {
            Duration::ZERO
        } else {
            RUNTIME.block_on(self.writer.write(records, writes, &mut outcomes))?
        };
        Ok((outcomes, backoff))
    }

    /// What `put()` would send for this batch in COLLECTIONS mode, without sending it: the
    /// conversion path alone (decode, route, convert, build bodies), for benchmarks and diagnostics.
    pub fn render(&self, batch: &[u8]) -> Result<Vec<u8>, SinkError> {
        test_hook(&self.cfg, "render");
        let records = wire::batch::decode_batch(batch)?;
        let writes: Vec<plan::PlannedWrite> = records
            .iter()
            .filter_map(|r| match plan::plan_record(&self.cfg, r) {
                Plan::Write(w) => Some(w),
                _ => None,
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
    if cfg.test_panic.as_deref() == Some(entry_point) {
        panic!("forced panic in native {entry_point} ({})", config::TEST_PANIC_ENV);
    }
}
