"""The seed's four example configurations with Avro values and a schema registry, as Axual runs
them: a real Avro converter in the worker's plugin path, a real schema registry, real serializers.

The seed names Confluent's ``io.confluent.connect.avro.AvroConverter``, which Maven Central does not
serve here; Apicurio Registry's ``io.apicurio.registry.utils.converter.AvroConverter`` 2.6.13.Final
(Axual's platform runs Apicurio Registry) takes its place, against Apicurio Registry 2.4.2.Final
run in memory (``tests/stack/schema_registry.py``). The only substitutions besides those of
``test_seed_examples.py``: ``value.converter`` and its registry settings. Two wire formats:

* examples 1 and 3: Confluent's, written by Confluent's own Python ``AvroSerializer`` registering
  through the registry's Confluent-compatible API (what a Confluent producer does); the converter
  reads it with ``apicurio.registry.id-handler=...Legacy4ByteIdHandler`` and
  ``apicurio.registry.use-id=contentId``;
* examples 2 and 4: Apicurio's default (8-byte global id), registered through Apicurio's v2 API;
  the converter's default settings.

What each Avro type becomes (asserted below on the emulator's records): optional unions
``["null", T]`` are T or null (null clears the field: ``salesforce.null.fields=SEND``); enums are
strings (picklists), arrays of enums ``;``-joined (multi-select picklists); ``decimal`` (bytes and
fixed) are exact numbers; ``date``, ``time-millis``, ``timestamp-millis`` are Salesforce dates,
times and datetimes; ``uuid`` is a string. A general union (``["null", "string", "long"]``) is a
Struct with one field per branch, sent as a nested JSON object, which Salesforce refuses for a
scalar field: that record goes to the DLQ. ``time-micros`` / ``timestamp-micros`` lose their
logical type in the converter (plain int64): into a time or datetime field they go to the DLQ.
"""
from __future__ import annotations

import datetime
import json
import shutil
import uuid
from decimal import Decimal

import pytest
from fastavro import parse_schema
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.stack import kafka_libs
from tests.stack.schema_registry import SchemaRegistry, apicurio_frame

from .conftest import E2E
from .test_operations import MY_FIELDS
from .test_seed_examples import (EXAMPLE_1, EXAMPLE_2, EXAMPLE_3, EXAMPLE_4, EXC_MSG, _adapt, _by_key,
                                 _dlq_for, _example_3_written, _example_4_written, _register)

# The first test's setup may fetch the converter and build the registry (about 130 MB of jars from
# Maven Central on a fresh machine) before it starts a worker and the registry.
pytestmark = pytest.mark.timeout(900)

APICURIO_AVRO = "io.apicurio.registry.utils.converter.AvroConverter"
UTC = datetime.timezone.utc
NS = "com.example.crm"
STAGE = "__connect.errors.stage"


@pytest.fixture(scope="module")
def avro_stack(stack):
    """The schema registry and a worker whose plugin path holds the connector and Apicurio's
    converter, each in a folder of its own (as Axual installs them), in a Connect cluster of its
    own: the other tests' workers do not scan the converter's jars at every start."""
    plugins = stack.dir / "plugins-avro"
    shutil.rmtree(plugins, ignore_errors=True)
    shutil.copytree(stack.plugin_dir, plugins / stack.plugin_dir.name)
    shutil.copytree(kafka_libs.ensure_apicurio_converter(), plugins / "apicurio-converter",
                    ignore=shutil.ignore_patterns(".complete"))
    worker = stack.add_worker(wait=False, group_id="connect-avro", plugin_path=plugins)
    reg = None
    try:
        reg = SchemaRegistry(stack.dir).start()  # while the worker starts
        # One content under two artifacts: from here on every global id is one ahead of its
        # content id, so a converter reading the wrong kind of id would fetch the wrong schema.
        decoy = json.dumps({"type": "record", "name": "Decoy", "namespace": NS, "fields": []})
        assert reg.register("decoy-a", decoy) + 1 == reg.register("decoy-b", decoy)
        worker.wait_ready(120)
        yield worker, reg
    finally:
        if reg:
            reg.stop(grace=10)
        stack.remove_worker(worker)


