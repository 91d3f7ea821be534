"""Integrity through the real worker (issue 8, SPEC §2 and §4): no record is skipped because an SMT
gave it another record's coordinates, credential failures fail the task instead of flooding the
DLQ, a malformed Native ID key deletes nothing, and a put() never outlives the consumer's poll
interval.

The core-level tests of the same defects are rust/core/tests/integrity.rs; these check that the
Java task, Connect's redelivery, the DLQ reporter and the consumer group behave end to end.
The hot-key test takes ~1.5 minutes: it is in the ``reliability`` suite (RELIABILITY=1).
"""
from __future__ import annotations

import os
import time
from urllib.parse import parse_qs

import pytest

from tests import reliability_report
from tests.stack import DEFAULT_CLIENT_ID

from .checks import (dlq_entries, eviction_lines, regex_router,
                     wait_all_consumed)
from .model import ExternalIdModel, emulator_state

EXT = {"salesforce.sobject.type": "MyObject__c", "salesforce.external.id.field": "ExternalId__c",
       "salesforce.operation": "UPSERT"}


def _fired(e2e) -> int:
    return sum(r.get("fired", 0) for r in e2e.emu.faults())


# ------------------------------------------------------------------------------------------------
# a. RegexRouter merging two topics: records with the same renamed coordinates in one batch
# ------------------------------------------------------------------------------------------------

# SINGLE: the upsert of one record (its key is in the URL) answers 503 three times.
# COLLECTIONS: the first three records of the data requests fail with UNABLE_TO_LOCK_ROW.
FAULTS = {
    "SINGLE": lambda key: {"kind": "status", "status": 503, "error_code": "SERVER_UNAVAILABLE",
                           "path_contains": f"/ExternalId__c/{key}", "count": 3},
    "COLLECTIONS": lambda key: {"kind": "record_error", "error_code": "UNABLE_TO_LOCK_ROW",
                                "message": "unable to obtain exclusive access to this record",
                                "path_contains": "/composite/sobjects", "count": 3},
}


@pytest.mark.parametrize("mode", ["SINGLE", "COLLECTIONS"])
def test_renaming_smt_loses_no_record_and_commits_by_original_coordinates(e2e, mode):
    t0 = time.monotonic()
    n = 10
    topic_a, topic_b = f"{e2e.prefix}-a", f"{e2e.prefix}-b"
    for t in (topic_a, topic_b):
        e2e.kafka.create_topic(t, 1)
    # Same number of records on both topics: after the rename, offset i of one is offset i of
    # the other (same topic, same partition 0).
    stream_a = [(f"ka-{i:03d}", {"Name": f"a{i}"}) for i in range(n)]
    stream_b = [(f"kb-{i:03d}", {"Name": f"b{i}"}) for i in range(n)]
    model = ExternalIdModel(operation="UPSERT")
    for off, (k, v) in enumerate(stream_a):
        model.apply(off, k, v)
    for off, (k, v) in enumerate(stream_b):
        model.apply(off, k, v)
    e2e.produce(stream_a, topic=topic_a)
    e2e.produce(stream_b, topic=topic_b)
    e2e.emu.add_fault(FAULTS[mode]("ka-003"))

    # Produced first, so the first poll holds both topics: one batch with 10 colliding pairs.
    name = e2e.create_connector(e2e.sink_config({
        **EXT, **regex_router(f"{e2e.prefix}-(a|b)", f"{e2e.prefix}-merged"),
        "topics": f"{topic_a},{topic_b}",
        "salesforce.write.mode": mode,
        "salesforce.retry.initial.backoff.ms": "50",
    }))
    # Both original topics must be committed to their end: offsets kept by the renamed
    # coordinates would name a partition the task is not assigned, and Connect would drop them.
    wait_all_consumed(e2e, name, [topic_a, topic_b])
    fired = _fired(e2e)
    e2e.emu.clear_faults()

    got = emulator_state(e2e.emu.records("MyObject__c"), "ExternalId__c", ["Name"])
    want = model.expected(["Name"])
    missing = sorted(set(want) - set(got))
    assert got == want, f"records lost (renamed coordinates collided): {missing}; got {got}"
    assert fired == 3, f"the fault should have failed 3 writes, fired {fired}"
    reliability_report.record(f"integrity: RegexRouter merging 2 topics, retried writes ({mode})", {
        "sent": 2 * n, "written": len(got), "dlq": 0, "duplicates": 0, "lost": len(missing),
        "faults_injected": fired, "restarts": 0, "seconds": round(time.monotonic() - t0),
    })


# ------------------------------------------------------------------------------------------------
# b. credential failures fail the task with what to fix; the DLQ stays empty
# ------------------------------------------------------------------------------------------------

