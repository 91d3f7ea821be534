"""The asynchronous write pipeline (SPEC §6) end to end through a real worker: requests filled
across put() calls at Connect's default poll size, back-pressure with a full buffer, stopping while
Salesforce hangs, coalescing against the model. (No consumer eviction with a slow org and a hot
key: test_integrity.py.)"""
from __future__ import annotations

import time

from .model import ExternalIdModel, emulator_state
from .test_operations import start, wait_consumed

UPSERT = {
    "salesforce.external.id.field": "ExternalId__c",
    "salesforce.operation": "UPSERT",
    # only the records' own requests are counted
    "salesforce.startup.validation.enabled": "false",
}


def _api_writes(e2e) -> list:
    return [r for r in e2e.emu.requests() if r.get("counted") and "/composite/" in r["path"]]


def test_requests_fill_across_puts_at_the_default_poll_size(e2e):
    """Connect's default max.poll.records=500: a synchronous sink sent 200+200+100 per put."""
    n = 10_000
    e2e.kafka.create_topic(e2e.topic, 1)
    e2e.produce([{"key": f"F-{i}", "value": {"LastName": f"L{i}"}} for i in range(n)])
    e2e.emu.clear_requests()
    name, = start(e2e, e2e.sink_config({**UPSERT, "consumer.override.max.poll.records": "500"}))
    wait_consumed(e2e, name, e2e.topic, timeout=120)
    writes = _api_writes(e2e)
    assert len(e2e.emu.records("Contact")) == n
    assert len(writes) <= 51, f"{len(writes)} Collections requests for {n} upserts (ideal 50)"


def test_a_full_buffer_pauses_the_partitions_and_nothing_is_lost(e2e):
    n = 3_000
    e2e.kafka.create_topic(e2e.topic, 1)
    e2e.produce([{"key": f"B-{i}", "value": {"LastName": f"L{i}"}} for i in range(n)])
    e2e.emu.set_latency(300)
    try:
        name, = start(e2e, e2e.sink_config({
            **UPSERT,
            "salesforce.max.buffered.records": "400",
            "salesforce.max.in.flight.requests": "1",
            "consumer.override.max.poll.records": "500",
        }))
        e2e.wait_until(lambda: e2e.worker_log_grep(f"[{name}|task-0]") and any(
            "partitions paused" in line for line in e2e.worker_log_grep(f"[{name}|task-0]")), 60,
            message=lambda: f"{name} never paused its partitions\n{e2e.describe(name)}")
        wait_consumed(e2e, name, e2e.topic, timeout=180)
    finally:
        e2e.emu.set_latency(0)
    lines = e2e.worker_log_grep(f"[{name}|task-0]")
    assert any("partitions resumed" in line for line in lines), "paused but never resumed"
    assert len(e2e.emu.records("Contact")) == n


