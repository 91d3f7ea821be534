"""Reliability suites (issue 5): a long fault-injection stream and worker/broker crashes.

Both are long: marked ``reliability`` and skipped unless ``RELIABILITY=1``:

    SKIP_BUILD=1 RELIABILITY=1 bin/test tests/e2e/test_reliability.py -x

Each writes its figures to ``tests/.work/reliability.json``; ``python -m tests.reliability_report``
renders ``tests/RELIABILITY.md`` from them.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter

import pytest

from tests import reliability_report
from tests.stack import wait_until

from .test_idempotency import IDEM, SOBJECT as IDEM_SOBJECT, define_kafka_insert

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(os.environ.get("RELIABILITY") != "1", reason="long reliability suite: set RELIABILITY=1"),
]

EXT = "ExternalId__c"
FIELDS = ("FirstName", "LastName", "Description")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(f"[reliability] {time.strftime('%H:%M:%S')} {msg}", flush=True)


def wait_drained(e2e, name: str, topic: str, timeout: float, extra=None) -> dict:
    """Until the sink's consumer group has committed the end offset of every partition."""
    kafka = e2e.kafka
    seen = {}

    def check():
        end = kafka.end_offsets(topic)
        try:
            committed = kafka.committed(f"connect-{name}", topic)
        except Exception as exc:  # broker restarting
            seen["err"] = str(exc)
            return None
        seen.update(end=end, committed=committed)
        if extra:
            extra()
        return end and all(committed.get(p, -1) >= off for p, off in end.items())

    return wait_until(check, timeout, 2.0, lambda: (
        f"connector {name} to commit every offset of {topic}: {seen}\n{e2e.describe(name)}"),
        ignore=(Exception,))


def live_state(records: list) -> tuple[dict, int]:
    """{external id (lower case): {field: value}} and the number of duplicate live records."""
    out, dups = {}, 0
    for r in records:
        k = str(r.get(EXT)).lower()
        if k in out:
            dups += 1
            continue
        out[k] = {f: r.get(f) for f in FIELDS}
    return out, dups


def written_by_state(keys: list, model: dict, actual: dict) -> int:
    """Records (by key, one entry per record) whose key ended where the one-by-one model says:
    present with the model's fields, or gone. Read from the emulator's final state, so a record
    counts as written only if Salesforce shows its effect (RELIABILITY.md's "written" column)."""
    def ok(k: str) -> bool:
        if k in model:
            return actual.get(k) == {f: model[k].get(f) for f in FIELDS}
        return k not in actual
    settled = {k for k in set(keys) if ok(k)}
    return sum(1 for k in keys if k in settled)


def compare(model: dict, actual: dict) -> tuple[int, list]:
    """(lost, examples): keys whose final effect is missing or wrong, plus keys that should be gone."""
    bad = []
    for k, fields in model.items():
        got = actual.get(k)
        if got != {f: fields.get(f) for f in FIELDS}:
            bad.append((k, fields, got))
    for k in actual.keys() - model.keys():
        bad.append((k, None, actual[k]))
    return len(bad), bad[:10]


class Revoker(threading.Thread):
    """Revokes every access token every ``period`` seconds until stopped."""

    def __init__(self, emu, period: float):
        super().__init__(daemon=True)
        self.emu, self.period, self.count = emu, period, 0
        self._stop_evt = threading.Event()

    def run(self):
        while not self._stop_evt.wait(self.period):
            try:
                self.emu.revoke_tokens()
                self.count += 1
            except Exception:
                pass

    def stop(self):
        self._stop_evt.set()
        self.join(5)


