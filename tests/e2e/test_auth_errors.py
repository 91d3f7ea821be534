"""Auth flows, error handling (SPEC §4), startup validation, gzip, API-usage warnings, config
validation and secret hygiene (SPEC §5) through the real Connect worker.

Every secret this module uses is collected in ``_SECRETS``, every status trace it fetched in
``_TRACES`` and the connectors that held the secrets in ``_CONNECTORS``; the last test checks that
none of the secrets shows up in those traces or in the worker logs (which must name every one of
those connectors, so the search demonstrably covered their output).
"""
from __future__ import annotations

import json
import socket
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.stack import DEFAULT_CLIENT_SECRET

_SECRETS: dict = {}   # label -> secret text that must never appear in logs / traces
_TRACES: list = []    # every task trace fetched by this module
_CONNECTORS: list = []  # connectors configured with a secret of _SECRETS

FAST_RETRY = {"salesforce.retry.initial.backoff.ms": "50", "salesforce.retry.max.backoff.ms": "500"}
EXC_MSG = "__connect.errors.exception.message"


# -- helpers -------------------------------------------------------------------------------------
def _rsa_key() -> tuple:
    """(PKCS#8 private PEM, SPKI public PEM) of a fresh 2048-bit RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private_pem, public_pem


def _remember_key(label: str, private_pem: str) -> None:
    """Key material to look for later: a few 64-character base64 lines of the key body."""
    body = [ln for ln in private_pem.strip().splitlines() if not ln.startswith("-----")]
    for i in (0, len(body) // 2, len(body) - 2):
        _SECRETS[f"{label} line {i}"] = body[i]


def _contacts(n: int, tag: str, start: int = 0) -> list:
    return [(f"k{i}", {"FirstName": "Ada", "LastName": f"{tag}-{i}"}) for i in range(start, start + n)]


def _last_names(records: list) -> list:
    return sorted(r.get("LastName") for r in records)


def _failed_trace(e2e, name: str, timeout: float = 60) -> str:
    task = e2e.connect.wait_failed(name, task=0, timeout=timeout)
    trace = task.get("trace") or ""
    _TRACES.append(trace)
    return trace


def _collect_traces(e2e, name: str) -> None:
    st = e2e.status(name) or {}
    for part in [st.get("connector", {})] + list(st.get("tasks", [])):
        if part.get("trace"):
            _TRACES.append(part["trace"])


def _dlq(e2e, dlq_topic: str, expected=None, timeout: float = 30) -> list:
    return e2e.consume_all(dlq_topic, expected=expected, timeout=timeout)


def _data_requests(e2e) -> list:
    return [r for r in e2e.emu.requests() if str(r.get("path", "")).startswith("/services/data/")]


def _jwt_config(e2e, client_id: str, private_pem: str, username: str, **over) -> dict:
    return e2e.sink_config({
        "salesforce.auth.type": "JWT_BEARER",
        "salesforce.client.id": client_id,
        "salesforce.client.secret": None,
        "salesforce.jwt.private.key": private_pem,
        "salesforce.jwt.username": username,
        **FAST_RETRY, **over})


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- 1. JWT bearer ----------------------------------------------------------------------------------
def test_jwt_bearer_newlines_escaped_and_wrong_username(e2e):
    private_pem, public_pem = _rsa_key()
    _remember_key("jwt key", private_pem)
    client_id = f"jwt-{e2e.prefix}"
    username = "jwt.integration@example.com"
    e2e.emu.add_client(client_id, public_key_pem=public_pem, username=username)

    # real newlines, and literal "\n" escapes as in the seed's examples (audience left at its default)
    escaped = private_pem.strip().replace("\n", "\\n")
    assert "\n" not in escaped and "\\n" in escaped
    t_real, t_esc = e2e.new_topic("real"), e2e.new_topic("esc")
    real = e2e.create_connector(_jwt_config(e2e, client_id, private_pem, username, topics=t_real),
                                name=e2e.name("jwt-real"), wait=False)
    esc = e2e.create_connector(_jwt_config(e2e, client_id, escaped, username, topics=t_esc),
                               name=e2e.name("jwt-esc"), wait=False)
    # wrong username: Salesforce refuses the assertion -> the task fails at start
    bad = e2e.create_connector(_jwt_config(e2e, client_id, private_pem, "nobody@example.com",
                                           topics=e2e.new_topic("bad")),
                               name=e2e.name("jwt-bad"), wait=False)
    _CONNECTORS.extend([real, esc, bad])
    e2e.connect.wait_running(real)
    e2e.connect.wait_running(esc)
    e2e.produce(_contacts(3, "real"), topic=t_real)
    e2e.produce(_contacts(3, "esc"), topic=t_esc)
    records = e2e.wait_records("Contact", 6, connector=esc)
    assert _last_names(records) == sorted([f"real-{i}" for i in range(3)] + [f"esc-{i}" for i in range(3)]), records
    tokens = [r for r in e2e.emu.requests() if r.get("kind") == "token"]
    assert any(r.get("status") == 200 for r in tokens), tokens

    trace = _failed_trace(e2e, bad)
    assert "salesforce.jwt.username" in trace, f"the failure should tell what to fix:\n{e2e.describe(bad)}"
    assert "invalid_grant" in trace or "approved" in trace, trace
    for label in ("real", "esc"):
        _collect_traces(e2e, real if label == "real" else esc)


# -- 2. client credentials, wrong secret ------------------------------------------------------------
def test_client_credentials_wrong_secret_fails_at_start(e2e):
    wrong = f"wrong-secret-{uuid.uuid4().hex}"
    _SECRETS["wrong client secret"] = wrong
    name = e2e.create_connector(e2e.sink_config({"salesforce.client.secret": wrong, **FAST_RETRY}), wait=False)
    _CONNECTORS.append(name)
    trace = _failed_trace(e2e, name)
    assert "salesforce.client.secret" in trace, f"the failure should name the key to fix:\n{e2e.describe(name)}"
    assert wrong not in trace, "the trace echoes the client secret"


# -- 3. token expiry and revocation mid-stream ------------------------------------------------------
def _assert_401_then_token(reqs: list, what: str) -> None:
    first_401 = next((i for i, r in enumerate(reqs) if r.get("status") == 401
                      and str(r.get("path", "")).startswith("/services/data/")), None)
    assert first_401 is not None, f"{what}: no 401 on a data request in the request log: {reqs[-20:]}"
    after = reqs[first_401 + 1:]
    tok = next((i for i, r in enumerate(after) if r.get("kind") == "token" and r.get("status") == 200), None)
    assert tok is not None, f"{what}: no new token request after the 401: {reqs[first_401:first_401 + 20]}"
    assert any(r.get("status") in (200, 201) and str(r.get("path", "")).startswith("/services/data/")
               for r in after[tok + 1:]), f"{what}: no successful data request after the new token"


def test_token_expiry_and_revocation_mid_stream(e2e):
    secret = f"cc-secret-{uuid.uuid4().hex}"
    _SECRETS["registered client secret"] = secret
    client_id = f"cc-{e2e.prefix}"
    e2e.emu.add_client(client_id, client_secret=secret)
    e2e.emu.set_session_timeout(3)
    dlq = e2e.new_topic("dlq")
    name = e2e.create_connector(e2e.sink_config({
        "salesforce.client.id": client_id, "salesforce.client.secret": secret,
        **FAST_RETRY, **e2e.dlq_config(dlq)}))
    _CONNECTORS.append(name)

    # ~10 s of traffic with 3 s tokens
    n = 0
    for burst in range(10):
        e2e.produce(_contacts(2, "exp", start=n))
        n += 2
        time.sleep(1.0)
    e2e.wait_records("Contact", n, connector=name)
    _assert_401_then_token(e2e.emu.requests(), "session expiry")

    # revocation
    e2e.emu.set_session_timeout(7200)
    e2e.emu.clear_requests()
    e2e.produce(_contacts(2, "pre", start=n))
    n += 2
    e2e.wait_records("Contact", n, connector=name)  # now holds a 2 h token
    e2e.emu.revoke_tokens()
    e2e.produce(_contacts(3, "rev", start=n))
    n += 3
    records = e2e.wait_records("Contact", n, connector=name)
    _assert_401_then_token(e2e.emu.requests(), "revocation")

    time.sleep(1.0)
    records = e2e.emu.records("Contact")
    assert len(records) == n, f"expected exactly {n} Contacts (no duplicates), got {len(records)}"
    assert _dlq(e2e, dlq) == [], "no record may reach the DLQ on expired/revoked tokens"
    _collect_traces(e2e, name)


# -- 4. errors ---------------------------------------------------------------------------------------
RECOVERABLE_FAULTS = [
    {"kind": "status", "status": 503, "count": 2},
    {"kind": "status", "status": 500, "error_code": "UNKNOWN_EXCEPTION", "message": "boom", "count": 1},
    {"kind": "status", "status": 429, "error_code": "TOO_MANY_REQUESTS", "message": "slow down", "count": 1},
    {"kind": "status", "status": 403, "error_code": "REQUEST_LIMIT_EXCEEDED",
     "message": "ConcurrentPerOrgLongTxn Limit exceeded", "count": 2},
]


def test_recoverable_errors_are_retried(e2e):
    dlq = e2e.new_topic("dlq")
    name = e2e.create_connector(e2e.sink_config({**FAST_RETRY, **e2e.dlq_config(dlq)}))
    n = 0
    for i, fault in enumerate(RECOVERABLE_FAULTS):
        e2e.emu.add_fault({**fault, "path_contains": "/services/data", "method": "POST"})
        e2e.produce(_contacts(2, f"f{i}", start=n))
        n += 2
        e2e.wait_records("Contact", n, connector=name, timeout=30)
        rules = e2e.emu.faults()
        assert rules[-1].get("fired") == fault["count"], f"fault {fault} did not fire as expected: {rules}"
        e2e.emu.clear_faults()
    time.sleep(1.0)
    records = e2e.emu.records("Contact")
    assert len(records) == n, f"expected {n} Contacts, got {_last_names(records)}"
    statuses = {r.get("status") for r in _data_requests(e2e)}
    assert {503, 500, 429, 403} <= statuses, statuses
    assert _dlq(e2e, dlq) == [], "recoverable errors must not send records to the DLQ"
    assert e2e.status(name)["tasks"][0]["state"] == "RUNNING"


def test_transient_failures_are_retried_in_the_pipeline_and_nothing_is_written_twice(e2e):
    # 6 records; Collections of 2, one request at a time: request 1 succeeds, the next 4 attempts
    # get 503. The pipeline retries them (SPEC §6) past salesforce.retry.max.attempts, without
    # Connect redelivering anything, and no record is written twice.
    values = _contacts(6, "redeliver")
    e2e.produce(values)
    e2e.emu.add_fault({"kind": "status", "status": 503, "path_contains": "/composite/sobjects",
                       "method": "POST", "skip": 1, "count": 4})
    name = e2e.create_connector(e2e.sink_config({
        **FAST_RETRY, "salesforce.retry.max.attempts": "1", "salesforce.batch.size": "2",
        "salesforce.max.in.flight.requests": "1"}))
    e2e.wait_records("Contact", 6, connector=name)
    time.sleep(1.5)
    records = e2e.emu.records("Contact")
    assert _last_names(records) == _last_names([v for _, v in values]), (
        f"every record exactly once, got {_last_names(records)}\n{e2e.describe(name)}")
    posts = [r for r in _data_requests(e2e) if r.get("method") == "POST"]
    assert [r.get("status") for r in posts].count(503) == 4, posts
    ok_records = sum(r.get("records", 0) for r in posts if r.get("status") == 200)
    assert ok_records == 6, f"the emulator accepted {ok_records} record writes for 6 records: {posts}"
    assert not e2e.worker_log_grep("RetriableException", scope=name), \
        "transient failures are retried inside the pipeline, not by Connect redelivering the batch"
    assert e2e.status(name)["tasks"][0]["state"] == "RUNNING"


def _dlq_messages_by_key(msgs: list) -> dict:
    return {(m.key or b"").decode(): m for m in msgs}


@pytest.mark.parametrize("mode", ["COLLECTIONS", "SINGLE"])
def test_non_recoverable_errors_go_to_dlq(e2e, mode):
    dlq = e2e.new_topic("dlq")
    name = e2e.create_connector(e2e.sink_config({
        **FAST_RETRY, **e2e.dlq_config(dlq), "salesforce.write.mode": mode}))
    e2e.produce([
        ("good-1", {"FirstName": "Good", "LastName": "One"}),
        ("no-last", {"FirstName": "Missing"}),
        ("too-long", {"FirstName": "X" * 60, "LastName": "Long"}),
        ("unknown", {"LastName": "Unknown", "Nope__c": "x"}),
        ("good-2", {"FirstName": "Good", "LastName": "Two"}),
    ])
    msgs = _dlq(e2e, dlq, expected=3)
    records = e2e.wait_records("Contact", 2, connector=name)
    time.sleep(1.0)
    records = e2e.emu.records("Contact")
    assert _last_names(records) == ["One", "Two"], f"the good records must land: {records}"
    by_key = _dlq_messages_by_key(msgs)
    assert set(by_key) == {"no-last", "too-long", "unknown"}, list(by_key)
    expect = {
        "no-last": ("REQUIRED_FIELD_MISSING", "LastName"),
        "too-long": ("STRING_TOO_LONG", "FirstName"),
        "unknown": ("INVALID_FIELD", "Nope__c"),
    }
    for key, (code, field) in expect.items():
        text = by_key[key].headers_dict().get(EXC_MSG) or ""
        for part in ("INSERT", "Contact", key, code, field):
            assert part in text, f"DLQ message of {key} should name {part!r}: {text!r}"
    # message text of Salesforce is there too
    assert "Required fields are missing" in by_key["no-last"].headers_dict()[EXC_MSG]
    assert e2e.status(name)["tasks"][0]["state"] == "RUNNING"


def test_daily_quota_exhausted_records_wait_and_land_when_it_returns(e2e):
    """SPEC §4/§8: the spent daily quota is no record's fault; records wait, never the DLQ."""
    dlq = e2e.new_topic("dlq")
    name = e2e.create_connector(e2e.sink_config({
        **FAST_RETRY, **e2e.dlq_config(dlq), "salesforce.api.quota.check.interval.ms": "1000"}))
    e2e.emu.set_limits(max=1000, used=1000)
    e2e.produce(_contacts(2, "quota"))
    e2e.wait_until(lambda: any(r.get("status") == 403 for r in _data_requests(e2e)), 30,
                   message="no request was refused for the quota")
    time.sleep(2.5)
    assert e2e.emu.records("Contact") == []
    assert e2e.status(name)["tasks"][0]["state"] == "RUNNING"
    e2e.emu.set_limits(max=1000, used=0)  # a new day
    e2e.wait_records("Contact", 2, connector=name)
    assert e2e.consume_all(dlq, timeout=3) == [], "records went to the DLQ for the quota"


