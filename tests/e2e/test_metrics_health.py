"""Metrics (SPEC §10), the API quota guard (SPEC §8) and task health in the status API (issue 10
item 7), the way operators consume them: a worker with the Prometheus JMX exporter java agent and
the connector's REST extension (``rest.extension.classes``), scraped over HTTP.

The worker is a Connect cluster of its own (own group and internal topics) on the session's broker
and emulator, so no other test's tasks run in its JVM.
"""
from __future__ import annotations

import json
import os
import time
import uuid

import pytest
import re
import requests

from tests.stack import jmx_exporter, wait_until
from tests.stack.util import free_port, grep
from tests.stack.worker import Worker

EXTENSION = "io.axual.connect.plugins.salesforce.health.SalesforceHealthRestExtension"
RESTARTS = int(os.environ.get("METRICS_RESTARTS", "100"))


@pytest.fixture(scope="module")
def observed(stack):
    """A worker with the JMX exporter agent and the health REST extension."""
    group = f"connect-metrics-{uuid.uuid4().hex[:6]}"
    port = free_port()
    worker = Worker(stack.dir, 90, stack.broker.bootstrap_servers, stack.plugins_dir, group,
                    extra_props={**stack.worker_props, "rest.extension.classes": EXTENSION},
                    jvm_opts=jmx_exporter.agent_args(port, stack.dir / "worker-90", plugin_metrics=True))
    worker.start()
    worker.exporter_port = port
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def sink(observed, e2e):
    """Creates connectors on the observed worker; deletes them afterwards."""
    created = []

    def create(config: dict, name: str | None = None, wait: bool = True) -> str:
        name = name or e2e.name()
        created.append(name)
        observed.connect.create(name, config)
        if wait:
            observed.connect.wait_running(name, tasks=1, timeout=60)
        return name

    yield create
    for name in created:
        observed.connect.delete_and_wait(name, timeout=30)


def scrape(observed) -> dict:
    return jmx_exporter.scrape(observed.exporter_port)


def task_metric(observed, name: str, connector: str):
    return jmx_exporter.task_metric(scrape(observed), name, connector)


def health(observed, name: str) -> dict:
    status = observed.connect.status(name)
    return (status["tasks"][0].get("salesforce") or {}) if status and status.get("tasks") else {}


def by_kind(requests: list) -> dict:
    kinds = {"collections": 0, "single": 0, "query": 0, "limits": 0, "token": 0}
    for r in requests:
        path = r["path"]
        if path.endswith("/oauth2/token"):
            kinds["token"] += 1
        elif "/composite/sobjects" in path:
            kinds["collections"] += 1
        elif path.endswith("/limits"):
            kinds["limits"] += 1
        elif path.endswith("/query"):
            kinds["query"] += 1
        elif "/sobjects/" in path and not path.endswith("/describe"):
            kinds["single"] += 1
    return kinds


def test_exported_metrics_equal_what_the_emulator_saw(observed, sink, e2e):
    e2e.emu.set_limits(max=50_000, used=1_234)
    e2e.emu.clear_requests()
    n = 1_000
    name = sink(e2e.sink_config({"salesforce.batch.size": "50", "salesforce.linger.ms": "50"}))
    e2e.produce([(f"k{i}", {"LastName": f"L{i}"}) for i in range(n)])
    e2e.wait_records("Contact", n, connector=name)
    emu_kinds = by_kind(e2e.emu.requests())
    limits = e2e.emu.limits()

    def exported():
        s = scrape(observed)
        got = {k: jmx_exporter.task_metric(s, k, name) for k in (
            "recordswritten", "requestscollections", "requestssingle", "requestsquery", "requestslimits",
            "requestsbulk", "requeststoken", "apirequestsused", "apirequestsmax", "recordsbuffered",
            "quotaguardactive", "recordsperrequest", "requestlatencyp50ms", "requestlatencyp99ms",
            "recordswrittenrate", "bulkjobsopen", "healthstate")}
        return got if got["recordswritten"] == n and got["recordsbuffered"] == 0 else None

    got = wait_until(exported, 30, 0.5, message=lambda: f"exported {scrape(observed)}")
    assert got["requestscollections"] == emu_kinds["collections"] >= n / 50
    assert got["requestssingle"] == emu_kinds["single"] == 0
    assert got["requestsquery"] == emu_kinds["query"] == 0
    assert got["requestslimits"] == emu_kinds["limits"] == 0
    assert got["requestsbulk"] == 0 and got["bulkjobsopen"] == 0
    # The token endpoint is shared by the connector's tasks; one task here.
    assert got["requeststoken"] == emu_kinds["token"] >= 1
    assert got["apirequestsused"] == limits["used"], (got, limits)
    assert got["apirequestsmax"] == limits["max"] == 50_000
    assert got["quotaguardactive"] == 0 and got["healthstate"] == 0
    assert got["recordsperrequest"] == pytest.approx(n / emu_kinds["collections"])
    assert 0 < got["requestlatencyp50ms"] <= got["requestlatencyp99ms"] < 10_000
    assert got["recordswrittenrate"] > 0
    assert health(observed, name)["state"] == "OK"
    # Totals are typed as counters (rate() works on them), levels as gauges.
    types = dict(re.findall(r"^# TYPE (salesforce_sink_\w+) (\w+)$", requests.get(
        f"http://127.0.0.1:{observed.exporter_port}/metrics", timeout=10).text, re.M))
    assert types.get("salesforce_sink_recordswritten") == "counter" or \
        types.get("salesforce_sink_recordswritten_total") == "counter", types
    assert types.get("salesforce_sink_recordsbuffered") == "gauge", types
    # The same figures as plugin metrics of the 4.1 worker (KIP-877).
    plugin = {k: v for k, v in scrape(observed).items()
              if k[0].startswith("kafka_connect_plugins") and ("connector", name) in k[1]}
    written = [v for k, v in plugin.items() if "records_written" in k[0] and "rate" not in k[0]]
    assert written == [n], f"plugin metrics: {sorted(plugin)[:8]}"