@pytest.fixture
def avro(e2e, avro_stack):
    """``e2e`` whose connectors run on the Avro worker (created, described and deleted there)."""
    worker, reg = avro_stack
    ctx = AvroE2E(e2e, worker, reg)
    yield ctx
    for name in ctx.connectors:
        worker.connect.delete_and_wait(name, timeout=30)


class AvroE2E(E2E):
    def __init__(self, base: E2E, worker, registry: SchemaRegistry):  # noqa: super() not called: a view of base
        self.__dict__.update(base.__dict__)
        self.connectors = []
        self.worker, self.registry = worker, registry

    @property
    def connect(self):
        return self.worker.connect


def confluent_converter(reg: SchemaRegistry) -> dict:
    return {"value.converter": APICURIO_AVRO,
            "value.converter.apicurio.registry.url": reg.url,
            # Confluent's framing (4-byte id); "as-confluent=true" does the same but warns at every start
            "value.converter.apicurio.registry.id-handler": "io.apicurio.registry.serde.Legacy4ByteIdHandler",
            "value.converter.apicurio.registry.use-id": "contentId"}


def apicurio_converter(reg: SchemaRegistry) -> dict:
    return {"value.converter": APICURIO_AVRO, "value.converter.apicurio.registry.url": reg.url}


class ConfluentProducer:
    """Values as a Confluent producer writes them: Confluent's AvroSerializer, subject
    ``<topic>-value``, schema registered through the registry's ccompat API."""

    def __init__(self, reg: SchemaRegistry, topic: str):
        self.client = SchemaRegistryClient({"url": reg.ccompat_url})
        self.ctx = SerializationContext(topic, MessageField.VALUE)

    def serializer(self, schema: dict):
        ser = AvroSerializer(self.client, json.dumps(schema), conf={"auto.register.schemas": True})
        return lambda record: ser(record, self.ctx)


class ApicurioProducer:
    """Values as Apicurio's serializer writes them by default: artifact ``<topic>-value`` in group
    ``default`` (its TopicIdStrategy), 8-byte global id."""

    def __init__(self, reg: SchemaRegistry, topic: str):
        self.reg, self.artifact = reg, f"{topic}-value"

    def serializer(self, schema: dict):
        global_id = self.reg.register(self.artifact, json.dumps(schema))
        parsed = parse_schema(schema)
        return lambda record: apicurio_frame(global_id, parsed, record)


def _reasons(dlq: dict) -> dict:
    return {key: m.headers_dict().get(EXC_MSG) for key, m in dlq.items()}


def _optional(t) -> list:
    return ["null", t]


DATE = {"type": "int", "logicalType": "date"}
TIME_MILLIS = {"type": "int", "logicalType": "time-millis"}
TIMESTAMP_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}


# -- Example 1: minimal INSERT, client credentials; Confluent wire format --------------------------
CONTACT_1 = {
    "type": "record", "name": "Contact", "namespace": NS, "fields": [
        {"name": "FirstName", "type": _optional("string"), "default": None},
        {"name": "LastName", "type": "string"},
        {"name": "Email", "type": _optional("string"), "default": None},
        {"name": "Birthdate", "type": _optional(DATE), "default": None},
        {"name": "Preferred_Time__c", "type": TIME_MILLIS},
        {"name": "Last_Contacted__c", "type": TIMESTAMP_MILLIS},
        {"name": "Score__c", "type": _optional("double"), "default": None},
        {"name": "Active__c", "type": "boolean"},
        {"name": "Interests__c", "type": {"type": "array", "items": {
            "type": "enum", "name": "Interest", "symbols": ["Golf", "Sailing", "Chess"]}}},
    ]}