def test_errors_tolerance_none_fails_task(e2e):
    name = e2e.create_connector(e2e.sink_config({**FAST_RETRY}))
    e2e.produce([("bad-key", {"FirstName": "NoLastName"})])
    trace = _failed_trace(e2e, name)
    for part in ("REQUIRED_FIELD_MISSING", "LastName", "Contact", "INSERT"):
        assert part in trace, f"the task trace should hold the record error ({part!r}):\n{e2e.describe(name)}"


# -- 5. startup validation ---------------------------------------------------------------------------
def test_startup_validation(e2e):
    ext = {"salesforce.operation": "UPSERT", **FAST_RETRY}
    nope = e2e.create_connector(e2e.sink_config({**ext, "salesforce.external.id.field": "Nope__c",
                                                 "topics": e2e.new_topic("nope")}),
                                name=e2e.name("nope"), wait=False)
    notext = e2e.create_connector(e2e.sink_config({**ext, "salesforce.external.id.field": "FirstName",
                                                   "topics": e2e.new_topic("first")}),
                                  name=e2e.name("notext"), wait=False)
    skipped = e2e.create_connector(e2e.sink_config({**ext, "salesforce.external.id.field": "FirstName",
                                                    "salesforce.startup.validation.enabled": "false",
                                                    "topics": e2e.new_topic("skip")}),
                                   name=e2e.name("skip"), wait=False)
    port = _closed_port()
    unreachable = e2e.create_connector(e2e.sink_config({
        **FAST_RETRY, "salesforce.retry.max.attempts": "1",
        "salesforce.instance.url": f"http://127.0.0.1:{port}", "topics": e2e.new_topic("down")}),
        name=e2e.name("down"), wait=False)

    t = _failed_trace(e2e, nope)
    assert "Nope__c" in t and "salesforce.external.id.field" in t and "does not exist" in t, t
    t = _failed_trace(e2e, notext)
    assert "FirstName" in t and "External ID" in t and "salesforce.external.id.field" in t, t
    t = _failed_trace(e2e, unreachable)
    # not just "connect": every trace names org.apache.kafka.connect
    assert f"cannot reach Salesforce at http://127.0.0.1:{port}" in t and "connection failed" in t, t
    e2e.connect.wait_running(skipped)


