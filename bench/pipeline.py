"""Asynchronous pipeline measures (issue 13), run by ``bench.run`` as the ``pipeline`` phase.

Every scenario is one connector with Connect's default poll size (500) unless it says otherwise;
"linger.ms=0" sends a request as soon as records are ready, which gives the request shapes of the
former synchronous put() (200 + 200 + 100 per put of 500), side by side with the default 200 ms.
"""
from __future__ import annotations

import random
import time

from .arrivals import Arrivals


def _upserts(n: int, keys: int | None = None, zipf: bool = False, seed: int = 7):
    rnd = random.Random(seed)
    weights = [1 / (k + 1) for k in range(keys)] if zipf and keys else None
    for i in range(n):
        if weights:
            k = rnd.choices(range(keys), weights)[0]
        elif keys:
            k = i % keys
        else:
            k = i
        yield f"p-{k}", {"FirstName": "Pipe", "LastName": f"Pipeline {i}", "Description": f"d{i % 7}"}


def run(b, log) -> dict:
    quick = b.quick
    out: dict = {}
    n = 2_000 if quick else 10_000

    # 1. API requests per 10,000 UPSERTs at the default poll size.
    for linger in (0, 200):
        out[f"requests_linger_{linger}"] = _count(b, log, n, {"salesforce.linger.ms": linger}, f"linger {linger}")

    # 2. Records/s with defaults, emulator +1,000 ms and +0 ms per request.
    for ms, count in ((1000, 4_000 if quick else 20_000), (0, 20_000 if quick else 100_000)):
        out[f"rate_{ms}"] = _rate(b, log, count, ms)

    # 3. Hot keys: UPSERTs over 100 keys, Zipf-like, +200 ms per request, coalescing off and on.
    # Without coalescing a hot key's 100 writes go one 200 ms round trip at a time: 1,000 take 45 s.
    hot_n = 1_000
    for coalesce in ("false", "true"):
        out[f"hot_{coalesce}"] = _hot(b, log, hot_n, coalesce)

    # 4. Memory with a backlog far larger than the buffer while Salesforce answers in 1 s.
    out["backlog"] = _backlog(b, log, 50_000 if quick else 200_000)
    b.settings["pipeline"] = {"requests_records": n, "hot_records": hot_n}
    return out


def _run_connector(b, topic: str, extra: dict, name_tag: str, n: int, timeout: float, on_poll=None) -> float:
    cfg = b.config(topic, "UPSERT", True, "COLLECTIONS", **{k.replace(".", "__"): v for k, v in extra.items()})
    name = b.name(name_tag)
    base = b.written()
    t0 = time.monotonic()
    b.connect.create(name, cfg)
    b.wait_written(base + n, timeout, name, on_poll=on_poll, interval=0.05)
    seconds = time.monotonic() - t0
    b.drop_connector(name)
    return seconds


def _count(b, log, n: int, extra: dict, label: str) -> dict:
    b.emu.clear_records("Contact")
    b.emu.set_latency(0)
    topic = b.name("pipe-req")
    b.produce(topic, _upserts(n))
    before = b.stats()
    _run_connector(b, topic, extra, "pipe-req", n, 300)
    time.sleep(1.0)
    s = b.stats()
    api = int(s["api_requests"]) - int(before["api_requests"])
    per10k = api * 10_000 / n
    log(f"pipeline requests ({label}): {n} upserts -> {api} requests ({per10k:.1f} per 10,000)")
    return {"records": n, "api": api, "per10k": per10k}


def _rate(b, log, n: int, latency_ms: int) -> dict:
    b.emu.clear_records("Contact")
    topic = b.name(f"pipe-rate-{latency_ms}")
    b.produce(topic, _upserts(n))
    b.emu.set_latency(latency_ms)
    arrivals = Arrivals(b.written(), n)
    try:
        _run_connector(b, topic, {}, "pipe-rate", n, 900, arrivals.on_poll)
    finally:
        b.emu.set_latency(0)
    _, _, rate = arrivals.rate()
    log(f"pipeline rate +{latency_ms} ms: {n} records -> {rate:,.0f} records/s")
    return {"records": n, "rate": rate, "latency_ms": latency_ms}


def _hot(b, log, n: int, coalesce: str) -> dict:
    b.emu.clear_records("Contact")
    topic = b.name(f"pipe-hot-{coalesce}")
    b.produce(topic, _upserts(n, keys=100, zipf=True))
    b.emu.set_latency(200)
    before = b.stats()
    try:
        seconds = _run_hot(b, topic, n, coalesce)
    finally:
        b.emu.set_latency(0)
    api = int(b.stats()["api_requests"]) - int(before["api_requests"])
    log(f"pipeline hot keys, coalesce {coalesce}: {n} upserts over 100 keys -> {api} requests in {seconds:.1f} s")
    return {"records": n, "api": api, "seconds": seconds}


