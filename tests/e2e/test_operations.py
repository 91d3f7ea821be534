"""Operations, routing, tombstones, conversion and error handling through the real worker (SPEC §2-§4).

Every test waits until the connector has committed the end offset of its input topic (so every
record was written, skipped or reported to the DLQ), then asserts the emulator's exact state and
the DLQ's exact content (by source offset, from the DLQ context headers).
"""
from __future__ import annotations

import base64
import json
import random
from collections import Counter
from decimal import Decimal

import pytest
import requests
from urllib.parse import parse_qs

from tests.stack import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

from .model import ExternalIdModel, emulator_state

MSG = "__connect.errors.exception.message"
OFFSET = "__connect.errors.offset"
FAST_RETRY = {"salesforce.retry.initial.backoff.ms": "20", "salesforce.retry.max.backoff.ms": "200"}
LOCK_FAULT = {"kind": "record_error", "error_code": "UNABLE_TO_LOCK_ROW",
              "message": "unable to obtain exclusive access to this record", "probability": 0.1,
              "path_contains": "/services/data"}


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def start(e2e, *configs) -> list:
    """Creates the connectors at once (their start-ups overlap), then waits for each to RUN."""
    names = [e2e.create_connector(cfg, wait=False) for cfg in configs]
    for n in names:
        e2e.connect.wait_running(n, tasks=1, timeout=60)
    return names


def wait_consumed(e2e, name: str, topic: str, timeout: float = 90) -> None:
    """Until the connector's consumer group committed the topic's end offsets: every record was
    written, skipped or reported (Connect commits only after put() returned and reports finished)."""
    group = f"connect-{name}"
    seen = {}

    def done():
        end = e2e.kafka.end_offsets(topic)
        committed = e2e.kafka.committed(group, topic)
        seen.update(end=end, committed=committed)
        return bool(end) and all(committed.get(p, -1) >= hi for p, hi in end.items())

    e2e.wait_until(done, timeout, message=lambda: f"{name} to commit the end of {topic}: {seen}\n{e2e.describe(name)}")


def dlq_by_offset(e2e, dlq: str) -> dict:
    """{source offset: message} of everything in the DLQ (fails on a repeated offset)."""
    out = {}
    for m in e2e.consume_all(dlq, timeout=30):
        h = m.headers_dict()
        off = int(h[OFFSET])
        assert off not in out, f"offset {off} reported twice: {out[off]!r} / {h.get(MSG)!r}"
        out[off] = h.get(MSG) or ""
    return out


def records_exact(e2e, sobject: str, include_deleted: bool = False) -> list:
    """Records with numbers kept as their exact JSON text (the emulator stores numbers as sent)."""
    q = "?include_deleted=true" if include_deleted else ""
    resp = requests.get(f"{e2e.emulator_url}/__emulator/records/{sobject}{q}", timeout=15)
    resp.raise_for_status()
    body = json.loads(resp.text, parse_float=str, parse_int=str)
    return body["records"] if isinstance(body, dict) else body


