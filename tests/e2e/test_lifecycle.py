"""A task's life cycle through a real worker (issue 17): DLQ reports that fail, stops and
revocations while Salesforce is slow.

* A record whose DLQ report failed is never committed: after the operator fixes the DLQ, it
  reaches the DLQ (SPEC §11).
"""
from __future__ import annotations

import time

from .checks import dlq_entries
from .test_operations import wait_consumed

EXT = "ExternalId__c"
UPSERT = {"salesforce.operation": "UPSERT", "salesforce.external.id.field": EXT}


def test_a_record_whose_dlq_report_failed_reaches_the_dlq_once_the_dlq_is_fixed(e2e):
    """The DLQ producer cannot take the record (``producer.override.max.request.size`` below its
    size with context headers); its Salesforce answer comes while the task restarts, so the stopping
    commit learns of the failure. The record must stay uncommitted: the restarted task meets it
    again and fails on the same DLQ error, and once the operator fixes the DLQ config it lands there."""
    e2e.kafka.create_topic(e2e.topic, 1)
    dlq = e2e.new_topic("dlq")
    cfg = e2e.sink_config({**UPSERT, **e2e.dlq_config(dlq), "salesforce.linger.ms": "0",
                           "producer.override.max.request.size": "200"})
    name = e2e.create_connector(cfg)
    e2e.emu.set_latency(2000)
    try:
        e2e.produce([("d-1", {"LastName": "one"}),
                     ("d-2", {"LastName": "bad", "NoSuchField__c": "x"}),  # offset 1: INVALID_FIELD
                     ("d-3", {"LastName": "three"})])
        time.sleep(1.0)  # polled and sent (linger.ms=0); Salesforce answers about 1 s from now
        e2e.connect.restart_task(name, 0)
        # Whichever call learned of the failed report (the stopping commit, or a put of the restarted
        # task, which meets the record again), the task fails with the DLQ producer's error.
        failed = e2e.connect.wait_failed(name, task=0, timeout=90)
    finally:
        e2e.emu.set_latency(0)
    trace = failed.get("trace") or ""
    assert "errant record reporter" in trace and "RecordTooLargeException" in trace, trace[:3000]
    stopping_commit = e2e.worker_log_grep("the task fails at its next put", scope=name)
    print(f"failure learned by the stopping commit: {bool(stopping_commit)}")

    # The operator fixes the DLQ producer; the config update restarts the task.
    fixed = {k: v for k, v in cfg.items() if k != "producer.override.max.request.size"}
    e2e.connect.put_config(name, fixed)
    try:
        e2e.connect.wait_task_state(name, 0, "RUNNING", timeout=30)
    except Exception:  # a worker that keeps a FAILED task across the update: the operator restarts it
        e2e.connect.restart(name, only_failed=True)
        e2e.connect.wait_task_state(name, 0, "RUNNING", timeout=60)
    wait_consumed(e2e, name, e2e.topic, timeout=90)
    dead = dlq_entries(e2e, dlq, rebalanced=True)
    assert list(dead) == [(e2e.topic, 0, 1)], dead
    assert "NoSuchField__c" in dead[(e2e.topic, 0, 1)]
    live = {r[EXT]: r.get("LastName") for r in e2e.emu.records("Contact") if str(r.get(EXT, "")).startswith("d-")}
    assert live == {"d-1": "one", "d-3": "three"}, live
