//! Endpoints that try to take what the connector sends elsewhere, or to exhaust it (issue 19):
//! redirects are never followed (SPEC §5), token answers are capped like data answers, and a
//! loopback instance is never reached through the proxy. Each "elsewhere" is a listener that
//! counts the connections it receives: it must receive none.

mod common;

use salesforce_sink_core::config::Config;
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::wire::outcome::Outcome;
use salesforce_sink_core::SalesforceSink;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "test-client-secret-never-elsewhere";

/// What a fake endpoint answers: status, extra headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// A tiny HTTP/1.1 server on a loopback port: one answer per request, chosen by `answer(path)`;
/// remembers every request (path and body).
struct FakeEndpoint {
    port: u16,
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl FakeEndpoint {
    fn start(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> FakeEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, answer) = (Arc::clone(&seen), Arc::clone(&answer));
                std::thread::spawn(move || serve(stream, &seen, &*answer));
            }
        });
        FakeEndpoint { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, seen: &Mutex<Vec<(String, String)>>, answer: &dyn Fn(&str) -> Answer) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        seen.lock().unwrap().push((path.clone(), String::from_utf8_lossy(&body).into_owned()));
        let (status, headers, body) = answer(&path);
        let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        if stream.write_all(out.as_bytes()).and_then(|_| stream.write_all(&body)).is_err() {
            return;
        }
    }
}

/// A port that counts the connections it accepts and answers nothing.
struct Elsewhere {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Elsewhere {
    fn start() -> Elsewhere {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Elsewhere { port, connections }
    }

