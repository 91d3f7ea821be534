"""Bulk API 2.0 write mode and AUTO (issue 9, SPEC §7) through a real worker: the seed's UPSERT +
DLQ example in BULK, mixed operations and tombstones against the one-by-one model in BULK and
AUTO, a fault run and a kill -9 of the worker while jobs run (those two with ``RELIABILITY=1``)."""
from __future__ import annotations

import json
import os
import time

import pytest

from tests import reliability_report

from .checks import MSG, dlq_entries
from .test_reliability import EXT, Revoker, compare, fault_stream, live_state, wait_drained, written_by_state
from .test_seed_examples import EXAMPLE_3, _adapt, _dlq_for, _envelope, _register

# Short lingers and polls so that the tests do not wait out the production defaults.
FAST_BULK = {
    "salesforce.bulk.linger.ms": "300",
    "salesforce.bulk.poll.interval.ms": "100",
}


def _kinds(e2e) -> dict:
    return e2e.emu.stats().get("by_kind", {})


def _log(msg: str) -> None:
    print(f"[bulk] {time.strftime('%H:%M:%S')} {msg}", flush=True)


def test_seed_example_3_in_bulk_mode_sends_bad_rows_to_the_dlq(e2e):
    """The seed's UPSERT + DLQ example, verbatim but for salesforce.write.mode=BULK: the row that
    Salesforce refuses reaches the DLQ with its sf__Error, the others are written by one job."""
    _register(e2e)
    cfg = _adapt(e2e, EXAMPLE_3, e2e.topic, schemas=True)
    cfg.update({"salesforce.write.mode": "BULK", **FAST_BULK})
    before = _kinds(e2e)
    name = e2e.create_connector(cfg)
    fields = [{"field": "Name", "type": "string", "optional": True},
              {"field": "Active__c", "type": "boolean", "optional": True}]

    def rec(key, name_, active=True):
        return key, _envelope(fields, {"Name": name_, "Active__c": active}, "my_object")

    e2e.produce([
        rec("EXT-1", "First, with \"quotes\"\nand a line break"),
        rec("EXT-2", "=SUM(A1)"),
        rec("EXT-BAD", "N" * 100),  # Name is 80 long: STRING_TOO_LONG in failedResults
        rec("EXT-3", "Third", False),
    ])
    dlq = _dlq_for(e2e, e2e.topic, 1)
    recs = e2e.wait_records("MyObject__c", 3, connector=name)
    by = {r["ExternalId__c"]: r for r in recs}
    assert set(by) == {"EXT-1", "EXT-2", "EXT-3"}, recs
    assert by["EXT-1"]["Name"] == "First, with \"quotes\"\nand a line break", "CSV quoting must round-trip"
    assert by["EXT-2"]["Name"] == "=SUM(A1)"
    assert by["EXT-3"]["Active__c"] is False
    assert len(dlq) == 1 and dlq[0].key == b"EXT-BAD", [(m.key, m.headers_dict().get(MSG)) for m in dlq]
    msg = dlq[0].headers_dict().get(MSG, "")
    for part in ("UPSERT", "MyObject__c", "EXT-BAD", "STRING_TOO_LONG", "sf__Error", "Bulk job"):
        assert part in msg, f"{part!r} not in DLQ message {msg!r}"
    after = _kinds(e2e)
    used = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    assert used.get("bulk_create", 0) >= 1, used
    assert not any(k.startswith("collections") for k in used), f"BULK wrote through Collections: {used}"
    assert e2e.status(name)["tasks"][0]["state"] == "RUNNING"


@pytest.mark.parametrize("mode", ["BULK", "AUTO"])
def test_mixed_operations_and_tombstones_match_the_one_by_one_model(e2e, mode):
    n = 3000
    records, model, ops = fault_stream(n, keys=300, seed=11)
    e2e.kafka.create_topic(e2e.topic, partitions=2)
    dlq = e2e.new_topic("dlq")
    cfg = e2e.sink_config({
        "salesforce.operation": "UPSERT",
        "salesforce.external.id.field": EXT,
        "salesforce.operation.header.enabled": "true",
        "salesforce.tombstone.delete": "true",
        "salesforce.write.mode": mode,
        "salesforce.bulk.threshold": "100",
        "salesforce.bulk.max.records.per.job": "500",
        **FAST_BULK,
        **e2e.dlq_config(dlq),
    })
    before = _kinds(e2e)
    name = e2e.create_connector(cfg)
    e2e.produce(records)
    wait_drained(e2e, name, e2e.topic, timeout=240)
    actual, dups = live_state(e2e.emu.records("Contact"))
    lost, examples = compare(model, actual)
    assert dups == 0
    assert lost == 0, f"{mode}: {lost} keys differ from the model, e.g. (key, model, emulator): {examples}"
    assert not dlq_entries(e2e, dlq, timeout=5), "every record of the stream is valid at its position"
    after = _kinds(e2e)
    jobs = after.get("bulk_create", 0) - before.get("bulk_create", 0)
    collections = sum(after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("collections"))
    _log(f"{mode}: {dict(ops)} -> {jobs} Bulk jobs, {collections} Collections requests")
    assert jobs > 0, f"{mode} never used a Bulk job"
    if mode == "BULK":
        assert collections == 0, "BULK wrote through Collections without a failed job"


