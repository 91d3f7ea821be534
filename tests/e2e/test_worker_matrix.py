"""Worker-version matrix (issue 10): the plugin on Kafka Connect workers of other versions and JDKs.

Each case starts one more worker of Kafka ``version`` on ``JDK`` (its jars fetched from Maven Central
once, into ``tests/.kafka/worker-<version>/``), in a Connect cluster of its own against the pinned
4.1.1 broker, and runs five connectors on it at once:

* insert     INSERT into Contact: exactly the produced records arrive;
* upsert+dlq UPSERT by external ID; a record with a field the SObject lacks goes to the DLQ
             (ErrantRecordReporter) with Salesforce's cause, the others are written (before 2.6:
             no reporter, so the DLQ stays empty and the record is logged at WARN with its cause);
* header     ``salesforce.operation.header.enabled``: UPDATE / DELETE routed by the record header;
* tombstone  ``salesforce.tombstone.delete=true``: a null value deletes the record of its key;
* fail       ``errors.tolerance=none``: the bad record fails the task, its cause in the status trace.

It also checks what degrades by version (before 3.6 preCommit is synchronous: no
``SinkRecord.originalTopic()``), and on JDK 24+ whether the JVM warns about ``System.load``.

Which cases run (``WORKER_MATRIX``):

* unset, with ``RELIABILITY=1`` (CI), or ``ci``: the oldest version (2.5, no DLQ reporter), the
  oldest with every feature (2.6) and the newest on JDK 17, and the newest on JDK 25 (``CI_JDKS``;
  .ci/run installs what Debian has; a JDK the selection names and the machine lacks FAILS its case);
* ``full``: every version of ``VERSIONS`` on every JDK found (``JAVA_HOME`` or ``java`` on the
  PATH, and each JDK under /usr/lib/jvm); writes ``tests/WORKER_MATRIX.md`` (the table the README
  quotes);
* ``off`` (or unset without ``RELIABILITY=1``): skipped.

``WORKER_MATRIX_VERSIONS=3.6.2,4.4.0`` / ``WORKER_MATRIX_JDKS=17,25`` narrow any selection.

    SKIP_BUILD=1 WORKER_MATRIX=full bin/test tests/e2e/test_worker_matrix.py
"""
from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from tests.stack import kafka_libs
from tests.stack.util import TESTS_DIR, java_bin, wait_until

from .test_operations import dlq_by_offset, records_exact

# Oldest first. 2.5 has no ErrantRecordReporter (the documented fallback: failed records are
# logged under errors.tolerance=all); 2.6 is the oldest with every feature. A Kafka 4.x broker
# serves clients from 2.1 on (KIP-896), so all of these talk to the pinned broker.
VERSIONS = ("2.5.1", "2.6.3", "2.8.2", "3.0.2", "3.6.2", "3.9.2", kafka_libs.KAFKA_VERSION, "4.4.0")
OLDEST, NEWEST = VERSIONS[0], VERSIONS[-1]
OLDEST_FULL = "2.6.3"  # the oldest with ErrantRecordReporter (KIP-610)
BASE_JDK = 17
# The JDKs the CI selection always runs: the base, and the newest the README claims (it warns about
# System.load). Missing ones fail, so a CI machine without them cannot pass by skipping.
CI_JDKS = tuple(int(j) for j in os.environ.get("WORKER_MATRIX_CI_JDKS", "17,25").split(","))
RESULTS_MD = TESTS_DIR / "WORKER_MATRIX.md"
NATIVE_ACCESS_WARNING = "WARNING: java.lang.System::load has been called by"
EXT = "ExternalId__c"
OBJ = "MyObject__c"


# ---------------------------------------------------------------------------------------------
# JDKs and the selection
# ---------------------------------------------------------------------------------------------
def _java_major(home: Path) -> Optional[int]:
    release = home / "release"
    if not release.is_file():
        return None
    m = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(errors="replace"), re.M)
    return int(m.group(1)) if m else None