def test_connector_restarts_leave_no_stale_mbeans(observed, sink, e2e):
    names = []
    for i in range(RESTARTS):
        name = f"{e2e.prefix}-r{i}"
        names.append(name)
        observed.connect.create(name, e2e.sink_config())
        observed.connect.wait_running(name, tasks=1, timeout=60)
        if i == 0:
            wait_until(lambda: task_metric(observed, "recordswritten", name) is not None, 15,
                       message="the running task's MBean is exported")
        observed.connect.delete_and_wait(name, timeout=30)
    def stale():
        series = [k for k in scrape(observed) if k[0].startswith("salesforce_sink_")]
        return {dict(labels)["connector"] for _, labels in series} & set(names)

    # The last deletion's task stops shortly after the REST call returned.
    wait_until(lambda: not stale(), 30, message=lambda: f"MBeans of deleted connectors still exported: {stale()}")


def test_quota_guard_holds_at_the_reserve_and_resumes_on_a_new_day(observed, sink, e2e):
    # 87 % of the daily allowance used, reserve 10 %: the line is at 1,800 used.
    e2e.emu.set_limits(max=2_000, used=1_740)
    dlq = e2e.new_topic("dlq")
    max_in_flight = 4
    n = 10_000
    cfg = e2e.sink_config({
        "salesforce.batch.size": "20", "salesforce.linger.ms": "20",
        "salesforce.max.in.flight.requests": str(max_in_flight),
        "salesforce.api.quota.reserve.percent": "10", "salesforce.api.quota.check.interval.ms": "1000",
        **e2e.dlq_config(dlq),
    })
    e2e.produce([(f"k{i}", {"LastName": f"L{i}"}) for i in range(n)])
    name = sink(cfg)
    wait_until(lambda: health(observed, name).get("state") == "QUOTA_RESERVE", 60,
               message=lambda: f"status {json.dumps(observed.connect.status(name))}")
    h = health(observed, name)
    assert "salesforce.api.quota.reserve.percent" in h["message"] and h["since"], h
    time.sleep(3)  # three check intervals: only GET /limits goes out
    requests = e2e.emu.requests()
    limits_reads = by_kind(requests)["limits"]
    used = e2e.emu.limits()["used"]
    assert limits_reads >= 2, "the guard reads /limits every check interval"
    assert used <= 1_800 + 1 + max_in_flight + limits_reads, f"used {used}, {limits_reads} /limits reads"
    written = len(e2e.emu.records("Contact"))
    assert 0 < written < n
    status = observed.connect.status(name)
    assert status["tasks"][0]["state"] == "RUNNING", status
    assert task_metric(observed, "quotaguardactive", name) == 1
    assert task_metric(observed, "apirequestsused", name) >= 1_800
    worker_log = observed.log_file.read_text(errors="replace")
    assert len([ln for ln in worker_log.splitlines() if name in ln and "WARN" in ln and "QUOTA_RESERVE" in ln]) == 1
    assert any(name in ln and "partitions paused" in ln and "quota guard" in ln for ln in worker_log.splitlines())

    # A new day: the allowance is back.
    e2e.emu.set_limits(max=2_000, used=0)
    started = time.monotonic()
    e2e.wait_records("Contact", n, timeout=60, connector=name)
    assert time.monotonic() - started < 30
    wait_until(lambda: health(observed, name).get("state") == "OK", 10)
    assert observed.connect.status(name)["tasks"][0]["state"] == "RUNNING"
    assert e2e.consume_all(dlq, expected=0, timeout=5) == []
    assert len(e2e.emu.records("Contact")) == n
    worker_log = observed.log_file.read_text(errors="replace")
    assert any(name in ln and "recovered from QUOTA_RESERVE" in ln for ln in worker_log.splitlines())


