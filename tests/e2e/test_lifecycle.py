"""A task's life cycle through a real worker (issue 17): DLQ reports that fail, stops and
revocations while Salesforce is slow.

* A record whose DLQ report failed is never committed: after the operator fixes the DLQ, it
  reaches the DLQ (SPEC §11).
* Task restarts with 8 s answers and a backlog end within Connect's graceful shutdown; the
  replay they cost is a row of tests/RELIABILITY.md.
* A rebalance amid hot keys and slow answers replays nothing already applied, on the newest 4.x
  worker and on a 3.9 worker (eager consumer rebalance).
"""
from __future__ import annotations

import re
import time
import uuid

import pytest

from .checks import dlq_entries
from .test_operations import wait_consumed

EXT = "ExternalId__c"
UPSERT = {"salesforce.operation": "UPSERT", "salesforce.external.id.field": EXT}


def test_a_record_whose_dlq_report_failed_reaches_the_dlq_once_the_dlq_is_fixed(e2e):
    """The DLQ topic cannot take the record (its ``max.message.bytes`` is below the record's size
    with context headers: the broker refuses the DLQ producer's send, so the report's future fails
    after the report returned). The record's Salesforce answer comes while the task restarts, so
    the stopping commit may learn of the failure. Either way its offset must never be committed:
    the task fails with the DLQ producer's error, and once the operator fixes the DLQ topic and
    restarts the task, the record reaches the DLQ.

    (A DLQ producer that refuses the record before sending, e.g. ``producer.override.max.request.size``
    below its size, is invisible to every sink task when ``errors.log.enable`` is on too: Connect
    drops already-completed report futures when it has two reporters, RetryWithToleranceOperator.)"""
    e2e.kafka.create_topic(e2e.topic, 1)
    dlq = e2e.new_topic("dlq")
    e2e.kafka.create_topic(dlq, 1, config={"max.message.bytes": "1000"})
    cfg = e2e.sink_config({**UPSERT, **e2e.dlq_config(dlq), "salesforce.linger.ms": "0"})
    name = e2e.create_connector(cfg)
    # The first write request is applied at once and answered 1.5 s later: the task restarts
    # while it is in flight, and its stopping commit (2 s) learns of the failure.
    e2e.emu.add_fault({"kind": "slow", "path_contains": "/composite/sobjects", "delay_ms": 1500, "count": 1})
    e2e.produce([("d-1", {"LastName": "one"}),
                 ("d-2", {"LastName": "bad", "NoSuchField__c": "x"}),  # offset 1: INVALID_FIELD
                 ("d-3", {"LastName": "three"})])
    e2e.wait_until(lambda: any(r.get(EXT) == "d-1" for r in e2e.emu.records("Contact")), 30,
                   message="the first write request to be applied")
    e2e.connect.restart_task(name, 0)
    # Whichever call learned of the failed report (the stopping commit, or a put of the restarted
    # task, which meets the record again), the task fails with the DLQ producer's error.
    failed = e2e.connect.wait_failed(name, task=0, timeout=90)
    trace = failed.get("trace") or ""
    assert "errant record reporter" in trace and "RecordTooLargeException" in trace, trace[:3000]
    stopping_commit = e2e.worker_log_grep("the task fails at its next put", scope=name)
    print(f"failure learned by the stopping commit: {bool(stopping_commit)}")

    # The operator makes the DLQ topic take the record, and restarts the failed task.
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource("TOPIC", dlq, set_config={"max.message.bytes": "1048588"})
    for f in e2e.kafka.admin.alter_configs([res]).values():
        f.result(30)
    e2e.connect.restart(name, only_failed=True)
    e2e.connect.wait_task_state(name, 0, "RUNNING", timeout=60)
    wait_consumed(e2e, name, e2e.topic, timeout=90)
    dead = dlq_entries(e2e, dlq, rebalanced=True)
    assert list(dead) == [(e2e.topic, 0, 1)], dead
    assert "NoSuchField__c" in dead[(e2e.topic, 0, 1)]
    live = {r[EXT]: r.get("LastName") for r in e2e.emu.records("Contact") if str(r.get(EXT, "")).startswith("d-")}
    assert live == {"d-1": "one", "d-3": "three"}, live


# ---------------------------------------------------------------------------------------------
# Stopping within Connect's graceful shutdown (task.shutdown.graceful.timeout.ms, 5 s)
# ---------------------------------------------------------------------------------------------
def test_task_restarts_with_slow_answers_and_a_backlog_stop_within_the_graceful_shutdown(e2e):
    """8 s answers and a backlog: each restart's stopping commit and close() together take at most
    3 s, so the worker never cancels the task ("Graceful stop of task … failed") and its last commit
    runs. Records written but not committed before a stop are written again after it: Native ID
    INSERTs make each such replay a duplicate, which is what the reliability row counts."""
    from tests import reliability_report
    n, restarts = 1500, 3
    t0 = time.monotonic()
    e2e.kafka.create_topic(e2e.topic, 2)
    name = e2e.create_connector(e2e.sink_config({
        "salesforce.sobject.type": "MyObject__c", "salesforce.linger.ms": "0", "salesforce.batch.size": "100"}))
    # Writes are applied at once and answered 8 s later (token and describe stay fast, so each
    # restarted task is writing again within a second or two).
    e2e.emu.add_fault({"kind": "slow", "path_contains": "/composite/sobjects", "delay_ms": 8000})
    try:
        e2e.produce([(f"k{i}", {"Name": f"stop-{i:05d}"}) for i in range(n)])
        for _ in range(restarts):
            time.sleep(2)  # polled, requests in flight (answered in 8 s), more records waiting
            e2e.connect.restart_task(name, 0)
            e2e.connect.wait_task_state(name, 0, "RUNNING", timeout=60)
    finally:
        e2e.emu.clear_faults()
    wait_consumed(e2e, name, e2e.topic, timeout=180)
    failed_stops = e2e.worker_log_grep("Graceful stop of task", scope=name)
    names = [r.get("Name") for r in e2e.emu.records("MyObject__c") if str(r.get("Name", "")).startswith("stop-")]
    replayed = len(names) - len(set(names))
    lost = sum(1 for i in range(n) if f"stop-{i:05d}" not in set(names))
    last_commits = [ln.split("] ", 1)[-1] for ln in e2e.worker_log_grep("Last commit before closing", scope=name)]
    reliability_report.record("stop: task restarts with 8 s answers and a backlog (INSERT Native ID)", {
        "sent": n, "written": len(set(names)), "dlq": 0, "duplicates": replayed, "lost": lost,
        "faults_injected": 0, "restarts": restarts, "seconds": round(time.monotonic() - t0),
        "notes": "Duplicates = records already written before a stop and written again after it (their "
                 "offsets were not committed yet): the replay a stop costs. Every stop must end within "
                 "Connect's task.shutdown.graceful.timeout.ms (5 s), so its last commit runs.",
        "details": {"graceful stops that failed": len(failed_stops), "last commits": " / ".join(last_commits)},
    })
    print(f"replayed {replayed} written records over {restarts} restarts; last commits: {last_commits}")
    assert not failed_stops, failed_stops
    assert lost == 0