def test_stop_returns_while_salesforce_hangs_and_the_records_come_back(e2e):
    e2e.kafka.create_topic(e2e.topic, 1)
    name, = start(e2e, e2e.sink_config({**UPSERT, "salesforce.linger.ms": "0"}))
    # Running (token and describe done); now every request hangs for a minute.
    e2e.emu.set_latency(60_000)
    try:
        e2e.produce([{"key": f"H-{i}", "value": {"LastName": f"L{i}"}} for i in range(50)])
        time.sleep(4)  # the records are polled and their request is sent (linger.ms=0)
        started = time.monotonic()
        e2e.connect.delete_and_wait(name, timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        e2e.emu.set_latency(0)
    assert stopped_in < 20, f"deleting the connector took {stopped_in:.1f} s while Salesforce hung"
    assert not e2e.worker_log_grep("Graceful stop of task", scope=name), "the task did not stop in time"
    # Nothing was committed: the connector created again under the same name (same consumer
    # group) starts over and writes them all.
    e2e.create_connector(e2e.sink_config({**UPSERT}), name=name)
    wait_consumed(e2e, name, e2e.topic, timeout=90)
    assert len(e2e.emu.records("Contact")) == 50


def _hot_key_stream(n: int, keys: int) -> list:
    # Zipf-like: key k appears about 1/(k+1) as often as key 0.
    weights = [1 / (k + 1) for k in range(keys)]
    import random
    rnd = random.Random(1234)
    out = []
    for i in range(n):
        k = rnd.choices(range(keys), weights)[0]
        value = {"LastName": f"v{i}"}
        if i % 3 == 0:
            value["Description"] = f"d{i}"
        out.append((f"Hot-{k}", value))
    return out


def test_coalescing_on_and_off_match_the_model(e2e):
    stream = _hot_key_stream(2_000, 20)
    model = ExternalIdModel(operation="UPSERT")
    for off, (k, v) in enumerate(stream):
        model.apply(off, k, v)
    fields = ("LastName", "Description")
    counts = {}
    for coalesce in ("false", "true"):
        e2e.emu.reset()
        topic = e2e.new_topic(f"coalesce-{coalesce}")
        e2e.kafka.create_topic(topic, 1)
        e2e.produce([{"key": k, "value": v} for k, v in stream], topic=topic)
        e2e.emu.set_latency(100)
        try:
            name, = start(e2e, e2e.sink_config({**UPSERT, "topics": topic, "salesforce.coalesce.updates": coalesce}))
            wait_consumed(e2e, name, topic, timeout=180)
        finally:
            e2e.emu.set_latency(0)
        got = emulator_state(e2e.emu.records("Contact"), "ExternalId__c", fields)
        want = model.expected(fields)
        diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
        assert not diff, f"coalesce={coalesce}: emulator vs model ({len(diff)} keys differ): {diff}"
        counts[coalesce] = len(_api_writes(e2e))
    assert counts["true"] < counts["false"], f"coalescing saved no requests: {counts}"


def test_a_rebalance_mid_stream_replays_nothing_already_written(e2e, stack):
    """Mixed operations while requests are slow, and a second worker joins mid-stream: the revoked
    partitions' last commit waits (briefly) for their buffered records, so the next owner does not
    replay records already written — a replayed UPDATE or DELETE of a key that a later, applied
    DELETE removed would reach the DLQ as NOT_FOUND."""
    from .checks import dlq_entries
    from .test_reliability import EXT, compare, fault_stream, live_state, wait_drained

    # Keys repeat (2 writes each on average), so writes of a key wait behind each other; the
    # task that moves to the new worker is stopped (2 s to finish its buffer), the one that stays
    # has partitions revoked (up to 15 s).
    records, model, ops = fault_stream(4000, keys=2000, seed=23)
    e2e.kafka.create_topic(e2e.topic, partitions=4)
    dlq = e2e.new_topic("dlq")
    cfg = e2e.sink_config({
        "tasks.max": "2",
        "salesforce.operation": "UPSERT",
        "salesforce.external.id.field": EXT,
        "salesforce.operation.header.enabled": "true",
        "salesforce.tombstone.delete": "true",
        "salesforce.batch.size": "50",
        **e2e.dlq_config(dlq),
    })
    name = e2e.create_connector(cfg, tasks=2)
    e2e.emu.set_latency(100)
    try:
        e2e.produce(records[:2500])
        time.sleep(3)  # requests in flight, records waiting behind them
        stack.add_worker()
        e2e.produce(records[2500:])
        wait_drained(e2e, name, e2e.topic, timeout=240)
    finally:
        e2e.emu.set_latency(0)
    dead = dlq_entries(e2e, dlq, timeout=5, rebalanced=True)
    assert not dead, f"written records replayed into the DLQ after the rebalance: {list(dead.items())[:5]}"
    actual, dups = live_state(e2e.emu.records("Contact"))
    lost, examples = compare(model, actual)
    assert dups == 0 and lost == 0, examples
