"""Bad-input matrix (issue 5, item 3): every kind of bad record goes to the DLQ with a message that
names its cause while the good records around it land; with ``errors.tolerance=none`` the task
fails with that message. Good-but-tricky records (emoji, RTL text, JSON- and SOQL-injection
attempts) must land exactly as sent and touch nothing else.

Runs always (no marker): about two minutes.
"""
from __future__ import annotations

import base64
import json
import re
import time


from tests import reliability_report
from tests.stack import wait_until

EXT = "ExternalId__c"
MSG = "__connect.errors.exception.message"
BIG = 16 * 1024 * 1024
SOQL_INJECTION = "' OR LastName != '"
JSON_INJECTION = 'Smith", "Email": "hacked@example.com", "LastName": "Pwned'
EMOJI_RTL = {"FirstName": "👩‍💻🚀", "LastName": "שלום عليكم ✓ 😀", "Description": "مرحبا — RTL ‏test ‮reversed‬ 𝄞"}


def _j(v) -> bytes:
    return json.dumps(v).encode()


def _nested(depth: int):
    v = {"leaf": "x"}
    for _ in range(depth):
        v = {"n": v}
    return v


def _id18(id15: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    out = ""
    for chunk in range(3):
        bits = sum(1 << i for i in range(5) if id15[chunk * 5 + i].isupper())
        out += alphabet[bits]
    return id15 + out


# The connector frames every record error: "<OP> <SObject> key '<k>' failed: <cause> [key '<k>', topic
# T partition P offset O]" (or "<cause> [...]" when it never sent the record; the Java side: "Cannot
# pass the record value of topic T, partition P, offset O to Salesforce: <cause>", and with
# errors.tolerance=none "... (record at topic T, partition P, offset O)"). Matching the whole
# message would let the key or the frame's words pass for any cause.
_WRITE_FRAME = re.compile(r"^(?:INSERT|UPDATE|DELETE|UPSERT) \S+(?: key '.*?')? failed: ", re.S)
_JAVA_FRAME = re.compile(
    r"^Cannot pass the record (?:key|value) of topic \S+, partition -?\d+, offset \d+ to Salesforce: ")
_LOCATION = re.compile(r" \[(?:key '.*', )?topic \S+ partition -?\d+ offset \d+\]$", re.S)
_RECORD_AT = re.compile(r" \(record at topic \S+, partition -?\d+, offset \d+\)$")


def cause(message: str) -> str:
    """A record error without the connector's frame: what Salesforce or the connector said about
    the record itself."""
    text = _RECORD_AT.sub("", message.strip())
    text = _LOCATION.sub("", text)
    text = _WRITE_FRAME.sub("", text, count=1)
    return _JAVA_FRAME.sub("", text, count=1)


def trace_causes(trace: str) -> list:
    """The causes of every exception message in a task's stack trace."""
    return [cause(m.group(1)) for m in re.finditer(r"(?:Exception|Error): (.*)", trace)]


class Case:
    """One produced record: ``bad`` ones must reach the DLQ with a message whose cause (see
    ``cause``) contains one of ``expect`` (a Salesforce errorCode or the connector's own phrase,
    case-sensitive); good ones must land."""

    def __init__(self, name, key, value, op=None, bad=True, expect=(), headers=None):
        self.name, self.key, self.value, self.op, self.bad = name, key, value, op, bad
        self.expect = (expect,) if isinstance(expect, str) else tuple(expect)
        self.headers = [("case", name.encode())]
        if op is not None:
            self.headers.append(("operation", op if isinstance(op, bytes) else op.encode()))
        self.headers += list(headers or [])


def produce(e2e, topic, cases):
    p = e2e.kafka.producer(**{"message.max.bytes": BIG, "compression.type": "lz4"})
    errors = []
    for c in cases:
        key = c.key.encode() if isinstance(c.key, str) else c.key
        p.produce(topic, key=key, value=c.value, headers=c.headers,
                  on_delivery=lambda err, _m: errors.append(err) if err else None)
        p.poll(0)
    assert p.flush(60) == 0 and not errors, errors


def big_topic(e2e, suffix):
    t = e2e.new_topic(suffix)
    e2e.kafka.create_topic(t, 1, {"max.message.bytes": str(BIG)})
    return t


BIG_CLIENTS = {
    "producer.override.max.request.size": str(BIG),
    "consumer.override.max.partition.fetch.bytes": str(BIG),
    "consumer.override.fetch.max.bytes": str(BIG),
}


def good(i, prefix="good", **extra):
    fields = {"FirstName": "G", "LastName": f"Good {prefix} {i}", **extra}
    return Case(f"{prefix}-{i}", f"{prefix}-{i}", _j(fields), op=None, bad=False), fields


def schemaless_cases():
    """(cases in produce order, {external id: expected fields} of the records that must land)."""
    expected = {}
    cases = []

    def add_good(**extra):
        c, fields = good(len(expected), **extra)
        expected[c.key] = fields
        cases.append(c)

    for i in range(2):
        c = Case(f"victim-{i}", f"victim-{i}", _j({"LastName": "Victim", "FirstName": f"V{i}"}), bad=False)
        expected[c.key] = {"LastName": "Victim", "FirstName": f"V{i}"}
        cases.append(c)
    bad = [
        Case("value is a JSON string", "b1", b'"just a string"', expect="record value is a String"),
        Case("value is a JSON array", "b2", b"[1, 2, 3]", expect="record value is an array"),
        Case("value is a JSON number", "b3", b"42", expect="record value is an integer"),
        Case("null key, UPDATE", None, _j({"LastName": "x"}), op="UPDATE",
             expect="UPDATE needs a record key, but the key is null"),
        Case("null key, DELETE", None, _j({"LastName": "x"}), op="DELETE",
             expect="DELETE needs a record key, but the key is null"),
        Case("null key, UPSERT", None, _j({"LastName": "x"}), op="UPSERT",
             expect="UPSERT needs a record key, but the key is null"),
        Case("unknown header operation", "b4", _j({"LastName": "x"}), op="MERGE",
             expect="operation header 'operation' has unknown value 'MERGE'"),
        Case("garbage header", "b5", _j({"LastName": "x"}), op=b"\x00@@ INSERT;DROP",
             expect="operation header 'operation' has unknown value"),
        # Connect's header converter hands the task these bytes as (lossily decoded) text
        Case("non-UTF-8 header", "b6", _j({"LastName": "x"}), op=b"\xff\xfe\xc3\x28",
             expect="operation header 'operation' has unknown value"),
        Case("unknown field", "b7", _j({"LastName": "x", "NoSuchField__c": "y"}),
             expect="INVALID_FIELD: No such column 'NoSuchField__c'"),
        Case("field too long", "b8", _j({"LastName": "x", "FirstName": "F" * 41}), expect="STRING_TOO_LONG"),
        Case("wrong type for a date", "b9", _j({"LastName": "x", "Birthdate": "31/12/2020"}),
             expect="JSON_PARSER_ERROR"),
        Case("invalid decimal text", "b10", _j({"LastName": "x", "Score__c": "1.2.3"}), expect="JSON_PARSER_ERROR"),
        # Score__c is a Number(18, 2): at most 16 digits before the point
        Case("number beyond the field's precision", "b10b", _j({"LastName": "x", "Score__c": 12345678901234567}),
             expect="NUMBER_OUTSIDE_VALID_RANGE"),
        Case("tombstone with null key", None, None, expect="tombstone (null value) with a null key"),
        Case("external ID in value differs from key", "b11", _j({"LastName": "x", EXT: "other"}),
             expect=f"field {EXT}='other' in the value differs from the record key 'b11'"),
        Case("required field missing", "b12", _j({"FirstName": "NoLast"}), expect="REQUIRED_FIELD_MISSING"),
        Case("DELETE of a missing record", "never-existed", None, op="DELETE", expect="NOT_FOUND"),
        Case("UPDATE of a missing record", "never-existed-2", _j({"LastName": "x"}), op="UPDATE", expect="NOT_FOUND"),
        Case("5 MiB value", "b13", _j({"LastName": "Big", "Description": "x" * (5 * 1024 * 1024)}),
             expect="STRING_TOO_LONG"),
        Case("deeply nested Map (100 levels)", "b14", _j({"LastName": "Deep", "Description": _nested(100)}),
             expect="the value is nested deeper than"),
        Case("SOQL injection in the key, UPDATE", SOQL_INJECTION, _j({"FirstName": "Injected"}), op="UPDATE",
             expect="NOT_FOUND"),
        Case("SOQL injection in the key, DELETE", SOQL_INJECTION, None, op="DELETE", expect="NOT_FOUND"),
    ]
    for c in bad:
        add_good()
        cases.append(c)
    add_good()
    # good records that must land exactly
    for name, key, fields in [
        ("emoji and RTL text", "emoji-rtl", EMOJI_RTL),
        ("JSON injection in a string field", "json-inj", {"LastName": JSON_INJECTION, "FirstName": "J"}),
        ("SOQL injection in the key, UPSERT", SOQL_INJECTION, {"LastName": "Literal key", "FirstName": "S"}),
    ]:
        cases.append(Case(name, key, _j(fields), op="UPSERT", bad=False))
        expected[key] = fields
        add_good()
    return cases, expected


def schema_cases():
    """JsonConverter with schemas.enable=true for key and value."""
    s_key = lambda k: _j({"schema": {"type": "string"}, "payload": k})  # noqa: E731
    struct = {"type": "struct", "fields": [{"field": "LastName", "type": "string"},
                                           {"field": "FirstName", "type": "string", "optional": True}]}
    s_val = lambda last: _j({"schema": struct, "payload": {"LastName": last, "FirstName": "S"}})  # noqa: E731
    dec = {"type": "struct", "fields": [
        {"field": "LastName", "type": "string"},
        {"field": "Score__c", "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
         "parameters": {"scale": "2"}}]}
    wrong_date = {"type": "struct", "fields": [{"field": "LastName", "type": "string"},
                                               {"field": "Birthdate", "type": "boolean"}]}
    expected = {}
    cases = []
    n = 0

    def add_good():
        nonlocal n
        n += 1
        key = f"schema-good-{n}"
        cases.append(Case(key, s_key(key), s_val(f"Schema {n}"), bad=False))
        expected[key] = {"LastName": f"Schema {n}", "FirstName": "S"}

    bad = [
        Case("Struct key (JsonConverter, schemas.enable=true)",
             _j({"schema": {"type": "struct", "fields": [{"field": "id", "type": "string"}]}, "payload": {"id": "k1"}}),
             s_val("x"), expect="UPSERT needs a String or integer key, but the key is a Struct"),
        Case("bytes value", s_key("sb1"), _j({"schema": {"type": "bytes"}, "payload": base64.b64encode(b"hello").decode()}),
             expect="record value is a byte array"),
        Case("invalid Decimal bytes", s_key("sb2"), _j({"schema": dec, "payload": {"LastName": "x", "Score__c": "!!not base64!!"}}),
             expect="Invalid bytes for Decimal field"),  # JsonConverter's own error: no connector frame
        Case("Decimal beyond the field's precision", s_key("sb3"),
             _j({"schema": dec, "payload": {"LastName": "x", "Score__c": base64.b64encode((10**40).to_bytes(17, "big")).decode()}}),
             expect=("NUMBER_OUTSIDE_VALID_RANGE", "outside what Salesforce numbers hold")),
        Case("boolean for a date field", s_key("sb4"), _j({"schema": wrong_date, "payload": {"LastName": "x", "Birthdate": True}}),
             expect="JSON_PARSER_ERROR"),
    ]
    for c in bad:
        add_good()
        cases.append(c)
    add_good()
    return cases, expected


def dlq_by_case(msgs) -> dict:
    out = {}
    for m in msgs:
        h = m.headers_dict()
        out.setdefault(h.get("case"), []).append(h.get(MSG) or "")
    return out


def check_dlq(cases, by_case, report):
    problems = []
    for c in cases:
        got = by_case.get(c.name, [])
        if c.bad:
            why = cause(got[0]) if len(got) == 1 else None
            ok = why is not None and any(e in why for e in c.expect)
            report.append({"case": c.name, "expected": "DLQ naming " + " / ".join(c.expect),
                           "outcome": ("DLQ: " + got[0][:160].replace("|", "/").replace("\n", " ")) if got else "NOT in DLQ"})
            if not ok:
                problems.append(f"{c.name}: expected one DLQ record whose cause names {c.expect}, "
                                f"got cause {why!r} of {got}")
        elif got:
            problems.append(f"good record {c.name} went to the DLQ: {got}")
            report.append({"case": c.name, "expected": "lands", "outcome": "DLQ: " + got[0][:160]})
    return problems


def check_landed(records, expected, report, names=None):
    by_ext = {}
    for r in records:
        by_ext.setdefault(r.get(EXT), []).append(r)
    problems = []
    for key, fields in expected.items():
        got = by_ext.get(key, [])
        if len(got) != 1 or any(got[0].get(f) != v for f, v in fields.items()):
            problems.append(f"{key}: expected one record with {fields}, emulator has {got}")
        if names and key in names:
            report.append({"case": names[key], "expected": "lands exactly as sent",
                           "outcome": "landed" if len(got) == 1 and not problems else "WRONG"})
    extra = set(by_ext) - set(expected)
    if extra:
        problems.append(f"unexpected records: {[by_ext[k] for k in extra]}")
    return problems


def test_bad_input_matrix_dlq(e2e):
    t0 = time.monotonic()
    report: list = []
    # --- schemaless JSON, External ID mode, header routing, tombstone deletes -------------------
    topic, dlq = big_topic(e2e, "schemaless"), big_topic(e2e, "dlq1")
    cases, expected = schemaless_cases()
    cfg = e2e.sink_config({
        "topics": topic, "salesforce.operation": "UPSERT", "salesforce.external.id.field": EXT,
        "salesforce.operation.header.enabled": "true", "salesforce.tombstone.delete": "true",
        **BIG_CLIENTS, **e2e.dlq_config(dlq)})
    a = e2e.create_connector(cfg, name=e2e.name("schemaless"))
    # --- JsonConverter with schemas, External ID mode -------------------------------------------
    topic2, dlq2 = e2e.new_topic("schema"), e2e.new_topic("dlq2")
    cases2, expected2 = schema_cases()
    cfg2 = e2e.sink_config({
        "topics": topic2, "salesforce.operation": "UPSERT", "salesforce.external.id.field": EXT,
        "salesforce.sobject.type": "MyObject__c",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter", "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true", **e2e.dlq_config(dlq2)})
    # MyObject__c has Name, not LastName/FirstName: use Contact-shaped fields through Contact instead
    cfg2["salesforce.sobject.type"] = "Contact"
    b = e2e.create_connector(cfg2, name=e2e.name("schema"))
    produce(e2e, topic, cases)
    produce(e2e, topic2, cases2)

    n_bad = sum(c.bad for c in cases)
    n_bad2 = sum(c.bad for c in cases2)
    msgs = e2e.consume_all(dlq, expected=n_bad, timeout=120)
    msgs2 = e2e.consume_all(dlq2, expected=n_bad2, timeout=120)
    want = {**expected, **expected2}
    wait_until(lambda: len(e2e.emu.records("Contact")) >= len(want), 60,
               message=lambda: f"{len(want)} Contacts\n{e2e.describe(a)}\n{e2e.describe(b)}")
    time.sleep(2)
    msgs = e2e.consume_all(dlq, timeout=20)
    msgs2 = e2e.consume_all(dlq2, timeout=20)

    # --- Native ID mode: UPDATE with the 18-character Id of another object ------------------------
    contacts = e2e.emu.records("Contact")
    victim_id = next(r["Id"] for r in contacts if r.get(EXT) == "victim-0")
    topic3, dlq3 = e2e.new_topic("native"), e2e.new_topic("dlq3")
    account_id = _id18("001000000000001")
    cases3 = [
        Case("18-char Id of the wrong object (Account Id) for UPDATE", account_id, _j({"FirstName": "Wrong"}),
             expect="MALFORMED_ID"),
        Case("native UPDATE (good)", victim_id, _j({"FirstName": "Updated"}), bad=False),
        Case("native UPSERT (no external ID field)", victim_id, _j({"FirstName": "x"}), op="UPSERT",
             expect="UPSERT needs an external ID field"),
        # refused by the connector itself: a key that is not an Id never reaches a request
        Case("bad Id text for UPDATE", "not-an-id", _j({"FirstName": "x"}),
             expect="needs a Salesforce record Id as the key"),
        Case("two Ids in one key, DELETE", f"{victim_id},{account_id}", None, op="DELETE",
             expect="needs a Salesforce record Id as the key"),
    ]
    c = e2e.create_connector(e2e.sink_config({
        "topics": topic3, "salesforce.operation": "UPDATE", "salesforce.operation.header.enabled": "true",
        **e2e.dlq_config(dlq3)}), name=e2e.name("native"))
    produce(e2e, topic3, cases3)
    msgs3 = e2e.consume_all(dlq3, expected=sum(c.bad for c in cases3), timeout=60)
    wait_until(lambda: any(r.get("FirstName") == "Updated" for r in e2e.emu.records("Contact")), 30,
               message=lambda: e2e.describe(c))
    expected["victim-0"] = {**expected["victim-0"], "FirstName": "Updated"}

    problems = check_dlq(cases, dlq_by_case(msgs), report)
    problems += check_dlq(cases2, dlq_by_case(msgs2), report)
    problems += check_dlq(cases3, dlq_by_case(msgs3), report)
    names = {c.key: c.name for c in cases if not c.bad and c.name != c.key}
    records = e2e.emu.records("Contact")
    problems += check_landed(records, {**expected, **expected2}, report, names)
    assert not any("hacked" in json.dumps(r) and r.get(EXT) != "json-inj" for r in records), records
    for name in (a, b, c):
        st = e2e.status(name)
        if any(t["state"] != "RUNNING" for t in st["tasks"]):
            problems.append(f"{name} is not RUNNING: {e2e.describe(name)}")

    all_cases = cases + cases2 + cases3
    n_dlq = len(msgs) + len(msgs2) + len(msgs3)
    # Counted from the emulator: good records whose key holds exactly one record with their fields.
    expected_all = {**expected, **expected2}
    landed = sum(1 for key, fields in expected_all.items()
                 if [r for r in records if r.get(EXT) == key]
                 and all(r.get(f) == v for r in records if r.get(EXT) == key for f, v in fields.items()))
    reliability_report.record("bad-input matrix (errors.tolerance=all)", {
        "sent": len(all_cases), "written": landed, "dlq": n_dlq, "duplicates": 0,
        "lost": sum(1 for p in problems if "expected one record" in p), "faults_injected": 0, "restarts": 0,
        "seconds": round(time.monotonic() - t0),
        "notes": f"{sum(x.bad for x in all_cases)} bad kinds, each between good records; "
                 f"problems: {len(problems)}",
        "details": report,
    })
    assert not problems, "\n".join(problems)


NONE_KINDS = ["value is a JSON string", "null key, UPSERT", "unknown header operation", "unknown field",
              "DELETE of a missing record", "deeply nested Map (100 levels)"]


def test_bad_input_tolerance_none_fails_task(e2e):
    cases, _ = schemaless_cases()
    by_name = {c.name: c for c in cases}
    started = []
    for kind in NONE_KINDS:
        topic = e2e.new_topic("none")
        cfg = e2e.sink_config({
            "topics": topic, "salesforce.operation": "UPSERT", "salesforce.external.id.field": EXT,
            "salesforce.operation.header.enabled": "true", "salesforce.tombstone.delete": "true",
            "errors.tolerance": "none"})
        name = e2e.create_connector(cfg, name=e2e.name("none"), wait=False)
        started.append((kind, name, topic))
    for kind, name, topic in started:
        e2e.connect.wait_running(name, timeout=90)
        produce(e2e, topic, [Case(f"ok-{name}", f"ok-{name}", _j({"LastName": "Before"}), bad=False), by_name[kind]])
    problems = []
    for kind, name, topic in started:
        failed = e2e.connect.wait_failed(name, timeout=90)
        trace = failed.get("trace") or ""
        causes = trace_causes(trace)
        if not any(e in c for c in causes for e in by_name[kind].expect):
            problems.append(f"{kind}: no cause in the task trace names {by_name[kind].expect}: {causes}\n{trace[:1500]}")
    landed = {r.get(EXT) for r in e2e.emu.records("Contact")}
    for kind, name, topic in started:
        if f"ok-{name}" not in landed:
            problems.append(f"{kind}: the good record before the bad one did not land")
    assert not problems, "\n\n".join(problems)
