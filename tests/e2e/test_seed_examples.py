"""The seed's four example configurations (SPEC: drop-in rule), verbatim but for what cannot be:
the instance URL (→ the emulator), the credentials (→ test credentials registered in the
emulator), the value converter (Avro + Schema Registry → JsonConverter, with ``schemas.enable``
chosen per example) and the ``topics`` to read."""
from __future__ import annotations

import base64
import datetime
import json
from typing import Optional

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# Copied verbatim from the end of seed/salesforce-sobject-sink-connector.txt.
EXAMPLE_1 = r'''{
"connector.class": "io.axual.connect.plugins.salesforce.SalesforceSinkConnector",
"tasks.max": "1",
"salesforce.instance.url": "https://myorg.my.salesforce.com",
"salesforce.client.id": "3MVG94DAZekw5HctTg8hdQ3FK6...",
"salesforce.auth.type": "CLIENT_CREDENTIALS",
"salesforce.client.secret": "AF97355FC3615CF9FA4EB7BF...",
"salesforce.sobject.type": "Contact",
"salesforce.operation": "INSERT",
"key.converter": "org.apache.kafka.connect.storage.StringConverter",
"value.converter": "io.confluent.connect.avro.AvroConverter",
"value.converter.schema.registry.url": "https://schema-registry:8081"
}'''

EXAMPLE_2 = r'''{
"connector.class": "io.axual.connect.plugins.salesforce.SalesforceSinkConnector",
"tasks.max": "1",
"salesforce.instance.url": "https://myorg.my.salesforce.com",
"salesforce.client.id": "3MVG94DAZekw5HctTg8hdQ3FK6...",
"salesforce.auth.type": "JWT_BEARER",
"salesforce.jwt.private.key": "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9...\n-----END PRIVATE KEY-----",
"salesforce.jwt.username": "integration-user@myorg.com",
"salesforce.sobject.type": "Contact",
"salesforce.operation": "INSERT",
"key.converter": "org.apache.kafka.connect.storage.StringConverter",
"value.converter": "io.confluent.connect.avro.AvroConverter",
"value.converter.schema.registry.url": "https://schema-registry:8081"
}'''

EXAMPLE_3 = r'''{
"connector.class": "io.axual.connect.plugins.salesforce.SalesforceSinkConnector",
"tasks.max": "1",
"salesforce.instance.url": "https://myorg.my.salesforce.com",
"salesforce.client.id": "3MVG94DAZekw5HctTg8hdQ3FK6...",
"salesforce.auth.type": "JWT_BEARER",
"salesforce.jwt.private.key": "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9...\n-----END PRIVATE KEY-----",
"salesforce.jwt.username": "integration-user@myorg.com",
"salesforce.sobject.type": "MyObject__c",
"salesforce.operation": "UPSERT",
"salesforce.external.id.field": "ExternalId__c",
"salesforce.retry.max.attempts": "5",
"salesforce.retry.initial.backoff.ms": "1000",
"salesforce.retry.max.backoff.ms": "30000",
"errors.tolerance": "all",
"errors.deadletterqueue.topic.name": "salesforce-sobject-sink-dlq",
"errors.deadletterqueue.topic.replication.factor": "1",
"errors.deadletterqueue.context.headers.enable": "true",
"key.converter": "org.apache.kafka.connect.storage.StringConverter",
"value.converter": "io.confluent.connect.avro.AvroConverter",
"value.converter.schema.registry.url": "https://schema-registry:8081"
}'''

EXAMPLE_4 = r'''{
"connector.class": "io.axual.connect.plugins.salesforce.SalesforceSinkConnector",
"tasks.max": "1",
"salesforce.instance.url": "https://myorg.my.salesforce.com",
"salesforce.client.id": "3MVG94DAZekw5HctTg8hdQ3FK6...",
"salesforce.auth.type": "JWT_BEARER",
"salesforce.jwt.private.key": "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9...\n-----END PRIVATE KEY-----",
"salesforce.jwt.username": "integration-user@myorg.com",
"salesforce.sobject.type": "Contact",
"salesforce.operation": "UPSERT",
"salesforce.external.id.field": "ExternalId__c",
"salesforce.operation.header.enabled": "true",
"salesforce.tombstone.delete": "true",
"salesforce.retry.max.attempts": "3",
"salesforce.retry.initial.backoff.ms": "1000",
"salesforce.retry.max.backoff.ms": "30000",
"errors.tolerance": "all",
"errors.deadletterqueue.topic.name": "salesforce-sobject-sink-dlq",
"errors.deadletterqueue.topic.replication.factor": "1",
"errors.deadletterqueue.context.headers.enable": "true",
"key.converter": "org.apache.kafka.connect.storage.StringConverter",
"value.converter": "io.confluent.connect.avro.AvroConverter",
"value.converter.schema.registry.url": "https://schema-registry:8081"
}'''

