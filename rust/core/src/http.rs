//! The one HTTP client every write mode uses: bearer auth with refresh-and-repeat-once on 401,
//! optional gzip, `Sforce-Limit-Info` tracking and Salesforce error bodies turned into
//! [`SalesforceError`].

use crate::auth::TokenProvider;
use crate::config::Config;
use crate::error::{ApiError, SalesforceError};
use crate::logs::Logs;
use flate2::{write::GzEncoder, Compression};
use reqwest::Method;
use std::io::Write;
use crate::metrics::{Metrics, RequestKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Salesforce's TCP connect timeout is not configurable in the seed: fixed at 30 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read. Salesforce's biggest (a 2,000-record query page, 200 Collections
/// results) stay far below it; anything larger is not Salesforce and must not exhaust the worker.
const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// A request body and its media type.
pub struct Payload {
    /// Shared, so that a repeated request (after a new token) sends it without a copy.
    pub bytes: bytes::Bytes,
    pub content_type: &'static str,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

pub struct SalesforceClient {
    http: reqwest::Client,
    data_url: String,
    /// `/services/data/vNN.0`: the prefix of the URLs Salesforce hands back (`nextRecordsUrl`).
    data_path: String,
    tokens: Arc<TokenProvider>,
    compression: bool,
    timeout: Duration,
    metrics: Arc<Metrics>,
    logs: Logs,
    requests_sent: AtomicU64,
}

pub fn build_http(cfg: &Config) -> Result<reqwest::Client, String> {
    let loopback = crate::config::is_loopback_url(&cfg.instance_url);
    let mut builder = reqwest::Client::builder()
        // SPEC §5: a redirect would re-send the token request's secret or a write's records to a
        // host nobody configured; the 3xx comes back as an answer and becomes an error.
        .redirect(reqwest::redirect::Policy::none())
        .https_only(!loopback)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(cfg.request_timeout)
        .gzip(cfg.compression)
        .pool_max_idle_per_host(cfg.max_in_flight.max(1))
        .user_agent(concat!("axual-salesforce-sobject-sink/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &cfg.ca_pem {
        let pem = pem.replace("\\n", "\n");
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("salesforce.ssl.ca.pem holds no usable PEM certificate: {e}"))?;
        if certs.is_empty() {
            return Err("salesforce.ssl.ca.pem holds no PEM certificate".into());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    // A loopback instance (tests, a local relay) is reached directly: plain-HTTP tokens must not
    // cross to the proxy.
    if let Some(proxy) = cfg.proxy.as_ref().filter(|_| !loopback) {
        // Never put the URL into a message, whatever it holds.
        let mut p = reqwest::Proxy::all(proxy.url.expose())
            .map_err(|_| "salesforce.proxy.url is not a valid proxy URL (http://host:port)".to_string())?;
        if let Some(user) = &proxy.username {
            p = p.basic_auth(user, proxy.password.as_ref().map(|s| s.expose()).unwrap_or(""));
        }
        builder = builder.proxy(p);
    } else {
        // Only the configured proxy applies, not the worker's environment variables.
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl SalesforceClient {
    pub fn new(cfg: &Config, http: reqwest::Client, tokens: Arc<TokenProvider>, metrics: Arc<Metrics>, logs: Logs) -> Self {
        SalesforceClient {
            http,
            data_url: cfg.data_url(),
            data_path: format!("/services/data/v{}", cfg.api_version),
            tokens,
            compression: cfg.compression,
            timeout: cfg.request_timeout,
            metrics,
            logs,
            requests_sent: AtomicU64::new(0),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn logs(&self) -> &Logs {
        &self.logs
    }

    pub fn tokens(&self) -> &TokenProvider {
        &self.tokens
    }

    /// A URL Salesforce returned (`/services/data/vNN.0/query/…`) as a path for [`send`](Self::send).
    pub fn relative_data_path(&self, url: &str) -> Option<String> {
        url.strip_prefix(&self.data_path).filter(|rest| rest.starts_with('/')).map(str::to_owned)
    }

    /// API requests this client sent (token requests excluded), for logs and benchmarks.
    pub fn requests_sent(&self) -> u64 {
        self.requests_sent.load(Ordering::Relaxed)
    }

    /// Sends `method path` (relative to `/services/data/vNN.0`) with a JSON body. Success is any
    /// 2xx; everything else is an error. A 401 gets one new token and one repeat, which counts as
    /// no attempt.
    pub async fn send(&self, method: Method, path: &str, json_body: Option<&[u8]>) -> Result<Response, SalesforceError> {
        let body = json_body.map(|bytes| Payload { bytes: bytes::Bytes::copy_from_slice(bytes), content_type: "application/json" });
        self.send_with(method, path, body, "application/json", MAX_RESPONSE_BYTES, None).await
    }

    /// [`send`](Self::send) with any body type and answer type, and an answer size cap (Bulk API
    /// uploads and result CSVs). `timeout` replaces `salesforce.request.timeout.ms` for transfers
    /// that take longer the larger they are.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Payload>,
        accept: &'static str,
        max_answer_bytes: usize,
        timeout: Option<Duration>,
    ) -> Result<Response, SalesforceError> {
        let body = body.map(|p| {
            let bytes = if self.compression { bytes::Bytes::from(gzip(&p.bytes)) } else { p.bytes };
            (bytes, self.compression, p.content_type)
        });
        let mut refreshed = false;
        loop {
            let token = self.tokens.token_counted(&self.metrics).await?;
            let result = self.send_once(method.clone(), path, body.as_ref(), accept, max_answer_bytes, timeout, token.value.expose()).await;
            match result {
                Err(e) if e.is_session_expired() && !refreshed => {
                    self.logs.debug("Salesforce reported the session expired or invalid; fetching a new token and repeating the request once");
                    self.tokens.invalidate(&token).await;
                    self.metrics.token_refreshes.fetch_add(1, Ordering::Relaxed);
                    refreshed = true;
                }
                other => return other,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&(bytes::Bytes, bool, &'static str)>,
        accept: &'static str,
        max_answer_bytes: usize,
        timeout: Option<Duration>,
        token: &str,
    ) -> Result<Response, SalesforceError> {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.data_url, path))
            .bearer_auth(token)
            .header("Accept", accept);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some((bytes, gzipped, content_type)) = body {
            request = request.header("Content-Type", *content_type).body(bytes.clone());
            if *gzipped {
                request = request.header("Content-Encoding", "gzip");
            }
        }
        self.requests_sent.fetch_add(1, Ordering::Relaxed);
        self.metrics.count_request(RequestKind::of_data_path(path));
        let started = std::time::Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let e = self.transport(e);
                self.metrics.salesforce_unavailable(&e.to_string());
                return Err(e);
            }
        };
        let status = response.status().as_u16();
        if let Some(info) = response.headers().get("Sforce-Limit-Info").and_then(|v| v.to_str().ok()) {
            self.metrics.observe_api_usage(info);
        }
        let location = redirect_location(&response);
        let body = read_capped(response, max_answer_bytes, |e| self.transport(e)).await;
        self.metrics.record_latency(started.elapsed());
        if let Some(location) = location {
            // Not any record's fault: the records wait and the task reports where it was sent.
            let e = SalesforceError::Redirected { status, location };
            self.metrics.salesforce_unavailable(&e.to_string());
            return Err(e);
        }
        let body = match body {
            Ok(body) if status >= 500 => {
                self.metrics.salesforce_unavailable(&format!("HTTP {status} {}", snippet(&body[..body.len().min(120)])));
                body
            }
            Ok(body) => {
                self.metrics.salesforce_answered();
                body
            }
            Err(e) => {
                self.metrics.salesforce_unavailable(&e.to_string());
                return Err(e);
            }
        };
        if (200..300).contains(&status) {
            return Ok(Response { status, body });
        }
        Err(rejection(status, &body))
    }

    fn transport(&self, e: reqwest::Error) -> SalesforceError {
        if e.is_timeout() {
            SalesforceError::Timeout(self.timeout)
        } else {
            transport_error(e)
        }
    }
}

/// Reads an answer's body (decoded, when gzip), refusing one larger than `max_bytes`: an endpoint
/// that is not Salesforce must not exhaust the worker. The one way every answer is read.
pub async fn read_capped(
    mut response: reqwest::Response,
    max_bytes: usize,
    transport: impl Fn(reqwest::Error) -> SalesforceError,
) -> Result<Vec<u8>, SalesforceError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(&transport)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(SalesforceError::BadAnswer(format!(
                "HTTP {}: an answer larger than {}",
                response.status().as_u16(),
                size_text(max_bytes)
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn size_text(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// The `Location` of a redirect answer (301, 302, 303, 307, 308), escaped and cut for messages;
/// `None` for any other answer. (300 is Salesforce's "several records match", not a redirect.)
pub fn redirect_location(response: &reqwest::Response) -> Option<String> {
    if !matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response.headers().get(reqwest::header::LOCATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    Some(crate::keys::shown(location.as_deref().unwrap_or("(no Location header)")))
}

/// Turns a non-2xx answer into an error, keeping Salesforce's codes where the body has them.
pub fn rejection(status: u16, body: &[u8]) -> SalesforceError {
    if let Ok(errors) = serde_json::from_slice::<Vec<ApiError>>(body) {
        if !errors.is_empty() {
            return SalesforceError::Rejected { status, errors };
        }
    }
    if status == 300 {
        // Upsert or GET by external ID matching several records answers with their URLs.
        return SalesforceError::Rejected {
            status,
            errors: vec![ApiError {
                code: "MULTIPLE_CHOICES".into(),
                message: format!("several records match the external ID: {}", snippet(body)),
                fields: vec![],
            }],
        };
    }
    SalesforceError::Unexpected { status, snippet: snippet(body) }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}

/// Connection-level failures, with the error chain but never a URL's query (it may hold data).
pub fn transport_error(e: reqwest::Error) -> SalesforceError {
    if e.is_timeout() {
        return SalesforceError::Timeout(Duration::ZERO);
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    // A proxy that refuses the CONNECT tunnel (https) answers 407 before any request is sent:
    // the same fix as a 407 answer (plain http never goes through the proxy: only loopback is http).
    if text.contains("proxy authorization required") {
        return SalesforceError::Unexpected { status: 407, snippet: "Proxy Authentication Required (CONNECT refused)".into() };
    }
    // rustls names certificate problems in the error chain; they do not clear by themselves.
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        return SalesforceError::Tls(text);
    }
    SalesforceError::Connection(text)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4 + 64), Compression::fast());
    encoder.write_all(bytes).expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// RFC 3986 unreserved characters stay, everything else is %XX: safe in paths, queries and forms.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Sforce-Limit-Info: api-usage=USED/MAX` → (used, max).
pub fn parse_api_usage(header: &str) -> Option<(u64, u64)> {
    let usage = header.split(';').map(str::trim).find_map(|part| part.strip_prefix("api-usage="))?;
    let (used, max) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_header() {
        assert_eq!(parse_api_usage("api-usage=25/15000"), Some((25, 15000)));
        assert_eq!(parse_api_usage("api-usage=18/5000; api-bursts=2/100"), Some((18, 5000)));
        assert_eq!(parse_api_usage("garbage"), None);
    }

    #[test]
    fn error_bodies() {
        let e = rejection(400, br#"[{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}]"#);
        assert_eq!(e.code(), Some("REQUIRED_FIELD_MISSING"));
        assert!(e.to_string().contains("fields: LastName"));
        assert!(matches!(rejection(502, b"<html>bad gateway</html>"), SalesforceError::Unexpected { status: 502, .. }));
        assert_eq!(rejection(300, br#"["/services/data/v62.0/sobjects/Contact/003A"]"#).code(), Some("MULTIPLE_CHOICES"));
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("a b/ü'"), "a%20b%2F%C3%BC%27");
    }
}