# -- 6. gzip -----------------------------------------------------------------------------------------
def test_gzip_on_the_wire(e2e):
    for enabled in (True, False):
        e2e.emu.reset()
        topic = e2e.new_topic("gz")
        name = e2e.create_connector(e2e.sink_config({"topics": topic,
                                                     "salesforce.compression.enabled": str(enabled).lower()}),
                                    name=e2e.name(f"gzip-{enabled}".lower()))
        e2e.produce(_contacts(3, f"gz{enabled}"), topic=topic)
        e2e.wait_records("Contact", 3, connector=name)
        data = [r for r in _data_requests(e2e) if r.get("method") in ("POST", "PATCH")]
        assert data, e2e.emu.requests()
        for r in data:
            ce = (r.get("request_content_encoding") or "").lower()
            ae = (r.get("accept_encoding") or "").lower()
            if enabled:
                assert "gzip" in ce and "gzip" in ae, f"compression on: {r}"
                assert r.get("request_body_bytes", 0) < r.get("request_body_decoded_bytes", 0) or \
                    r.get("request_body_decoded_bytes", 0) < 100, r
            else:
                assert "gzip" not in ce and "gzip" not in ae, f"compression off: {r}"
        e2e.connect.delete_and_wait(name)


# -- 7. API usage warnings ---------------------------------------------------------------------------
def test_api_usage_warnings_once_per_threshold(e2e):
    e2e.emu.set_limits(max=1000, used=790)
    # Guard off: with the default reserve (10 %) the task would stop before the 5 % threshold.
    name = e2e.create_connector(e2e.sink_config({"salesforce.write.mode": "SINGLE",
                                                 "salesforce.max.in.flight.requests": "1",
                                                 "salesforce.api.quota.reserve.percent": "0"}))

    def warns(pct):
        return [ln for ln in e2e.worker_log_grep(f"below {pct}%", scope=name) if "WARN" in ln]

    n = 0
    e2e.produce(_contacts(15, "u", start=n))  # 790 -> 805 used: below 20 % remaining
    n += 15
    e2e.wait_records("Contact", n, connector=name)
    e2e.wait_until(lambda: warns(20), 10, "a WARN for the 20 % threshold")
    e2e.emu.set_limits(max=1000, used=945)
    e2e.produce(_contacts(10, "u", start=n))  # -> 955: below 5 %
    n += 10
    e2e.wait_records("Contact", n, connector=name)
    e2e.wait_until(lambda: warns(5), 10, "a WARN for the 5 % threshold")
    e2e.produce(_contacts(5, "u", start=n))  # still below 5 %: no new warning
    n += 5
    e2e.wait_records("Contact", n, connector=name)
    time.sleep(1.0)
    assert len(warns(20)) == 1, warns(20)
    assert len(warns(5)) == 1, warns(5)


