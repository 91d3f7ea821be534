"""``salesforce.sobject.type=${topic}`` through a real worker (SPEC §9, issue 10 item 3).

One connector reads ``crm.Contact``, ``crm.Account``, ``crm.Nowhere__c`` and ``crm.Bad-Name``; a
RegexRouter turns ``crm.X`` into ``X``, so each record's SObject is its renamed topic. Contacts and
Accounts land in their own objects (one external ID value on both is two records); the records of
an SObject the org does not know, and of a topic that cannot be an API name, go to the DLQ with
their cause and original coordinates; the others are still written and every topic's offsets
commit (by the original topic). The literal ``${topic}`` must survive Connect's config-provider
variable resolution (``${provider:[path:]key}`` only) and reach the task.
"""
from __future__ import annotations

from .checks import dlq_entries, regex_router, wait_all_consumed

ACCOUNT_WITH_EXTERNAL_ID = {
    "name": "Account", "keyPrefix": "001", "fields": [
        {"name": "Name", "type": "string", "length": 255},
        {"name": "ExternalId__c", "type": "string", "length": 255, "externalId": True, "unique": True},
    ],
}


def _by_external_id(records: list, field: str) -> dict:
    return {r["ExternalId__c"]: r.get(field) for r in records}


def test_sobject_by_topic_routes_records_and_dlqs_unknown_sobjects(e2e):
    e2e.emu.define_sobject(ACCOUNT_WITH_EXTERNAL_ID)
    # crm.<unique>.Contact and so on: topics outlive a test (one broker per session).
    suffix = e2e.prefix.replace("-", "")[-6:]
    contact, account = f"crm.{suffix}.Contact", f"crm.{suffix}.Account"
    unknown, bad_name = f"crm.{suffix}.Nowhere__c", f"crm.{suffix}.Bad-Name"
    topics = [contact, account, unknown, bad_name]
    for t in topics:
        e2e.kafka.create_topic(t)
    dlq = e2e.new_topic("dlq")
    cfg = e2e.sink_config({
        "topics": ",".join(topics),
        "salesforce.sobject.type": "${topic}",
        "salesforce.operation": "UPSERT",
        "salesforce.external.id.field": "ExternalId__c",
        **regex_router(r"crm\.[a-z0-9]+\.(.*)", "$1"),
        **e2e.dlq_config(dlq),
    })
    probe = dict(cfg, name=e2e.name("validate"))
    assert e2e.connect.validation_errors(e2e.connect.validate(probe)) == {}, "validate must accept ${topic}"
    name = e2e.create_connector(cfg)
    assert e2e.connect.config(name)["salesforce.sobject.type"] == "${topic}"

    e2e.produce([("C-1", {"LastName": "Lovelace"}), ("C-2", {"LastName": "Hopper"}),
                 ("SHARED", {"LastName": "Shared contact"}), ("C-1", {"LastName": "Lovelace-King"})], topic=contact)
    e2e.produce([("A-1", {"Name": "Acme"}), ("SHARED", {"Name": "Shared account"})], topic=account)
    e2e.produce([("N-1", {"Name": "x"}), ("N-2", {"Name": "y"})], topic=unknown)
    e2e.produce([("B-1", {"Name": "z"})], topic=bad_name)

    wait_all_consumed(e2e, name, topics)
    contacts = _by_external_id(e2e.wait_records("Contact", 3), "LastName")
    accounts = _by_external_id(e2e.wait_records("Account", 2), "Name")
    assert contacts == {"C-1": "Lovelace-King", "C-2": "Hopper", "SHARED": "Shared contact"}
    assert accounts == {"A-1": "Acme", "SHARED": "Shared account"}

    entries = dlq_entries(e2e, dlq)
    assert set(entries) == {(unknown, 0, 0), (unknown, 0, 1), (bad_name, 0, 0)}, entries
    for offset in (0, 1):
        message = entries[(unknown, 0, offset)]
        assert "SObject 'Nowhere__c' does not exist" in message, message
        assert f"key 'N-{offset + 1}'" in message and f"offset {offset}" in message, message
    message = entries[(bad_name, 0, 0)]
    assert "'Bad-Name'" in message and "RegexRouter" in message, message
    # Nothing of the unknown or malformed SObjects was written or even sent.
    paths = [str(r.get("path", "")) for r in e2e.emu.requests()]
    assert not [p for p in paths if "Bad-Name" in p], paths
    assert [p for p in paths if p.endswith("/sobjects/Nowhere__c/describe")], "the unknown SObject was never described"
    assert not [p for p in paths if "Nowhere__c" in p and not p.endswith("/describe")], paths
    # The literal reached the task (the task logs the SObject it writes into).
    assert e2e.worker_log_grep("into ${topic}", scope=name), "the task never saw the literal ${topic}"
    assert e2e.status(name)["tasks"][0]["state"] == "RUNNING"


def test_a_topic_routed_to_an_sobject_not_allowed_goes_to_the_dlq(e2e):
    """``salesforce.sobject.allowed`` (issue 19): whoever creates topics cannot pick the SObject."""
    suffix = e2e.prefix.replace("-", "")[-6:]
    contact, lead = f"crm.{suffix}.Contact", f"crm.{suffix}.Lead"
    for t in (contact, lead):
        e2e.kafka.create_topic(t)
    dlq = e2e.new_topic("dlq")
    name = e2e.create_connector(e2e.sink_config({
        "topics": f"{contact},{lead}",
        "salesforce.sobject.type": "${topic}",
        "salesforce.sobject.allowed": "contact",
        **regex_router(r"crm\.[a-z0-9]+\.(.*)", "$1"),
        **e2e.dlq_config(dlq),
    }))
    e2e.produce([("C-1", {"LastName": "Allowed"})], topic=contact)
    e2e.produce([("L-1", {"LastName": "Not allowed", "Company": "X"})], topic=lead)
    wait_all_consumed(e2e, name, [contact, lead])
    assert [r["LastName"] for r in e2e.wait_records("Contact", 1)] == ["Allowed"]
    entries = dlq_entries(e2e, dlq)
    assert set(entries) == {(lead, 0, 0)}, entries
    message = entries[(lead, 0, 0)]
    assert "SObject 'Lead'" in message and "salesforce.sobject.allowed" in message, message
    assert not [r for r in e2e.emu.requests() if "Lead" in str(r.get("path", ""))], "Lead reached Salesforce"
