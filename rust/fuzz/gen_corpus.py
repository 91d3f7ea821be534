#!/usr/bin/env python3
"""Regenerates the seed corpus in rust/fuzz/corpus/ (committed; rerun only to refresh it).

* batch_decoder: batch buffers laid out exactly as RecordBatchEncoder.java writes them
  (ARCHITECTURE.md, "Wire format"), covering every value tag, the operation header kinds,
  tombstones, nesting, plus a few config buffers (ConfigEncoder layout).
* response_parsers: real answers of the emulator (rust/emulator) to Collections writes, SOQL
  lookups and failing requests, each prefixed with the target's 3-byte header
  (op | count << 2, HTTP status big-endian).

usage: gen_corpus.py EMULATOR_URL   (e.g. http://127.0.0.1:PORT of `sf-emulator --port 0`)
"""
import hashlib
import json
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return struct.pack(">i", len(b)) + b


def val(v):
    """Python value → tagged value. Tuples mark the non-JSON types: ("date", days), ..."""
    if v is None:
        return b"\x00"
    if isinstance(v, bool):
        return b"\x01" + bytes([1 if v else 0])
    if isinstance(v, int):
        return b"\x02" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\x04" + struct.pack(">d", v)
    if isinstance(v, str):
        return b"\x05" + s(v)
    if isinstance(v, bytes):
        return b"\x06" + s(v)
    if isinstance(v, list):
        return b"\x07" + struct.pack(">i", len(v)) + b"".join(val(x) for x in v)
    if isinstance(v, dict):
        return b"\x08" + struct.pack(">i", len(v)) + b"".join(s(k) + val(x) for k, x in v.items())
    kind, *rest = v
    if kind == "f32":
        return b"\x03" + struct.pack(">f", rest[0])
    if kind == "struct":
        fields = rest[0]
        return b"\x09" + struct.pack(">i", len(fields)) + b"".join(s(k) + val(x) for k, x in fields.items())
    if kind == "date":
        return b"\x0a" + struct.pack(">i", rest[0])
    if kind == "time":
        return b"\x0b" + struct.pack(">i", rest[0])
    if kind == "ts":
        return b"\x0c" + struct.pack(">q", rest[0])
    if kind == "decimal":
        scale, unscaled = rest
        n = (unscaled.bit_length() + 8) // 8 or 1
        return b"\x0d" + struct.pack(">i", scale) + s(unscaled.to_bytes(n, "big", signed=True))
    raise ValueError(kind)


def header(h):
    if h is None:
        return b"\x00"
    if isinstance(h, str):
        return b"\x01" + s(h)
    if isinstance(h, bytes):
        return b"\x02" + s(h)
    return b"\x03" + s(h[1])  # ("other", "java.lang.Integer")


def record(key, value, op=None, topic="t", partition=0, offset=0, original=None):
    orig = b"\x00" if original is None else b"\x01" + s(original[0]) + struct.pack(">iq", *original[1:])
    return s(topic) + struct.pack(">iq", partition, offset) + val(key) + val(value) + header(op) + orig


def batch(records):
    return b"\x02" + struct.pack(">i", len(records)) + b"".join(
        record(*r[:3], offset=i) if isinstance(r, tuple) else r for i, r in enumerate(records))


def config(pairs):
    return struct.pack(">i", len(pairs)) + b"".join(s(k) + s(v) for k, v in pairs.items())