SEED_DLQ = "salesforce-sobject-sink-dlq"
EXC_MSG = "__connect.errors.exception.message"
ERR_TOPIC = "__connect.errors.topic"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
CLIENT_ID = "seed-examples-client"
CLIENT_SECRET = "seed-examples-secret-5b0c7e"
USERNAME = "seed-integration@example.com"

_KEY: dict = {}


def _key_pair() -> tuple:
    if not _KEY:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _KEY["private"] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode()
        _KEY["public"] = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return _KEY["private"], _KEY["public"]


def _register(e2e) -> None:
    private, public = _key_pair()
    e2e.emu.add_client(CLIENT_ID, client_secret=CLIENT_SECRET, public_key_pem=public, username=USERNAME)


def _adapt(e2e, example: str, topic: str, schemas: bool = False, escaped_newlines: bool = False,
           converter: Optional[dict] = None) -> dict:
    """The seed's example with only the allowed substitutions; asserts nothing else changed.
    ``converter``: the ``value.converter*`` settings that replace the seed's (default JsonConverter)."""
    seed = json.loads(example)
    cfg = dict(seed)
    cfg["salesforce.instance.url"] = e2e.emulator_url
    cfg["salesforce.client.id"] = CLIENT_ID
    if "salesforce.client.secret" in cfg:
        cfg["salesforce.client.secret"] = CLIENT_SECRET
    if "salesforce.jwt.private.key" in cfg:
        pem = _key_pair()[0].strip()
        # the seed's JSON "\n" decodes to real newlines; a key pasted with literal "\n" must work too
        cfg["salesforce.jwt.private.key"] = pem.replace("\n", "\\n") if escaped_newlines else pem
        cfg["salesforce.jwt.username"] = USERNAME
    cfg.pop("value.converter.schema.registry.url")
    converter = converter or {"value.converter": JSON_CONVERTER,
                              "value.converter.schemas.enable": str(schemas).lower()}
    assert all(k.startswith("value.converter") for k in converter), converter
    cfg.update(converter)
    cfg["topics"] = topic

    allowed = {"salesforce.instance.url", "salesforce.client.id", "salesforce.client.secret",
               "salesforce.jwt.private.key", "salesforce.jwt.username",
               "value.converter.schema.registry.url", "topics", *converter}
    changed = {k for k in set(seed) | set(cfg) if seed.get(k) != cfg.get(k)}
    assert changed <= allowed, changed - allowed
    return cfg


def _envelope(schema_fields: list, payload: dict, name: str) -> dict:
    return {"schema": {"type": "struct", "name": name, "optional": False, "fields": schema_fields},
            "payload": payload}