# -- 8. config validation ----------------------------------------------------------------------------
def test_config_validation_reports_each_mistake_on_its_key(e2e):
    bad_pem_marker = f"SECRETKEYMATERIAL{uuid.uuid4().hex.upper()}"
    _SECRETS["unparsable pem"] = bad_pem_marker
    bad_pem = f"-----BEGIN PRIVATE KEY-----\n{bad_pem_marker}\n-----END PRIVATE KEY-----"
    jwt = {"salesforce.auth.type": "JWT_BEARER", "salesforce.client.secret": None,
           "salesforce.jwt.username": "u@example.com"}
    cases = [
        ("salesforce.client.secret", {"salesforce.client.secret": None}),
        ("salesforce.jwt.private.key", {**jwt, "salesforce.jwt.private.key": bad_pem}),
        ("salesforce.operation", {"salesforce.operation": "UPSERT"}),
        ("salesforce.api.version", {"salesforce.api.version": "62"}),
        ("salesforce.instance.url", {"salesforce.instance.url": "http://example.com"}),
        ("salesforce.batch.size", {"salesforce.batch.size": "0"}),
        ("salesforce.batch.size", {"salesforce.batch.size": "201"}),
    ]
    good = e2e.sink_config()
    good["name"] = e2e.name("valid")
    assert e2e.connect.validation_errors(e2e.connect.validate(good)) == {}, "the base config must be valid"
    for key, over in cases:
        cfg = e2e.sink_config(over)
        cfg["name"] = e2e.name("valid")
        result = e2e.connect.validate(cfg)
        errors = e2e.connect.validation_errors(result)
        assert key in errors, f"{over}: expected an error on {key}, got {errors}"
        assert set(errors) == {key}, f"{over}: only {key} should be reported, got {errors}"
        assert all(msg.strip() for msg in errors[key]), errors
        assert bad_pem_marker not in json.dumps(result), "validation echoes the private key"


# -- 9. secrets --------------------------------------------------------------------------------------
def test_zz_no_secrets_in_logs_or_traces(e2e):
    assert _SECRETS and _CONNECTORS and _TRACES, "run with the other tests of this module"
    secrets = dict(_SECRETS, **{"default client secret": DEFAULT_CLIENT_SECRET})
    found = []
    for path, text in e2e.worker_logs(_CONNECTORS).items():
        found += [f"{label} in {path}" for label, s in secrets.items() if s in text]
    for i, trace in enumerate(_TRACES):
        found += [f"{label} in trace #{i}" for label, s in secrets.items() if s in trace]
    assert not found, f"secrets leaked: {found}"
