//! Native memory that BULK holds per unfinished record, without Java and JNI:
//! `cargo run --release -p salesforce-sink-core --example bulk_memory [records]`.
//!
//! The emulator runs in a child process (this binary with `--emulator`), so that the counting
//! allocator sees the sink's memory only. The sink gets as many records as a task's Java side
//! holds at most in BULK (`2 × salesforce.bulk.max.records.per.job`, 200,000 by default), shaped
//! like bench/bulk.py's backlog; the emulator's jobs run slowly, so every record stays unfinished
//! while the figures are taken.

use salesforce_sink_core::config::Config;
use salesforce_sink_core::pipeline::FlushScope;
use salesforce_sink_core::record::{OperationHeader, Record, Value};
use salesforce_sink_core::SalesforceSink;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size() as isize, Relaxed) + layout.size() as isize;
        PEAK.fetch_max(live, Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let live = LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed) + new_size as isize
            - layout.size() as isize;
        PEAK.fetch_max(live, Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `VmRSS` and `VmHWM` of this process in MiB (Linux; zeros elsewhere): the allocator's own
/// overhead and fragmentation on top of the bytes counted above.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: isize) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn emulator_child() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (port, _app) = rt.block_on(sf_emulator::start("127.0.0.1", 0, false)).unwrap();
    println!("{port}");
    // Ends with the parent: it closes our stdin.
    let _ = std::io::stdin().read_line(&mut String::new());
}

fn control(base: &str, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = reqwest::Client::new().request(method, format!("{base}/__emulator/{path}")).body(body.to_string()).send().await.unwrap();
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(serde_json::Value::Null)
    })
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--emulator") {
        return emulator_child();
    }
    let n: usize = std::env::args().nth(1).map(|a| a.parse().expect("records: a number")).unwrap_or(200_000);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--emulator")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
    let base = format!("http://127.0.0.1:{}", port.trim());
    // Slow enough that no job finishes while the figures are taken.
    control(&base, "POST", "bulk", serde_json::json!({"records_per_second": 1}));

    let cfg: HashMap<String, String> = [
        ("salesforce.instance.url", base.as_str()),
        ("salesforce.client.id", "test-client-id"),
        ("salesforce.auth.type", "CLIENT_CREDENTIALS"),
        ("salesforce.client.secret", "test-client-secret"),
        ("salesforce.sobject.type", "Contact"),
        ("salesforce.operation", "UPSERT"),
        ("salesforce.external.id.field", "ExternalId__c"),
        ("salesforce.write.mode", "BULK"),
        ("salesforce.startup.validation.enabled", "false"),
        ("connector.name", "bulk-memory"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let sink = SalesforceSink::with_config(Config::from_map(&cfg).unwrap()).unwrap();

    // The Kafka records of bench/bulk.py's backlog; their bytes are Java's, not the sink's.
    let keys: Vec<String> = (0..n).map(|i| format!("b-{i}")).collect();
    let last: Vec<String> = (0..n).map(|i| format!("Backlog {i}")).collect();
    let desc: Vec<String> = (0..7).map(|i| format!("d{i}")).collect();
    let (rss_before, _) = rss_mib();
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let started = Instant::now();
    for (chunk, first) in (0..n).collect::<Vec<_>>().chunks(500).zip((0..).step_by(500)) {
        let records: Vec<Record> = chunk
            .iter()
            .map(|&i| Record {
                topic: "bulk-backlog",
                partition: 0,
                offset: i as i64,
                key: Value::String(&keys[i]),
                value: Value::Struct(vec![
                    ("FirstName", Value::String("Bulk")),
                    ("LastName", Value::String(&last[i])),
                    ("Description", Value::String(&desc[i % 7])),
                ]),
                operation_header: OperationHeader::Absent,
                original: None,
            })
            .collect();
        sink.submit(&records, first).unwrap();
    }
    let submitted = LIVE.load(Relaxed) - before;
    // The buffer sends full jobs on its own; the flush sends the rest, as a commit would.
    let _ = sink.flush(Duration::from_secs(3), FlushScope::Everything);
    let deadline = Instant::now() + Duration::from_secs(60);
    let jobs = |b: &str| control(b, "GET", "bulk", serde_json::Value::Null)["jobs_created"].as_u64().unwrap_or(0);
    let expected = n.div_ceil(100_000) as u64;
    while jobs(&base) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let held = LIVE.load(Relaxed) - before;
    let peak = PEAK.load(Relaxed) - before;
    let csv: usize = (0..n).map(|i| format!("{},Bulk,{},{}\n", keys[i], last[i], desc[i % 7]).len()).sum();
    println!("records {n}, {} jobs created, {:.1} s", jobs(&base), started.elapsed().as_secs_f64());
    println!("native memory after submit: {:.1} MiB ({:.0} B/record)", mib(submitted), submitted as f64 / n as f64);
    println!("native memory with every job uploaded: {:.1} MiB ({:.0} B/record)", mib(held), held as f64 / n as f64);
    println!("native peak: {:.1} MiB ({:.0} B/record); the records' CSV: {:.1} MiB ({:.0} B/record)",
        mib(peak), peak as f64 / n as f64, csv as f64 / 1_048_576.0, csv as f64 / n as f64);
    let (rss, hwm) = rss_mib();
    println!("process RSS: {:.1} MiB over its {:.1} MiB before the records ({:.0} B/record), peak {:.1} MiB",
        rss - rss_before, rss_before, (rss - rss_before) * 1_048_576.0 / n as f64, hwm - rss_before);
    drop(child.stdin.take());
    let _ = child.kill();
    std::process::exit(0);
}