def test_example_1_avro_insert_client_credentials(avro):
    _register(avro)
    cfg = _adapt(avro, EXAMPLE_1, avro.topic, converter=confluent_converter(avro.registry))
    name = avro.create_connector(cfg)
    ser = ConfluentProducer(avro.registry, avro.topic).serializer(CONTACT_1)
    full = {"FirstName": "Grace", "LastName": "Hopper 0", "Email": "grace@example.com",
            "Birthdate": datetime.date(1990, 5, 17), "Preferred_Time__c": datetime.time(9, 30, 15, 250000),
            "Last_Contacted__c": datetime.datetime(2024, 3, 1, 12, 34, 56, 789000, tzinfo=UTC),
            "Score__c": 87.5, "Active__c": True, "Interests__c": ["Golf", "Chess"]}
    sparse = {**full, "LastName": "Hopper 1", "FirstName": None, "Email": None, "Birthdate": None,
              "Score__c": None, "Active__c": False, "Interests__c": ["Sailing"],
              "Preferred_Time__c": datetime.time(0, 0), "Last_Contacted__c": datetime.datetime(1970, 1, 1, tzinfo=UTC)}
    avro.produce([("c0", ser(full)), ("c1", ser(sparse))])

    by = {r["LastName"]: r for r in avro.wait_records("Contact", 2, connector=name)}
    assert set(by) == {"Hopper 0", "Hopper 1"}, by
    got = {k: by["Hopper 0"].get(k) for k in full if k != "LastName"}
    assert got == {"FirstName": "Grace", "Email": "grace@example.com", "Birthdate": "1990-05-17",
                   "Preferred_Time__c": "09:30:15.250Z", "Last_Contacted__c": "2024-03-01T12:34:56.789Z",
                   "Score__c": 87.5, "Active__c": True, "Interests__c": "Golf;Chess"}, by["Hopper 0"]
    got = {k: by["Hopper 1"].get(k) for k in full if k != "LastName"}
    assert got == {"FirstName": None, "Email": None, "Birthdate": None, "Preferred_Time__c": "00:00:00.000Z",
                   "Last_Contacted__c": "1970-01-01T00:00:00.000Z", "Score__c": None, "Active__c": False,
                   "Interests__c": "Sailing"}, by["Hopper 1"]


# -- Example 2: minimal INSERT, JWT bearer; Apicurio wire format ---------------------------------------
CONTACT_2 = {
    "type": "record", "name": "NewContact", "namespace": NS, "fields": [
        {"name": "LastName", "type": "string"},
        {"name": "FirstName", "type": _optional("string"), "default": None},
        {"name": "ExternalId__c", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "Score__c", "type": "float"},
        {"name": "Description", "type": _optional("string"), "default": None},
    ]}


def test_example_2_avro_insert_jwt_bearer(avro):
    _register(avro)
    cfg = _adapt(avro, EXAMPLE_2, avro.topic, converter=apicurio_converter(avro.registry))
    name = avro.create_connector(cfg)
    ser = ApicurioProducer(avro.registry, avro.topic).serializer(CONTACT_2)
    ids = [uuid.UUID(int=0x1234_5678_9ABC_DEF0_0FED_CBA9_8765_4321 + i) for i in range(3)]
    avro.produce([(f"j{i}", ser({"LastName": f"Turing {i}", "FirstName": "Alan" if i else None,
                                "ExternalId__c": ids[i], "Score__c": 42.25 + i,
                                "Description": "héllo ✓ \"quoted\"\nline 2"}))
                 for i in range(3)])
    records = sorted(avro.wait_records("Contact", 3, connector=name), key=lambda r: r["LastName"])
    assert [r["LastName"] for r in records] == ["Turing 0", "Turing 1", "Turing 2"], records
    assert [r.get("ExternalId__c") for r in records] == [str(u) for u in ids], records
    assert [r.get("Score__c") for r in records] == [42.25, 43.25, 44.25], records
    assert [r.get("FirstName") for r in records] == [None, "Alan", "Alan"], records
    assert all(r.get("Description") == "héllo ✓ \"quoted\"\nline 2" for r in records), records