def find_jdks() -> dict:
    """{major: JAVA_HOME}: the JDK the other tests use (JAVA_HOME or ``java`` on the PATH) and every
    JDK under /usr/lib/jvm (one per major version)."""
    found = {}
    java = java_bin() if os.path.isabs(java_bin()) else (shutil.which("java") or "/nonexistent/bin/java")
    default = Path(os.path.realpath(java)).parent.parent
    for home in [default] + sorted(Path("/usr/lib/jvm").glob("*")):
        if (home / "bin" / "java").exists() and not home.is_symlink():
            major = _java_major(home)
            if major and major not in found:
                found[major] = str(home)
    return found


JDKS = find_jdks()
NEWEST_JDK = max(JDKS) if JDKS else BASE_JDK


def _selection() -> list:
    mode = os.environ.get("WORKER_MATRIX") or ("ci" if os.environ.get("RELIABILITY") == "1" else "off")
    if mode == "full":
        cases = [(v, j) for j in sorted(JDKS) for v in VERSIONS]
    elif mode == "ci":
        cases = [(OLDEST, BASE_JDK), (OLDEST_FULL, BASE_JDK), (NEWEST, BASE_JDK)]
        cases += [(NEWEST, j) for j in CI_JDKS if j != BASE_JDK]
    else:
        return []
    only_v = os.environ.get("WORKER_MATRIX_VERSIONS")
    only_j = os.environ.get("WORKER_MATRIX_JDKS")
    if only_v:
        cases = [c for c in cases if c[0] in only_v.split(",")]
    if only_j:
        cases = [c for c in cases if str(c[1]) in only_j.split(",")]
    return cases


MODE = os.environ.get("WORKER_MATRIX") or ("ci" if os.environ.get("RELIABILITY") == "1" else "off")
CASES = _selection()

pytestmark = pytest.mark.skipif(
    not CASES, reason="worker-version matrix: set WORKER_MATRIX=ci|full (CI runs it with RELIABILITY=1)")