def _failed_trace(e2e, name: str) -> str:
    task = e2e.connect.wait_failed(name, timeout=60)
    return task.get("trace") or ""


def test_persistent_401_fails_the_task_not_the_records(e2e):
    t0 = time.monotonic()
    dlq = e2e.new_topic("dlq")
    e2e.kafka.create_topic(e2e.topic, 1)
    name = e2e.create_connector(e2e.sink_config(e2e.dlq_config(dlq)))
    # every data request refused, a freshly fetched token too: nothing a record caused
    e2e.emu.add_fault({"kind": "status", "status": 401, "error_code": "INVALID_SESSION_ID",
                       "message": "Session expired or invalid", "path_contains": "/services/data"})
    e2e.produce([(f"k{i}", {"LastName": f"L{i}"}) for i in range(5)])
    trace = _failed_trace(e2e, name)
    assert "freshly issued access token" in trace and "INVALID_SESSION_ID" in trace, trace
    assert "Fix:" in trace, f"the message should say what to fix: {trace}"
    assert e2e.consume_all(dlq, timeout=10) == [], "a credentials problem sent records to the DLQ"
    assert e2e.emu.records("Contact") == []
    # the one refresh was tried (a token request after the 401), not a refresh loop
    tokens = e2e.emu.request_summary()["token_requests"]
    assert 2 <= tokens <= 5, f"{tokens} token requests"
    reliability_report.record("integrity: persistent 401 after the refresh (errors.tolerance=all)", {
        "sent": 5, "written": 0, "dlq": 0, "duplicates": 0, "lost": 0, "faults_injected": _fired(e2e),
        "restarts": 0, "seconds": round(time.monotonic() - t0),
        "notes": "Expected outcome: task FAILED naming a freshly issued access token; DLQ empty.",
    })


def test_rotated_client_secret_fails_the_task_not_the_records(e2e):
    t0 = time.monotonic()
    dlq = e2e.new_topic("dlq")
    e2e.kafka.create_topic(e2e.topic, 1)
    name = e2e.create_connector(e2e.sink_config(e2e.dlq_config(dlq)))
    e2e.produce([(f"k{i}", {"LastName": f"before{i}"}) for i in range(3)])
    e2e.wait_records("Contact", 3)
    # The Connected App's secret is rotated and the sessions end: the next token request of the
    # task is refused with invalid_client.
    e2e.emu.add_client(DEFAULT_CLIENT_ID, "rotated-secret")
    e2e.emu.revoke_tokens()
    e2e.produce([(f"k{i}", {"LastName": f"after{i}"}) for i in range(3, 6)])
    trace = _failed_trace(e2e, name)
    assert "invalid_client" in trace and "salesforce.client.secret" in trace, trace
    assert e2e.consume_all(dlq, timeout=10) == [], "a credentials problem sent records to the DLQ"
    assert sorted(r["LastName"] for r in e2e.emu.records("Contact")) == ["before0", "before1", "before2"]
    reliability_report.record("integrity: client secret rotated mid-run (errors.tolerance=all)", {
        "sent": 6, "written": 3, "dlq": 0, "duplicates": 0, "lost": 0, "faults_injected": 1, "restarts": 0,
        "seconds": round(time.monotonic() - t0),
        "notes": "Expected outcome: task FAILED naming invalid_client and salesforce.client.secret; DLQ empty; "
                 "the 3 records after the rotation stay in Kafka.",
    })


# ------------------------------------------------------------------------------------------------
# c. malformed Native ID keys in a DELETE stream: only named records are deleted
# ------------------------------------------------------------------------------------------------