# ---------------------------------------------------------------------------------------------
# 1. fault suite
# ---------------------------------------------------------------------------------------------
def fault_stream(n: int, keys: int, seed: int = 5):
    """``n`` records over ``keys`` external IDs with header operations, every one valid at its
    position (UPDATE/DELETE only of existing records), and the one-by-one model's final state."""
    rng = random.Random(seed)
    state: dict = {}
    records = []
    ops = Counter()
    for i in range(n):
        key = f"ext-{rng.randrange(keys):06d}"
        k = key.lower()
        exists = k in state
        r = rng.random()
        if exists:
            op = "UPSERT" if r < 0.35 else "INSERT" if r < 0.5 else "UPDATE" if r < 0.85 else "DELETE"
        else:
            op = "UPSERT" if r < 0.7 else "INSERT"
        header = op if rng.random() < 0.8 else op.lower()
        if op == "UPSERT" and rng.random() < 0.3:
            header = None  # no header: the configured operation (UPSERT)
        if op == "DELETE":
            value = None
            if rng.random() < 0.5:
                header = None  # tombstone without header: salesforce.tombstone.delete=true
            del state[k]
        elif op == "UPDATE":
            value = {"FirstName": f"F{i}", "Description": f"updated at {i}"}
            state[k].update(value)
        else:
            value = {"FirstName": f"F{i}", "LastName": f"L{i}", "Description": f"written at {i}"}
            state.setdefault(k, {}).update(value)
        ops[op] += 1
        hdrs = [("operation", header.encode())] if header else None
        records.append((key, None if value is None else json.dumps(value).encode(), hdrs))
    return records, state, ops


# Each probabilistic rule below fires on about 2 % or more of some 600 data requests, so each kind
# is expected about a dozen times: the chance that one never fires (the last assertion of
# test_fault_stream_matches_model) is below 1e-4. At 1 % it was about 1 %, and it happened.
FAULT_RULES = [
    # a burst of concurrency-limit refusals, 10 requests in a row after 150 data requests
    {"kind": "status", "path_contains": "/services/data", "status": 403, "error_code": "REQUEST_LIMIT_EXCEEDED",
     "message": "ConcurrentPerOrgLongTxn Limit exceeded", "skip": 150, "count": 10},
    {"kind": "status", "path_contains": "/services/data", "status": 503, "error_code": "SERVER_UNAVAILABLE",
     "probability": 0.05},
    {"kind": "status", "path_contains": "/services/data", "status": 500, "error_code": "UNKNOWN_EXCEPTION",
     "message": "An unexpected error occurred", "probability": 0.02},
    {"kind": "reset", "path_contains": "/services/data", "probability": 0.02},
    # answered after the write happened, slower than salesforce.request.timeout.ms
    {"kind": "slow", "path_contains": "/services/data", "delay_ms": 3000, "probability": 0.02},
    # written, then the connection drops: the client never learns it succeeded
    {"kind": "commit_then_reset", "path_contains": "/services/data", "probability": 0.02},
    # a random wait before the write: concurrent requests commit in either order
    {"kind": "delay", "path_contains": "/services/data", "delay_ms": 200, "probability": 0.05},
    # the write lands after the client's timeout; DELETEs only, since a late UPSERT could
    # overwrite a newer write of its key, which no client can prevent
    {"kind": "commit_late", "method": "DELETE", "path_contains": "/composite/sobjects", "delay_ms": 3000,
     "skip": 5, "count": 2},
    {"kind": "record_error", "path_contains": "/composite/sobjects", "status": 400,
     "error_code": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access to this record",
     "probability": 0.01},
]


