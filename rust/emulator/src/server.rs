//! The HTTP server: one accept loop on hyper's HTTP/1.1 connections, and the processing every
//! `/services/` request shares — latency, faults, gzip in and out, auth, the daily quota, the
//! `Sforce-Limit-Info` header and the request log. Routing to the Salesforce resources is in
//! `rest.rs`, the test control API in `control.rs`.

use bytes::Bytes;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;

use crate::faults::Action;
use crate::state::{now_ms, LogEntry, Store};
use crate::validate::SfError;
use crate::{control, oauth, rest};

/// Salesforce's URI limit for REST requests.
pub const MAX_URI_BYTES: usize = 16_384;

pub struct App {
    pub store: Mutex<Store>,
    pub port: u16,
    pub verbose: bool,
    /// Serving HTTPS: the `instance_url` in token answers is `https://`.
    pub tls: bool,
}

impl App {
    pub fn new(port: u16, verbose: bool) -> Arc<App> {
        Arc::new(App { store: Mutex::new(Store::new()), port, verbose, tls: false })
    }
    /// A poisoned lock only means a handler panicked; the store itself stays usable.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a handler answers: status, body and extra headers, plus what the request log needs.
pub struct Reply {
    pub status: u16,
    pub body: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, String)>,
    pub kind: &'static str,
    pub records: usize,
    pub content_type: &'static str,
}

const JSON_TYPE: &str = "application/json;charset=UTF-8";

impl Reply {
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply { status, body: Some(serde_json::to_vec(v).unwrap_or_default()), headers: vec![], kind: "other", records: 1, content_type: JSON_TYPE }
    }
    /// A CSV body (Bulk API 2.0 results).
    pub fn csv(status: u16, text: String) -> Reply {
        Reply { status, body: Some(text.into_bytes()), headers: vec![], kind: "other", records: 1, content_type: "text/csv" }
    }
    pub fn empty(status: u16) -> Reply {
        Reply { status, body: None, headers: vec![], kind: "other", records: 1, content_type: JSON_TYPE }
    }
    pub fn error(e: &SfError) -> Reply {
        Reply::json(e.status, &e.body())
    }
    pub fn kind(mut self, kind: &'static str) -> Reply {
        self.kind = kind;
        self
    }
    pub fn records(mut self, n: usize) -> Reply {
        self.records = n;
        self
    }
}

/// A response body: whole, or cut short by the `truncate` fault — the `Content-Length` of the
/// whole body is announced, half of it is sent, then the connection is dropped.
pub enum Wire {
    Whole(Full<Bytes>),
    /// `pause`: after the head, so hyper flushes it before the connection goes.
    Cut { head: Option<Bytes>, full_len: u64, pause: std::pin::Pin<Box<tokio::time::Sleep>> },
}

impl hyper::body::Body for Wire {
    type Data = Bytes;
    type Error = DropConnection;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, DropConnection>>> {
        match self.get_mut() {
            Wire::Whole(f) => std::pin::Pin::new(f).poll_frame(cx).map_err(|never| match never {}),
            Wire::Cut { head, pause, .. } => match head.take() {
                Some(b) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(b)))),
                None => pause.as_mut().poll(cx).map(|()| Some(Err(DropConnection))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Wire::Whole(f) => f.is_end_stream(),
            Wire::Cut { .. } => false,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Wire::Whole(f) => f.size_hint(),
            Wire::Cut { full_len, .. } => hyper::body::SizeHint::with_exact(*full_len),
        }
    }
}

/// The second half of a response is lost: the client reads half the body, then a closed connection.
async fn truncate(response: Response<Full<Bytes>>) -> Response<Wire> {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let full_len = bytes.len() as u64;
    let pause = Box::pin(tokio::time::sleep(Duration::from_millis(50)));
    Response::from_parts(parts, Wire::Cut { head: Some(bytes.slice(..bytes.len() / 2)), full_len, pause })
}

/// Marker error: makes hyper drop the connection without writing a response.
#[derive(Debug)]
pub struct DropConnection;
impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by fault injection")
    }
}
impl std::error::Error for DropConnection {}

