"""Fixtures of the end-to-end suite.

* ``stack`` (session): emulator + KRaft broker + Connect worker, started once (~20 s), stopped at the
  end of the session whatever happens. Logs: ``tests/.work/<run-id>/{broker,worker-N,emulator}/``.
* ``e2e`` (function): resets the emulator, gives a unique ``topic`` and connector names, builds
  connector configs, and deletes every connector the test created at teardown (also restarts a
  worker/broker the test killed and removes workers the test added).

On a failed test the tail of every worker log is attached to the report (unless the failure
message of a wait helper already holds it).
"""
from __future__ import annotations

import re
import uuid
from typing import Any, Optional

import pytest

from tests.stack import Stack, grep, wait_until


@pytest.fixture(scope="session")
def stack():
    s = Stack()
    s.start()
    try:
        yield s
    finally:
        s.stop()


class E2E:
    """Per-test helper: unique names, configs, tracked connectors."""

    def __init__(self, stack: Stack, test_name: str):
        self.stack = stack
        self.emu = stack.emu
        self.kafka = stack.kafka
        base = re.sub(r"[^a-zA-Z0-9]+", "-", test_name).strip("-").lower()[:40]
        self.prefix = f"{base}-{uuid.uuid4().hex[:6]}"
        self.topic = f"{self.prefix}-in"
        self.connectors: list[str] = []
        self._seq = 0

    # -- names / configs -----------------------------------------------------------------------
    @property
    def connect(self):
        return self.stack.connect

    @property
    def emulator_url(self) -> str:
        return self.stack.emulator_url

    def name(self, suffix: str = "") -> str:
        self._seq += 1
        return f"{self.prefix}-{suffix or 'c'}{self._seq}"

    def new_topic(self, suffix: str = "t") -> str:
        self._seq += 1
        return f"{self.prefix}-{suffix}{self._seq}"

    def sink_config(self, overrides: Optional[dict] = None, **kw: Any) -> dict:
        """Default config: INSERT into Contact through CLIENT_CREDENTIALS against the emulator,
        String keys, schemaless JSON values, reading ``self.topic``. ``overrides`` (dotted keys)
        win; a value of ``None`` removes the key."""
        return self.stack.sink_config(self.topic, {**(overrides or {}), **kw})

    @staticmethod
    def dlq_config(dlq_topic: str, context_headers: bool = True) -> dict:
        """Connect settings that send failed records to ``dlq_topic`` (merge into a sink config)."""
        return {
            "errors.tolerance": "all",
            "errors.deadletterqueue.topic.name": dlq_topic,
            "errors.deadletterqueue.topic.replication.factor": "1",
            "errors.deadletterqueue.context.headers.enable": str(context_headers).lower(),
            "errors.log.enable": "true",
            "errors.log.include.messages": "false",
        }

    # -- connectors ----------------------------------------------------------------------------
    def create_connector(self, config: dict, name: Optional[str] = None, wait: bool = True,
                         tasks: int = 1, timeout: float = 60) -> str:
        """Create (tracked for deletion) and, with ``wait``, wait until it and ``tasks`` task(s) RUN."""
        name = name or self.name()
        self.connectors.append(name)
        self.connect.create(name, config)
        if wait:
            self.connect.wait_running(name, tasks=tasks, timeout=timeout)
        return name

    def status(self, name: str) -> Optional[dict]:
        return self.connect.status(name)

    def describe(self, name: str) -> str:
        return self.connect.describe(name)

    # -- data ----------------------------------------------------------------------------------
    def produce(self, records, topic: Optional[str] = None, **kw) -> int:
        return self.kafka.produce(topic or self.topic, records, **kw)

    def consume_all(self, topic: str, expected: Optional[int] = None, timeout: float = 30, **kw) -> list:
        return self.kafka.consume_all(topic, expected=expected, timeout=timeout, **kw)

    def wait_records(self, sobject: str, count: int, timeout: float = 60, connector: Optional[str] = None) -> list:
        """Wait until the emulator holds >= ``count`` records of ``sobject``; failure text includes the
        connector's status (``connector`` or the last one created) and the worker log tail."""
        target = connector or (self.connectors[-1] if self.connectors else None)
        diag = (lambda: self.connect.describe(target)) if target else self.stack.diagnostics
        return self.emu.wait_records(sobject, count, timeout, diagnostics=diag)

    def wait_until(self, predicate, timeout: float = 30, message=None, **kw):
        return wait_until(predicate, timeout, message=message, **kw)

    def worker_log_grep(self, needle: str, scope: Optional[str] = None) -> list:
        """Lines of every worker's log holding ``needle`` and, with ``scope``, also that text: a
        connector name (Connect puts it in every line its tasks log) or a test's own topic (for
        exception lines, which carry no connector context). A missing log fails: an empty answer
        must mean "not logged", never "not read"."""
        lines = []
        for w in self.stack.workers:
            assert w.log_file.is_file(), f"worker log {w.log_file} does not exist"
            lines += [ln for ln in grep(w.log_file, needle) if scope is None or scope in ln]
        return lines

    def worker_logs(self, connectors: list) -> dict:
        """{path: text} of every worker's log and JVM output, for secret searches. Fails unless
        each file exists and is non-empty, and the logs together hold every one of ``connectors``'
        names: a search that finds nothing must have run over those connectors' output."""
        texts = {}
        for w in self.stack.workers:
            for f in (w.log_file, w.out_file):
                assert f.is_file() and f.stat().st_size > 0, f"{f} is missing or empty"
                texts[str(f)] = f.read_text(errors="replace")
        logs = "\n".join(texts[str(w.log_file)] for w in self.stack.workers)
        missing = [c for c in connectors if c not in logs]
        assert not missing, f"the worker logs never name connector(s) {missing}: {list(texts)}"
        return texts

    # -- teardown ------------------------------------------------------------------------------
    def cleanup(self, workers_before: list) -> None:
        st = self.stack
        if st.broker and not st.broker.running:
            st.broker.start()
        for w in list(st.workers):
            if w not in workers_before:
                st.remove_worker(w)
        for w in st.workers:
            if not w.running:
                w.start()
        if st.emulator and not st.emulator.running:
            st.emulator.start()
        errors = []
        for name in self.connectors:
            try:
                self.connect.delete_and_wait(name, timeout=30)
            except Exception as exc:  # keep deleting the others
                errors.append(f"{name}: {exc}")
        if errors:
            raise AssertionError("could not delete connectors: " + "; ".join(errors))


@pytest.fixture
def e2e(stack, request):
    # a previous test may have crashed the worker JVM (native fault): bring the stack back
    if stack.broker and not stack.broker.running:
        stack.broker.start()
    for w in stack.workers:
        if not w.running:
            w.start()
    if stack.emulator and not stack.emulator.running:
        stack.emulator.start()  # same port as before
    stack.emu.reset()
    ctx = E2E(stack, request.node.name)
    workers_before = list(stack.workers)
    yield ctx
    ctx.cleanup(workers_before)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("call", "setup"):
        st = item.funcargs.get("stack") if hasattr(item, "funcargs") else None
        already = "worker.log (tail)" in str(rep.longrepr)  # the wait helpers put it in the message
        if isinstance(st, Stack) and st.workers and not already:
            try:
                rep.sections.append(("worker logs (tail)", st.diagnostics(60)))
            except Exception:  # never hide the real failure
                pass