def _run_hot(b, topic: str, n: int, coalesce: str) -> float:
    """Until the consumer group committed the end of the topic (upserts of a key overwrite each
    other, so the emulator's written count is not a finish line here)."""
    cfg = b.config(topic, "UPSERT", True, "COLLECTIONS")
    cfg["salesforce.coalesce.updates"] = coalesce
    name = b.name("pipe-hot")
    t0 = time.monotonic()
    b.connect.create(name, cfg)
    group = f"connect-{name}"
    deadline = t0 + 1800
    while time.monotonic() < deadline:
        end = b.stack.kafka.end_offsets(topic)
        committed = b.stack.kafka.committed(group, topic)
        if end and all(committed.get(p, -1) >= off for p, off in end.items()):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"hot-key run {name} did not finish in 30 min")
    seconds = time.monotonic() - t0
    b.drop_connector(name)
    return seconds


def _backlog(b, log, n: int) -> dict:
    b.emu.clear_records("Contact")
    topic = b.name("pipe-backlog")
    b.produce(topic, _upserts(n))
    b.emu.set_latency(1000)
    fresh = b.worker_rss_mib()
    cfg = b.config(topic, "UPSERT", True, "COLLECTIONS")
    name = b.name("pipe-backlog")
    peak = fresh
    base = b.written()
    try:
        b.connect.create(name, cfg)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            peak = max(peak, b.worker_rss_mib())
            time.sleep(1.0)
        written = b.written() - base
        lag = n - written
    finally:
        b.drop_connector(name)
        b.emu.set_latency(0)
    log(f"pipeline backlog: {n:,} records waiting, +1,000 ms: worker RSS {fresh:.0f} -> peak {peak:.0f} MiB "
        f"in 60 s ({written:,} written, {lag:,} still in Kafka)")
    return {"records": n, "fresh": fresh, "peak": peak, "growth": peak - fresh, "written": written}


def rows(res: dict, row, verdicts: list) -> None:
    """Table rows for ``bench.run.build_table``."""
    p = res["pipeline"]
    r0, r200 = p["requests_linger_0"], p["requests_linger_200"]
    met = r200["per10k"] <= 51
    verdicts.append(("pipeline: ≤ 51 requests per 10,000 UPSERTs at the default poll size (500)", met,
                     f"{r200['per10k']:.1f}"))
    measure = "API requests / 10,000 UPSERTs" + ("" if r200["records"] == 10_000 else f" (scaled from {r200['records']:,})")
    row(measure, "poll 500 (default); linger.ms 0 (request shapes of a synchronous put) "
        "vs 200 (default)", f"{r0['per10k']:.1f}", f"{r200['per10k']:.1f}",
        f"{r0['per10k'] / r200['per10k']:.2f}×", "≤ 51", met)
    slow, fast = p["rate_1000"], p["rate_0"]
    met = slow["rate"] >= 700
    verdicts.append(("pipeline: ≥ 700 records/s with +1,000 ms per request, defaults", met, f"{slow['rate']:,.0f}/s"))
    row("Records/s, one task, UPSERT, defaults", "emulator +1,000 ms per request (ceiling 4 × 200 / s)", "—",
        f"{slow['rate']:,.0f}", "", "≥ 700", met)
    row("Records/s, one task, UPSERT, defaults", "emulator +0 ms", "—", f"{fast['rate']:,.0f}", "", "", None)
    off, on = p["hot_false"], p["hot_true"]
    row("Hot keys: requests / seconds", f"{off['records']:,} UPSERTs over 100 Zipf-like keys, +200 ms; "
        "coalesce.updates off vs on", f"{off['api']:,} / {off['seconds']:.0f} s", f"{on['api']:,} / {on['seconds']:.0f} s",
        f"{off['api'] / max(on['api'], 1):.1f}× fewer requests", "", None)
    bl = p["backlog"]
    met = bl["growth"] < 64
    verdicts.append((f"pipeline: worker RSS growth with a {bl['records']:,}-record backlog at +1,000 ms < 64 MiB", met,
                     f"{bl['growth']:+.0f} MiB"))
    row("Worker RSS (MiB) with a backlog", f"{bl['records']:,} records waiting in Kafka, +1,000 ms, "
        "max.buffered.records 20,000, 60 s", f"{bl['fresh']:.0f}", f"{bl['peak']:.0f}", f"{bl['growth']:+.0f} MiB",
        "< 64 MiB", met)