pub async fn serve(listener: TcpListener, app: Arc<App>) {
    serve_with(listener, app, None).await
}

async fn serve_with(listener: TcpListener, app: Arc<App>, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // A second handle on the socket, so a `reset` fault can turn the close into a TCP RST.
        let raw = stream.as_fd().try_clone_to_owned().ok().map(socket2::Socket::from);
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let reset = Arc::new(AtomicBool::new(false));
            let flag = reset.clone();
            let svc = hyper::service::service_fn(move |req| handle(app.clone(), req, flag.clone()));
            let mut http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = http.keep_alive(true).serve_connection(TokioIo::new(stream), svc).await;
                }
                Some(acceptor) => {
                    // A failed handshake (a client that does not trust the test CA) just closes.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http.keep_alive(true).serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            }
            if let Some(sock) = raw {
                if reset.load(Ordering::SeqCst) {
                    let _ = sock.set_linger(Some(Duration::ZERO));
                }
                drop(sock);
            }
        });
    }
}

fn header(req: &hyper::http::request::Parts, name: &str) -> Option<String> {
    req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    reset: Arc<AtomicBool>,
) -> Result<Response<Wire>, DropConnection> {
    match handle_whole(app, req, reset).await {
        Ok(r) => Ok(r.map(Wire::Whole)),
        Err(Handled::Cut(r)) => Ok(r),
        Err(Handled::Drop) => Err(DropConnection),
    }
}

/// How a request ends when it does not end with a whole response.
enum Handled {
    Drop,
    Cut(Response<Wire>),
}

async fn handle_whole(
    app: Arc<App>,
    req: Request<Incoming>,
    reset: Arc<AtomicBool>,
) -> Result<Response<Full<Bytes>>, Handled> {
    let (parts, body) = req.into_parts();
    let wire = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);

    if let Some(rest) = path.strip_prefix("/__emulator/") {
        let reply = control::handle(&app, &method, rest, query.as_deref(), &wire);
        return Ok(to_response(reply, false).0);
    }

    let request_ce = header(&parts, "content-encoding");
    let accept = header(&parts, "accept-encoding");
    let host = header(&parts, "host").unwrap_or_else(|| format!("127.0.0.1:{}", app.port));
    let base_url = format!("{}://{host}", if app.tls { "https" } else { "http" });
    let mut entry = LogEntry {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        request_content_encoding: request_ce.clone(),
        accept_encoding: accept.clone(),
        request_body_bytes: wire.len(),
        kind: "other".into(),
        records: 1,
        ts_ms: now_ms(),
        ..LogEntry::default()
    };
    let is_token = path == "/services/oauth2/token";
    if is_token {
        entry.kind = "token".into();
    }

    let (latency, action, record_rules) = {
        let mut store = app.lock();
        let action = store.faults.request_action(&method, &path);
        let rules = store.faults.record_rules(&method, &path);
        (store.latency_ms, action, rules)
    };
    if latency > 0 && path.starts_with("/services/") {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let req = Req {
        method,
        path,
        query,
        auth: header(&parts, "authorization"),
        request_ce,
        accept,
        base_url,
        uri_len: parts.uri.to_string().len(),
        wire,
        record_rules,
        bom: matches!(action, Some((Action::Bom, _))),
    };
    let Some((action, label)) = action else {
        return Ok(process(&app, &req, entry));
    };
    entry.fault = Some(label);
    match action {
        Action::Reset => {
            reset.store(true, Ordering::SeqCst);
            entry.status = 0;
            finish_log(&app, entry);
            Err(Handled::Drop)
        }
        Action::Status { status, code, message } => {
            let body = if is_token {
                json!({"error": code.to_lowercase(), "error_description": message})
            } else {
                SfError::new(status, &code, message).body()
            };
            let mut reply = Reply::json(status, &body);
            if req.path.starts_with("/services/data/") {
                let store = app.lock();
                reply.headers.push(("Sforce-Limit-Info", format!("api-usage={}/{}", store.api_used, store.api_max)));
            }
            Ok(respond(&app, reply, req.accept.as_deref(), entry))
        }
        Action::Slow(ms) => {
            let response = process(&app, &req, entry);
            // The write already happened; the client just does not hear about it in time.
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(response)
        }
        Action::Delay(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(process(&app, &req, entry))
        }
        Action::CommitThenReset => {
            process(&app, &req, entry);
            reset.store(true, Ordering::SeqCst);
            Err(Handled::Drop)
        }
        Action::Bom => Ok(process(&app, &req, entry)),
        Action::Truncate => Err(Handled::Cut(truncate(process(&app, &req, entry)).await)),
        Action::CommitLate(ms) => {
            // A task of its own: hyper drops this handler when the client hangs up, but the write
            // must still land, as Salesforce finishes a transaction whose caller has gone.
            let late = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                process(&app, &req, entry)
            });
            late.await.map_err(|_| Handled::Drop)
        }
    }
}

