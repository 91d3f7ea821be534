"""Secrets through Kafka's config providers (issue 10 item 6).

The test workers run with ``config.providers=file`` (``FileConfigProvider``, tests/stack/worker.py).
A ``secrets.properties`` file holds a client secret and a JWT private key (a PEM in a properties
file: its newlines written as ``\\n`` escapes, which ``java.util.Properties`` turns back into
newlines). Two connectors name them as ``${file:<path>:client_secret}`` and
``${file:<path>:jwt_key}``: both reach RUNNING and write records, while the connector config, status
and task configs the REST API shows, and every line the workers logged, hold the reference and never
the resolved secret.
"""
from __future__ import annotations

import json
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _rsa_key() -> tuple:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private_pem, public_pem


def test_secrets_from_a_file_config_provider_never_show(e2e):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    private_pem, public_pem = _rsa_key()
    key_lines = [ln for ln in private_pem.strip().splitlines() if not ln.startswith("-----")]
    secrets_file = e2e.stack.dir / f"{e2e.prefix}-secrets.properties"
    secrets_file.write_text(
        "# read by the workers' FileConfigProvider\n"
        f"client_secret={secret}\n"
        # java.util.Properties: "\n" in a value is a newline escape
        "jwt_key=" + private_pem.strip().replace("\n", "\\n") + "\n")

    cc_client, jwt_client, username = f"cc-{e2e.prefix}", f"jwt-{e2e.prefix}", "secrets@example.com"
    e2e.emu.add_client(cc_client, client_secret=secret)
    e2e.emu.add_client(jwt_client, public_key_pem=public_pem, username=username)

    cc_topic, jwt_topic = e2e.new_topic("cc"), e2e.new_topic("jwt")
    cc_ref = f"${{file:{secrets_file}:client_secret}}"
    jwt_ref = f"${{file:{secrets_file}:jwt_key}}"
    cc = e2e.create_connector(e2e.sink_config({
        "topics": cc_topic,
        "salesforce.client.id": cc_client,
        "salesforce.client.secret": cc_ref,
    }), name=e2e.name("cc"))
    jwt = e2e.create_connector(e2e.sink_config({
        "topics": jwt_topic,
        "salesforce.auth.type": "JWT_BEARER",
        "salesforce.client.id": jwt_client,
        "salesforce.client.secret": None,
        "salesforce.jwt.private.key": jwt_ref,
        "salesforce.jwt.username": username,
    }), name=e2e.name("jwt"))

    e2e.produce([(f"k{i}", {"LastName": f"cc-{i}"}) for i in range(3)], topic=cc_topic)
    e2e.produce([(f"k{i}", {"LastName": f"jwt-{i}"}) for i in range(3)], topic=jwt_topic)
    records = e2e.wait_records("Contact", 6, connector=jwt)
    assert sorted(r["LastName"] for r in records) == sorted([f"cc-{i}" for i in range(3)] + [f"jwt-{i}" for i in range(3)])
    # The tokens came from these clients: the resolved secret and key were what authenticated.
    tokens = [r for r in e2e.emu.requests() if r.get("kind") == "token" and r.get("status") == 200]
    assert tokens, "no token was issued"

    needles = {"client secret": secret, **{f"key line {i}": key_lines[i] for i in (0, len(key_lines) // 2, len(key_lines) - 2)}}
    assert e2e.connect.config(cc)["salesforce.client.secret"] == cc_ref
    assert e2e.connect.config(jwt)["salesforce.jwt.private.key"] == jwt_ref
    shown = {}
    for name in (cc, jwt):
        shown[f"{name} config"] = json.dumps(e2e.connect.config(name))
        shown[f"{name} status"] = json.dumps(e2e.status(name))
        shown[f"{name} tasks"] = json.dumps(e2e.connect.tasks(name))
    shown.update(e2e.worker_logs([cc, jwt]))
    leaks = [(label, where) for where, text in shown.items() for label, needle in needles.items() if needle in text]
    assert not leaks, f"resolved secrets shown: {leaks}"
    for name in (cc, jwt):
        assert e2e.status(name)["tasks"][0]["state"] == "RUNNING", e2e.describe(name)