def test_salesforce_unavailable_shows_in_the_status_and_clears(observed, sink, e2e):
    name = sink(e2e.sink_config({"salesforce.linger.ms": "0", "salesforce.retry.initial.backoff.ms": "100",
                                     "salesforce.retry.max.backoff.ms": "500"}))
    e2e.emu.add_fault({"kind": "status", "status": 503, "error_code": "SERVER_UNAVAILABLE",
                       "message": "maintenance", "path_contains": "/services/"})
    e2e.produce([(f"k{i}", {"LastName": f"L{i}"}) for i in range(10)])
    wait_until(lambda: health(observed, name).get("state") == "SALESFORCE_UNAVAILABLE", 60,
               message=lambda: f"status {json.dumps(observed.connect.status(name))}")
    status = observed.connect.status(name)
    assert status["tasks"][0]["state"] == "RUNNING", status
    assert "503" in status["tasks"][0]["salesforce"]["message"]
    e2e.emu.clear_faults()
    e2e.wait_records("Contact", 10, timeout=60, connector=name)
    wait_until(lambda: health(observed, name).get("state") == "OK", 30)
    assert observed.connect.status(name)["tasks"][0]["state"] == "RUNNING"


def test_status_without_the_extension_is_connects_own(stack, e2e):
    """The extension is optional: the session's workers run without it and the connector works."""
    name = e2e.create_connector(e2e.sink_config())
    e2e.produce([("k", {"LastName": "L"})])
    e2e.wait_records("Contact", 1)
    assert "salesforce" not in e2e.status(name)["tasks"][0]


def test_status_shows_the_health_of_tasks_on_other_workers(observed, sink, stack, e2e):
    """Two workers with the extension: either one's status answer carries both tasks' health."""
    second = Worker(stack.dir, 91, stack.broker.bootstrap_servers, stack.plugins_dir, observed.group_id,
                    extra_props={**stack.worker_props, "rest.extension.classes": EXTENSION})
    second.start()
    try:
        topic = e2e.new_topic("two")
        e2e.kafka.create_topic(topic, partitions=2)
        name = sink(e2e.sink_config({"topics": topic, "tasks.max": "2"}), wait=False)
        observed.connect.wait_running(name, tasks=2, timeout=60)

        def spread():
            tasks = observed.connect.status(name)["tasks"]
            return len({t["worker_id"] for t in tasks}) == 2 and all(t["state"] == "RUNNING" for t in tasks)

        wait_until(spread, 60, message=lambda: f"tasks on two workers: {observed.connect.status(name)}")

        # A task that moved to the second worker joins the connector's consumer group after it is
        # RUNNING; records produced before the group settles may all reach the other task.
        def one_partition_each():
            state, members = e2e.kafka.group_assignment(f"connect-{name}")
            return state == "STABLE" and len(members) == 2 and all(len(p) == 1 for p in members.values())

        wait_until(one_partition_each, 60, 0.5,
                   message=lambda: f"each task owning one partition: {e2e.kafka.group_assignment(f'connect-{name}')}")
        e2e.emu.add_fault({"kind": "status", "status": 503, "error_code": "SERVER_UNAVAILABLE",
                           "message": "maintenance", "path_contains": "/services/"})
        e2e.produce([{"key": f"k{i}", "value": {"LastName": f"L{i}"}, "partition": i % 2} for i in range(20)],
                    topic=topic)

        def diagnosis(client) -> str:
            lines = [ln for w in (observed, second) for ln in grep(w.log_file, name)
                     if any(k in ln for k in ("Revoke", "Adding newly", "Last commit", "SALESFORCE", "ready:",
                                              "stopp", "Graceful"))]
            return (f"status {json.dumps(client.status(name))}\ngroup {e2e.kafka.group_assignment(f'connect-{name}')}\n"
                    + "\n".join(ln[:300] for ln in lines[-30:]))

        for client in (observed.connect, second.connect):
            def both_unavailable():
                tasks = client.status(name)["tasks"]
                return all((t.get("salesforce") or {}).get("state") == "SALESFORCE_UNAVAILABLE" for t in tasks)

            wait_until(both_unavailable, 60, message=lambda: diagnosis(client))
        e2e.emu.clear_faults()
        e2e.wait_records("Contact", 20, timeout=60, connector=name)
    finally:
        # Whatever failed above: a task left holding records for an unavailable Salesforce would
        # write them into the next test's emulator while the connector is deleted.
        e2e.emu.clear_faults()
        second.stop()