/// What `process` needs of a request, owned so a late commit can outlive the connection.
struct Req {
    method: String,
    path: String,
    query: Option<String>,
    auth: Option<String>,
    request_ce: Option<String>,
    accept: Option<String>,
    base_url: String,
    uri_len: usize,
    wire: Bytes,
    record_rules: Vec<usize>,
    /// The `bom` fault: a UTF-8 byte order mark goes before the response body.
    bom: bool,
}

/// Decodes, authenticates and routes a `/services/` request, logs it and builds the response.
fn process(app: &App, req: &Req, mut entry: LogEntry) -> Response<Full<Bytes>> {
    let accept = req.accept.as_deref();
    // Request bodies may arrive gzip-compressed.
    let decoded: Vec<u8> = if req.request_ce.as_deref().is_some_and(|c| c.to_ascii_lowercase().contains("gzip")) {
        let mut out = vec![];
        if GzDecoder::new(&req.wire[..]).read_to_end(&mut out).is_err() {
            let e = SfError::new(400, "JSON_PARSER_ERROR", "Unable to decompress the request body: not in gzip format");
            return respond(app, Reply::error(&e), accept, entry);
        }
        out
    } else {
        req.wire.to_vec()
    };
    entry.request_body_decoded_bytes = decoded.len();

    let path = req.path.as_str();
    let reply = if path == "/services/oauth2/token" {
        let (status, body) = oauth::token(&mut app.lock(), &decoded, &req.base_url);
        let mut r = Reply::json(status, &body).kind("token");
        r.headers.push(("Cache-Control", "no-cache,must-revalidate,max-age=0,no-store,private".into()));
        r
    } else if path == "/services/data" || path == "/services/data/" {
        Reply::json(200, &json!([{"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"}]))
    } else if let Some(rest_path) = path.strip_prefix("/services/data/") {
        if req.uri_len > MAX_URI_BYTES {
            let e = SfError::new(414, "URI_TOO_LONG", format!("The request URI is {} bytes long; the limit is {MAX_URI_BYTES} bytes", req.uri_len));
            Reply::error(&e)
        } else {
            let (reply, counted) =
                api(app, &req.method, rest_path, req.query.as_deref(), &decoded, req.auth.as_deref(), &req.record_rules);
            entry.counted = counted;
            reply
        }
    } else {
        Reply::error(&SfError::not_found())
    };
    let mut reply = reply;
    if req.bom {
        if let Some(b) = &mut reply.body {
            b.splice(0..0, [0xEF, 0xBB, 0xBF]);
        }
    }
    respond(app, reply, accept, entry)
}

