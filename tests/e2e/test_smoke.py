"""First end-to-end checks: plugin discovery, a schemaless INSERT, native panic isolation, validation."""
from __future__ import annotations

import time

from tests.stack import CONNECTOR_CLASS


def _contacts(n: int, tag: str) -> list:
    return [{"FirstName": "Ada", "LastName": f"Lovelace {i}", "Email": f"ada{i}.{tag}@example.com"}
            for i in range(1, n + 1)]


def _fields(records: list, names=("FirstName", "LastName", "Email")) -> list:
    return sorted(tuple(r.get(k) for k in names) for r in records)


def test_plugin_listed(e2e):
    plugins = e2e.connect.plugins()
    mine = [p for p in plugins if p.get("class") == CONNECTOR_CLASS]
    assert mine, f"{CONNECTOR_CLASS} not in GET /connector-plugins: {plugins}"
    assert mine[0].get("type") == "sink", mine[0]
    assert mine[0].get("version") not in (None, "", "null", "unknown"), mine[0]


def test_insert_client_credentials_schemaless(e2e):
    values = _contacts(5, e2e.prefix)
    name = e2e.create_connector(e2e.sink_config())
    e2e.produce([(f"k{i}", v) for i, v in enumerate(values)])

    records = e2e.wait_records("Contact", 5, timeout=60, connector=name)
    time.sleep(1.0)  # nothing more may arrive (no duplicates)
    records = e2e.emu.records("Contact")
    assert _fields(records) == _fields(values), (
        f"expected exactly the 5 produced Contacts, emulator holds {records}\n{e2e.describe(name)}")
    assert all(str(r.get("Id", "")).startswith("003") for r in records), records


def test_native_panic_fails_task_not_worker(e2e):
    # A: the native side panics inside put() -> NativeSinkException -> the task FAILS. The test
    # stack's worker environment (SALESFORCE_SINK_TEST_NATIVE_PANIC) makes connectors named
    # native-panic-put-* panic; no connector key can.
    topic_a = e2e.new_topic("panic")
    a = e2e.create_connector(e2e.sink_config({"topics": topic_a}),
                             name="native-panic-put-" + e2e.name("panic"), wait=False)
    e2e.produce([("k", {"FirstName": "Pan", "LastName": "Ic"})], topic=topic_a)
    failed = e2e.connect.wait_failed(a, task=0, timeout=60)
    assert "panic" in (failed.get("trace") or "").lower(), (
        f"task trace should mention the native panic:\n{e2e.describe(a)}")
    assert e2e.stack.worker.running, "the worker JVM died: a native panic must only fail the task"

    # B: a normal connector in the same worker still works
    topic_b = e2e.new_topic("ok")
    b = e2e.create_connector(e2e.sink_config({"topics": topic_b}), name=e2e.name("ok"))
    values = _contacts(3, e2e.prefix)
    e2e.produce([(f"k{i}", v) for i, v in enumerate(values)], topic=topic_b)
    records = e2e.wait_records("Contact", 3, timeout=60, connector=b)
    assert _fields(records) == _fields(values), f"{records}\n{e2e.describe(b)}"

    listed = e2e.connect.connectors()
    assert a in listed and b in listed, listed
    assert e2e.connect.status(a)["tasks"][0]["state"] == "FAILED"


def test_config_validate_reports_on_key(e2e):
    cfg = e2e.sink_config({"salesforce.client.secret": None})
    cfg["name"] = e2e.name("validate")
    result = e2e.connect.validate(cfg)
    errors = e2e.connect.validation_errors(result)
    assert result.get("error_count", 0) >= 1, result
    assert "salesforce.client.secret" in errors, (
        f"expected an error on salesforce.client.secret, got errors on {sorted(errors)}: {errors}")
    assert errors["salesforce.client.secret"][0].strip(), errors
    # Only real, documented keys are offered: no test hooks in the public configuration.
    listed = {c["definition"]["name"] for c in result.get("configs", []) if "definition" in c}
    assert "salesforce.instance.url" in listed, sorted(listed)
    assert not [k for k in listed if ".test." in k or k.startswith("test.")], sorted(listed)


def test_config_validate_reports_unknown_keys_and_what_a_task_would_refuse(e2e):
    # Through the worker's REST API: a mistyped key (its value never echoed) and a bad CA PEM, each
    # on its own key; a clean config also passes the native parser's check.
    cfg = e2e.sink_config({"salesforce.retry.max.atempts": "5", "salesforce.ssl.ca.pem": "not a certificate"})
    cfg["name"] = e2e.name("validate-unknown")
    result = e2e.connect.validate(cfg)
    errors = e2e.connect.validation_errors(result)
    assert "did you mean salesforce.retry.max.attempts?" in errors.get("salesforce.retry.max.atempts", [""])[0], errors
    assert "CERTIFICATE" in errors.get("salesforce.ssl.ca.pem", [""])[0], errors
    unknown = [c for c in result["configs"] if c["value"]["name"] == "salesforce.retry.max.atempts"]
    assert unknown and unknown[0]["value"]["value"] in (None, ""), unknown
    good = e2e.sink_config({})
    good["name"] = e2e.name("validate-good")
    assert e2e.connect.validate(good).get("error_count") == 0, e2e.connect.validation_errors(e2e.connect.validate(good))


def test_native_logger_level_through_admin_endpoint(e2e):
    # The README tells operators to raise the native logger this way.
    logger = "io.axual.connect.plugins.salesforce.native"
    e2e.connect.request("PUT", f"/admin/loggers/{logger}", json={"level": "TRACE"})
    try:
        got = e2e.connect.request("GET", f"/admin/loggers/{logger}").json()
        assert got.get("level") == "TRACE", got
    finally:
        e2e.connect.request("PUT", f"/admin/loggers/{logger}", json={"level": "DEBUG"})