@pytest.mark.timeout(900)
def test_fault_stream_matches_model(e2e):
    n = int(os.environ.get("RELIABILITY_RECORDS", "100000"))
    t0 = time.monotonic()
    records, model, ops = fault_stream(n, keys=max(100, n // 5))
    e2e.kafka.create_topic(e2e.topic, partitions=2)
    dlq = e2e.new_topic("dlq")
    e2e.emu.add_fault({"seed": 5, "rules": FAULT_RULES})

    cfg = e2e.sink_config({
        "tasks.max": "2",
        "salesforce.operation": "UPSERT",
        "salesforce.external.id.field": EXT,
        "salesforce.operation.header.enabled": "true",
        "salesforce.tombstone.delete": "true",
        "salesforce.request.timeout.ms": "2000",
        "salesforce.retry.max.attempts": "5",
        "salesforce.retry.initial.backoff.ms": "50",
        "salesforce.retry.max.backoff.ms": "500",
        "consumer.override.max.poll.records": "1000",
        **e2e.dlq_config(dlq),
    })
    name = e2e.create_connector(cfg, tasks=2, timeout=120)
    # Both tasks' consumers in the group before the stream starts: this suite is about faults.
    # A rebalance in the middle of a mixed-operation stream replays records from the last commit,
    # and a replayed UPDATE whose key a later, already applied DELETE removed goes to the DLQ
    # (at-least-once; README "Delivery guarantees"). The crash suite covers rebalances.
    time.sleep(10)  # the second task's consumer joins the group (session timeout 6 s)
    revoker = Revoker(e2e.emu, 3.0)
    revoker.start()
    try:
        e2e.produce(records, timeout=120)
        _log(f"produced {n} records ({dict(ops)}) in {time.monotonic() - t0:.0f}s")
        wait_drained(e2e, name, e2e.topic, timeout=480)
    finally:
        revoker.stop()
    rules = e2e.emu.faults()
    e2e.emu.clear_faults()
    fired = {f"{r['kind']} {r.get('error_code') or r.get('delay_ms') or ''}".strip(): r.get("fired", 0) for r in rules}
    fired["token revocations"] = revoker.count

    actual, dups = live_state(e2e.emu.records("Contact"))
    lost, examples = compare(model, actual)
    dlq_msgs = e2e.consume_all(dlq, timeout=20)
    status = e2e.status(name)
    seconds = time.monotonic() - t0
    written = written_by_state([key.lower() for key, _, _ in records], model, actual) - len(dlq_msgs)
    reliability_report.record("fault stream (UPSERT, External ID, header ops)", {
        "sent": n, "written": written, "dlq": len(dlq_msgs), "duplicates": dups, "lost": lost,
        "faults_injected": sum(fired.values()), "restarts": 0, "seconds": round(seconds),
        "details": {"operations": dict(ops), "faults fired": fired, "final records": len(actual),
                    "emulator stats": {k: v for k, v in e2e.emu.stats().items() if k != "by_kind"}},
    })
    _log(f"fault stream done in {seconds:.0f}s: faults {fired}, lost {lost}, dlq {len(dlq_msgs)}, dups {dups}")
    assert all(t["state"] == "RUNNING" for t in status["tasks"]), e2e.describe(name)
    assert not dlq_msgs, "records in the DLQ: " + "; ".join(
        f"{m.key}: {m.headers_dict().get('__connect.errors.exception.message')}" for m in dlq_msgs[:5])
    assert dups == 0
    assert lost == 0, f"{lost} keys differ from the model, e.g. (key, model, emulator): {examples}"
    assert all(v > 0 for v in fired.values()), f"every kind of fault should have fired: {fired}"


# ---------------------------------------------------------------------------------------------
# 2. crash suite
# ---------------------------------------------------------------------------------------------
# Signs in a worker log that a kill cut into a sink task's work: its partitions moved (consumer
# group rebalance) or a batch came again (redelivery after a retriable failure).
KILL_EVIDENCE = ("Adding newly assigned partitions", "Revoke previously assigned partitions",
                 "Lost previously assigned partitions", "Redelivered batch")


class Kill:
    """One kill -9 and where every worker log ended at that moment, so the lines it caused can be
    told from those of the kills before and after it."""

    def __init__(self, what: str, workers: list):
        self.what = what
        self.at_ms = int(time.time() * 1000)
        self.marks = {w.log_file: (w.log_file.stat().st_size if w.log_file.exists() else 0) for w in workers}


def kill_evidence(kills: list, requests: list, connectors: tuple) -> list:
    """Per kill: the writes of ``connectors``' tasks the emulator received in the second before it,
    and the rebalance/redelivery lines of those connectors logged between it and the next kill."""
    out = []
    for i, kill in enumerate(kills):
        following = kills[i + 1].marks if i + 1 < len(kills) else {}
        lines = []
        for path, start in kill.marks.items():
            with open(path, "rb") as f:
                f.seek(start)
                chunk = f.read((following[path] - start) if path in following else -1)
            lines += [ln for ln in chunk.decode("utf-8", "replace").splitlines()
                      if any(c in ln for c in connectors) and any(e in ln for e in KILL_EVIDENCE)]
        writes = sum(1 for r in requests if str(r.get("kind", "")).startswith("collections")
                     and kill.at_ms - 1000 <= r.get("ts_ms", 0) <= kill.at_ms)
        out.append({"kill": kill.what, "writes in the second before": writes,
                    "rebalance/redelivery lines": len(lines), "example": lines[0][:300] if lines else None})
    return out

class PacedProducer(threading.Thread):
    """Produces ``records`` at an even pace over ``seconds`` with one idempotent producer, so the
    stream keeps flowing through worker kills and the broker restart (librdkafka retries)."""

    def __init__(self, kafka, topic, records, seconds):
        super().__init__(daemon=True)
        self.kafka, self.topic, self.records, self.seconds = kafka, topic, records, seconds
        self.sent, self.errors, self.error = 0, [], None

    def run(self):
        try:
            p = self.kafka.producer(**{"message.timeout.ms": 300000, "linger.ms": 20, "log_level": 0})
            t0 = time.monotonic()
            for i, (key, value) in enumerate(self.records):
                due = t0 + self.seconds * i / len(self.records)
                while time.monotonic() < due:
                    p.poll(0.01)
                while True:
                    try:
                        p.produce(self.topic, key=key.encode(), value=value,
                                  on_delivery=lambda err, _m: self.errors.append(err) if err else None)
                        break
                    except BufferError:
                        p.poll(0.1)
                self.sent += 1
            left = p.flush(300)
            if left or self.errors:
                self.error = f"{left} undelivered, errors {self.errors[:3]}"
        except Exception as exc:  # reported by the test
            self.error = exc


@pytest.mark.timeout(900)
def test_crash_two_workers_and_broker(e2e, stack):
    t0 = time.monotonic()
    n_upsert = int(os.environ.get("RELIABILITY_CRASH_RECORDS", "30000"))
    n_insert = n_upsert // 3
    rng = random.Random(9)
    keys = max(50, n_upsert // 6)
    model: dict = {}
    upserts = []
    for i in range(n_upsert):
        key = f"crash-{rng.randrange(keys):05d}"
        value = {"FirstName": f"F{i}", "LastName": f"L{i}", "Description": f"v{i}"}
        model[key.lower()] = value
        upserts.append((key, json.dumps(value).encode()))
    inserts = [(f"n{i}", json.dumps({"Name": f"native-{i:06d}"}).encode()) for i in range(n_insert)]

    w2 = stack.add_worker()
    up_topic, ins_topic = e2e.topic, e2e.new_topic("native")
    for t in (up_topic, ins_topic):
        e2e.kafka.create_topic(t, partitions=2)
    up_dlq, ins_dlq, idem_dlq = e2e.new_topic("dlq"), e2e.new_topic("dlqn"), e2e.new_topic("dlqi")
    retry = {"salesforce.retry.max.attempts": "5", "salesforce.retry.initial.backoff.ms": "100",
             "salesforce.retry.max.backoff.ms": "1000", "salesforce.request.timeout.ms": "5000"}
    up = e2e.create_connector(e2e.sink_config({
        "tasks.max": "2", "topics": up_topic, "salesforce.operation": "UPSERT",
        "salesforce.external.id.field": EXT, **retry, **e2e.dlq_config(up_dlq)}), name=e2e.name("upsert"), tasks=2)
    ins = e2e.create_connector(e2e.sink_config({
        "tasks.max": "2", "topics": ins_topic, "salesforce.operation": "INSERT",
        "salesforce.sobject.type": "MyObject__c", **retry, **e2e.dlq_config(ins_dlq)}), name=e2e.name("native"), tasks=2)
    # The same INSERTs (same topic, own consumer group) with salesforce.idempotency.field (SPEC §12).
    define_kafka_insert(e2e.emu)
    idem = e2e.create_connector(e2e.sink_config({
        "tasks.max": "2", "topics": ins_topic, "salesforce.operation": "INSERT", "salesforce.sobject.type": IDEM_SOBJECT,
        "salesforce.idempotency.field": IDEM, **retry, **e2e.dlq_config(idem_dlq)}), name=e2e.name("idem"), tasks=2)
    # a little latency so that a kill lands while requests are in flight
    e2e.emu.set_latency(20)

    pace = float(os.environ.get("RELIABILITY_CRASH_SECONDS", "90"))
    pu = PacedProducer(e2e.kafka, up_topic, upserts, pace)
    pi = PacedProducer(e2e.kafka, ins_topic, inserts, pace)
    pu.start(), pi.start()
    w1 = stack.workers[0]
    kills = []

    def at_progress(share: float) -> None:
        """Waits until the producers are ``share`` of the way through: kills are placed in the stream
        by progress, not by the clock, however long the restarts before them took."""
        wait_until(lambda: pu.sent >= share * n_upsert or not pu.is_alive(), pace * 2, 0.2,
                   f"the producer to pass {share:.0%}")

    try:
        for victim, share in ((w2, 0.15), (w1, 0.4)):
            at_progress(share)
            _log(f"kill -9 {victim.name} (sent so far {pu.sent}+{pi.sent})")
            kills.append(Kill(f"kill -9 {victim.name}", [w1, w2]))
            victim.kill()
            time.sleep(8)
            victim.start(timeout=300)  # a loaded machine may take longer than 90 s to scan plugins
            _log(f"{victim.name} back")
        at_progress(0.75)
        _log(f"kill -9 of the broker (sent so far {pu.sent}+{pi.sent})")
        kills.append(Kill("kill -9 broker", [w1, w2]))
        stack.broker.restart(hard=True)
        _log("broker back")
        pu.join(400), pi.join(400)
        assert pu.error is None and pi.error is None, (pu.error, pi.error)
        _log("all records produced")
        assert pu.sent == n_upsert and pi.sent == n_insert
        wait_drained(e2e, up, up_topic, timeout=300)
        wait_drained(e2e, ins, ins_topic, timeout=300)
        wait_drained(e2e, idem, ins_topic, timeout=300)
    finally:
        e2e.emu.set_latency(0)
    # before the connectors are deleted: their deletion moves partitions too
    restarts = [k.what for k in kills]
    evidence = kill_evidence(kills, e2e.emu.requests(), (up, ins, idem))
    time.sleep(2)
    # delete the connectors while both workers are up (teardown stops the added worker first, and
    # it may be the group leader that deletes have to be forwarded to)
    for name in (up, ins, idem):
        e2e.connect.delete_and_wait(name, timeout=60)
        e2e.connectors.remove(name)
    # back to one worker, and wait until it leads the group again (writes are forwarded to the
    # leader: the next tests would fail while the removed worker is still known as leader)
    stack.remove_worker(w2)
    probe = e2e.name("probe")

    def leader_ok():
        e2e.connect.create(probe, e2e.sink_config({"topics": e2e.new_topic("probe")}))
        e2e.connect.delete_and_wait(probe, timeout=30)
        return True

    wait_until(leader_ok, 90, 2.0, "the remaining worker to accept connector writes", ignore=(Exception,))

    actual, dups = live_state(e2e.emu.records("Contact"))
    lost, examples = compare(model, actual)
    up_dlq_msgs = e2e.consume_all(up_dlq, timeout=20)
    native = e2e.emu.records("MyObject__c")
    names = Counter(r.get("Name") for r in native)
    native_dups = sum(c - 1 for c in names.values())
    native_lost = sum(1 for i in range(n_insert) if f"native-{i:06d}" not in names)
    ins_dlq_msgs = e2e.consume_all(ins_dlq, timeout=20)
    idem_records = e2e.emu.records(IDEM_SOBJECT)
    idem_names = Counter(r.get("Name") for r in idem_records)
    idem_dups = sum(c - 1 for c in idem_names.values())
    idem_lost = sum(1 for i in range(n_insert) if f"native-{i:06d}" not in idem_names)
    idem_dlq_msgs = e2e.consume_all(idem_dlq, timeout=20)
    seconds = time.monotonic() - t0
    written = written_by_state([key.lower() for key, _ in upserts], model, actual) - len(up_dlq_msgs)
    reliability_report.record("crash: UPSERT External ID, 2 workers, tasks.max=2", {
        "sent": n_upsert, "written": written, "dlq": len(up_dlq_msgs), "duplicates": dups,
        "lost": lost, "faults_injected": 0, "restarts": len(restarts), "seconds": round(seconds),
        "details": {"restarts": ", ".join(restarts), "keys": len(model), "kills": evidence},
    })
    reliability_report.record("crash: INSERT Native ID, 2 workers, tasks.max=2", {
        "sent": n_insert, "written": len(names), "dlq": len(ins_dlq_msgs), "duplicates": native_dups,
        "lost": native_lost, "faults_injected": 0, "restarts": len(restarts), "seconds": round(seconds),
        "notes": "INSERT in Native ID mode has no idempotency key: records replayed after a kill -9 "
                 "(written, offset not yet committed) are created again. The duplicate count is a "
                 "measurement, not an assertion.",
        "details": {"restarts": ", ".join(restarts), "Salesforce records": len(native)},
    })
    reliability_report.record("crash: INSERT Native ID with salesforce.idempotency.field, 2 workers, tasks.max=2", {
        "sent": n_insert, "written": len(idem_names), "dlq": len(idem_dlq_msgs), "duplicates": idem_dups,
        "lost": idem_lost, "faults_injected": 0, "restarts": len(restarts), "seconds": round(seconds),
        "notes": "The same INSERTs as the Native ID row above (same topic, own consumer group), each sent as an "
                 f"UPSERT on {IDEM} = topic:partition:offset: a replayed record updates the record it created.",
        "details": {"restarts": ", ".join(restarts), "Salesforce records": len(idem_records)},
    })
    _log(f"crash suite done in {seconds:.0f}s: upsert lost {lost} dups {dups} dlq {len(up_dlq_msgs)}; "
         f"native duplicates {native_dups} lost {native_lost}; with idempotency field duplicates {idem_dups} "
         f"lost {idem_lost}; kills {evidence}")
    # A kill that hit idle tasks proves nothing: each must have cut into writes (the emulator was
    # receiving them) and moved or replayed work (a rebalance or a redelivery in the logs).
    idle = [k for k in evidence if not (k["writes in the second before"] and k["rebalance/redelivery lines"])]
    assert not idle, f"these kills did not land while writes were in flight, so the run does not count: {idle}"
    assert not up_dlq_msgs and not ins_dlq_msgs and not idem_dlq_msgs, [
        m.headers_dict() for m in (up_dlq_msgs + ins_dlq_msgs + idem_dlq_msgs)[:3]]
    assert dups == 0
    assert lost == 0, f"{lost} keys differ from the model, e.g. {examples}"
    assert native_lost == 0, f"{native_lost} native INSERTs never landed"
    assert idem_lost == 0, f"{idem_lost} INSERTs with {IDEM} never landed"
    assert idem_dups == 0, f"{idem_dups} duplicates although every INSERT carried {IDEM}"
