"""The emulator's Bulk API 2.0 ingest, driven by a third-party client nobody here wrote:
simple-salesforce's ``sf.bulk2.<Object>`` (insert, upsert, update, delete, results).

simple-salesforce always builds ``https://`` URLs from ``instance_url``, so the emulator serves
HTTPS here (``--tls-cert/--tls-key``) with a throwaway CA made by ``cryptography`` at test time,
and the client's ``requests`` session trusts that CA. The session id is an access token from the
emulator's own ``/services/oauth2/token`` (client-credentials flow). Every assertion about what
was written reads the emulator's stored records through its control API.
"""
from __future__ import annotations

import csv
import datetime
import io
import ipaddress
import uuid

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.stack.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EmulatorProcess

simple_salesforce = pytest.importorskip("simple_salesforce")

API_VERSION = "62.0"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA and a server certificate for 127.0.0.1/localhost signed by it."""
    d = tmp_path_factory.mktemp("bulk2-pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("bulk2-test-ca")).issuer_name(_name("bulk2-test-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(_pem_key(key))
    return {"ca": str(d / "ca.pem"), "cert": str(d / "server.pem"), "key": str(d / "server.key")}


class Control:
    """The emulator's control API over HTTPS, trusting the test CA."""

    def __init__(self, url: str, ca: str):
        self.url = url
        self.http = requests.Session()
        self.http.trust_env = False  # a REQUESTS_CA_BUNDLE would otherwise win over `verify`
        self.http.verify = ca

    def call(self, method: str, path: str, **kw):
        r = self.http.request(method, self.url + path, timeout=15, **kw)
        assert r.status_code < 400, f"{method} {path} -> {r.status_code}: {r.text}"
        return r.json() if r.content else None

    def records(self, sobject: str, include_deleted: bool = False) -> list:
        q = "?include_deleted=true" if include_deleted else ""
        return self.call("GET", f"/__emulator/records/{sobject}{q}")


@pytest.fixture(scope="module")
def emulator(pki, tmp_path_factory):
    emu = EmulatorProcess(tmp_path_factory.mktemp("bulk2-emu"),
                          extra_args=["--tls-cert", pki["cert"], "--tls-key", pki["key"]]).start()
    try:
        yield Control(f"https://127.0.0.1:{emu.port}", pki["ca"])
    finally:
        emu.stop()


@pytest.fixture
def sf(emulator):
    """A simple-salesforce client on the emulator: instance_url + session_id (an emulator token)."""
    emulator.call("POST", "/__emulator/reset")
    token = emulator.http.post(emulator.url + "/services/oauth2/token", timeout=15, data={
        "grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
    }).json()
    assert token["instance_url"] == emulator.url, token
    session = requests.Session()
    session.trust_env = False
    session.verify = emulator.http.verify
    return simple_salesforce.Salesforce(instance_url=token["instance_url"], session_id=token["access_token"],
                                        session=session, version=API_VERSION)


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _live(emulator: Control, sobject: str) -> dict:
    return {r["Id"]: r for r in emulator.records(sobject)}


def test_insert_with_a_failing_row_and_results(sf, emulator):
    tag = uuid.uuid4().hex[:8]
    records = [
        {"LastName": f"Lovelace-{tag}", "FirstName": "Ada", "Email": "ada@example.com",
         "Description": "first, with a comma\nand a line break"},
        {"LastName": f"Hopper-{tag}", "FirstName": "Grace", "Email": "grace@example.com", "Description": ""},
        {"FirstName": "NoLastName", "Email": "nobody@example.com"},  # REQUIRED_FIELD_MISSING
    ]
    [result] = sf.bulk2.Contact.insert(records=records, wait=0.1)
    assert result["numberRecordsProcessed"] == 3, result
    assert result["numberRecordsFailed"] == 1, result
    job_id = result["job_id"]
    assert job_id.startswith("750")

    ok = _rows(sf.bulk2.Contact.get_successful_records(job_id))
    failed = _rows(sf.bulk2.Contact.get_failed_records(job_id))
    unprocessed = _rows(sf.bulk2.Contact.get_unprocessed_records(job_id))
    assert {r["LastName"] for r in ok} == {f"Lovelace-{tag}", f"Hopper-{tag}"}
    assert all(r["sf__Created"] == "true" for r in ok)
    assert [r["FirstName"] for r in failed] == ["NoLastName"]
    assert failed[0]["sf__Error"] == "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
    assert failed[0]["sf__Id"] == ""
    assert unprocessed == []

    stored = _live(emulator, "Contact")
    assert set(stored) == {r["sf__Id"] for r in ok}
    ada = next(r for r in ok if r["FirstName"] == "Ada")
    assert stored[ada["sf__Id"]]["Description"] == "first, with a comma\nand a line break"
    assert stored[ada["sf__Id"]]["Email"] == "ada@example.com"
    grace = next(r for r in ok if r["FirstName"] == "Grace")
    assert "Description" not in stored[grace["sf__Id"]], "an empty cell leaves the field unset"

    # get_all_ingest_records reads the three result resources in one go.
    everything = sf.bulk2.Contact.get_all_ingest_records(job_id)
    assert len(everything["successfulRecords"]) == 2 and len(everything["failedRecords"]) == 1