def _decimal_b64(unscaled: int) -> str:
    n = max(1, (unscaled.bit_length() + 8) // 8)
    return base64.b64encode(unscaled.to_bytes(n, "big", signed=True)).decode()


def _dlq_for(e2e, topic: str, n: int, timeout: float = 40) -> list:
    """DLQ messages of the seed's shared DLQ topic that came from ``topic`` (context header)."""
    seen = {}

    def check():
        msgs = [m for m in e2e.consume_all(SEED_DLQ, timeout=10, idle=1.0)
                if m.headers_dict().get(ERR_TOPIC) == topic]
        seen["msgs"] = msgs
        return msgs if len(msgs) >= n else None

    return e2e.wait_until(check, timeout, lambda: f"{n} DLQ message(s) from {topic}; saw "
                          f"{[(m.key, m.headers_dict().get(EXC_MSG)) for m in seen.get('msgs', [])]}")


def _by_key(msgs: list) -> dict:
    return {(m.key or b"").decode(): m for m in msgs}


def _example_3_written(e2e, name: str) -> dict:
    """{external ID: record} of MyObject__c once example 3's stream is written: EXT-1, EXT-2, EXT-3,
    EXT-1 updated by its second record."""
    def settled():
        recs = e2e.emu.records("MyObject__c")
        by = {r.get("ExternalId__c"): r for r in recs}
        return recs if len(recs) == 3 and by.get("EXT-1", {}).get("Name") == "First, updated" else None

    recs = e2e.wait_until(settled, 30, lambda: f"3 MyObject__c records, EXT-1 updated: "
                          f"{e2e.emu.records('MyObject__c')}\n{e2e.describe(name)}")
    by = {r["ExternalId__c"]: r for r in recs}
    assert set(by) == {"EXT-1", "EXT-2", "EXT-3"}, recs
    return by


def _example_4_written(e2e, name: str) -> dict:
    """{external ID: record} of the live Contacts once example 4's stream is applied: C-1 (updated)
    and C-6 live; C-2 and C-3 deleted; nothing else ever created."""
    def settled():
        live = e2e.emu.records("Contact")
        ext = sorted(r.get("ExternalId__c") for r in live)
        return live if ext == ["C-1", "C-6"] and any(r.get("LastName") == "One updated" for r in live) else None

    live = e2e.wait_until(settled, 30, lambda: f"Contacts C-1 (updated) and C-6 only: "
                          f"{e2e.emu.records('Contact', include_deleted=True)}\n{e2e.describe(name)}")
    everything = e2e.emu.records("Contact", include_deleted=True)
    assert sorted(r.get("ExternalId__c") for r in everything) == ["C-1", "C-2", "C-3", "C-6"], everything
    return {r["ExternalId__c"]: r for r in live}


# -- Example 1: minimal INSERT, client credentials (Struct envelopes) ----------------------------------
def test_example_1_insert_client_credentials(e2e):
    _register(e2e)
    cfg = _adapt(e2e, EXAMPLE_1, e2e.topic, schemas=True)
    name = e2e.create_connector(cfg)
    fields = [{"field": "FirstName", "type": "string", "optional": True},
              {"field": "LastName", "type": "string", "optional": False},
              {"field": "Email", "type": "string", "optional": True},
              {"field": "Birthdate", "type": "int32", "optional": True,
               "name": "org.apache.kafka.connect.data.Date", "version": 1}]
    born = datetime.date(1990, 5, 17)
    days = (born - datetime.date(1970, 1, 1)).days
    e2e.produce([(f"c{i}", _envelope(fields, {"FirstName": "Grace", "LastName": f"Hopper {i}",
                                               "Email": f"grace{i}@example.com", "Birthdate": days},
                                      "contact"))
                 for i in range(3)])
    records = e2e.wait_records("Contact", 3, connector=name)
    assert sorted(r["LastName"] for r in records) == ["Hopper 0", "Hopper 1", "Hopper 2"], records
    assert all(r.get("Birthdate") == "1990-05-17" and r.get("FirstName") == "Grace" for r in records), records
    assert any(r.get("kind") == "token" and r.get("status") == 200 for r in e2e.emu.requests())


# -- Example 2: minimal INSERT, JWT bearer (schemaless) ---------------------------------------------------
def test_example_2_insert_jwt_bearer(e2e):
    _register(e2e)
    cfg = _adapt(e2e, EXAMPLE_2, e2e.topic, schemas=False)
    assert "\n" in cfg["salesforce.jwt.private.key"]
    name = e2e.create_connector(cfg)
    e2e.produce([(f"j{i}", {"FirstName": "Alan", "LastName": f"Turing {i}"}) for i in range(3)])
    records = e2e.wait_records("Contact", 3, connector=name)
    assert sorted(r["LastName"] for r in records) == ["Turing 0", "Turing 1", "Turing 2"], records


# -- Example 3: UPSERT by external ID into MyObject__c, DLQ (Struct envelopes) ----------------------------
def test_example_3_upsert_external_id_with_dlq(e2e):
    _register(e2e)
    cfg = _adapt(e2e, EXAMPLE_3, e2e.topic, schemas=True)
    name = e2e.create_connector(cfg)
    fields = [{"field": "Name", "type": "string", "optional": True},
              {"field": "Amount__c", "type": "bytes", "optional": True,
               "name": "org.apache.kafka.connect.data.Decimal", "version": 1, "parameters": {"scale": "2"}},
              {"field": "Active__c", "type": "boolean", "optional": True}]

    def rec(key, name_, cents, active=True):
        return (key, _envelope(fields, {"Name": name_, "Amount__c": _decimal_b64(cents), "Active__c": active},
                               "my_object"))

    e2e.produce([
        rec("EXT-1", "First", 1234),
        rec("EXT-2", "Second", -500),
        rec("EXT-BAD", "N" * 100, 1),          # Name is 80 long: STRING_TOO_LONG -> DLQ
        rec("EXT-3", "Third", 0, False),
        rec("EXT-1", "First, updated", 99999),  # same external ID: updated, not duplicated
    ])
    dlq = _dlq_for(e2e, e2e.topic, 1)

    by = _example_3_written(e2e, name)
    assert float(by["EXT-1"]["Amount__c"]) == pytest.approx(999.99)
    assert float(by["EXT-2"]["Amount__c"]) == pytest.approx(-5.00)
    assert by["EXT-3"]["Active__c"] is False and by["EXT-2"]["Active__c"] is True

    assert len(dlq) == 1, [(m.key, m.headers_dict().get(EXC_MSG)) for m in dlq]
    msg = dlq[0].headers_dict()
    assert dlq[0].key == b"EXT-BAD"
    for part in ("UPSERT", "MyObject__c", "EXT-BAD", "STRING_TOO_LONG", "Name"):
        assert part in msg.get(EXC_MSG, ""), f"{part!r} not in DLQ message {msg.get(EXC_MSG)!r}"
    assert msg.get("__connect.errors.exception.class.name"), msg
    assert e2e.status(name)["tasks"][0]["state"] == "RUNNING"


# -- Example 4: CDC with header routing, tombstone DELETE, DLQ (schemaless, key with literal \n) ---------
def test_example_4_cdc_header_routing_with_dlq(e2e):
    _register(e2e)
    cfg = _adapt(e2e, EXAMPLE_4, e2e.topic, schemas=False, escaped_newlines=True)
    name = e2e.create_connector(cfg)
    e2e.produce([
        ("C-1", {"FirstName": "Cee", "LastName": "One"}, {"operation": "INSERT"}),
        ("C-2", {"LastName": "Two"}, {"operation": "INSERT"}),
        ("C-3", {"LastName": "Three"}),                                    # no header: UPSERT
        ("C-1", {"LastName": "One updated"}, {"operation": "UPDATE"}),
        ("C-2", {}, {"operation": "DELETE"}),
        ("C-3", None),                                                     # tombstone: DELETE
        ("C-4", {"LastName": "Merge"}, {"operation": "MERGE"}),            # unknown op -> DLQ
        ("C-5", {"LastName": "Ghost"}, {"operation": "update"}),           # UPDATE never creates -> DLQ
        ("C-6", {"LastName": "Six"}, {"operation": "upsert"}),
    ])
    dlq = _by_key(_dlq_for(e2e, e2e.topic, 2))

    live = _example_4_written(e2e, name)
    assert live["C-1"]["FirstName"] == "Cee" and live["C-1"]["LastName"] == "One updated", live

    assert set(dlq) == {"C-4", "C-5"}, list(dlq)
    merge = dlq["C-4"].headers_dict().get(EXC_MSG, "")
    assert "MERGE" in merge and "operation" in merge and "C-4" in merge, merge
    ghost = dlq["C-5"].headers_dict().get(EXC_MSG, "")
    for part in ("UPDATE", "Contact", "C-5", "NOT_FOUND"):
        assert part in ghost, f"{part!r} not in {ghost!r}"
    assert dlq["C-5"].headers_dict().get("operation") == "update", "the DLQ keeps the original headers"
    assert e2e.status(name)["tasks"][0]["state"] == "RUNNING"