# -- Example 3: UPSERT by external ID into MyObject__c, DLQ; Confluent wire format ---------------------
MY_OBJECT_FIELDS = [*MY_FIELDS, {"name": "Status__c", "type": "picklist"}]


def my_object_schema(time_type: dict = TIME_MILLIS, timestamp_type: dict = TIMESTAMP_MILLIS,
                     quantity_type: str = "bytes") -> dict:
    quantity = {"type": quantity_type, "logicalType": "decimal", "precision": 18, "scale": 4}
    if quantity_type == "fixed":
        quantity.update(name="Quantity", size=8)
    return {
        "type": "record", "name": "MyObject", "namespace": NS, "fields": [
            {"name": "Name", "type": _optional("string"), "default": None},
            {"name": "Amount__c", "type": _optional({"type": "bytes", "logicalType": "decimal",
                                                     "precision": 18, "scale": 2}), "default": None},
            {"name": "Quantity__c", "type": quantity},
            {"name": "Start_Date__c", "type": DATE},
            {"name": "Start_Time__c", "type": time_type},
            {"name": "Created_At__c", "type": timestamp_type},
            {"name": "Active__c", "type": "boolean"},
            {"name": "Status__c", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "OPEN", "CLOSED"]}},
            # a general union: the converter makes it a Struct {string, long}
            {"name": "Notes__c", "type": ["null", "string", "long"], "default": None},
        ]}