/// Auth, quota, routing and the limit header for `/services/data/...` requests.
fn api(
    app: &App,
    method: &str,
    rest_path: &str,
    query: Option<&str>,
    body: &[u8],
    auth: Option<&str>,
    record_rules: &[usize],
) -> (Reply, bool) {
    // Parse JSON outside the lock. A Bulk API 2.0 upload is CSV, not JSON.
    let is_upload = method == "PUT" && rest_path.trim_end_matches('/').ends_with("/batches") && rest_path.contains("/jobs/ingest/");
    let json = if body.is_empty() || is_upload {
        None
    } else {
        Some(serde_json::from_slice::<Value>(body).map_err(|e| {
            SfError::new(
                400,
                "JSON_PARSER_ERROR",
                format!("Unexpected character in request body: {e} at [line:{}, column:{}]", e.line(), e.column()),
            )
        }))
    };
    let text = if is_upload { "" } else { std::str::from_utf8(body).unwrap_or("") };
    let mut store = app.lock();
    let (mut reply, counted) = match oauth::check_token(&mut store, auth) {
        Err(e) => (Reply::error(&e), false),
        Ok(_) if store.api_used >= store.api_max => (
            Reply::error(&SfError::new(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")),
            false,
        ),
        Ok(user) => {
            store.api_used += 1;
            let ctx = rest::Ctx { method, query, json: json.as_ref(), raw: text, body, record_rules, user: &user };
            (rest::dispatch(&mut store, &ctx, rest_path), true)
        }
    };
    reply.headers.push(("Sforce-Limit-Info", format!("api-usage={}/{}", store.api_used, store.api_max)));
    (reply, counted)
}

fn respond(app: &App, reply: Reply, accept: Option<&str>, mut entry: LogEntry) -> Response<Full<Bytes>> {
    let gzip_ok = accept.is_some_and(|a| a.to_ascii_lowercase().contains("gzip"));
    entry.status = reply.status;
    if entry.kind == "other" || reply.kind != "other" {
        entry.kind = reply.kind.to_string();
    }
    entry.records = reply.records;
    let (resp, gzipped) = to_response(reply, gzip_ok);
    if gzipped {
        entry.response_content_encoding = Some("gzip".into());
    }
    finish_log(app, entry);
    resp
}

fn finish_log(app: &App, entry: LogEntry) {
    if app.verbose {
        println!("{} {} {}", entry.method, entry.path, entry.status);
    }
    app.lock().push_log(entry);
}

fn to_response(reply: Reply, gzip_ok: bool) -> (Response<Full<Bytes>>, bool) {
    let mut builder = Response::builder().status(reply.status);
    let mut gzipped = false;
    let body = match reply.body {
        Some(b) => {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
            if gzip_ok && !b.is_empty() {
                let mut enc = GzEncoder::new(Vec::with_capacity(b.len() / 4 + 32), flate2::Compression::fast());
                let _ = enc.write_all(&b);
                gzipped = true;
                builder = builder.header(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                enc.finish().unwrap_or_default()
            } else {
                b
            }
        }
        None => vec![],
    };
    for (k, v) in reply.headers {
        builder = builder.header(k, v);
    }
    let resp = builder.body(Full::new(Bytes::from(body))).unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    (resp, gzipped)
}

/// Binds, then serves in the background; returns the bound port (tests and `main`).
pub async fn start(host: &str, port: u16, verbose: bool) -> std::io::Result<(u16, Arc<App>)> {
    start_tls(host, port, verbose, None).await
}

/// [`start`], serving HTTPS when given a PEM certificate chain and its PEM private key.
pub async fn start_tls(
    host: &str,
    port: u16,
    verbose: bool,
    tls: Option<(&[u8], &[u8])>,
) -> std::io::Result<(u16, Arc<App>)> {
    let acceptor = match tls {
        Some((cert_pem, key_pem)) => Some(tls_acceptor(cert_pem, key_pem)?),
        None => None,
    };
    let listener = TcpListener::bind((host, port)).await?;
    let port = listener.local_addr()?.port();
    let app = Arc::new(App { store: Mutex::new(Store::new()), port, verbose, tls: acceptor.is_some() });
    tokio::spawn(serve_with(listener, app.clone(), acceptor));
    tokio::spawn(crate::bulk::run(app.clone()));
    Ok((port, app))
}

fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &str, e: &dyn std::fmt::Display| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"));
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("--tls-cert", &e))?;
    if certs.is_empty() {
        return Err(invalid("--tls-cert", &"no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("--tls-key", &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid("--tls-cert/--tls-key", &e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