def batches():
    contact = {"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"}
    yield batch([("k1", contact)])
    yield batch([("k1", contact), ("k2", {"LastName": "B"}), ("k3", None)])
    yield batch([("003000000000001AAA", {"LastName": "x"}, "UPDATE"), ("003000000000002", None, "delete")])
    yield batch([("E-1", {"LastName": "u"}, "UPSERT"), ("E-1", {"LastName": "v"}, "upsert"), ("e-1", None, "DELETE")])
    yield batch([("k", {"LastName": "h"}, b"INSERT"), ("k", {"LastName": "o"}, ("other", "java.lang.Integer"))])
    yield batch([("k", {"LastName": "bad"}, "MERGE"), ("k", {"LastName": "\u00fc\u4e2d\U0001f600"}, None)])
    yield batch([(None, {"LastName": "nokey"})])
    yield batch([(42, {"LastName": "n", "NumberOfEmployees": 7, "AnnualRevenue": 1.5e9})])
    yield batch([(("struct", {"id": "S-1"}), ("struct", {
        "LastName": "s", "Birthdate": ("date", 19000), "Start__c": ("time", 3_600_000),
        "Seen__c": ("ts", 1_700_000_000_123), "Amount__c": ("decimal", 2, -123456),
        "Ratio__c": ("f32", 0.25), "Flag__c": True, "Raw__c": b"\x00\xff", "Tags__c": ["a", "b"],
        "Nested__c": {"x": {"y": [1, None, 2.5]}}, "Nan__c": float("nan"), "Inf__c": float("inf"),
    }))])
    yield batch([("k", {"Birthdate": ("date", -800000), "Big__c": ("decimal", -5, 10**30),
                        "Old__c": ("ts", -62_135_596_800_001), "Far__c": ("date", 2_932_897)})])
    yield batch([("k", {"A": {"B": {"C": {"D": {"E": [[[[[1]]]]]}}}}})])
    yield batch([("k" * 300, {"LastName": "long key"}), ("", {"LastName": "empty key"})])
    yield batch([("k", "not a map"), ("k", [1, 2]), ("k", 3)])
    yield batch([(["array", "key"], {"LastName": "x"}), ({"map": "key"}, {"LastName": "y"})])
    yield batch([])
    yield batch([("k%d" % i, {"LastName": "L%d" % i, "Ext__c": "E-%d" % (i % 3)}) for i in range(12)])
    yield batch([("k", {"Id": "003000000000001AAA", "LastName": "with id", "attributes": {"type": "X"}})])
    yield batch([("k", {"LastName": None, "Email": None})])
    # Malformed on purpose: truncated, wrong version, negative lengths, deep nesting.
    good = batch([("k1", contact)])
    yield good[: len(good) // 2]
    yield b"\x01" + good[1:]
    yield b"\x02\x00\x00\x00\x01" + s("t") + b"\x00\x00\x00\x00" + b"\x00" * 8 + b"\x05\xff\xff\xff\xff"
    yield b"\x02\x00\x00\x00\x01" + s("t") + b"\x00" * 12 + b"\x00" + b"\x07\x00\x00\x00\x01" * 70 + b"\x00" + b"\x00" + b"\x00"
    yield b"\x02\x7f\xff\xff\xff"
    # original coordinates (an SMT renamed the topic), and an unknown flag
    yield batch([record("k", {"LastName": "x"}, None, "Contact", 0, 5, ("crm.Contact", 3, 5))])
    yield good[:-1] + b"\x07"


def configs():
    yield config({"salesforce.instance.url": "http://127.0.0.1:1", "salesforce.client.id": "c",
                  "salesforce.auth.type": "CLIENT_CREDENTIALS", "salesforce.client.secret": "x",
                  "salesforce.sobject.type": "Contact", "connector.name": "n", "task.id": "0"})
    yield config({"salesforce.operation": "UPSERT", "salesforce.external.id.field": "Ext__c"})
    yield config({})


def emu(base, method, path, body=None, headers=None, token=None):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json" if isinstance(body, (dict, list)) else
                       "application/x-www-form-urlencoded")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


OPS = {"INSERT": 0, "UPDATE": 1, "DELETE": 2, "UPSERT": 3}


