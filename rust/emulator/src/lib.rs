//! sf-emulator: a Salesforce REST API double for the connector's tests, benchmarks and demo.
//!
//! It implements what Salesforce documents (and, where the docs are silent, what Salesforce is
//! observed to do) rather than what the connector expects: OAuth token flows, sObject rows,
//! upsert by external ID, sObject Collections, a SOQL subset, describe, limits, the daily API
//! quota, gzip, Bulk API 2.0 ingest jobs, plus a control API (`/__emulator/...`) for tests to inspect state and inject
//! latency and faults.

pub mod app;
pub mod bulk;
pub mod clock;
pub mod collections;
pub mod control;
pub mod dml;
pub mod error;
pub mod faults;
pub mod jobs;
pub mod oauth;
pub mod query;
pub mod rest;
pub mod server;
pub mod state;
pub mod validate;

pub use server::{start, start_tls};