    fn received(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn config(base: &str, extra: &[(&str, &str)]) -> Config {
    let mut pairs = vec![
        ("salesforce.client.secret", SECRET),
        ("salesforce.retry.max.attempts", "0"),
        ("salesforce.retry.max.backoff.ms", "50"),
        ("salesforce.request.timeout.ms", "5000"),
        ("put.time.budget.ms", "1500"),
    ];
    pairs.extend_from_slice(extra);
    common::config_at(base, &pairs)
}

fn record(key: &str) -> Record<'_> {
    Record {
        topic: "t",
        partition: 0,
        offset: 0,
        key: Value::String(key),
        value: Value::Map(vec![("LastName", Value::String("Hostile"))]),
        operation_header: OperationHeader::Absent,
        original: None,
    }
}

fn redirect_to(port: u16) -> Answer {
    let location = format!("http://127.0.0.1:{port}/steal");
    (307, vec![("Location".into(), location)], Vec::new())
}

fn token_answer() -> Answer {
    (200, vec![("Content-Type".into(), "application/json".into())], br#"{"access_token":"tok","token_type":"Bearer"}"#.to_vec())
}

#[test]
fn a_token_endpoint_redirect_is_not_followed_and_fails_the_task_naming_the_location() {
    let elsewhere = Elsewhere::start();
    let port = elsewhere.port;
    let endpoint = FakeEndpoint::start(move |_| redirect_to(port));
    let err = match SalesforceSink::with_config(config(&endpoint.url(), &[])) {
        Ok(_) => panic!("a redirecting token endpoint must fail the task"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&format!("http://127.0.0.1:{port}/steal")), "the message names the Location: {err}");
    assert!(err.contains("salesforce.instance.url"), "the message says what to fix: {err}");
    assert!(!err.contains(SECRET), "{err}");
    eprintln!("{err}");
    assert_eq!(endpoint.requests().len(), 1, "one token request, not repeated for a redirect");
    assert_eq!(elsewhere.received(), 0, "the redirect target received the client secret");
}

#[test]
fn a_collections_redirect_is_not_followed_and_the_record_waits() {
    let elsewhere = Elsewhere::start();
    let port = elsewhere.port;
    let endpoint = FakeEndpoint::start(move |path| {
        if path.ends_with("/oauth2/token") {
            token_answer()
        } else {
            redirect_to(port)
        }
    });
    let cfg = config(&endpoint.url(), &[("salesforce.startup.validation.enabled", "false")]);
    let sink = SalesforceSink::with_config(cfg).unwrap();
    let (outcomes, _) = sink.write_records(&[record("k")]).unwrap();
    // Not the record's fault: it stays unfinished (redelivered), never in the DLQ (SPEC §4).
    assert!(matches!(outcomes[0], Outcome::Retry(_)), "{outcomes:?}");
    let reported = sink.metrics().health().message;
    assert!(reported.contains(&format!("http://127.0.0.1:{port}/steal")), "the task reports the Location: {reported}");
    let data = endpoint.requests().iter().filter(|(p, _)| p.contains("/composite/sobjects")).count();
    assert!(data >= 1, "the Collections request was sent");
    assert_eq!(elsewhere.received(), 0, "the redirect target received the records");
    sink.close();
}

#[test]
fn an_oversized_token_answer_is_refused() {
    let endpoint = FakeEndpoint::start(|_| {
        let mut body = br#"{"access_token":"tok","padding":""#.to_vec();
        body.extend(std::iter::repeat_n(b'x', 8 << 20));
        body.extend_from_slice(b"\"}");
        (200, vec![("Content-Type".into(), "application/json".into())], body)
    });
    let err = match SalesforceSink::with_config(config(&endpoint.url(), &[])) {
        Ok(_) => panic!("an 8 MiB token answer must not be taken"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("larger than") && err.contains("salesforce.instance.url"), "{err}");
}

#[test]
fn a_gzip_bomb_token_answer_is_refused() {
    use flate2::{write::GzEncoder, Compression};
    let mut json = br#"{"access_token":"tok","padding":""#.to_vec();
    json.extend(std::iter::repeat_n(b'x', 64 << 20));
    json.extend_from_slice(b"\"}");
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&json).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let endpoint = FakeEndpoint::start(move |_| {
        let headers = vec![("Content-Type".into(), "application/json".into()), ("Content-Encoding".into(), "gzip".into())];
        (200, headers, bomb.clone())
    });
    let cfg = config(&endpoint.url(), &[("salesforce.compression.enabled", "true")]);
    let err = match SalesforceSink::with_config(cfg) {
        Ok(_) => panic!("a 64 MiB decoded token answer must not be taken"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("larger than") && err.contains("salesforce.instance.url"), "{err}");
}

#[test]
fn a_loopback_instance_is_not_reached_through_the_proxy() {
    let proxy = Elsewhere::start();
    let endpoint = FakeEndpoint::start(|path| {
        if path.ends_with("/oauth2/token") {
            token_answer()
        } else {
            (200, vec![], br#"[{"id":"003000000000001AAA","success":true,"errors":[]}]"#.to_vec())
        }
    });
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let cfg = config(
        &endpoint.url(),
        &[("salesforce.startup.validation.enabled", "false"), ("salesforce.proxy.url", &proxy_url)],
    );
    let sink = SalesforceSink::with_config(cfg).unwrap();
    let (outcomes, _) = sink.write_records(&[record("k")]).unwrap();
    assert!(matches!(outcomes[0], Outcome::Written), "{outcomes:?}");
    assert_eq!(proxy.received(), 0, "the plain-HTTP token and records went through the proxy");
    sink.close();
}

#[test]
fn a_proxy_url_with_credentials_is_refused_without_echoing_them() {
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in [
        ("salesforce.instance.url", "https://example.my.salesforce.com"),
        ("salesforce.client.id", "id"),
        ("salesforce.auth.type", "CLIENT_CREDENTIALS"),
        ("salesforce.client.secret", "s"),
        ("salesforce.sobject.type", "Contact"),
        ("salesforce.proxy.url", "http://user:hunter2@proxy.example:3128"),
    ] {
        map.insert(k.into(), v.into());
    }
    let err = Config::from_map(&map).expect_err("credentials in the proxy URL must be refused").to_string();
    assert!(err.contains("salesforce.proxy.url") && err.contains("salesforce.proxy.password"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    map.insert("salesforce.proxy.url".into(), "http://proxy.example:3128".into());
    assert!(Config::from_map(&map).is_ok());
}