RELIABILITY = pytest.mark.skipif(os.environ.get("RELIABILITY") != "1", reason="long reliability suite: set RELIABILITY=1")


def _upserts(n: int, keys: int):
    model = {}
    records = []
    for i in range(n):
        key = f"bulk-{i % keys:06d}"
        value = {"FirstName": f"F{i}", "LastName": f"L{i}", "Description": f"written at {i}"}
        model[key.lower()] = value
        records.append((key, json.dumps(value).encode()))
    return records, model


@RELIABILITY
@pytest.mark.reliability
@pytest.mark.timeout(900)
def test_bulk_fault_run_loses_and_duplicates_nothing(e2e):
    """503 on job polls and uploads, tokens revoked every 2 s (mid-job), a job that ends Failed and
    one that leaves records unprocessed: every UPSERT lands once."""
    n = int(os.environ.get("RELIABILITY_BULK_RECORDS", "30000"))
    t0 = time.monotonic()
    records, model = _upserts(n, keys=n // 2)
    e2e.kafka.create_topic(e2e.topic, partitions=2)
    dlq = e2e.new_topic("dlq")
    e2e.emu.set_bulk(records_per_second=5000, fail_next_jobs=1, unprocessed_next_jobs=1, process_first=700)
    rules = [
        {"kind": "status", "method": "GET", "path_contains": "/jobs/ingest/", "status": 503,
         "error_code": "SERVER_UNAVAILABLE", "probability": 0.3},
        {"kind": "status", "path_contains": "/batches", "status": 503, "error_code": "SERVER_UNAVAILABLE",
         "count": 2},
        {"kind": "commit_then_reset", "method": "PATCH", "path_contains": "/jobs/ingest/", "count": 1},
    ]
    e2e.emu.add_fault({"seed": 9, "rules": rules})
    cfg = e2e.sink_config({
        "tasks.max": "2",
        "salesforce.operation": "UPSERT",
        "salesforce.external.id.field": EXT,
        "salesforce.write.mode": "BULK",
        "salesforce.bulk.max.records.per.job": "5000",
        "salesforce.retry.initial.backoff.ms": "50",
        "salesforce.retry.max.backoff.ms": "1000",
        **FAST_BULK,
        **e2e.dlq_config(dlq),
    })
    name = e2e.create_connector(cfg, tasks=2, timeout=120)
    revoker = Revoker(e2e.emu, 2.0)
    revoker.start()
    try:
        e2e.produce(records, timeout=120)
        wait_drained(e2e, name, e2e.topic, timeout=600)
    finally:
        revoker.stop()
    fired = {f"{r['kind']} {r.get('method') or ''} {r['path_contains']}": r.get("fired", 0) for r in e2e.emu.faults()}
    e2e.emu.clear_faults()
    bulk = e2e.emu.bulk()
    actual, dups = live_state(e2e.emu.records("Contact"))
    lost, examples = compare(model, actual)
    dlq_msgs = e2e.consume_all(dlq, timeout=10)
    seconds = time.monotonic() - t0
    keys = [k.lower() for k, _ in records]
    reliability_report.record("Bulk API 2.0 fault run (UPSERT, BULK mode)", {
        "sent": n, "written": written_by_state(keys, model, actual) - len(dlq_msgs), "dlq": len(dlq_msgs),
        "duplicates": dups, "lost": lost, "faults_injected": sum(fired.values()) + revoker.count
        + bulk.get("jobs_failed", 0), "restarts": 0, "seconds": round(seconds),
        "details": {"faults fired": fired, "token revocations": revoker.count,
                    "bulk": {k: v for k, v in bulk.items() if k.startswith(("jobs", "records", "uploads"))}},
    })
    _log(f"bulk fault run: {fired}, revocations {revoker.count}, bulk {bulk}, lost {lost}, dups {dups}")
    assert all(t["state"] == "RUNNING" for t in e2e.status(name)["tasks"]), e2e.describe(name)
    assert not dlq_msgs, [m.headers_dict().get(MSG) for m in dlq_msgs[:5]]
    assert dups == 0
    assert lost == 0, f"{lost} keys differ from the model: {examples}"
    assert bulk.get("jobs_failed", 0) >= 1, "the failing job never ran"
    assert all(v > 0 for v in fired.values()), f"every fault should have fired: {fired}"
    assert revoker.count > 0


@RELIABILITY
@pytest.mark.reliability
@pytest.mark.timeout(900)
def test_kill_worker_while_bulk_jobs_run_loses_nothing(e2e, stack):
    n = int(os.environ.get("RELIABILITY_BULK_RECORDS", "30000"))
    t0 = time.monotonic()
    records, model = _upserts(n, keys=n)
    e2e.kafka.create_topic(e2e.topic, partitions=2)
    dlq = e2e.new_topic("dlq")
    e2e.emu.set_bulk(records_per_second=2000)
    cfg = e2e.sink_config({
        "salesforce.operation": "UPSERT",
        "salesforce.external.id.field": EXT,
        "salesforce.write.mode": "BULK",
        "salesforce.bulk.max.records.per.job": "4000",
        **FAST_BULK,
        **e2e.dlq_config(dlq),
    })
    name = e2e.create_connector(cfg)
    e2e.produce(records, timeout=120)

    def job_running():
        b = e2e.emu.bulk()
        running = b.get("jobs_created", 0) - b.get("jobs_completed", 0) - b.get("jobs_failed", 0) - b.get("jobs_aborted", 0)
        return b if running >= 1 and b.get("jobs_completed", 0) >= 1 else None

    from tests.stack import wait_until
    wait_until(job_running, 120, 0.2, lambda: f"a Bulk job to complete and another to run: {e2e.emu.bulk()}")
    worker = stack.workers[0]
    worker.kill()
    at_kill = e2e.emu.bulk()
    _log(f"killed the worker while jobs ran: {at_kill}")
    worker.start()
    wait_drained(e2e, name, e2e.topic, timeout=600)
    actual, dups = live_state(e2e.emu.records("Contact"))
    lost, examples = compare(model, actual)
    dlq_msgs = e2e.consume_all(dlq, timeout=10)
    keys = [k.lower() for k, _ in records]
    reliability_report.record("Bulk API 2.0: kill -9 of the worker while jobs run (UPSERT)", {
        "sent": n, "written": written_by_state(keys, model, actual) - len(dlq_msgs), "dlq": len(dlq_msgs),
        "duplicates": dups, "lost": lost, "faults_injected": 1, "restarts": 1,
        "seconds": round(time.monotonic() - t0),
        "details": {"bulk at the kill": at_kill, "bulk at the end": e2e.emu.bulk()},
    })
    assert not dlq_msgs, [m.headers_dict().get(MSG) for m in dlq_msgs[:5]]
    assert dups == 0
    assert lost == 0, f"{lost} keys differ from the model: {examples}"



def test_a_job_left_by_a_killed_worker_never_overwrites_newer_values(e2e, stack):
    """Issue 18 #6: kill -9 while a slow job of old values runs at Salesforce; after the restart,
    newer values of the same keys are produced. The restarted task must wait for the orphaned job
    before writing Contact, so the final state is the one-by-one model's (the newest values). The
    restarted task writes in jobs of 50 (its config is changed after the restart), so without that
    wait it is done while the orphaned job of 600 still runs, and the orphan overwrites it."""
    n = 600
    old = [(f"orphan-{i:04d}", json.dumps({"LastName": f"old {i}"}).encode()) for i in range(n)]
    new = [(f"orphan-{i:04d}", json.dumps({"LastName": f"new {i}"}).encode()) for i in range(n)]
    e2e.kafka.create_topic(e2e.topic, partitions=1)
    e2e.emu.set_bulk(records_per_second=10)  # 600 rows: the first job runs for a minute
    cfg = e2e.sink_config({
        "salesforce.operation": "UPSERT",
        "salesforce.external.id.field": EXT,
        "salesforce.write.mode": "BULK",
        **FAST_BULK,
        "salesforce.bulk.linger.ms": "3000",
    })
    name = e2e.create_connector(cfg)
    e2e.produce(old, timeout=120)

    from tests.stack import wait_until
    wait_until(lambda: _kinds(e2e).get("bulk_close", 0) >= 1, 120, 0.2, lambda: f"a Bulk job closed: {e2e.emu.bulk()}")
    worker = stack.workers[0]
    worker.kill()
    _log(f"killed the worker while its job ran: {e2e.emu.bulk()}")
    e2e.produce(new, timeout=120)
    worker.start()

    def reconfigured():
        try:
            return e2e.connect.put_config(name, {**cfg, "salesforce.bulk.max.records.per.job": "50"}) or True
        except Exception:  # the worker's REST server is not up yet
            return None

    wait_until(reconfigured, 120, 0.5, "the restarted worker takes the new config")
    wait_drained(e2e, name, e2e.topic, timeout=600)
    wait_until(lambda: (lambda b: b.get("jobs_completed", 0) + b.get("jobs_aborted", 0) + b.get("jobs_failed", 0)
                        >= b.get("jobs_created", 0))(e2e.emu.bulk()), 300, 0.5, lambda: f"every job over: {e2e.emu.bulk()}")
    actual, dups = live_state(e2e.emu.records("Contact"))
    stale = [k for k, fields in actual.items() if not str(fields.get("LastName")).startswith("new")]
    _log(f"done: {e2e.emu.bulk()}")
    assert dups == 0
    assert len(actual) == n and not stale, f"{len(stale)} keys left with old values by the orphaned job, e.g. {stale[:3]}"
