"""Debezium change events into Salesforce (issue 10 item 5): ``salesforce.operation.header.mapping``.

Debezium-shaped envelopes (JSON with schema: ``before``, ``after``, ``source``, ``op``, ``ts_ms``;
a delete has ``after: null`` and is followed by a tombstone) pass through Debezium's own
``io.debezium.transforms.ExtractNewRecordState`` (from Maven Central, installed as a plugin of its
own by the test stack) with ``add.headers=op``, and Kafka's ``ExtractField$Key``. The sink maps
``__op`` values ``c``/``r``/``u`` to UPSERT and ``d`` to DELETE. The emulator must end in the state
a one-by-one replay of the change events gives.
"""
from __future__ import annotations

import json
import random

from .checks import wait_all_consumed

ROW = {
    "type": "struct", "optional": True, "name": "dbserver1.crm.contacts.Value",
    "fields": [
        {"field": "ExternalId__c", "type": "string", "optional": False},
        {"field": "FirstName", "type": "string", "optional": True},
        {"field": "LastName", "type": "string", "optional": False},
    ],
}
SOURCE = {
    "type": "struct", "optional": False, "name": "io.debezium.connector.postgresql.Source",
    "fields": [
        {"field": "version", "type": "string", "optional": False},
        {"field": "connector", "type": "string", "optional": False},
        {"field": "name", "type": "string", "optional": False},
        {"field": "ts_ms", "type": "int64", "optional": False},
        {"field": "db", "type": "string", "optional": False},
        {"field": "schema", "type": "string", "optional": False},
        {"field": "table", "type": "string", "optional": False},
        {"field": "lsn", "type": "int64", "optional": True},
    ],
}
ENVELOPE = {
    "type": "struct", "optional": False, "name": "dbserver1.crm.contacts.Envelope",
    "fields": [
        {**ROW, "field": "before"},
        {**ROW, "field": "after"},
        {**SOURCE, "field": "source"},
        {"field": "op", "type": "string", "optional": False},
        {"field": "ts_ms", "type": "int64", "optional": True},
    ],
}
KEY = {
    "type": "struct", "optional": False, "name": "dbserver1.crm.contacts.Key",
    "fields": [{"field": "ExternalId__c", "type": "string", "optional": False}],
}


def _key(ext: str) -> str:
    return json.dumps({"schema": KEY, "payload": {"ExternalId__c": ext}})


def _event(op: str, ext: str, before, after, lsn: int) -> str:
    source = {"version": "3.6.1.Final", "connector": "postgresql", "name": "dbserver1", "ts_ms": 1_700_000_000_000 + lsn,
              "db": "crm", "schema": "public", "table": "contacts", "lsn": lsn}
    row = lambda r: None if r is None else {"ExternalId__c": ext, **r}  # noqa: E731
    payload = {"before": row(before), "after": row(after), "source": source, "op": op,
               "ts_ms": 1_700_000_000_000 + lsn}
    return json.dumps({"schema": ENVELOPE, "payload": payload})


def _change_stream(seed: int, keys: int, n: int):
    """(Kafka records, model): a random life of ``keys`` rows, as Debezium would emit it — a
    snapshot read or create first, updates, deletes (each followed by its tombstone), re-creates."""
    rng = random.Random(seed)
    state: dict = {}
    records = []
    for lsn in range(n):
        ext = f"DBZ-{rng.randrange(keys)}"
        before = state.get(ext)
        if before is None:
            op = "r" if lsn < keys else "c"
            after = {"FirstName": rng.choice(["Ada", "Grace", None]), "LastName": f"v{lsn}"}
        elif rng.random() < 0.25:
            op, after = "d", None
        else:
            op, after = "u", {"FirstName": rng.choice(["Ada", "Grace", None]), "LastName": f"v{lsn}"}
        records.append((_key(ext), _event(op, ext, before, after, lsn)))
        if op == "d":
            records.append((_key(ext), None))  # Debezium's tombstone after a delete
            state.pop(ext)
        else:
            state[ext] = after
    return records, state


def test_debezium_envelopes_through_extract_new_record_state(e2e):
    records, model = _change_stream(seed=20260510, keys=12, n=120)
    ops = {json.loads(v)["payload"]["op"] for _, v in records if v is not None}
    assert ops == {"r", "c", "u", "d"}, f"the stream must exercise every Debezium op: {ops}"
    e2e.kafka.create_topic(e2e.topic)
    dlq = e2e.new_topic("dlq")
    cfg = e2e.sink_config({
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
        "transforms": "unwrap,key",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
        "transforms.unwrap.add.headers": "op",
        # a delete event becomes a tombstone that keeps the __op=d header; Debezium's own
        # tombstones stay too (the sink skips them: salesforce.tombstone.delete=false)
        "transforms.unwrap.delete.tombstone.handling.mode": "tombstone",
        "transforms.key.type": "org.apache.kafka.connect.transforms.ExtractField$Key",
        "transforms.key.field": "ExternalId__c",
        "salesforce.operation": "UPSERT",
        "salesforce.external.id.field": "ExternalId__c",
        "salesforce.operation.header.enabled": "true",
        "salesforce.operation.header.name": "__op",
        "salesforce.operation.header.mapping": "c:UPSERT,r:UPSERT,u:UPSERT,d:DELETE",
        **e2e.dlq_config(dlq),
    })
    name = e2e.create_connector(cfg)
    e2e.produce(records)
    wait_all_consumed(e2e, name, [e2e.topic])

    failed = e2e.consume_all(dlq, timeout=5)
    assert not failed, [m.headers_dict().get("__connect.errors.exception.message") for m in failed]
    held = {r["ExternalId__c"]: {"FirstName": r.get("FirstName"), "LastName": r.get("LastName")}
            for r in e2e.emu.records("Contact")}
    assert held == model, f"emulator {held}\nmodel {model}"
    deleted = e2e.emu.records("Contact", include_deleted=True)
    assert any(r.get("IsDeleted") for r in deleted), "no delete reached Salesforce"