def test_example_3_avro_upsert_external_id_with_dlq(avro):
    _register(avro)
    avro.emu.define_sobject({"name": "MyObject__c", "label": "My Object", "keyPrefix": "a00",
                            "fields": MY_OBJECT_FIELDS})
    cfg = _adapt(avro, EXAMPLE_3, avro.topic, converter=confluent_converter(avro.registry))
    name = avro.create_connector(cfg)
    producer = ConfluentProducer(avro.registry, avro.topic)
    millis = producer.serializer(my_object_schema())
    # the same subject's next versions: micros instead of millis; a decimal as fixed instead of bytes
    micros = producer.serializer(my_object_schema({"type": "long", "logicalType": "time-micros"},
                                                  {"type": "long", "logicalType": "timestamp-micros"}))
    fixed = producer.serializer(my_object_schema(quantity_type="fixed"))

    def rec(name_, amount, status, notes=None, ser=millis):
        return ser({"Name": name_, "Amount__c": amount, "Quantity__c": Decimal("1.5000"),
                    "Start_Date__c": datetime.date(2024, 6, 30), "Start_Time__c": datetime.time(8, 0, 0, 5000),
                    "Created_At__c": datetime.datetime(2024, 6, 30, 23, 59, 59, 999000, tzinfo=UTC),
                    "Active__c": status != "CLOSED", "Status__c": status, "Notes__c": notes})

    produced = [
        ("EXT-1", rec("First", Decimal("12.34"), "NEW")),
        ("EXT-2", rec("Second", Decimal("-5.00"), "CLOSED")),
        ("EXT-3", rec("Third", None, "OPEN")),
        ("EXT-BAD", rec("N" * 100, Decimal("0.01"), "NEW")),                       # Name is 80 long
        ("EXT-UNION", rec("Union", Decimal("1.00"), "NEW", notes="free text")),   # general union -> Struct
        ("EXT-MICROS", rec("Micros", Decimal("1.00"), "NEW", ser=micros)),       # micros -> plain int64
        ("EXT-FIXED", rec("Fixed", Decimal("1.00"), "NEW", ser=fixed)),          # the converter fails
        ("EXT-1", rec("First, updated", Decimal("999.99"), "OPEN")),              # same external ID: updated
    ]
    avro.produce(produced)
    dlq = _by_key(_dlq_for(avro, avro.topic, 4))
    assert set(dlq) == {"EXT-BAD", "EXT-UNION", "EXT-MICROS", "EXT-FIXED"}, _reasons(dlq)

    by = _example_3_written(avro, name)
    fields = ("Name", "Amount__c", "Quantity__c", "Start_Date__c", "Start_Time__c", "Created_At__c",
              "Active__c", "Status__c", "Notes__c")
    common = {"Quantity__c": 1.5, "Start_Date__c": "2024-06-30", "Start_Time__c": "08:00:00.005Z",
              "Created_At__c": "2024-06-30T23:59:59.999Z", "Notes__c": None}
    assert {k: by["EXT-1"].get(k) for k in fields} == {
        **common, "Name": "First, updated", "Amount__c": 999.99, "Active__c": True, "Status__c": "OPEN"}
    assert {k: by["EXT-2"].get(k) for k in fields} == {
        **common, "Name": "Second", "Amount__c": -5.0, "Active__c": False, "Status__c": "CLOSED"}
    assert {k: by["EXT-3"].get(k) for k in fields} == {
        **common, "Name": "Third", "Amount__c": None, "Active__c": True, "Status__c": "OPEN"}

    expected = {"EXT-BAD": ("UPSERT", "MyObject__c", "STRING_TOO_LONG", "Name"),
                "EXT-UNION": ("UPSERT", "MyObject__c", "JSON_PARSER_ERROR", "START_OBJECT"),
                "EXT-MICROS": ("UPSERT", "MyObject__c", "JSON_PARSER_ERROR", "VALUE_NUMBER_INT")}
    raw = dict(produced[3:7])
    for key, parts in expected.items():
        assert dlq[key].headers_dict().get(STAGE) == "TASK_PUT", dlq[key].headers_dict()
        msg = dlq[key].headers_dict().get(EXC_MSG, "")
        for part in (*parts, key):
            assert part in msg, f"{part!r} not in DLQ message of {key}: {msg!r}"
        assert dlq[key].value == raw[key], f"the DLQ holds {key} as produced (Avro, with its schema id)"
    # Apicurio's AvroData cannot convert a decimal written as a named fixed: the worker's converter
    # stage fails the record (errors.tolerance=all sends it to the DLQ) before the connector sees it
    conv = dlq["EXT-FIXED"].headers_dict()
    assert conv.get(STAGE) == "VALUE_CONVERTER", conv
    assert "Mismatched names" in conv.get(EXC_MSG, "") and "Quantity" in conv.get(EXC_MSG, ""), conv
    assert dlq["EXT-FIXED"].value == raw["EXT-FIXED"]
    assert avro.status(name)["tasks"][0]["state"] == "RUNNING"


# -- Example 4: CDC with header routing, tombstone DELETE, DLQ; Apicurio wire format --------------------
CONTACT_CHANGE = {
    "type": "record", "name": "ContactChange", "namespace": NS, "fields": [
        {"name": "FirstName", "type": _optional("string"), "default": None},
        {"name": "LastName", "type": _optional("string"), "default": None},
        {"name": "Description", "type": ["null", "string", "int"], "default": None},
    ]}