# ---------------------------------------------------------------------------------------------
# Revocation in the middle of a mixed-operation stream with hot keys (eager and cooperative)
# ---------------------------------------------------------------------------------------------
REBALANCE_VERSIONS = ("4.4.0", "3.9.2")  # the newest 4.x; 3.9.2 revokes every partition (eager)


@pytest.mark.parametrize("version", REBALANCE_VERSIONS)
def test_a_rebalance_amid_hot_keys_replays_nothing_already_applied(e2e, stack, version):
    """80 hot keys, 150 ms answers, a second worker joins mid-stream: Connect moves one task to the
    new worker (a stop) and the other task's partitions are revoked (all of them on 3.9.2, eager).
    The backlog a task holds stays within what it can finish while its partitions are revoked (per
    key: one round trip per write), and close() waits for the revoked partitions' requests in
    flight, so the next owner replays nothing already applied: the final state is the one-by-one
    model's, and the DLQ holds nothing (every operation of the stream is valid at its position)
    for every partition whose last commit finished its records.

    A stopping task has 2 s for its last commit (Connect's graceful shutdown is 5 s in all); what
    it could not finish it logs ("the partitions' next owner writes the N others again"), and
    there, at least once, a replayed UPDATE or DELETE whose key a later DELETE already removed may
    reach the DLQ as NOT_FOUND (docs/semantics.md). Only those partitions may hold DLQ entries."""
    from .test_reliability import compare, fault_stream, live_state
    records, model, ops = fault_stream(6000, keys=80, seed=31)
    group = f"connect-lc{uuid.uuid4().hex[:6]}"
    first = _add_worker(stack, version, group)
    e2e.kafka.create_topic(e2e.topic, partitions=4)
    dlq = e2e.new_topic("dlq")
    name = e2e.name("rebalance")
    cfg = e2e.sink_config({
        "tasks.max": "2", **UPSERT,
        "salesforce.operation.header.enabled": "true",
        "salesforce.tombstone.delete": "true",
        **e2e.dlq_config(dlq),
    })
    first.connect.create(name, cfg)
    try:
        first.connect.wait_running(name, tasks=2, timeout=90)
        e2e.emu.set_latency(150)
        e2e.produce(records[:3000])
        _add_worker(stack, version, group)
        # The new worker joins the Connect group right after it answers: the rest of the stream is
        # buffered (requests in flight, records waiting behind them) when the tasks rebalance.
        e2e.produce(records[3000:])
        wait_consumed(e2e, name, e2e.topic, timeout=300)
    finally:
        e2e.emu.set_latency(0)
    revoking = [ln.split("] ", 1)[-1] for ln in e2e.worker_log_grep("Last commit before", scope=name)]
    print(f"Kafka {version}: {dict(ops)}; last commits: {revoking}")
    dead = dlq_entries(e2e, dlq, timeout=5, rebalanced=True)
    actual, dups = live_state(e2e.emu.records("Contact"))
    lost, examples = compare(model, actual)
    try:
        first.connect.delete(name)
    except Exception:
        pass
    assert dups == 0 and lost == 0, examples
    left_over = set()
    for line in revoking:
        m = re.search(r"Last commit before \w+ partitions \[(.*?)\]: (\d+) of (\d+) buffered", line)
        assert m, line
        if int(m.group(2)) < int(m.group(3)):
            left_over |= {int(tp.rsplit("-", 1)[1]) for tp in m.group(1).split(", ")}
    replayed = {k: v for k, v in dead.items() if k[1] not in left_over}
    assert not replayed, (f"records replayed into the DLQ from partitions whose last commit finished every "
                          f"record: {list(replayed.items())[:5]}")
    for (_, partition, offset), message in dead.items():
        assert "NOT_FOUND" in message or "DUPLICATE_VALUE" in message, (partition, offset, message)


def _add_worker(stack, version: str, group: str):
    """A worker of ``version`` in Connect cluster ``group``; a loaded machine may need more than the
    default 90 s to start one."""
    from tests.stack import wait_until
    w = stack.add_worker(wait=False, kafka_version=version, group_id=group)
    wait_until(lambda: w.connect.info(), 240, 1.0, f"worker {w.name} (Kafka {version}) to answer", ignore=(Exception,))
    return w