def sf_create(e2e, sobject: str, fields: dict) -> str:
    """Creates a record through the emulator's REST API (as an admin would in the org)."""
    http = requests.Session()
    http.trust_env = False
    tok = http.post(f"{e2e.emulator_url}/services/oauth2/token", timeout=15, data={
        "grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET}).json()["access_token"]
    r = http.post(f"{e2e.emulator_url}/services/data/v62.0/sobjects/{sobject}", json=fields, timeout=15,
                  headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def by(records: list, field: str) -> dict:
    out = {}
    for r in records:
        assert r.get(field) not in out, f"two records with {field}={r.get(field)}: {records}"
        out[r.get(field)] = r
    return out


def envelope(schema: dict, payload) -> dict:
    return {"schema": schema, "payload": payload}


# ------------------------------------------------------------------------------------------------
# 1 + 3 + 4: Native ID mode, header routing with a custom header (string values), tombstones
# ------------------------------------------------------------------------------------------------

def test_native_id_mode_header_routing_and_tombstones(e2e):
    dlq = e2e.new_topic("dlq")
    e2e.kafka.create_topic(e2e.topic, 1)
    name, = start(e2e, e2e.sink_config({
        **e2e.dlq_config(dlq),
        "salesforce.operation.header.enabled": "true",
        "salesforce.operation.header.name": "sf.op",
        "salesforce.tombstone.delete": "true",
    }))

    # records without the header use the configured operation (INSERT; the key is not used)
    e2e.produce([(f"ignored-{i}", {"LastName": f"L{i}", "FirstName": "Nat"}) for i in range(1, 4)]
                + [("ignored-9", {"LastName": "L9"}, {"operation": "DELETE"})])  # not the configured header
    wait_consumed(e2e, name, e2e.topic)
    first = by(e2e.emu.records("Contact"), "LastName")
    assert sorted(first) == ["L1", "L2", "L3", "L9"], first
    id1, id2, id3 = first["L1"]["Id"], first["L2"]["Id"], first["L3"]["Id"]
    assert dlq_by_offset(e2e, dlq) == {}

    base = 4
    batch = [
        (id1, {"LastName": "L1-updated", "Phone": "+31 20 1234567"}, {"sf.op": "update"}),  # 4 UPDATE by Id
        (id2, {"LastName": "ignored"}, {"sf.op": "Delete"}),                                # 5 DELETE by Id
        (id3, None),                                                                          # 6 tombstone: DELETE
        ("EXT-1", {"LastName": "Up"}, {"sf.op": "UPSERT"}),                                  # 7 DLQ: native UPSERT
        (id1, {"LastName": "merge"}, {"sf.op": "MERGE"}),                                    # 8 DLQ: unknown value
        (None, None),                                                                         # 9 DLQ: tombstone, null key
        ("whatever", {"LastName": "L4"}, {"sf.op": "insert"}),                               # 10 INSERT creates
        (id2, {"LastName": "gone"}, {"sf.op": "UPDATE"}),                                    # 11 DLQ: record deleted
        (id2, {"LastName": "gone"}, {"sf.op": "DELETE"}),                                    # 12 DLQ: not found
        (id1, {"LastName": "L13"}, {"operation": "DELETE"}),                                 # 13 other header: INSERT
    ]
    e2e.produce(batch)
    wait_consumed(e2e, name, e2e.topic)

    recs = e2e.emu.records("Contact")
    assert sorted(r["LastName"] for r in recs) == ["L1-updated", "L13", "L4", "L9"], recs
    live = by(recs, "Id")
    assert live[id1]["LastName"] == "L1-updated" and live[id1]["Phone"] == "+31 20 1234567" \
        and live[id1]["FirstName"] == "Nat", live[id1]
    assert id2 not in live and id3 not in live, f"DELETE by Id / tombstone did not delete: {recs}"
    deleted = {r["Id"] for r in e2e.emu.records("Contact", include_deleted=True) if r.get("IsDeleted")}
    assert {id2, id3} <= deleted

    dead = dlq_by_offset(e2e, dlq)
    assert sorted(dead) == [base + 3, base + 4, base + 5, base + 7, base + 8], dead
    assert "UPSERT" in dead[base + 3] and "external ID" in dead[base + 3], dead[base + 3]
    assert "sf.op" in dead[base + 4] and "'MERGE'" in dead[base + 4], dead[base + 4]
    assert "null key" in dead[base + 5], dead[base + 5]
    assert "UPDATE Contact" in dead[base + 7] and id2 in dead[base + 7] \
        and ("ENTITY_IS_DELETED" in dead[base + 7] or "NOT_FOUND" in dead[base + 7]), dead[base + 7]
    assert "DELETE" in dead[base + 8] and id2 in dead[base + 8] \
        and ("ENTITY_IS_DELETED" in dead[base + 8] or "NOT_FOUND" in dead[base + 8]), dead[base + 8]

    # offset 13 carried a header of another name: the configured INSERT applied, id1 was not deleted
    assert id1 in live


# ------------------------------------------------------------------------------------------------
# 2 + 3 + 4 + 9: External ID mode, bytes headers, tombstones skipped / deleted, delete.missing
# ------------------------------------------------------------------------------------------------

def test_external_id_mode_operations(e2e):
    dlq_a, dlq_b = e2e.new_topic("dlqa"), e2e.new_topic("dlqb")
    topic_a, topic_b = e2e.topic, e2e.new_topic("ignore")
    for t in (topic_a, topic_b):
        e2e.kafka.create_topic(t, 1)
    ext = {"salesforce.sobject.type": "MyObject__c", "salesforce.external.id.field": "ExternalId__c"}
    a_cfg = e2e.sink_config({
        **ext, **e2e.dlq_config(dlq_a),
        "topics": topic_a,
        "salesforce.operation": "INSERT",
        "salesforce.operation.header.enabled": "true",  # default header name: operation
        "header.converter": "org.apache.kafka.connect.converters.ByteArrayConverter",  # headers as bytes
        "salesforce.tombstone.delete": "false",
    })
    b_cfg = e2e.sink_config({
        **ext, **e2e.dlq_config(dlq_b),
        "topics": topic_b,
        "salesforce.operation": "UPSERT",
        "salesforce.tombstone.delete": "true",
        "salesforce.delete.missing": "IGNORE",
        "salesforce.operation.header.enabled": "true",
    })
    a, b = start(e2e, a_cfg, b_cfg)

    op = lambda v: {"operation": v.encode()}  # noqa: E731
    e2e.produce([
        ("ka", {"Name": "a1", "Notes__c": "first"}),            # 0 INSERT -> UPSERT creates
        ("ka", {"Name": "a2"}),                                 # 1 INSERT again: same record, updated
        ("kb", {"Name": "b1"}, op("UPSERT")),                   # 2 creates
        ("kb", {"Name": "b2", "Quantity__c": 7}, op("upsert")),  # 3 updates
        ("ka", {"Quantity__c": 5}, op("update")),               # 4 resolves the Id, updates
        ("kz", {"Name": "z"}, op("UPDATE")),                    # 5 DLQ: NOT_FOUND, never creates
        ("kc", {"Name": "c"}, op("insert")),                    # 6 creates (as UPSERT)
        ("kc", {"Name": "ignored"}, op("delete")),              # 7 resolves, deletes
        ("ka", None),                                           # 8 tombstone skipped: ka stays
        ("kq", {"Name": "q"}, op("DROP")),                      # 9 DLQ: unknown header value
        ("kd", None),                                           # 10 tombstone skipped, no DLQ
        ("kc", {"Name": "c-again"}, op("DELETE")),              # 11 DLQ: nothing to delete any more
    ], topic=topic_a)
    e2e.produce([
        ("e1", {"Name": "e1"}),                                 # 0 UPSERT creates
        ("e2", {"Name": "e2"}),                                 # 1
        ("e1", None),                                           # 2 tombstone deletes e1
        ("nope", None),                                         # 3 missing: IGNORE, no DLQ
        ("e1", None),                                           # 4 already gone: IGNORE
        ("nope2", {"Name": "x"}, {"operation": "DELETE"}),     # 5 header DELETE of a missing key: IGNORE
        (None, None),                                           # 6 DLQ: tombstone without a key
    ], topic=topic_b)
    wait_consumed(e2e, a, topic_a)
    wait_consumed(e2e, b, topic_b)

    recs = records_exact(e2e, "MyObject__c")
    state = {r["ExternalId__c"]: {f: r.get(f) for f in ("Name", "Notes__c", "Quantity__c")} for r in recs}
    assert len(recs) == len(state), f"an external ID is held by more than one record: {recs}"
    assert state == {
        "ka": {"Name": "a2", "Notes__c": "first", "Quantity__c": "5.0"},  # a double field keeps 5 as 5.0
        "kb": {"Name": "b2", "Notes__c": None, "Quantity__c": "7.0"},
        "e2": {"Name": "e2", "Notes__c": None, "Quantity__c": None},
    }, state
    gone = {r["ExternalId__c"] for r in records_exact(e2e, "MyObject__c", include_deleted=True)
            if r.get("IsDeleted")}
    assert gone == {"kc", "e1"}, gone

    dead_a = dlq_by_offset(e2e, dlq_a)
    assert sorted(dead_a) == [5, 9, 11], dead_a
    assert "NOT_FOUND" in dead_a[5] and "'kz'" in dead_a[5] and "UPDATE MyObject__c" in dead_a[5], dead_a[5]
    assert "'DROP'" in dead_a[9] and "operation" in dead_a[9], dead_a[9]
    assert "NOT_FOUND" in dead_a[11] and "DELETE" in dead_a[11], dead_a[11]
    dead_b = dlq_by_offset(e2e, dlq_b)
    assert sorted(dead_b) == [6], dead_b
    assert "null key" in dead_b[6], dead_b

    # INSERT in External ID mode is an UPSERT: no create request was ever sent
    routes = Counter(f"{r['method']} {r['path']}" for r in e2e.emu.requests())
    assert not any(k.startswith("POST ") and k.endswith("/composite/sobjects") for k in routes), routes


# ------------------------------------------------------------------------------------------------
# 5: mixed operations against a one-by-one model, with injected UNABLE_TO_LOCK_ROW
# ------------------------------------------------------------------------------------------------

def _mixed_stream(n: int, keys: int, seed: int) -> list:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        key = f"m{rnd.randrange(keys):02d}"
        if rnd.random() < 0.1:
            key = key.upper()  # external IDs match case-insensitively
        if rnd.random() < 0.08:
            out.append((key, None, rnd.choice([None, None, "DELETE", "UPSERT"])))  # tombstone: DELETE
            continue
        header = rnd.choice(["UPSERT", "upsert", "INSERT", "UPDATE", "update", "DELETE", None, None])
        value = {"Name": f"r{i}"}
        if rnd.random() < 0.5:
            value["Quantity__c"] = i
        if rnd.random() < 0.3:
            value["Notes__c"] = None if rnd.random() < 0.3 else f"note {i}"
        out.append((key, value, header))
    return out


@pytest.mark.parametrize("mode,n,keys", [("COLLECTIONS", 360, 30), ("SINGLE", 90, 10)])
def test_mixed_operations_match_model(e2e, mode, n, keys):
    dlq = e2e.new_topic("dlq")
    e2e.kafka.create_topic(e2e.topic, 1)
    stream = _mixed_stream(n, keys, seed=len(mode) * 7919 + n)
    model = ExternalIdModel(operation="UPSERT", tombstone_delete=True)
    for off, (k, v, h) in enumerate(stream):
        model.apply(off, k, v, h)
    assert model.rejected and model.state, "the stream should exercise both outcomes"

    e2e.emu.add_fault(LOCK_FAULT)
    # produce first: the task then gets (nearly) everything in one put(), repeated keys included
    e2e.produce([{"key": k, "value": v, "headers": {"operation": h} if h else None} for k, v, h in stream])
    name, = start(e2e, e2e.sink_config({
        **e2e.dlq_config(dlq), **FAST_RETRY,
        "salesforce.sobject.type": "MyObject__c",
        "salesforce.external.id.field": "ExternalId__c",
        "salesforce.operation": "UPSERT",
        "salesforce.operation.header.enabled": "true",
        "salesforce.tombstone.delete": "true",
        "salesforce.write.mode": mode,
    }))
    wait_consumed(e2e, name, e2e.topic, timeout=120)
    fired = sum(r.get("fired", 0) for r in e2e.emu.faults())
    e2e.emu.clear_faults()
    assert fired > 0, "the UNABLE_TO_LOCK_ROW fault never fired"

    fields = ("Name", "Quantity__c", "Notes__c")
    got = emulator_state(e2e.emu.records("MyObject__c"), "ExternalId__c", fields)
    want = model.expected(fields)
    diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
    assert not diff, f"emulator vs model ({len(diff)} keys differ): {diff}"

    dead = dlq_by_offset(e2e, dlq)
    assert sorted(dead) == sorted(model.rejected), (
        f"DLQ offsets differ from the model's rejections: only in DLQ {sorted(set(dead) - set(model.rejected))}, "
        f"missing {sorted(set(model.rejected) - set(dead))}")
    for off, msg in dead.items():
        assert "NOT_FOUND" in msg, f"offset {off} ({stream[off]}): {msg}"
        assert "DUPLICATE_VALUE" not in msg and "UNABLE_TO_LOCK_ROW" not in msg, msg

    reqs = e2e.emu.requests()
    api = [r for r in reqs if r.get("counted")]
    if mode == "COLLECTIONS":
        assert all("/composite/" in r["path"] or r["path"].endswith("/query") or "/describe" in r["path"]
                   or r["path"].endswith("/limits") for r in api), Counter(r["path"] for r in api)
        for r in reqs:
            if r["method"] == "DELETE" and "ids=" in (r.get("query") or ""):
                ids = [x.lower() for x in parse_qs(r["query"])["ids"][0].split(",")]
                assert len(ids) == len(set(ids)), f"one request deleted the same record twice: {r}"
        # Keys repeat up to ~20 times and 10 % of the writes hit a lock error: rounds of one write
        # per key, about 5 requests each (3 operations, 2 Id lookups). SINGLE needs > 1 per record.
        assert len(api) * 2 < n, f"{len(api)} API requests for {n} records: {Counter(r['path'] for r in api)}"
    else:
        writes = [r for r in api if r["method"] in ("POST", "PATCH", "DELETE")]
        assert all("/composite/" not in r["path"] for r in api), Counter(r["path"] for r in api)
        assert len(writes) >= n - len(model.rejected) - len(model.skipped) - 5, len(writes)


# ------------------------------------------------------------------------------------------------
# 6: Struct values with logical types; parent lookup by external ID
# ------------------------------------------------------------------------------------------------

MY_FIELDS = [
    {"name": "Name", "type": "string", "length": 80},
    {"name": "ExternalId__c", "type": "string", "externalId": True, "unique": True},
    {"name": "Amount__c", "type": "currency", "precision": 18, "scale": 2},
    {"name": "Quantity__c", "type": "double", "precision": 18, "scale": 4},
    {"name": "Start_Date__c", "type": "date"},
    {"name": "Start_Time__c", "type": "time"},
    {"name": "Created_At__c", "type": "datetime"},
    {"name": "Active__c", "type": "boolean"},
    {"name": "Tags__c", "type": "multipicklist", "length": 4099},
    {"name": "Notes__c", "type": "textarea", "length": 32000},
    {"name": "Secondary_Key__c", "type": "string", "idLookup": True},
    # added for the integer / float / bytes columns
    {"name": "Int8__c", "type": "int"},
    {"name": "Int16__c", "type": "int"},
    {"name": "Int32__c", "type": "int"},
    {"name": "Int64__c", "type": "double", "precision": 18, "scale": 0},  # Salesforce has no long fields
    {"name": "Float32__c", "type": "double"},
    {"name": "Float64__c", "type": "double"},
    {"name": "Blob__c", "type": "base64"},
]

MY_SCHEMA = {"type": "struct", "name": "e2e.MyObject", "optional": False, "fields": [
    {"field": "Name", "type": "string", "optional": False},
    {"field": "Start_Date__c", "type": "int32", "optional": True, "name": "org.apache.kafka.connect.data.Date", "version": 1},
    {"field": "Start_Time__c", "type": "int32", "optional": True, "name": "org.apache.kafka.connect.data.Time", "version": 1},
    {"field": "Created_At__c", "type": "int64", "optional": True, "name": "org.apache.kafka.connect.data.Timestamp", "version": 1},
    {"field": "Amount__c", "type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal",
     "version": 1, "parameters": {"scale": "2"}},
    {"field": "Int8__c", "type": "int8", "optional": True},
    {"field": "Int16__c", "type": "int16", "optional": True},
    {"field": "Int32__c", "type": "int32", "optional": True},
    {"field": "Int64__c", "type": "int64", "optional": True},
    {"field": "Float32__c", "type": "float", "optional": True},
    {"field": "Float64__c", "type": "double", "optional": True},
    {"field": "Active__c", "type": "boolean", "optional": True},
    {"field": "Blob__c", "type": "bytes", "optional": True},
    {"field": "Tags__c", "type": "array", "items": {"type": "string"}, "optional": True},
    {"field": "Notes__c", "type": "string", "optional": True},
]}


def as_double(sent) -> Decimal:
    """What a Salesforce number field keeps of ``sent``: the nearest double (its shortest text)."""
    return Decimal(repr(float(sent)))


DOUBLE_FIELDS = ("Amount__c", "Int64__c", "Float32__c", "Float64__c")


def _unscaled_b64(n: int) -> str:
    length = max(1, (n.bit_length() + 8) // 8)
    return base64.b64encode(n.to_bytes(length, "big", signed=True)).decode()


def test_struct_values_logical_types_and_parent_lookup(e2e):
    e2e.emu.define_sobject({"name": "MyObject__c", "label": "My Object", "keyPrefix": "a00", "fields": MY_FIELDS})
    account_id = sf_create(e2e, "Account", {"Name": "Acme", "AccountNumber__c": "A-1"})
    dlq = e2e.new_topic("dlq")
    contacts = e2e.new_topic("contacts")
    schemas = {"value.converter.schemas.enable": "true"}
    my_name, contact_name = start(
        e2e,
        e2e.sink_config({**schemas, **e2e.dlq_config(dlq), "salesforce.sobject.type": "MyObject__c",
                         "salesforce.external.id.field": "ExternalId__c", "salesforce.operation": "UPSERT"}),
        e2e.sink_config({**schemas, "topics": contacts}),
    )

    full = {
        "Name": "typed", "Start_Date__c": 19723, "Start_Time__c": 45296789, "Created_At__c": 1704164645006,
        "Amount__c": _unscaled_b64(123450), "Int8__c": -8, "Int16__c": -1600, "Int32__c": 100000,
        "Int64__c": 9007199254740993, "Float32__c": 1.5, "Float64__c": 0.1, "Active__c": True,
        "Blob__c": base64.b64encode(b"hi\x00\xff").decode(), "Tags__c": ["Red", "Green", "Blue"],
        "Notes__c": "x\"y\\z\n😀",
    }
    sparse = {"Name": "edge", "Start_Date__c": -1, "Start_Time__c": 0, "Created_At__c": -1,
              "Amount__c": _unscaled_b64(-5), "Int8__c": 127, "Int16__c": None, "Int32__c": None,
              "Int64__c": -123456789012345678, "Float32__c": None, "Float64__c": None, "Active__c": False,
              "Blob__c": None, "Tags__c": [], "Notes__c": None}
    e2e.produce([("T-1", envelope(MY_SCHEMA, full)), ("T-2", envelope(MY_SCHEMA, sparse))])

    contact_schema = {"type": "struct", "name": "e2e.Contact", "fields": [
        {"field": "LastName", "type": "string"},
        {"field": "Birthdate", "type": "int32", "name": "org.apache.kafka.connect.data.Date", "version": 1},
        {"field": "Account", "type": "struct", "name": "e2e.AccountRef",
         "fields": [{"field": "AccountNumber__c", "type": "string"}]},
    ]}
    e2e.produce([("c", envelope(contact_schema, {"LastName": "Looked Up", "Birthdate": 0,
                                                  "Account": {"AccountNumber__c": "A-1"}}))], topic=contacts)
    wait_consumed(e2e, my_name, e2e.topic)
    wait_consumed(e2e, contact_name, contacts)

    assert dlq_by_offset(e2e, dlq) == {}
    recs = by(records_exact(e2e, "MyObject__c"), "ExternalId__c")
    assert sorted(recs) == ["T-1", "T-2"], recs
    t1 = {k: v for k, v in recs["T-1"].items() if k != "Id"}
    doubles = {f: Decimal(t1.pop(f)) for f in DOUBLE_FIELDS}
    # 2^53 + 1 does not survive a double: Salesforce keeps 2^53
    assert doubles == {"Amount__c": as_double("1234.50"), "Int64__c": as_double(9007199254740993),
                       "Float32__c": as_double(1.5), "Float64__c": as_double(0.1)}, doubles
    assert doubles["Int64__c"] != 9007199254740993
    assert t1 == {
        "ExternalId__c": "T-1", "Name": "typed",
        "Start_Date__c": "2024-01-01", "Start_Time__c": "12:34:56.789Z",
        "Created_At__c": "2024-01-02T03:04:05.006Z",
        "Int8__c": "-8", "Int16__c": "-1600", "Int32__c": "100000", "Active__c": True,
        "Blob__c": base64.b64encode(b"hi\x00\xff").decode(), "Tags__c": "Red;Green;Blue",
        "Notes__c": "x\"y\\z\n😀",
    }, t1
    t2 = recs["T-2"]
    assert (t2["Start_Date__c"], t2["Start_Time__c"], t2["Created_At__c"], Decimal(t2["Amount__c"])) == \
        ("1969-12-31", "00:00:00.000Z", "1969-12-31T23:59:59.999Z", as_double("-0.05")), t2
    assert (t2["Int8__c"], Decimal(t2["Int64__c"]), t2["Active__c"], t2.get("Tags__c")) == \
        ("127", as_double(-123456789012345678), False, ""), t2
    assert all(t2.get(f) is None for f in ("Int16__c", "Int32__c", "Float32__c", "Float64__c", "Blob__c", "Notes__c")), t2

    contacts_got = e2e.emu.records("Contact")
    assert len(contacts_got) == 1, contacts_got
    c = contacts_got[0]
    assert (c["LastName"], c["Birthdate"], c["AccountId"]) == ("Looked Up", "1970-01-01", account_id), c


# ------------------------------------------------------------------------------------------------
# 7: salesforce.null.fields SEND vs SKIP
# ------------------------------------------------------------------------------------------------

def test_null_fields_send_clears_skip_keeps(e2e):
    send_topic, skip_topic = e2e.topic, e2e.new_topic("skip")
    common = {"salesforce.sobject.type": "MyObject__c", "salesforce.external.id.field": "ExternalId__c",
              "salesforce.operation": "UPSERT"}
    send, skip = start(e2e,
                       e2e.sink_config({**common, "topics": send_topic, "salesforce.null.fields": "SEND"}),
                       e2e.sink_config({**common, "topics": skip_topic, "salesforce.null.fields": "SKIP"}))
    first = {"Name": "n1", "Notes__c": "keep me", "Quantity__c": 3}
    e2e.produce([("send-1", first)], topic=send_topic)
    e2e.produce([("skip-1", first)], topic=skip_topic)
    wait_consumed(e2e, send, send_topic)
    wait_consumed(e2e, skip, skip_topic)
    before = by(e2e.emu.records("MyObject__c"), "ExternalId__c")
    assert before["send-1"]["Notes__c"] == "keep me" and before["skip-1"]["Notes__c"] == "keep me", before

    second = {"Name": "n2", "Notes__c": None, "Quantity__c": None}
    e2e.produce([("send-1", second)], topic=send_topic)
    e2e.produce([("skip-1", second)], topic=skip_topic)
    wait_consumed(e2e, send, send_topic)
    wait_consumed(e2e, skip, skip_topic)
    after = by(e2e.emu.records("MyObject__c"), "ExternalId__c")
    assert sorted(after) == ["send-1", "skip-1"], after
    assert after["send-1"]["Id"] == before["send-1"]["Id"] and after["skip-1"]["Id"] == before["skip-1"]["Id"]
    s, k = after["send-1"], after["skip-1"]
    assert (s["Name"], s.get("Notes__c"), s.get("Quantity__c")) == ("n2", None, None), s
    assert (k["Name"], k.get("Notes__c"), k.get("Quantity__c")) == ("n2", "keep me", 3), k


# ------------------------------------------------------------------------------------------------
# 8: whole values that are not Struct/Map
# ------------------------------------------------------------------------------------------------

def test_unsupported_value_types_go_to_dlq(e2e):
    dlq, dlq_raw = e2e.new_topic("dlq"), e2e.new_topic("dlqraw")
    raw_topic = e2e.new_topic("raw")
    for t in (e2e.topic, raw_topic):
        e2e.kafka.create_topic(t, 1)
    schemas, raw = start(
        e2e,
        e2e.sink_config({**e2e.dlq_config(dlq), "value.converter.schemas.enable": "true"}),
        e2e.sink_config({**e2e.dlq_config(dlq_raw), "topics": raw_topic,
                         "value.converter": "org.apache.kafka.connect.converters.ByteArrayConverter"}),
    )
    good = lambda last: envelope({"type": "struct", "fields": [{"field": "LastName", "type": "string"}]},  # noqa: E731
                                 {"LastName": last})
    e2e.produce([
        ("k0", good("Before")),
        ("k1", envelope({"type": "string"}, "just text")),                 # String value
        ("k2", envelope({"type": "bytes"}, base64.b64encode(b"raw").decode())),  # bytes value
        ("k3", envelope({"type": "int32"}, 42)),                           # number value
        ("k4", envelope({"type": "array", "items": {"type": "string"}}, ["a"])),  # array value
        ("k5", good("After")),
    ])
    e2e.produce([("r0", b'{"LastName":"bytes"}')], topic=raw_topic)
    wait_consumed(e2e, schemas, e2e.topic)
    wait_consumed(e2e, raw, raw_topic)

    assert sorted(r["LastName"] for r in e2e.emu.records("Contact")) == ["After", "Before"]
    dead = dlq_by_offset(e2e, dlq)
    assert sorted(dead) == [1, 2, 3, 4], dead
    for off, words in [(1, "a String"), (2, "a byte array"), (3, "an integer"), (4, "an array")]:
        assert f"value is {words}" in dead[off], (off, dead[off])
    dead_raw = dlq_by_offset(e2e, dlq_raw)
    assert sorted(dead_raw) == [0] and "value is a byte array" in dead_raw[0], dead_raw