def test_upsert_new_and_existing_then_update_then_delete(sf, emulator):
    tag = uuid.uuid4().hex[:8]
    first = [{"ExternalId__c": f"{tag}-1", "LastName": "One"}, {"ExternalId__c": f"{tag}-2", "LastName": "Two"}]
    [r1] = sf.bulk2.Contact.upsert(records=first, external_id_field="ExternalId__c", wait=0.1)
    assert (r1["numberRecordsProcessed"], r1["numberRecordsFailed"]) == (2, 0), r1
    created = {r["ExternalId__c"]: r for r in _rows(sf.bulk2.Contact.get_successful_records(r1["job_id"]))}
    assert {r["sf__Created"] for r in created.values()} == {"true"}

    # One existing (matched case-insensitively by the external ID), one new.
    second = [{"ExternalId__c": f"{tag}-1".upper(), "LastName": "OneUpdated"},
              {"ExternalId__c": f"{tag}-3", "LastName": "Three"}]
    [r2] = sf.bulk2.Contact.upsert(records=second, external_id_field="ExternalId__c", wait=0.1)
    assert r2["numberRecordsFailed"] == 0, r2
    results = {r["LastName"]: r for r in _rows(sf.bulk2.Contact.get_successful_records(r2["job_id"]))}
    assert results["OneUpdated"]["sf__Created"] == "false"
    assert results["OneUpdated"]["sf__Id"] == created[f"{tag}-1"]["sf__Id"]
    assert results["Three"]["sf__Created"] == "true"
    stored = _live(emulator, "Contact")
    assert len(stored) == 3
    assert stored[created[f"{tag}-1"]["sf__Id"]]["LastName"] == "OneUpdated"

    # Update by Id, one of them by its 15-character form.
    two_id = created[f"{tag}-2"]["sf__Id"]
    three_id = results["Three"]["sf__Id"]
    [r3] = sf.bulk2.Contact.update(records=[{"Id": two_id[:15], "FirstName": "Deux"},
                                            {"Id": three_id, "FirstName": "Trois"}], wait=0.1)
    assert (r3["numberRecordsProcessed"], r3["numberRecordsFailed"]) == (2, 0), r3
    stored = _live(emulator, "Contact")
    assert stored[two_id]["FirstName"] == "Deux" and stored[three_id]["FirstName"] == "Trois"

    # Delete two; deleting one of them again is a failed row, not a failed job.
    [r4] = sf.bulk2.Contact.delete(records=[{"Id": two_id}, {"Id": three_id}], wait=0.1)
    assert (r4["numberRecordsProcessed"], r4["numberRecordsFailed"]) == (2, 0), r4
    assert set(_live(emulator, "Contact")) == {created[f"{tag}-1"]["sf__Id"]}
    deleted = [r for r in emulator.records("Contact", include_deleted=True) if r["IsDeleted"]]
    assert {r["Id"] for r in deleted} == {two_id, three_id}
    [r5] = sf.bulk2.Contact.delete(records=[{"Id": two_id}], wait=0.1)
    assert r5["numberRecordsFailed"] == 1, r5
    [gone] = _rows(sf.bulk2.Contact.get_failed_records(r5["job_id"]))
    assert gone["sf__Error"] == "ENTITY_IS_DELETED:entity is deleted:--"
    assert gone["Id"] == two_id


def test_a_failed_job_surfaces_as_an_error_and_requests_are_counted(sf, emulator):
    # An unknown column fails the whole job, as Salesforce's InvalidBatch does.
    with pytest.raises(simple_salesforce.exceptions.SalesforceOperationError, match="Field name not found : Nope__c"):
        sf.bulk2.Contact.insert(records=[{"LastName": "X", "Nope__c": "1"}], wait=0.1)
    assert emulator.records("Contact") == []

    stats = emulator.call("GET", "/__emulator/stats")
    for kind in ("bulk_create", "bulk_upload", "bulk_close", "bulk_poll"):
        assert stats["by_kind"].get(kind, 0) >= 1, stats["by_kind"]
    bulk = emulator.call("GET", "/__emulator/bulk")
    assert (bulk["jobs_created"], bulk["jobs_failed"], bulk["uploads"]) == (1, 1, 1), bulk