def test_malformed_native_id_keys_delete_only_named_records(e2e):
    t0 = time.monotonic()
    dlq = e2e.new_topic("dlq")
    e2e.kafka.create_topic(e2e.topic, 1)
    name = e2e.create_connector(e2e.sink_config({
        **e2e.dlq_config(dlq), "salesforce.operation.header.enabled": "true",
        "salesforce.tombstone.delete": "true"}))
    e2e.produce([(None, {"LastName": f"L{i}"}) for i in range(6)])  # INSERT, offsets 0-5
    wait_all_consumed(e2e, name, [e2e.topic])
    ids = {r["LastName"]: r["Id"] for r in e2e.emu.records("Contact")}
    id0, id1, id2, id3, id4, id5 = (ids[f"L{i}"] for i in range(6))
    assert all(len(i) == 18 for i in ids.values()), ids
    e2e.emu.clear_requests()

    delete = {"operation": "DELETE"}
    stream = [
        (f"{id0},{id1}", None),                                  # 6  DLQ: two Ids in one key
        (f"{id2}%2C{id3}", {"LastName": "x"}, delete),           # 7  DLQ: an encoded comma
        (id4[:15], None),                                        # 8  deletes id4 (15-char form)
        (id5[:15] + id5[15:].lower(), {"LastName": "x"}, {"operation": "delete"}),  # 9 deletes id5
        (id0[:15] + ("AAB" if id0[15:].upper() != "AAB" else "AAC"), None),  # 10 DLQ: wrong suffix
        ("..", None),                                            # 11 DLQ
        (id0[:14], None),                                        # 12 DLQ: 14 characters
        (f"{id1}/../{id2}", {"LastName": "x"}, delete),          # 13 DLQ: a path
    ]
    e2e.produce(stream)
    wait_all_consumed(e2e, name, [e2e.topic])

    live = {r["Id"] for r in e2e.emu.records("Contact")}
    assert live == {id0, id1, id2, id3}, f"live {live}; expected only {id4} and {id5} deleted"
    dead = {off: msg for (_, _, off), msg in dlq_entries(e2e, dlq).items()}
    assert sorted(dead) == [6, 7, 10, 11, 12, 13], dead
    for off, msg in dead.items():
        key = stream[off - 6][0]
        assert f"'{key}' is not one" in msg and "needs a Salesforce record Id as the key" in msg, (off, msg)
    # no request ever named a record the stream did not name
    for r in e2e.emu.requests():
        if r.get("method") != "DELETE":
            continue
        named = set()
        if "ids=" in (r.get("query") or ""):
            named = set(parse_qs(r["query"])["ids"][0].split(","))
        else:
            named = {r["path"].rsplit("/", 1)[-1]}
        assert named <= {id4, id5}, f"a DELETE named {named - {id4, id5}}: {r}"
    reliability_report.record("integrity: malformed Native ID keys in a DELETE stream", {
        "sent": len(stream), "written": 2, "dlq": len(dead), "duplicates": 0, "lost": 0,
        "faults_injected": 0, "restarts": 0, "seconds": round(time.monotonic() - t0),
        "notes": "Keys such as '<id1>,<id2>', '<id>%2C<id>', '..', 14 characters and a wrong suffix case go to the "
                 "DLQ naming the key; the 15-character and lower-case-suffix 18-character forms delete their record.",
    })


# ------------------------------------------------------------------------------------------------
# d. a hot key under a short max.poll.interval.ms: every put ends within its budget
# ------------------------------------------------------------------------------------------------

@pytest.mark.reliability
@pytest.mark.skipif(os.environ.get("RELIABILITY") != "1", reason="long reliability suite: set RELIABILITY=1")
@pytest.mark.timeout(600)
def test_hot_key_puts_stay_within_the_poll_interval(e2e):
    t0 = time.monotonic()
    poll_interval_ms = 20000
    e2e.kafka.create_topic(e2e.topic, 1)
    # 100 writes of one key (each waits for the previous: 100 sequential requests of 700 ms =
    # 70 s, far beyond the 20 s poll interval) among a few other keys.
    stream = []
    for i in range(120):
        key = "hot" if i % 6 else f"cold-{i}"
        stream.append((key, {"Name": f"v{i}", "Quantity__c": i}))
    assert sum(1 for k, _ in stream if k == "hot") == 100
    model = ExternalIdModel(operation="UPSERT")
    for off, (k, v) in enumerate(stream):
        model.apply(off, k, v)
    e2e.produce(stream)
    e2e.emu.set_latency(700)
    try:
        name = e2e.create_connector(e2e.sink_config({
            **EXT,
            "consumer.override.max.poll.interval.ms": str(poll_interval_ms),
            "consumer.override.max.poll.records": "500",
            "salesforce.retry.initial.backoff.ms": "100",
        }), timeout=120)
        wait_all_consumed(e2e, name, [e2e.topic], timeout=400)
    finally:
        e2e.emu.set_latency(0)

    fields = ("Name", "Quantity__c")
    got = emulator_state(e2e.emu.records("MyObject__c"), "ExternalId__c", fields)
    want = model.expected(fields)
    diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
    assert not diff, f"emulator vs model (key: emulator, model): {diff}"
    evicted = eviction_lines(e2e, name)
    assert not evicted, "the consumer was evicted (a put outlived max.poll.interval.ms):\n" + "\n".join(evicted[:5])
    seconds = time.monotonic() - t0
    reliability_report.record("integrity: hot key x100, 700 ms latency, max.poll.interval.ms=20000", {
        "sent": len(stream), "written": len(stream), "dlq": 0, "duplicates": 0, "lost": len(diff),
        "faults_injected": 0, "restarts": 0, "seconds": round(seconds),
        "details": {"consumer evictions": len(evicted)},
    })