def test_example_4_avro_cdc_header_routing_with_dlq(avro):
    _register(avro)
    cfg = _adapt(avro, EXAMPLE_4, avro.topic, escaped_newlines=True, converter=apicurio_converter(avro.registry))
    name = avro.create_connector(cfg)
    ser = ApicurioProducer(avro.registry, avro.topic).serializer(CONTACT_CHANGE)

    def v(first=None, last=None, description=None):
        return ser({"FirstName": first, "LastName": last, "Description": description})

    avro.produce([
        ("C-1", v("Cee", "One"), {"operation": "INSERT"}),
        ("C-2", v(last="Two"), {"operation": "INSERT"}),
        ("C-3", v(last="Three")),                                          # no header: UPSERT
        ("C-1", v(last="One updated"), {"operation": "UPDATE"}),          # null FirstName clears it
        ("C-2", v(), {"operation": "DELETE"}),
        ("C-3", None),                                                     # tombstone: DELETE
        ("C-4", v(last="Merge"), {"operation": "MERGE"}),                  # unknown op -> DLQ
        ("C-5", v(last="Ghost"), {"operation": "update"}),                 # UPDATE never creates -> DLQ
        ("C-6", v("Six", "Six", None), {"operation": "upsert"}),
        ("C-7", v(last="Seven", description=7), {"operation": "UPSERT"}),  # general union -> DLQ
    ])
    dlq = _by_key(_dlq_for(avro, avro.topic, 3))
    assert set(dlq) == {"C-4", "C-5", "C-7"}, _reasons(dlq)

    live = _example_4_written(avro, name)
    c1, c6 = live["C-1"], live["C-6"]
    assert c1.get("FirstName") is None and c1["LastName"] == "One updated", c1  # null cleared FirstName
    assert (c6.get("FirstName"), c6["LastName"], c6.get("Description")) == ("Six", "Six", None), c6

    merge = dlq["C-4"].headers_dict().get(EXC_MSG, "")
    assert "MERGE" in merge and "operation" in merge and "C-4" in merge, merge
    for key, parts in {"C-5": ("UPDATE", "Contact", "NOT_FOUND"),
                       "C-7": ("UPSERT", "Contact", "JSON_PARSER_ERROR", "START_OBJECT")}.items():
        msg = dlq[key].headers_dict().get(EXC_MSG, "")
        for part in (*parts, key):
            assert part in msg, f"{part!r} not in DLQ message of {key}: {msg!r}"
    assert avro.status(name)["tasks"][0]["state"] == "RUNNING"


# -- micros: Kafka's TimestampConverter restores what the Avro converter drops --------------------------
def test_avro_micros_through_timestamp_converter(avro):
    """Example 3 with two of Kafka's own SMTs: ``unix.precision=microseconds`` turns the int64 of
    ``timestamp-micros`` / ``time-micros`` back into a Timestamp / Time (sub-millisecond digits cut)."""
    _register(avro)
    avro.emu.define_sobject({"name": "MyObject__c", "label": "My Object", "keyPrefix": "a00",
                            "fields": MY_OBJECT_FIELDS})
    cfg = _adapt(avro, EXAMPLE_3, avro.topic, converter=confluent_converter(avro.registry))
    smt = "org.apache.kafka.connect.transforms.TimestampConverter$Value"
    cfg.update({"transforms": "createdAt,startTime",
                "transforms.createdAt.type": smt, "transforms.createdAt.field": "Created_At__c",
                "transforms.createdAt.target.type": "Timestamp",
                "transforms.createdAt.unix.precision": "microseconds",
                "transforms.startTime.type": smt, "transforms.startTime.field": "Start_Time__c",
                "transforms.startTime.target.type": "Time",
                "transforms.startTime.unix.precision": "microseconds"})
    name = avro.create_connector(cfg)
    ser = ConfluentProducer(avro.registry, avro.topic).serializer(
        my_object_schema({"type": "long", "logicalType": "time-micros"},
                         {"type": "long", "logicalType": "timestamp-micros"}))
    avro.produce([("EXT-M", ser({
        "Name": "Micros", "Amount__c": Decimal("1.00"), "Quantity__c": Decimal("2.0000"),
        "Start_Date__c": datetime.date(2024, 6, 30), "Start_Time__c": datetime.time(8, 0, 0, 5999),
        "Created_At__c": datetime.datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),
        "Active__c": True, "Status__c": "NEW", "Notes__c": None}))])
    rec = avro.wait_records("MyObject__c", 1, connector=name)[0]
    assert (rec.get("Start_Time__c"), rec.get("Created_At__c")) == \
        ("08:00:00.005Z", "2024-06-30T23:59:59.999Z"), rec
