"""``python -m bench.run [--quick] [--write] [--only PHASES]`` (run by bin/bench).

Starts ONE stack (KRaft broker + Connect worker + Salesforce emulator, tests/stack), runs every
measurement against it and prints ONE markdown table plus the machine it ran on; ``--write``
also writes it to bench/RESULTS.md.

Phases (``--only`` takes a comma list): conversion, requests, throughput, latency, rss, pipeline, bulk,
bulkwait.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from confluent_kafka import Producer

from tests.stack import Stack
from tests.stack.kafka_libs import KAFKA_VERSION
from tests.stack.util import REPO_ROOT, java_bin

from . import conversion, machine
from .arrivals import Arrivals
from . import bulk as bulk_measures
from . import pipeline as pipeline_measures
from .sf import SalesforceRest

PHASES = ["conversion", "requests", "throughput", "latency", "rss", "pipeline", "bulk", "bulkwait"]
RESULTS = REPO_ROOT / "bench" / "RESULTS.md"

# COLLECTIONS settings (stated in RESULTS.md). The connector packs up to 200 records per request
# within ONE put(); Connect's default max.poll.records=500 would give 200+200+100 per put.
REQ_POLL_RECORDS = 2000
TUNED_POLL_RECORDS = 4000
TUNED_IN_FLIGHT = 20


def log(msg: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def fmt_int(v) -> str:
    return "—" if v is None else f"{v:,.0f}"


def fmt_num(v, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


class Bench:
    def __init__(self, stack: Stack, quick: bool):
        self.stack = stack
        self.emu = stack.emu
        self.connect = stack.connect
        self.quick = quick
        self.rest = SalesforceRest(stack.emulator_url)
        self.seq = 0
        self.settings: dict = {}
        # SINGLE scenarios send tens of thousands of requests each: with the emulator's default
        # daily allowance (100,000) the quota guard would hold them at its 10% reserve.
        self.emu.set_limits(max=1_000_000_000)

    # -- plumbing ------------------------------------------------------------------------------
    def name(self, what: str) -> str:
        self.seq += 1
        return f"bench-{what}-{self.seq}".lower()

    def config(self, topic: str, op: str, ext: bool, mode: str, **extra) -> dict:
        cfg = self.stack.sink_config(topic, {
            "salesforce.operation": op,
            "salesforce.write.mode": mode,
            # no describe at task start: only the records' own requests are counted
            "salesforce.startup.validation.enabled": "false",
            "consumer.override.auto.offset.reset": "earliest",
        })
        if ext:
            cfg["salesforce.external.id.field"] = "ExternalId__c"
        cfg.update({k.replace("__", "."): str(v) for k, v in extra.items()})
        return cfg

    def produce(self, topic: str, items: Iterable, partitions: int = 1) -> int:
        """Fast bulk produce of ``(key, value)`` (str/bytes/dict/None) without per-message callbacks."""
        self.stack.kafka.create_topic(topic, partitions)
        p = Producer({"bootstrap.servers": self.stack.bootstrap_servers, "linger.ms": 20,
                      "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000,
                      "queue.buffering.max.kbytes": 1_048_576, "acks": "1", "log_level": 2})
        n = 0
        for key, value in items:
            k = key.encode() if isinstance(key, str) else key
            v = json.dumps(value, separators=(",", ":")).encode() if isinstance(value, dict) else value
            while True:
                try:
                    p.produce(topic, v, k)
                    break
                except BufferError:
                    p.poll(0.05)
            n += 1
            if n % 10_000 == 0:
                p.poll(0)
        left = p.flush(300)
        if left:
            raise AssertionError(f"{left} message(s) to {topic} not delivered")
        end = sum(self.stack.kafka.end_offsets(topic).values())
        if end < n:
            raise AssertionError(f"{topic}: produced {n}, end offsets sum to {end}")
        return n

    def stats(self) -> dict:
        return self.emu.stats()

    def written(self) -> int:
        return int(self.stats()["records_written"])

    def wait_written(self, target: int, timeout: float, name: str,
                     on_poll: Optional[Callable[[int], None]] = None, interval: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while True:
            w = self.written()
            if on_poll:
                on_poll(w)
            if w >= target:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: {w} of {target} records written after {timeout}s\n"
                                     + self.connect.describe(name))
            status = self.connect.status(name) or {}
            if any(t.get("state") == "FAILED" for t in status.get("tasks", [])):
                raise AssertionError(f"{name}: task FAILED\n" + self.connect.describe(name))
            time.sleep(interval)

    def start_connector(self, name: str, cfg: dict) -> None:
        self.connect.create(name, cfg)
        self.connect.wait_running(name, tasks=1, timeout=90)

    def drop_connector(self, name: str) -> None:
        self.connect.delete_and_wait(name, timeout=60)

    def worker_heap_resident_mib(self) -> float:
        """How much of the worker JVM's Java heap is resident: the RSS of the mappings inside the
        heap's address range (``jcmd GC.heap_info`` prints it; ``/proc/<pid>/smaps`` has each
        mapping's RSS). RSS minus this is what lives outside the heap (the native library,
        metaspace, threads, code). The committed heap is no measure of it: G1 commits heap it has
        not touched yet, so "RSS minus committed" can even shrink under load."""
        pid = self.stack.worker.proc.pid
        java = java_bin()
        jcmd = str(Path(java).with_name("jcmd")) if os.path.isabs(java) else (shutil.which("jcmd") or "jcmd")
        out = subprocess.run([jcmd, str(pid), "GC.heap_info"], capture_output=True, text=True, timeout=60).stdout
        m = re.search(r"heap\s+total \d+K, used \d+K \[(0x[0-9a-f]+), (0x[0-9a-f]+)\)", out)
        if not m:
            raise AssertionError(f"no heap address range in jcmd GC.heap_info: {out[:300]}")
        heap_start, heap_end = int(m.group(1), 16), int(m.group(2), 16)
        resident_kib, inside = 0, False
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 1)[0]
                if "-" in head and not head.endswith(":"):
                    lo, hi = (int(x, 16) for x in head.split("-"))
                    inside = heap_start <= lo and hi <= heap_end
                elif inside and head == "Rss:":
                    resident_kib += int(line.split()[1])
        return resident_kib / 1024

    def worker_rss_mib(self) -> float:
        pid = self.stack.worker.proc.pid
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    # -- 1. API requests per 10,000 records ------------------------------------------------------
    def requests(self) -> list:
        # Both modes count the same records: per 10,000 is measured on 10,000, not scaled.
        n_single = n_coll = 2_000 if self.quick else 10_000
        self.settings["requests"] = {"single_records": n_single, "collections_records": n_coll}
        rows = []
        for ext in (False, True):
            for op in ("INSERT", "UPSERT", "UPDATE", "DELETE"):
                row = {"op": op, "ext": ext}
                for mode, n in (("SINGLE", n_single), ("COLLECTIONS", n_coll)):
                    if op == "UPSERT" and not ext:
                        row[mode] = None  # refused at validation in Native ID mode
                        continue
                    row[mode] = self.count_requests(op, ext, mode, n)
                rows.append(row)
                if op == "INSERT" and not ext:
                    # The same INSERTs as UPSERTs on salesforce.idempotency.field (SPEC §12); Contact's
                    # ExternalId__c (Text 255, Unique, External ID) serves as the field.
                    rows.append({"op": op, "ext": ext, "idempotency": True,
                                 **{mode: self.count_requests(op, ext, mode, n, idempotency_field="ExternalId__c")
                                    for mode, n in (("SINGLE", n_single), ("COLLECTIONS", n_coll))}})
        # The same stream at Connect's default max.poll.records (500 = 200 + 200 + 100 per put).
        rows.append({"op": "INSERT", "ext": True, "default_poll": True, "SINGLE": None,
                     "COLLECTIONS": self.count_requests("INSERT", True, "COLLECTIONS", n_coll, poll=None)})
        return rows

    def count_requests(self, op: str, ext: bool, mode: str, n: int, poll: Optional[int] = REQ_POLL_RECORDS,
                       idempotency_field: Optional[str] = None) -> dict:
        self.emu.clear_records("Contact")
        tag = (f"{op}-{'ext' if ext else 'native'}{'-idem' if idempotency_field else ''}-{mode}"
               f"{'' if poll else '-defaultpoll'}").lower()
        keys: list
        if op in ("UPDATE", "DELETE"):
            ids = self.rest.insert("Contact", ({"LastName": f"Seed {i}", "ExternalId__c": f"ext-{i}"}
                                               for i in range(n)))
            keys = [f"ext-{i}" for i in range(n)] if ext else ids
        else:
            keys = [f"ext-{i}" for i in range(n)]
        topic = self.name(f"req-{tag}")
        self.produce(topic, ((keys[i], {"FirstName": "Bench", "LastName": f"Bench {i}",
                                         "Email": f"bench{i}@example.com"}) for i in range(n)))
        extra = {}
        if mode == "COLLECTIONS" and poll:
            extra["consumer.override.max.poll.records"] = poll
        if idempotency_field:
            extra["salesforce.idempotency.field"] = idempotency_field
        cfg = self.config(topic, op, ext, mode)
        cfg.update({k: str(v) for k, v in extra.items()})
        name = self.name(f"req-{tag}")
        before = self.stats()
        t0 = time.monotonic()
        self.start_connector(name, cfg)
        self.wait_written(int(before["records_written"]) + n, 300, name, interval=0.1)
        # let any trailing request land, then read the counters
        last = -1
        while True:
            s = self.stats()
            if s["api_requests"] == last:
                break
            last = s["api_requests"]
            time.sleep(0.5)
        seconds = time.monotonic() - t0
        self.drop_connector(name)
        api = int(s["api_requests"]) - int(before["api_requests"])
        kinds = {k: int(v) - int(before["by_kind"].get(k, 0)) for k, v in s["by_kind"].items()
                 if int(v) - int(before["by_kind"].get(k, 0)) > 0}
        per10k = api * 10_000 / n
        log(f"requests {tag}: {n} records -> {api} counted requests ({per10k:.1f} per 10,000) "
            f"by kind {kinds} in {seconds:.1f}s")
        return {"records": n, "api": api, "per10k": per10k, "kinds": kinds}

    # -- 2. records/s through the worker, one task -----------------------------------------------
    def throughput(self) -> dict:
        sizes = {
            ("SINGLE", 0): 2_000 if self.quick else 20_000,
            ("COLLECTIONS", 0): 20_000 if self.quick else 200_000,
            ("SINGLE", 50): 400 if self.quick else 4_000,
            ("COLLECTIONS", 50): 20_000 if self.quick else 100_000,
        }
        self.settings["throughput"] = {f"{m} {ms} ms": n for (m, ms), n in sizes.items()}
        out = {}
        try:
            for (mode, ms), n in sizes.items():
                out[(mode, ms)] = self.measure_throughput(mode, ms, n)
        finally:
            self.emu.set_latency(0)
        return out

    def measure_throughput(self, mode: str, latency_ms: int, n: int) -> dict:
        self.emu.clear_records("Contact")
        self.emu.set_latency(latency_ms)
        tag = f"{mode}-{latency_ms}ms".lower()
        topic = self.name(f"tp-{tag}")
        self.produce(topic, ((f"k-{i}", {"FirstName": "Tp", "LastName": f"Throughput {i}",
                                         "Email": f"tp{i}@example.com"}) for i in range(n)))
        cfg = self.config(topic, "INSERT", False, mode)
        # The same poll size and requests in flight for both modes: the ratio is the write mode's.
        cfg["consumer.override.max.poll.records"] = str(TUNED_POLL_RECORDS)
        cfg["salesforce.max.in.flight.requests"] = str(TUNED_IN_FLIGHT)
        name = self.name(f"tp-{tag}")
        base = self.written()
        arrivals = Arrivals(base, n)
        self.connect.create(name, cfg)
        self.wait_written(base + n, 600, name, on_poll=arrivals.on_poll, interval=0.02)
        self.drop_connector(name)
        span, counted, rate = arrivals.rate()
        log(f"throughput {tag}: {n} records, {counted} after the first arrival in {span:.2f}s "
            f"-> {rate:,.0f} records/s")
        return {"records": n, "seconds": span, "rate": rate}

    # -- 3. produce -> arrival latency at a steady rate ------------------------------------------
    def latency(self) -> dict:
        seconds = 10 if self.quick else 30
        rate = 200
        self.settings["latency"] = {"rate": rate, "seconds": seconds}
        return {
            "SINGLE": self.measure_latency("SINGLE", rate, seconds),
            "COLLECTIONS": self.measure_latency("COLLECTIONS", rate, seconds),
            "COLLECTIONS linger 0": self.measure_latency("COLLECTIONS", rate, seconds, linger_ms=0),
        }

    def measure_latency(self, mode: str, rate: int, seconds: int, linger_ms: Optional[int] = None) -> dict:
        self.emu.clear_records("Contact")
        self.emu.set_latency(0)
        topic = self.name(f"lat-{mode}")
        self.stack.kafka.create_topic(topic, 1)
        cfg = self.config(topic, "INSERT", False, mode)
        if linger_ms is not None:
            cfg["salesforce.linger.ms"] = str(linger_ms)
        name = self.name(f"lat-{mode}")
        self.start_connector(name, cfg)
        p = Producer({"bootstrap.servers": self.stack.bootstrap_servers, "linger.ms": 0, "acks": "1",
                      "log_level": 2})
        # warm-up: consumer group joined, token fetched, connection open
        base = self.written()
        for i in range(20):
            p.produce(topic, json.dumps({"FirstName": "warm", "LastName": f"Warm {i}"}).encode(), f"w-{i}".encode())
        p.flush(30)
        self.wait_written(base + 20, 120, name)
        time.sleep(1.0)
        base = self.written()
        api_before = int(self.stats()["api_requests"])
        total = rate * seconds
        t0 = time.time() + 0.05
        for i in range(total):
            target = t0 + i / rate
            delay = target - time.time()
            if delay > 0:
                time.sleep(delay)
            sent = time.time()
            p.produce(topic, json.dumps({"FirstName": "m", "LastName": f"Latency {i}",
                                         "Description": f"{sent:.6f}"}).encode(), f"l-{i}".encode())
            p.poll(0)
        left = p.flush(60)
        del p
        if left:
            raise AssertionError(f"latency {mode}: {left} record(s) not delivered to Kafka within 60 s")
        achieved = total / (time.time() - t0)
        self.wait_written(base + total, 120, name)
        self.drop_connector(name)
        # Arrival = the emulator's microsecond creation time (Salesforce's CreatedDate has whole ms).
        rows = [r for r in self.emu.records("Contact", timestamps=True) if r.get("FirstName") == "m"]
        lat = sorted(r["__created_us"] / 1000 - float(r["Description"]) * 1000 for r in rows)
        if len(lat) < total:
            raise AssertionError(f"latency {mode}: {len(lat)} of {total} records found")
        requests = int(self.stats()["api_requests"]) - api_before

        def pct(q: float) -> float:
            return lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))]

        res = {"records": len(lat), "p50": pct(0.50), "p99": pct(0.99), "max": lat[-1], "min": lat[0],
               "mean": statistics.fmean(lat), "rate": achieved, "requests_per_record": requests / total}
        log(f"latency {mode}: {len(lat)} records at {achieved:.0f}/s: p50 {res['p50']:.2f} ms, "
            f"p99 {res['p99']:.2f} ms, min {res['min']:.2f} ms, max {res['max']:.2f} ms, "
            f"{res['requests_per_record']:.3f} requests per record")
        return res

    # -- 4. worker RSS over 1,000,000 records (100,000 with --quick) --------------------------------
    def rss(self) -> dict:
        n = 100_000 if self.quick else 1_000_000
        warm = 50_000 if self.quick else 200_000
        keys = 100_000
        self.settings["rss"] = {"records": n, "warmup": warm, "keys": keys}
        self.emu.clear_records("Contact")
        self.emu.set_latency(0)
        topic = self.name("rss")

        def values(start: int, count: int):
            for i in range(start, start + count):
                yield f"rss-{i % keys}", {"FirstName": "Rss", "LastName": f"Rss {i}", "Email": f"rss{i % keys}@example.com"}

        self.produce(topic, values(0, warm))
        cfg = self.config(topic, "UPSERT", True, "COLLECTIONS")
        cfg["consumer.override.max.poll.records"] = str(TUNED_POLL_RECORDS)
        cfg["salesforce.max.in.flight.requests"] = str(TUNED_IN_FLIGHT)
        name = self.name("rss")
        fresh = self.worker_rss_mib()
        base = self.written()
        self.connect.create(name, cfg)
        self.wait_written(base + warm, 600, name, interval=0.5)
        time.sleep(3)
        before = self.worker_rss_mib()
        heap_before = self.worker_heap_resident_mib()
        log(f"rss: worker {fresh:.0f} MiB before the connector, {before:.0f} MiB after {warm:,} warm-up records "
            f"(Java heap resident {heap_before:.0f} MiB)")
        base = self.written()
        t0 = time.monotonic()
        self.produce(topic, values(warm, n))
        peak = {"v": before}

        def on_poll(_w: int) -> None:
            peak["v"] = max(peak["v"], self.worker_rss_mib())

        self.wait_written(base + n, 1200, name, on_poll=on_poll, interval=0.5)
        seconds = time.monotonic() - t0
        time.sleep(3)
        after = self.worker_rss_mib()
        heap_after = self.worker_heap_resident_mib()
        self.drop_connector(name)
        log(f"rss: {after:.0f} MiB after {n:,} more records ({seconds:.0f}s, peak {peak['v']:.0f} MiB; Java heap "
            f"resident {heap_after:.0f} MiB)")
        self.emu.clear_records("Contact")
        return {"fresh": fresh, "before": before, "after": after, "growth": after - before,
                "peak": peak["v"], "records": n, "seconds": seconds,
                "outside_heap_before": before - heap_before, "outside_heap_after": after - heap_after}


    # -- 5. the asynchronous pipeline (bench/pipeline.py) -------------------------------------------
    def pipeline(self) -> dict:
        return pipeline_measures.run(self, log)

    # -- 6. Bulk API 2.0 and AUTO (bench/bulk.py) ---------------------------------------------------
    def bulk(self) -> dict:
        return bulk_measures.run(self, log)

    # -- 7. worker CPU while a task only waits for a slow Bulk job (bench/bulk.py) ------------------
    def bulkwait(self) -> dict:
        return bulk_measures.waiting_cpu(self, log)


# -- report -------------------------------------------------------------------------------------
def build_table(res: dict) -> tuple:
    """(markdown table, list of (target text, met, detail))."""
    head = ("| Measure | Scenario | SINGLE · baseline · before | COLLECTIONS · ours · after "
            "| Ratio / growth | Target | Met |")
    lines = [head, "|---|---|---:|---:|---:|---|:---:|"]
    verdicts = []

    def row(measure, scenario, a, b, ratio, target="", met=None):
        mark = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {measure} | {scenario} | {a} | {b} | {ratio} | {target} | {mark} |")

    req_settings = (f"COLLECTIONS poll {REQ_POLL_RECORDS} (a multiple of 200), in-flight 4; SINGLE poll 500; "
                    f"+0 ms")
    req_measure = "API requests / 10,000 records"
    if "requests" in res and res["requests"][0]["COLLECTIONS"]["records"] != 10_000:
        req_measure = f"API requests / 10,000 records (scaled from {res['requests'][0]['COLLECTIONS']['records']:,})"
    if "requests" in res:
        for r in res["requests"]:
            mode = "External ID" if r["ext"] else "Native ID"
            s, c = r.get("SINGLE"), r.get("COLLECTIONS")
            if r.get("default_poll"):
                single = next((x["SINGLE"] for x in res["requests"]
                               if x["op"] == r["op"] and x["ext"] == r["ext"] and not x.get("default_poll")), None)
                ratio = f"{single['per10k'] / c['per10k']:.0f}× fewer" if single and c["per10k"] else ""
                row(req_measure,
                    f"{r['op']}, {mode}; both at Connect's default poll 500 (200+200+100 per put), in-flight 4, "
                    f"+0 ms", fmt_int(single["per10k"]) if single else "", fmt_int(c["per10k"]), ratio)
                continue
            if s is None and c is None:
                row(req_measure, f"{r['op']}, {mode}", "n/a", "n/a", "",
                    "UPSERT needs an external ID")
                continue
            ratio = f"{s['per10k'] / c['per10k']:.0f}× fewer" if c["per10k"] else ""
            target, met = "", None
            if r.get("idempotency"):
                # Upserts on the field take 200 records a request, as plain INSERTs do (issue 20).
                mode = "Native ID with salesforce.idempotency.field (each an UPSERT on it)"
                target, met = "COLLECTIONS ≤ 55", c["per10k"] <= 55
                verdicts.append(("INSERT with salesforce.idempotency.field ≤ 55 requests / 10,000", met,
                                 f"{c['per10k']:.0f}"))
            if r["ext"]:
                limit = 55 if r["op"] in ("INSERT", "UPSERT") else 105
                target, met = f"COLLECTIONS ≤ {limit}", c["per10k"] <= limit
                verdicts.append((f"{r['op']} External ID ≤ {limit} requests / 10,000", met,
                                 f"{c['per10k']:.0f}"))
            row(req_measure, f"{r['op']}, {mode}; {req_settings}", fmt_int(s["per10k"]),
                fmt_int(c["per10k"]), ratio, target, met)
    if "throughput" in res:
        tp = res["throughput"]
        for ms in (0, 50):
            s, c = tp[("SINGLE", ms)], tp[("COLLECTIONS", ms)]
            ratio = c["rate"] / s["rate"]
            target, met = "", None
            if ms == 50:
                met = ratio >= 100 and c["rate"] >= 5000
                target = "≥ 100× and ≥ 5,000/s"
                verdicts.append(("50 ms: COLLECTIONS ≥ 100× SINGLE and ≥ 5,000 records/s", met,
                                 f"{ratio:.0f}×, {c['rate']:,.0f}/s"))
            row("Records/s, one task, INSERT",
                f"emulator +{ms} ms per request; both poll {TUNED_POLL_RECORDS}, in-flight {TUNED_IN_FLIGHT}; "
                f"{s['records']:,} vs {c['records']:,} records", fmt_int(s["rate"]),
                fmt_int(c["rate"]), f"{ratio:,.0f}×", target, met)
    if "conversion" in res:
        cv = res["conversion"]
        met = cv["ratio"] <= 1.0 and cv["equivalent"]
        same = "identical bytes" if cv["identical"] else ("equivalent JSON" if cv["equivalent"] else "JSON DIFFERS")
        verdicts.append(("conversion path ≤ 1.0× the pure-Java baseline CPU", met, f"{cv['ratio']:.2f}×"))
        row("CPU µs / record, SinkRecord → request JSON",
            f"{cv['fields']} fields incl. Date/Time/Timestamp/Decimal, {same}; baseline = Jackson, ours = "
            f"encode + JNI + Rust (Java encode alone {cv['java_encode_us']:.2f})",
            fmt_num(cv["baseline_us"], 2), fmt_num(cv["ours_us"], 2), f"{cv['ratio']:.2f}×", "≤ 1.0×", met)
    if "latency" in res:
        lt = res["latency"]
        s, c, c0 = lt["SINGLE"], lt["COLLECTIONS"], lt["COLLECTIONS linger 0"]
        lat = (f"steady {res['settings']['latency']['rate']} records/s, Connect's default poll (500), in-flight 4, "
               f"emulator +0 ms; COLLECTIONS with the default linger.ms=200")
        row("Produce → Salesforce latency p50 (ms)", lat, fmt_num(s["p50"], 2), fmt_num(c["p50"], 2),
            f"{c['p50'] / s['p50']:.2f}×" if s["p50"] else "")
        row("Produce → Salesforce latency p99 (ms)", lat, fmt_num(s["p99"], 2), fmt_num(c["p99"], 2),
            f"{c['p99'] / s['p99']:.2f}×" if s["p99"] else "")
        lat0 = "as above, COLLECTIONS with linger.ms=0 (a request as soon as records are ready)"
        row("Produce → Salesforce latency p50 / p99 (ms)", lat0, f"{s['p50']:.2f} / {s['p99']:.2f}",
            f"{c0['p50']:.2f} / {c0['p99']:.2f}", f"{c0['p99'] / s['p99']:.2f}× (p99)" if s["p99"] else "")
        row("API requests per record at 200 records/s", "as above; COLLECTIONS linger 200 (linger 0 in brackets)",
            f"{s['requests_per_record']:.3f}", f"{c['requests_per_record']:.3f} ({c0['requests_per_record']:.3f})",
            f"{s['requests_per_record'] / c['requests_per_record']:.0f}× fewer" if c["requests_per_record"] else "")
    if "rss" in res:
        rs = res["rss"]
        met = rs["growth"] < 64
        verdicts.append((f"worker RSS growth over {rs['records']:,} records < 64 MiB", met, f"{rs['growth']:+.0f} MiB"))
        outside = ""
        if "outside_heap_after" in rs:
            outside = (f"; outside the resident Java heap {rs['outside_heap_before']:.0f} → "
                       f"{rs['outside_heap_after']:.0f} MiB ({rs['outside_heap_after'] - rs['outside_heap_before']:+.0f})")
        row("Worker RSS (MiB)", f"{rs['records']:,} records, COLLECTIONS UPSERT, poll {TUNED_POLL_RECORDS}, "
                                f"in-flight {TUNED_IN_FLIGHT}, +0 ms (peak {rs['peak']:.0f}{outside})",
            fmt_num(rs["before"], 0), fmt_num(rs["after"], 0), f"{rs['growth']:+.0f} MiB", "< 64 MiB", met)
    if "pipeline" in res:
        pipeline_measures.rows(res, row, verdicts)
    if "bulk" in res:
        bulk_measures.rows(res, row, verdicts)
    if "bulkwait" in res:
        bulk_measures.waiting_rows(res, row, verdicts)
    for phase, msg in res.get("failed", {}).items():
        row(f"{phase} (phase failed)", msg.replace("|", "/"), "—", "—", "", "", False)
        verdicts.append((f"phase {phase} completed", False, msg))
    return "\n".join(lines), verdicts


def machine_text(m: dict) -> str:
    return (f"- `nproc`: {m['nproc']}; CPU: {m['cpu']}; RAM: {m['ram']}; {m['kernel']}\n"
            f"- JDK: {m['jdk']}; {m['rustc']}\n"
            f"- load average at start: {m['load_at_start']}, at end: {m.get('load_at_end', '?')}")


def settings_text(res: dict) -> str:
    st = res["settings"]
    out = []
    if "requests" in st:
        out.append(f"- Requests: each scenario is a fresh connector (one task, startup validation off) on a fresh "
                   f"topic (the emulator's daily API allowance raised to 10⁹ for the whole run); counted = the emulator's `api_requests` delta (token requests are not counted, SOQL "
                   f"Id lookups are). SINGLE and COLLECTIONS each ran {st['requests']['collections_records']:,} "
                   f"records per scenario (with `--quick` scaled to per 10,000). COLLECTIONS sets "
                   f"`consumer.override.max.poll.records={REQ_POLL_RECORDS}`: the ≤ 55 and ≤ 105 targets need "
                   f"puts that are multiples of 200. Connect's default 500 gives 200+200+100 per put: the row "
                   f"'at Connect's default poll 500' measures that; UPDATE/DELETE records were created first through the emulator's REST "
                   f"API and only the UPDATE/DELETE run is counted; Native ID keys are the Salesforce Ids.")
    if "throughput" in st:
        sizes = ", ".join(f"{k}: {v:,}" for k, v in st["throughput"].items())
        out.append(f"- Records/s: INSERT (Native ID) of pre-produced records, one task, from the first to the "
                   f"last record arriving in the emulator ({sizes} records). Both modes with "
                   f"`consumer.override.max.poll.records={TUNED_POLL_RECORDS}` and "
                   f"`salesforce.max.in.flight.requests={TUNED_IN_FLIGHT}`.")
    if "conversion" in res:
        cv = res["conversion"]
        out.append(f"- Conversion: `bench/java/ConversionBench.java`, {cv['records']:,} SinkRecords with a "
                   f"{cv['fields']}-field Struct, puts of {cv['put_size']}, thread CPU time (ThreadMXBean), "
                   f"5 warm-up rounds, median of {cv['iterations']} rounds (min: ours {cv['ours_min_us']:.2f}, "
                   f"baseline {cv['baseline_min_us']:.2f} µs). Ours = `RecordBatchEncoder` → one JNI call "
                   f"`NativeSinkHandle.render` → Rust decode/convert/Collections bodies; baseline = the same "
                   f"bodies from an ObjectNode tree built the way JsonConverter walks a Struct, serialized "
                   f"by the worker's Jackson. Output of both compared on the first put: "
                   f"{'byte-identical' if cv['identical'] else 'equivalent' if cv['equivalent'] else 'DIFFERENT'}.")
    if "latency" in st:
        out.append(f"- Latency: INSERT, one task, emulator +0 ms; {st['latency']['rate']} records/s for "
                   f"{st['latency']['seconds']} s after a warm-up; send time (Python, just before produce) in "
                   f"`Description`, arrival = the emulator's own microsecond creation time of the record "
                   f"(`__created_us`, control API; Salesforce's `CreatedDate` has whole ms); same host clock. Connect's "
                   f"consumer poll and put cadence dominate both modes.")
    if "rss" in st:
        out.append(f"- RSS: `VmRSS` of the worker JVM (`-Xms256m -Xmx1g`, G1) after {st['rss']['warmup']:,} "
                   f"warm-up records (idle) and after {st['rss']['records']:,} more (idle), COLLECTIONS UPSERT "
                   f"by `ExternalId__c` cycling over {st['rss']['keys']:,} keys (so the emulator holds 100,000 "
                   f"Contacts), emulator +0 ms.")
    if "bulk" in st:
        out.append(f"- Bulk: one connector per mode (one task, UPSERT by `ExternalId__c`, defaults: 4 in flight, "
                   f"100,000 records a job, bulk linger 5 s, first poll 2 s backing off to 30 s, threshold 2,000) "
                   f"over the same {st['bulk']['records']:,}-record backlog produced before the connector starts; "
                   f"the emulator processes {st['bulk']['job_rate']:,} records/s per job. Requests = the emulator's "
                   f"`api_requests` delta (job create, upload, close, polls, result reads; token requests not "
                   f"counted). Trickle: INSERT, 10 records at 2/s after a warm-up, as the latency rows.")
    return "\n".join(out)


def notes_text(res: dict, missed: list) -> str:
    out = [f"- Timings are from a shared 2-core machine (load average {res['machine']['load_at_start']} at "
           f"start, {res['machine'].get('load_at_end', '?')} at end; other test stacks may have been running): "
           f"records/s, latency tails and CPU figures move by tens of percent between runs. Request counts "
           f"and RSS do not depend on load."]
    cv = res.get("conversion")
    if cv and cv["ratio"] > 1.0:
        native = cv["ours_us"] - cv["java_encode_us"]
        out.append(f"- Conversion CPU misses ≤ 1.0×: ours {cv['ours_us']:.2f} µs/record = Java encode "
                   f"{cv['java_encode_us']:.2f} + JNI and Rust {native:.2f}, against {cv['baseline_us']:.2f} for "
                   f"Jackson. The Rust half alone is about the whole Jackson path: it copies the batch in and "
                   f"the bodies out across JNI, builds a value tree per record, formats numbers, dates and "
                   f"decimals through `format!`/`write!` into fresh `String`s/`Vec`s, and `render` copies each "
                   f"record's field fragment again (`fields.clone()`) before the Collections body copies it "
                   f"once more. Those allocations and copies, not JNI crossings (one per put), are what is "
                   f"left to cut.")
    missed_text = " ".join(t for t, _, _ in missed)
    if "50 ms: COLLECTIONS" in missed_text:
        out.append(f"- Records/s at +50 ms: SINGLE runs with the same {TUNED_IN_FLIGHT} requests in flight as "
                   f"COLLECTIONS, so its ceiling is {TUNED_IN_FLIGHT} / 0.05 s = {TUNED_IN_FLIGHT * 20:,} records/s; "
                   f"against Connect's defaults (4 in flight) the ratio is five times larger. COLLECTIONS' ceiling is "
                   f"{TUNED_IN_FLIGHT * 200 * 20:,}/s; the 2 cores that run the broker, the worker, the emulator and "
                   f"the producer hold it far below that.")
    if "worker RSS growth over" in missed_text and res.get("rss", {}).get("outside_heap_after") is not None:
        rs = res["rss"]
        out.append(f"- Worker RSS over {rs['records']:,} records: the JVM grows its heap under load (up to "
                   f"`-Xmx1g`) and G1 keeps it resident; outside the heap's resident pages the worker went from "
                   f"{rs['outside_heap_before']:.0f} to {rs['outside_heap_after']:.0f} MiB.")
    if "AUTO through the backlog" in missed_text:
        out.append("- AUTO requests: while fewer than `salesforce.bulk.threshold` records wait, AUTO sends full "
                   "Collections requests at once, so a backlog's first puts (500 records each) and its tail go "
                   "through Collections until the buffer holds a job's worth; how many depends on how fast the "
                   "consumer fills the buffer against the requests in flight, and differs between runs.")
    if res.get("latency"):
        out.append("- Latency with the default `salesforce.linger.ms=200`: a part-filled request waits up to "
                   "200 ms for more records, which is the price of fuller requests at a trickle; `linger.ms=0` "
                   "sends at once (more requests per record).")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="scaled-down record counts (a few minutes)")
    ap.add_argument("--write", action="store_true", help="write the table to bench/RESULTS.md")
    ap.add_argument("--only", default=",".join(PHASES), help=f"comma list of {PHASES}")
    args = ap.parse_args(argv)
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phase(s) {sorted(unknown)}")

    started = time.monotonic()
    res: dict = {"machine": machine.describe(), "settings": {}}
    if "conversion" in phases:
        log("conversion CPU benchmark (before the stack starts, so it has the CPUs to itself)")
        res["conversion"] = conversion.run(50_000 if not args.quick else 10_000, 15 if not args.quick else 5)
        log(f"conversion: {res['conversion']}")
    stack_phases = [p for p in phases if p != "conversion"]
    if stack_phases:
        stack = Stack(run_id="bench-" + time.strftime("%Y%m%d-%H%M%S"))
        try:
            stack.start()
            b = Bench(stack, args.quick)
            for phase in stack_phases:
                log(f"phase {phase}")
                try:
                    res[phase] = getattr(b, phase)()
                except Exception as exc:  # one broken phase must not cost the others' figures
                    log(f"phase {phase} FAILED: {exc}")
                    res.setdefault("failed", {})[phase] = str(exc).splitlines()[0][:300]
            res["settings"].update(b.settings)
        finally:
            stack.stop()
    res["machine"]["load_at_end"] = machine.loadavg()
    minutes = (time.monotonic() - started) / 60
    table, verdicts = build_table(res)
    cmd = "bin/bench" + (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only != ",".join(PHASES) else "")
    report = [table, "", f"Machine ({time.strftime('%Y-%m-%d %H:%M %Z')}, `{cmd}`, {minutes:.1f} min):",
              machine_text(res["machine"])]
    print("\n".join(report), flush=True)
    if args.write:
        write_results(res, table, verdicts, cmd, minutes)
        log(f"wrote {RESULTS}")
    return 0


def write_results(res: dict, table: str, verdicts: list, cmd: str, minutes: float) -> None:
    met = [v for v in verdicts if v[1]]
    missed = [v for v in verdicts if not v[1]]
    text = [
        "# Benchmark results",
        "",
        f"`{cmd}` — builds, starts one KRaft broker + one Connect worker (Kafka {KAFKA_VERSION}) + the Salesforce "
        f"emulator, runs every measurement below in that one run ({minutes:.1f} min) and prints this table "
        f"(`bin/bench --write` rewrites this file).",
        "",
        table,
        "",
        "## Machine",
        "",
        machine_text(res["machine"]),
        "",
        "## Targets",
        "",
        *[f"- met: {t} — {d}" for t, _, d in met],
        *[f"- **missed**: {t} — measured {d}" for t, _, d in missed],
        "",
        "## Settings",
        "",
        settings_text(res),
        "",
        "## Notes",
        "",
        notes_text(res, missed),
        "",
    ]
    RESULTS.write_text("\n".join(text))


if __name__ == "__main__":
    sys.exit(main())