def _commit() -> str:
    """The commit the plugin under test was built from (``-dirty``: with uncommitted changes)."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=TESTS_DIR,
                             capture_output=True, text=True, timeout=10)
        return f"`{out.stdout.strip()}`" if out.returncode == 0 else "(unknown)"
    except OSError:
        return "(unknown)"


# ---------------------------------------------------------------------------------------------
# results table
# ---------------------------------------------------------------------------------------------
@dataclass
class Result:
    version: str
    jdk: int
    jdk_version: str = ""
    checks: dict = field(default_factory=dict)   # name -> "pass" | failure text
    precommit: str = ""
    dlq_reporter: str = ""
    native_access_warning: Optional[bool] = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(v == "pass" for v in self.checks.values())


RESULTS: list = []
CHECKS = ("insert", "upsert+dlq", "header", "tombstone", "fail")


def render_table(results: list) -> str:
    lines = ["| Connect worker | JDK | " + " | ".join(CHECKS) + " | DLQ reporter | preCommit | JDK native-access warning | s |",
             "|---|---|" + "---|" * len(CHECKS) + "---|---|---|---|"]
    for r in sorted(results, key=lambda r: (kafka_libs.version_tuple(r.version), r.jdk)):
        cells = ["pass" if r.checks.get(c) == "pass" else ("FAIL" if c in r.checks else "-") for c in CHECKS]
        warn = "-" if r.native_access_warning is None else ("yes" if r.native_access_warning else "no")
        lines.append(f"| {r.version} | {r.jdk_version or r.jdk} | " + " | ".join(cells)
                     + f" | {r.dlq_reporter or '-'} | {r.precommit or '-'} | {warn} | {r.seconds:.0f} |")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module", autouse=True)
def _write_table():
    yield
    if not RESULTS:
        return
    table = render_table(RESULTS)
    failures = "".join(f"\n* {r.version} on JDK {r.jdk}: {name}: {text[:400]}"
                       for r in RESULTS for name, text in r.checks.items() if text != "pass")
    out = TESTS_DIR / ".work" / "worker-matrix.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + failures + "\n")
    print(f"\n[worker-matrix] {out}\n{table}{failures}", flush=True)
    if MODE == "full" and not os.environ.get("WORKER_MATRIX_VERSIONS") and not os.environ.get("WORKER_MATRIX_JDKS"):
        RESULTS_MD.write_text(
            "# Kafka Connect worker-version matrix\n\n"
            f"Generated by `WORKER_MATRIX=full bin/test tests/e2e/test_worker_matrix.py` on "
            f"{datetime.date.today().isoformat()} from commit {_commit()} (broker: Apache Kafka "
            f"{kafka_libs.KAFKA_VERSION}, KRaft).\n"
            "Each row is one worker of that version on that JDK running five connectors at once "
            "(see the module docstring); `pass` = the emulator and the DLQ hold exactly what was expected.\n\n"
            + table + (("\nFailures:\n" + failures + "\n") if failures else ""))


# ---------------------------------------------------------------------------------------------
# the smoke
# ---------------------------------------------------------------------------------------------
def _wait_consumed(connect, kafka, name: str, topic: str, timeout: float = 90) -> None:
    group = f"connect-{name}"
    seen = {}

    def done():
        end = kafka.end_offsets(topic)
        committed = kafka.committed(group, topic)
        seen.update(end=end, committed=committed)
        return bool(end) and all(committed.get(p, -1) >= hi for p, hi in end.items())

    wait_until(done, timeout, 0.3, lambda: f"{name} to commit the end of {topic}: {seen}\n{connect.describe(name)}")


def _live(e2e, prefix: str) -> dict:
    return {r[EXT]: r for r in records_exact(e2e, OBJ) if str(r.get(EXT, "")).startswith(prefix)}


def _deleted(e2e, prefix: str) -> set:
    return {r[EXT] for r in records_exact(e2e, OBJ, include_deleted=True)
            if r.get("IsDeleted") and str(r.get(EXT, "")).startswith(prefix)}


@pytest.mark.parametrize("version,jdk", CASES, ids=[f"kafka-{v}-jdk{j}" for v, j in CASES])
def test_worker_version_smoke(stack, e2e, version, jdk):
    if jdk not in JDKS:
        pytest.fail(f"the {MODE} selection runs Kafka {version} on JDK {jdk}, and this machine has none "
                    f"(found {sorted(JDKS)} under JAVA_HOME, the PATH and /usr/lib/jvm): install it, or "
                    f"narrow the selection with WORKER_MATRIX_JDKS / WORKER_MATRIX_CI_JDKS")
    result = Result(version, jdk, jdk_version=_jdk_version(JDKS[jdk]))
    RESULTS.append(result)
    t0 = time.monotonic()
    tag = f"m{uuid.uuid4().hex[:6]}"
    w = stack.add_worker(kafka_version=version, java_home=JDKS[jdk], group_id=f"connect-{tag}")
    try:
        info = w.connect.info()
        assert info.get("version") == version, f"the worker reports {info}, expected Kafka {version}"
        _run_checks(e2e, w, tag, result)
        if jdk >= 24:  # JEP 472: the JVM warns on stderr, the connector in the worker log
            result.native_access_warning = NATIVE_ACCESS_WARNING in w.out_file.read_text(errors="replace")
            assert _grep(w.log_file, NATIVE_ACCESS_LOG), f"no '{NATIVE_ACCESS_LOG}' WARN in {w.log_file}"
    finally:
        result.seconds = time.monotonic() - t0
        stack.remove_worker(w)
    failed = {k: v for k, v in result.checks.items() if v != "pass"}
    assert not failed, f"Kafka {version} on JDK {jdk}: " + "\n\n".join(f"{k}: {v}" for k, v in failed.items())


def _jdk_version(home: str) -> str:
    m = re.search(r'^JAVA_VERSION="([^"]+)"', (Path(home) / "release").read_text(errors="replace"), re.M)
    return m.group(1) if m else "?"


def _run_checks(e2e, w, tag: str, result: Result) -> None:
    connect, kafka = w.connect, e2e.kafka
    topics = {c: f"{tag}-{c.replace('+', '-')}" for c in CHECKS}
    dlq = f"{tag}-dlq"
    for t in topics.values():
        kafka.create_topic(t, 1)
    ext = {"salesforce.sobject.type": OBJ, "salesforce.external.id.field": EXT, "salesforce.operation": "UPSERT"}
    configs = {
        "insert": {},
        "upsert+dlq": {**ext, **e2e.dlq_config(dlq)},
        "header": {**ext, "salesforce.operation.header.enabled": "true"},
        "tombstone": {**ext, "salesforce.tombstone.delete": "true"},
        "fail": {"errors.tolerance": "none"},
    }
    names = {c: f"{tag}-{c.replace('+', '-')}" for c in CHECKS}
    for c in CHECKS:
        connect.create(names[c], e2e.stack.sink_config(topics[c], configs[c]))
    for c in CHECKS:
        connect.wait_running(names[c], tasks=1, timeout=90)

    k = lambda s: f"{tag}-{s}"  # noqa: E731 - external IDs of this case
    has_reporter = kafka_libs.version_tuple(result.version) >= (2, 6)  # KIP-610
    e2e.produce([(f"i{i}", {"FirstName": tag, "LastName": f"{tag}-ins-{i}"}) for i in range(4)],
                topic=topics["insert"])
    e2e.produce([
        (k("u1"), {"Name": "one"}),
        (k("u2"), {"Name": "two"}),
        (k("u1"), {"Name": "one-b"}),
        (k("u3"), {"Name": "bad", "NoSuchField__c": "x"}),   # 3: DLQ, INVALID_FIELD
    ], topic=topics["upsert+dlq"])
    e2e.produce([
        (k("h1"), {"Name": "h1"}),
        (k("h2"), {"Name": "h2"}),
        (k("h1"), {"Notes__c": "routed"}, {"operation": "UPDATE"}),
        (k("h2"), {"Name": "ignored"}, {"operation": "DELETE"}),
    ], topic=topics["header"])
    e2e.produce([
        (k("t1"), {"Name": "t1"}),
        (k("t2"), {"Name": "t2"}),
        (k("t1"), None),                                    # tombstone: DELETE
    ], topic=topics["tombstone"])
    e2e.produce([
        ("f1", {"FirstName": tag, "LastName": f"{tag}-fail-ok"}),
        ("f2", {"FirstName": tag, "LastName": f"{tag}-fail-bad", "NoSuchField__c": "x"}),
    ], topic=topics["fail"])

    def check(name, fn):
        try:
            fn()
            result.checks[name] = "pass"
        except Exception as exc:  # every check runs; the test fails at the end with all of them
            result.checks[name] = f"{type(exc).__name__}: {exc}"

    def insert():
        _wait_consumed(connect, kafka, names["insert"], topics["insert"])
        got = sorted(r["LastName"] for r in e2e.emu.records("Contact")
                     if str(r.get("LastName", "")).startswith(f"{tag}-ins-"))
        assert got == [f"{tag}-ins-{i}" for i in range(4)], got

    def upsert_dlq():
        _wait_consumed(connect, kafka, names["upsert+dlq"], topics["upsert+dlq"])
        live = {x: r.get("Name") for x, r in _live(e2e, k("u")).items()}
        assert live == {k("u1"): "one-b", k("u2"): "two"}, live
        if has_reporter:
            dead = dlq_by_offset(e2e, dlq)
            assert sorted(dead) == [3], dead
            assert "INVALID_FIELD" in dead[3] and "NoSuchField__c" in dead[3], dead[3]
        else:  # the connector's own errors.tolerance=all: logged with its cause, nothing in the DLQ
            assert dlq not in kafka.topics() or dlq_by_offset(e2e, dlq) == {}
            skipped = [ln for ln in _grep(w.log_file, f"Skipping the record at topic {topics['upsert+dlq']}, "
                                          "partition 0, offset 3") if "INVALID_FIELD" in ln]
            assert skipped, f"no WARN line for offset 3 with its cause in {w.log_file}"

    def header():
        _wait_consumed(connect, kafka, names["header"], topics["header"])
        live = {x: (r.get("Name"), r.get("Notes__c")) for x, r in _live(e2e, k("h")).items()}
        assert live == {k("h1"): ("h1", "routed")}, live
        assert _deleted(e2e, k("h")) == {k("h2")}

    def tombstone():
        _wait_consumed(connect, kafka, names["tombstone"], topics["tombstone"])
        assert set(_live(e2e, k("t"))) == {k("t2")}, _live(e2e, k("t"))
        assert _deleted(e2e, k("t")) == {k("t1")}

    def fail():
        failed = connect.wait_failed(names["fail"], task=0, timeout=90)
        trace = failed.get("trace") or ""
        assert "INVALID_FIELD" in trace and "NoSuchField__c" in trace, (
            f"the task trace should carry Salesforce's cause:\n{trace[:3000]}")
        bad = [r for r in e2e.emu.records("Contact") if r.get("LastName") == f"{tag}-fail-bad"]
        assert not bad, bad

    check("insert", insert)
    check("upsert+dlq", upsert_dlq)
    check("header", header)
    check("tombstone", tombstone)
    check("fail", fail)

    # What degrades on this worker: the task says whether it has a DLQ reporter (from 2.6 on) and
    # how it commits offsets (asynchronously from 3.6 on).
    def started(name: str) -> str:
        lines = [ln for ln in _grep(w.log_file, "Salesforce sink task started") if f"[{name}|task-0]" in ln]
        assert lines, f"no 'Salesforce sink task started' line for {name} in {w.log_file}"
        return lines[-1]

    reporter_line = started(names["upsert+dlq"])
    result.dlq_reporter = "present" if "DLQ reporter present" in reporter_line else "absent"
    assert result.dlq_reporter == ("present" if has_reporter else "absent"), reporter_line
    line = started(names["insert"])
    synchronous = kafka_libs.version_tuple(result.version) < (3, 6)
    result.precommit = "synchronous" if "preCommit synchronous" in line else "asynchronous"
    assert result.precommit == ("synchronous" if synchronous else "asynchronous"), line

    for c in CHECKS:
        try:
            connect.delete(names[c])
        except Exception:
            pass


def _grep(path: Path, needle: str) -> list:
    if not path.is_file():
        return []
    return [ln for ln in path.read_text(errors="replace").splitlines() if needle in ln]


# ---------------------------------------------------------------------------------------------
# Java 24+ native access (JEP 472)
# ---------------------------------------------------------------------------------------------
NATIVE_ACCESS_FLAG = "--enable-native-access=ALL-UNNAMED"
NATIVE_ACCESS_LOG = "restricts native access (JEP 472)"


@pytest.mark.skipif(NEWEST_JDK < 24 or not any(j >= 24 for _, j in CASES),
                    reason="needs a JDK 24+ (JEP 472) among the selected cases")
@pytest.mark.parametrize("mode", ["enable", "deny"])
def test_native_access_on_newest_jdk(stack, e2e, mode):
    """With the flag the README gives, nothing warns and records arrive; under
    ``--illegal-native-access=deny`` (a later Java's default) the task fails naming the flag."""
    opts = [NATIVE_ACCESS_FLAG] if mode == "enable" else ["--illegal-native-access=deny"]
    tag = f"n{uuid.uuid4().hex[:6]}"
    w = stack.add_worker(kafka_version=NEWEST, java_home=JDKS[NEWEST_JDK], group_id=f"connect-{tag}",
                         jvm_opts=opts)
    try:
        topic, name = f"{tag}-in", f"{tag}-insert"
        e2e.kafka.create_topic(topic, 1)
        w.connect.create(name, e2e.stack.sink_config(topic))
        e2e.produce([("k", {"FirstName": tag, "LastName": f"{tag}-x"})], topic=topic)
        if mode == "enable":
            _wait_consumed(w.connect, e2e.kafka, name, topic)
            got = [r for r in e2e.emu.records("Contact") if r.get("LastName") == f"{tag}-x"]
            assert len(got) == 1, got
            out = w.out_file.read_text(errors="replace")
            assert "java.lang.System::load" not in out, out[-3000:]
            assert not _grep(w.log_file, NATIVE_ACCESS_LOG), _grep(w.log_file, NATIVE_ACCESS_LOG)
        else:
            failed = w.connect.wait_failed(name, task=0, timeout=90)
            trace = failed.get("trace") or ""
            assert "refused to load the Salesforce sink native library" in trace and NATIVE_ACCESS_FLAG in trace, \
                trace[:3000]
            assert w.running, "the worker must survive: only the task fails"
        w.connect.delete(name)
    finally:
        stack.remove_worker(w)