def responses(base):
    emu(base, "POST", "/__emulator/reset", {})
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "test-client-id",
                                   "client_secret": "test-client-secret"}).encode()
    status, body = emu(base, "POST", "/services/oauth2/token", form)
    token = json.loads(body)["access_token"]
    d = "/services/data/v62.0"
    out = []

    def add(op, count, status, body):
        out.append(bytes([OPS[op] | (count << 2) & 0xFC]) + struct.pack(">H", status) + body)

    recs = [{"attributes": {"type": "Contact"}, "LastName": "A", "ExternalId__c": "C-1"},
            {"attributes": {"type": "Contact"}, "FirstName": "no last name"},
            {"attributes": {"type": "Contact"}, "LastName": "B", "ExternalId__c": "c-2"}]
    st, b = emu(base, "POST", d + "/composite/sobjects", {"allOrNone": False, "records": recs}, token=token)
    add("INSERT", 3, st, b)
    ids = [e.get("id") for e in json.loads(b) if e.get("success")]
    st, b = emu(base, "POST", d + "/composite/sobjects", {"allOrNone": False, "records": [
        {"attributes": {"type": "Contact"}, "LastName": "C", "Bogus__c": 1}]}, token=token)
    add("INSERT", 1, st, b)
    upserts = [{"attributes": {"type": "Contact"}, "ExternalId__c": "C-1", "LastName": "A2"},
               {"attributes": {"type": "Contact"}, "ExternalId__c": "42", "LastName": "N"},
               {"attributes": {"type": "Contact"}, "LastName": "no ext"}]
    st, b = emu(base, "PATCH", d + "/composite/sobjects/Contact/ExternalId__c",
                {"allOrNone": False, "records": upserts}, token=token)
    add("UPSERT", 3, st, b)
    st, b = emu(base, "PATCH", d + "/composite/sobjects",
                {"allOrNone": False, "records": [{"attributes": {"type": "Contact"}, "id": ids[0], "LastName": "U"},
                                                 {"attributes": {"type": "Contact"}, "id": "003000000000000AAA",
                                                  "LastName": "gone"}]}, token=token)
    add("UPDATE", 2, st, b)
    st, b = emu(base, "DELETE", d + "/composite/sobjects?allOrNone=false&ids=%s,003000000000000AAA" % ids[-1],
                token=token)
    add("DELETE", 2, st, b)
    add("DELETE", 5, st, b)  # count mismatch
    q = "SELECT Id, ExternalId__c FROM Contact WHERE ExternalId__c IN ('C-1','c-2','42','x')"
    st, b = emu(base, "GET", d + "/query?q=" + urllib.parse.quote(q), token=token)
    add("UPDATE", 4, st, b)
    for method, path, body in [
        ("GET", d + "/query?q=" + urllib.parse.quote("SELECT Nope FROM Contact"), None),
        ("GET", d + "/sobjects/Contact/ExternalId__c/none?fields=Id", None),
        ("GET", d + "/sobjects/Nope__c/describe", None),
        ("POST", d + "/sobjects/Contact", {"FirstName": "x"}),
        ("POST", d + "/composite/sobjects", b"{not json"),
        ("GET", d + "/sobjects/Contact/describe", None),
    ]:
        st, b = emu(base, method, path, body, token=token)
        add("INSERT", 1, st, b[:4000])
    st, b = emu(base, "GET", d + "/limits", token="not-a-token")
    add("INSERT", 1, st, b)
    st, b = emu(base, "POST", "/services/oauth2/token", b"grant_type=client_credentials&client_id=x&client_secret=y")
    add("INSERT", 0, st, b)
    # Hand-made shapes Salesforce is documented to send.
    add("UPSERT", 1, 300, b'["/services/data/v62.0/sobjects/Contact/003A","/services/data/v62.0/sobjects/Contact/003B"]')
    add("INSERT", 1, 502, b"<html><body>Bad Gateway</body></html>")
    add("INSERT", 1, 403, b'[{"message":"ConcurrentPerOrgLongTxn Limit exceeded","errorCode":"REQUEST_LIMIT_EXCEEDED"}]')
    add("INSERT", 1, 400, b'[{"message":"unable to obtain exclusive access to this record","errorCode":"UNABLE_TO_LOCK_ROW"}]')
    add("INSERT", 2, 200, b'[{"success":false,"errors":[]},{"success":true}]')
    add("INSERT", 1, 200, b"api-usage=4990/5000; per-app-api-usage=1/100")
    add("INSERT", 1, 200, b'{"records":[{"Id":"003A","ExternalId__c":42.0},{"Id":1,"ExternalId__c":"C-1"},'
                          b'{"Id":"003B","externalid__c":"\\u00c4\\u00d6-\\u00fc"},{"Id":"003C"}]}')
    return out


def write(target, blobs):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for blob in blobs:
        (d / hashlib.sha1(blob).hexdigest()).write_bytes(blob)


if __name__ == "__main__":
    write("batch_decoder", list(batches()) + list(configs()))
    if len(sys.argv) > 1:
        write("response_parsers", responses(sys.argv[1].rstrip("/")))
    for t in ("batch_decoder", "response_parsers"):
        d = HERE / "corpus" / t
        print(t, len(list(d.glob("*"))) if d.exists() else 0, "files")