def test_a_record_failing_forever_stalls_visibly_then_goes_to_the_dlq(observed, sink, e2e):
    """SPEC §11 (issue 17 items 7, 8): one record answered UNKNOWN_EXCEPTION on every attempt
    holds its partition's offset: the task says STALLED (JMX exporter, REST status, one WARN)
    while it waits, then after salesforce.retry.max.duration.ms the record is in the DLQ with its
    cause, the others are written, the offsets commit past it and the health is OK again."""
    topic, dlq = e2e.new_topic("stall"), e2e.new_topic("dlq")
    e2e.emu.add_fault({"kind": "record_error", "error_code": "UNKNOWN_EXCEPTION", "status": 500,
                       "message": "An unexpected error occurred", "record_contains": "STUCK"})
    max_duration_ms = 20_000
    name = sink(e2e.sink_config({
        "topics": topic, "salesforce.linger.ms": "0",
        "salesforce.retry.initial.backoff.ms": "200", "salesforce.retry.max.backoff.ms": "1000",
        "salesforce.retry.max.duration.ms": str(max_duration_ms),
        "salesforce.health.stall.threshold.ms": "3000",
        **e2e.dlq_config(dlq),
    }))
    n, stuck = 300, 150
    started = time.monotonic()
    e2e.produce([(f"k{i}", {"LastName": "STUCK" if i == stuck else f"L{i}"}) for i in range(n)],
                topic=topic, partition=0)

    def stalled():
        s = scrape(observed)
        got = {k: jmx_exporter.task_metric(s, k, name)
               for k in ("healthstate", "oldestunfinishedagems", "recordsunfinished", "bulkjobswaiting")}
        return got if got["healthstate"] == 3 else None

    got = wait_until(stalled, 60, 0.5, message=lambda: f"status {json.dumps(observed.connect.status(name))}")
    assert got["oldestunfinishedagems"] > 3000 and got["recordsunfinished"] >= 1 and got["bulkjobswaiting"] == 0, got
    h = health(observed, name)
    assert h.get("state") == "STALLED" and "salesforce.health.stall.threshold.ms" in h["message"], h
    assert "UNKNOWN_EXCEPTION" in h["message"], h
    assert observed.connect.status(name)["tasks"][0]["state"] == "RUNNING"
    assert e2e.kafka.committed(f"connect-{name}", topic).get(0, -1) <= stuck

    messages = [m.headers_dict() for m in e2e.consume_all(dlq, expected=1, timeout=90)]
    assert time.monotonic() - started >= max_duration_ms / 1000
    assert len(messages) == 1 and messages[0]["__connect.errors.offset"] == str(stuck), messages
    message = messages[0]["__connect.errors.exception.message"]
    assert "UNKNOWN_EXCEPTION" in message and f"salesforce.retry.max.duration.ms={max_duration_ms}" in message, message
    e2e.wait_records("Contact", n - 1, timeout=30, connector=name)
    wait_until(lambda: e2e.kafka.committed(f"connect-{name}", topic).get(0, -1) >= n, 30,
               message=lambda: f"committed {e2e.kafka.committed(f'connect-{name}', topic)}")
    wait_until(lambda: task_metric(observed, "healthstate", name) == 0 and health(observed, name).get("state") == "OK",
               30, message=lambda: f"status {json.dumps(observed.connect.status(name))}")
    assert len(e2e.emu.records("Contact")) == n - 1
    lines = [ln for ln in observed.log_file.read_text(errors="replace").splitlines() if name in ln]
    assert len([ln for ln in lines if "WARN" in ln and "STALLED" in ln]) == 1, lines[-20:]
    assert len([ln for ln in lines if "INFO" in ln and "recovered from STALLED" in ln]) == 1, lines[-20:]
