"""Secrets and transport (issue 5, item 5), against the real worker:

* HTTPS with a private CA: the emulator serves TLS with a test CA made by the ``openssl`` CLI at
  test time (nothing committed); ``salesforce.ssl.ca.pem`` and a PKCS12
  ``salesforce.ssl.truststore.path`` (made by ``keytool``) let records land; public roots only or
  another CA fail the task with a message naming the certificate problem.
* ``http://`` to a non-loopback host is refused by validation.
* An HTTP(S) proxy with Basic auth (a tiny proxy in this process: CONNECT tunnels to a name only
  it resolves): records land through it; a wrong proxy password is a clear failure; a loopback
  instance URL is reached directly, never through the proxy.
* No secret anywhere: with ``io.axual`` at TRACE, CLIENT_CREDENTIALS and JWT_BEARER connectors
  write good and bad records (DLQ), get their tokens revoked (refresh), then the worker logs, the
  REST status/traces/validation answers and every DLQ header are searched for the client secret,
  slices of the private key, the proxy password and every access token the emulator issued.
"""
from __future__ import annotations

import base64
import http.client
import select
import shutil
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.stack.emulator import EmulatorProcess



# -- PKI (openssl / keytool CLIs, at test time) ------------------------------------------------------
def _run(args, cwd):
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, f"{args}: {out.stderr}"


def _make_ca(d: Path, name: str) -> Path:
    (d / "ca.cnf").write_text("[req]\ndistinguished_name=dn\nx509_extensions=v3\n[dn]\n[v3]\n"
                              "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                              "subjectKeyIdentifier=hash\n")
    _run(["openssl", "req", "-x509", "-config", "ca.cnf", "-newkey", "ec", "-pkeyopt",
          "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
          "-days", "2", "-subj", f"/CN={name}"], d)
    return d / f"{name}.pem"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("no openssl CLI")
    d = tmp_path_factory.mktemp("pki")
    ca = _make_ca(d, "test-ca")
    other = _make_ca(d, "other-ca")
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,DNS:salesforce.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], d)
    _run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "test-ca.pem", "-CAkey", "test-ca.key",
          "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext"], d)
    return {"dir": d, "ca": ca, "other_ca": other, "cert": d / "server.pem", "key": d / "server.key"}


@pytest.fixture(scope="module")
def pkcs12_truststore(pki):
    """The test CA in a PKCS12 trust store, made by the JDK's ``keytool`` (a skip, never a silent
    pass, when there is none)."""
    if not shutil.which("keytool"):
        pytest.skip("no keytool CLI: the PKCS12 trust-store case cannot run")
    _run(["keytool", "-importcert", "-noprompt", "-alias", "test-ca", "-file", "test-ca.pem",
          "-keystore", "trust.p12", "-storetype", "PKCS12", "-storepass", "trust-pw"], pki["dir"])
    return pki["dir"] / "trust.p12"


@pytest.fixture(scope="module")
def tls_emulator(pki, tmp_path_factory):
    """A second emulator, serving HTTPS with the test CA's server certificate."""
    emu = EmulatorProcess(tmp_path_factory.mktemp("tls-emu"),
                          extra_args=["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])]).start()
    url = f"https://127.0.0.1:{emu.port}"
    control = _Control(str(pki["ca"]))
    try:
        yield url, control
    finally:
        emu.stop()


class _Control:
    """requests against the TLS emulator, verified with the test CA (passed per call: a session's
    ``verify`` loses to REQUESTS_CA_BUNDLE)."""

    def __init__(self, ca: str):
        self.ca = ca

    def get(self, url, **kw):
        return requests.get(url, verify=self.ca, **kw)

    def post(self, url, **kw):
        return requests.post(url, verify=self.ca, **kw)


def _tls_records(tls_emulator, sobject="Contact") -> list:
    url, control = tls_emulator
    return control.get(f"{url}/__emulator/records/{sobject}", timeout=10).json()


def _contacts(n: int, tag: str) -> list:
    return [(f"{tag}-{i}", {"FirstName": "Sec", "LastName": f"{tag}-{i}"}) for i in range(n)]


def _why_failed(e2e, name: str, timeout: float = 60) -> str:
    """Connector or task FAILED: its trace (plus the whole status)."""
    def failed():
        st = e2e.connect.status(name) or {}
        parts = [st.get("connector", {})] + st.get("tasks", [])
        bad = [p for p in parts if p.get("state") == "FAILED"]
        return "\n".join(p.get("trace") or "" for p in bad) or None
    return e2e.wait_until(failed, timeout, message=lambda: f"{name} to fail\n{e2e.describe(name)}")


def _wait_tls_records(e2e, tls_emulator, n: int, name: str, timeout: float = 60) -> list:
    return e2e.wait_until(lambda: (lambda r: r if len(r) >= n else None)(_tls_records(tls_emulator)), timeout,
                          message=lambda: f"{n} Contacts in the TLS emulator\n{e2e.describe(name)}")


# -- 1. HTTPS with a private CA -------------------------------------------------------------------------
def test_https_private_ca_pem_and_untrusted(e2e, pki, tls_emulator):
    url, control = tls_emulator
    control.post(f"{url}/__emulator/reset", json={}, timeout=10)
    ca_pem = pki["ca"].read_text()

    ok = e2e.create_connector(e2e.sink_config({"salesforce.instance.url": url, "salesforce.ssl.ca.pem": ca_pem}),
                              name=e2e.name("ca-pem"))
    e2e.produce(_contacts(3, "pem"))
    _wait_tls_records(e2e, tls_emulator, 3, ok)

    for label, extra in [("public-roots", {}), ("wrong-ca", {"salesforce.ssl.ca.pem": pki["other_ca"].read_text()})]:
        name = e2e.create_connector(e2e.sink_config({"topics": e2e.new_topic(label), "salesforce.instance.url": url,
                                                     "salesforce.retry.max.attempts": "0", **extra}),
                                    name=e2e.name(label), wait=False)
        trace = _why_failed(e2e, name)
        assert "certificate" in trace.lower() and "UnknownIssuer" in trace, (
            f"{label}: the failure must name the certificate problem\n{e2e.describe(name)}")
    names = sorted(r["LastName"] for r in _tls_records(tls_emulator))
    assert names == [f"pem-{i}" for i in range(3)], names


def test_https_private_ca_pkcs12_truststore(e2e, tls_emulator, pkcs12_truststore):
    url, control = tls_emulator
    control.post(f"{url}/__emulator/reset", json={}, timeout=10)
    ts = e2e.create_connector(e2e.sink_config({
        "salesforce.instance.url": url, "salesforce.ssl.truststore.path": str(pkcs12_truststore),
        "salesforce.ssl.truststore.password": "trust-pw"}), name=e2e.name("p12"))
    e2e.produce(_contacts(2, "p12"))
    _wait_tls_records(e2e, tls_emulator, 2, ts)
    names = sorted(r["LastName"] for r in _tls_records(tls_emulator))
    assert names == ["p12-0", "p12-1"], names


# -- 2. http:// only to loopback -------------------------------------------------------------------------
def test_plain_http_to_a_non_loopback_host_is_refused(e2e):
    for url in ("http://example.com", "http://10.1.2.3:8080", "http://127.0.0.1.nip.io"):
        result = e2e.connect.validate(e2e.sink_config({"salesforce.instance.url": url}))
        errors = e2e.connect.validation_errors(result)
        assert "salesforce.instance.url" in errors, f"{url}: {errors}"
        assert any("loopback" in m or "https" in m for m in errors["salesforce.instance.url"]), errors
    ok = e2e.connect.validation_errors(e2e.connect.validate(e2e.sink_config({"salesforce.instance.url":
                                                                             "https://example.my.salesforce.com"})))
    assert "salesforce.instance.url" not in ok, ok


# -- 3. proxy --------------------------------------------------------------------------------------------
_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive", "transfer-encoding", "te",
        "trailer", "upgrade"}


PROXIED_HOSTS = {"salesforce.test": "127.0.0.1"}


class _Proxy(ThreadingHTTPServer):
    """HTTP proxy for tests: absolute-URI forwarding and CONNECT tunnels, Basic auth required."""
    daemon_threads = True

    def __init__(self, user: str, password: str):
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.seen: list = []  # (method, target, authorized)
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _authorized(self) -> bool:
        ok = self.headers.get("Proxy-Authorization") == self.server.expected
        self.server.seen.append((self.command, self.path, ok))
        if not ok:
            body = b"proxy authentication required"
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        return ok

    def do_CONNECT(self):
        if not self._authorized():
            return
        host, port = self.path.rsplit(":", 1)
        # salesforce.test: a name only the proxy resolves (to the TLS emulator), as proxies resolve
        # names their clients cannot; a loopback instance URL never goes through the proxy.
        upstream = socket.create_connection((PROXIED_HOSTS.get(host, host), int(port)), timeout=30)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        conns = [self.connection, upstream]
        try:
            while True:
                readable, _, _ = select.select(conns, [], [], 30)
                if not readable:
                    return
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()

    def _forward(self):
        if not self._authorized():
            return
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
        path = target.path + (f"?{target.query}" if target.query else "")
        conn.request(self.command, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward


def test_proxy_with_basic_auth(e2e, pki, tls_emulator):
    password = f"proxy-pw-{uuid.uuid4().hex}"
    proxy = _Proxy("proxyuser", password)
    try:
        # plain http:// to a loopback emulator: reached directly, never through the proxy (issue 19)
        name = e2e.create_connector(e2e.sink_config({
            "salesforce.proxy.url": proxy.url, "salesforce.proxy.username": "proxyuser",
            "salesforce.proxy.password": password}), name=e2e.name("proxy"))
        e2e.produce(_contacts(3, "px"))
        e2e.wait_records("Contact", 3, connector=name)
        assert proxy.seen == [], proxy.seen

        # https:// to a name only the proxy resolves: a CONNECT tunnel, TLS end to end with the test CA
        url, control = tls_emulator
        control.post(f"{url}/__emulator/reset", json={}, timeout=10)
        proxied_url = url.replace("127.0.0.1", "salesforce.test")
        topic = e2e.new_topic("tunnel")
        tunnel = e2e.create_connector(e2e.sink_config({
            "topics": topic, "salesforce.instance.url": proxied_url, "salesforce.ssl.ca.pem": pki["ca"].read_text(),
            "salesforce.proxy.url": proxy.url, "salesforce.proxy.username": "proxyuser",
            "salesforce.proxy.password": password}), name=e2e.name("tunnel"))
        e2e.produce(_contacts(2, "tn"), topic=topic)
        _wait_tls_records(e2e, tls_emulator, 2, tunnel)
        assert any(m == "CONNECT" and p.endswith(url.rsplit(":", 1)[1]) and ok for m, p, ok in proxy.seen), proxy.seen

        # wrong proxy password (the CONNECT is refused with 407): the task fails and says so
        bad = e2e.create_connector(e2e.sink_config({
            "topics": e2e.new_topic("badproxy"), "salesforce.retry.max.attempts": "0",
            "salesforce.instance.url": proxied_url, "salesforce.ssl.ca.pem": pki["ca"].read_text(),
            "salesforce.proxy.url": proxy.url, "salesforce.proxy.username": "proxyuser",
            "salesforce.proxy.password": "wrong"}), name=e2e.name("badproxy"), wait=False)
        trace = _why_failed(e2e, bad)
        assert "407" in trace and "salesforce.proxy.password" in trace, (
            f"a refused proxy login must say what to fix:\n{e2e.describe(bad)}")
        assert any(not ok for _, _, ok in proxy.seen)
        assert not e2e.worker_log_grep(password), "the proxy password is in the worker log"
        assert password not in e2e.describe(name)
    finally:
        proxy.shutdown()
        proxy.server_close()


# -- 4. secrets never leak ---------------------------------------------------------------------------------
def _set_level(stack, logger: str, level: str) -> None:
    for w in stack.workers:
        r = requests.put(f"{w.url}/admin/loggers/{logger}", json={"level": level}, timeout=10)
        assert r.status_code in (200, 204), r.text


def _logger_level(stack, logger: str) -> str:
    return requests.get(f"{stack.workers[0].url}/admin/loggers/{logger}", timeout=10).json().get("level")


def test_no_secret_in_logs_rest_or_dlq(e2e):
    stack = e2e.stack
    secret = f"cs-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    cc_client = f"cc-{e2e.prefix}"
    e2e.emu.add_client(cc_client, client_secret=secret)

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    jwt_client, jwt_user = f"jwt-{e2e.prefix}", "secrets.check@example.com"
    e2e.emu.add_client(jwt_client, public_key_pem=public_pem, username=jwt_user)
    my_domain = "https://secrets-check.my.salesforce.com"
    e2e.emu.set_my_domain(my_domain)
    body = [ln for ln in private_pem.strip().splitlines() if not ln.startswith("-----")]
    key_slices = [body[i][8:40] for i in (0, len(body) // 2, len(body) - 2)]  # distinctive base64 slices

    _set_level(stack, "io.axual", "TRACE")
    try:
        assert _logger_level(stack, "io.axual") == "TRACE"
        dlq_cc, dlq_jwt = e2e.new_topic("dlq-cc"), e2e.new_topic("dlq-jwt")
        t_cc, t_jwt = e2e.new_topic("cc"), e2e.new_topic("jwt")
        cc_cfg = e2e.sink_config({"topics": t_cc, "salesforce.client.id": cc_client,
                                  "salesforce.client.secret": secret, **e2e.dlq_config(dlq_cc)})
        jwt_cfg = e2e.sink_config({"topics": t_jwt, "salesforce.auth.type": "JWT_BEARER",
                                   "salesforce.client.id": jwt_client, "salesforce.client.secret": None,
                                   "salesforce.jwt.private.key": private_pem.strip().replace("\n", "\\n"),
                                   "salesforce.jwt.username": jwt_user,
                                   "salesforce.jwt.audience": my_domain, **e2e.dlq_config(dlq_jwt)})
        validations = [e2e.connect.validate(cc_cfg), e2e.connect.validate(jwt_cfg)]
        cc = e2e.create_connector(cc_cfg, name=e2e.name("cc"))
        jwt = e2e.create_connector(jwt_cfg, name=e2e.name("jwt"))

        def batch(tag):  # good records, one Salesforce rejects (no LastName), one that is not JSON
            return _contacts(3, tag) + [(f"{tag}-bad", {"FirstName": "no last name"}), (f"{tag}-raw", "{not json")]

        e2e.produce(batch("cc1"), topic=t_cc)
        e2e.produce(batch("jwt1"), topic=t_jwt)
        e2e.wait_records("Contact", 6, connector=jwt)
        e2e.emu.revoke_tokens()  # next writes get 401 → new token (refresh path, logged at DEBUG)
        e2e.produce(batch("cc2"), topic=t_cc)
        e2e.produce(batch("jwt2"), topic=t_jwt)
        e2e.wait_records("Contact", 12, connector=jwt)
        # wait for the 4 failed records of each connector, then read each DLQ to its end: a count
        # read with expected=4 would stop at 4 and could never see a fifth
        for t in (dlq_cc, dlq_jwt):
            e2e.consume_all(t, expected=4, timeout=60)
        time.sleep(1.0)
        dlq_by_topic = {t: e2e.consume_all(t, timeout=20) for t in (dlq_cc, dlq_jwt)}
        dlq = [m for msgs in dlq_by_topic.values() for m in msgs]
        statuses = [e2e.describe(cc), e2e.describe(jwt)]

        # a task that fails (Salesforce refuses the JWT user) and one whose secret is wrong: their traces too
        bad_jwt = e2e.create_connector({**jwt_cfg, "topics": e2e.new_topic("badjwt"),
                                        "salesforce.jwt.username": "nobody@example.com"},
                                       name=e2e.name("badjwt"), wait=False)
        bad_cc = e2e.create_connector({**cc_cfg, "topics": e2e.new_topic("badcc"),
                                       "salesforce.client.secret": secret[::-1]}, name=e2e.name("badcc"), wait=False)
        statuses += [_why_failed(e2e, bad_jwt), _why_failed(e2e, bad_cc), e2e.describe(bad_jwt), e2e.describe(bad_cc)]
        time.sleep(1.0)  # let the last log lines reach the files
    finally:
        _set_level(stack, "io.axual", "DEBUG")

    tokens = requests.get(f"{e2e.emulator_url}/__emulator/tokens", timeout=10).json()["issued"]
    assert len(tokens) >= 4, f"expected at least 2 tokens per connector (before and after the revoke): {tokens}"
    needles = {"client secret": secret, "reversed client secret": secret[::-1],
               **{f"private key slice {i}": s for i, s in enumerate(key_slices)},
               **{f"access token {i}": t for i, t in enumerate(tokens)},
               **{f"access token {i} (session part)": t.split("!", 1)[1][:40] for i, t in enumerate(tokens)}}

    counts = {t: len(msgs) for t, msgs in dlq_by_topic.items()}
    assert counts == {dlq_cc: 4, dlq_jwt: 4}, f"4 failed records per connector in the DLQs, got {counts}"
    assert any(k.startswith("__connect.errors") for m in dlq for k, _ in m.headers), dlq[0].headers
    haystacks = e2e.worker_logs([cc, jwt, bad_jwt, bad_cc])
    haystacks["REST status/traces"] = "\n".join(statuses)
    haystacks["REST validate"] = repr(validations)
    haystacks["DLQ headers"] = "\n".join(f"{k}={v!r}" for m in dlq for k, v in m.headers)
    haystacks["DLQ headers (decoded)"] = "\n".join(str(v) for m in dlq for v in m.headers_dict().values())

    # the connectors' own DEBUG/TRACE lines (the token refresh after the revoke): the searches ran
    # over what this test's connectors logged at the levels where secrets would slip out
    for name in (cc, jwt):
        detailed = [ln for lvl in (" TRACE ", " DEBUG ") for ln in e2e.worker_log_grep(lvl, scope=name)]
        assert any("new token" in ln for ln in detailed), (
            f"no DEBUG/TRACE line of {name} about its token refresh in the worker log:\n" + "\n".join(detailed[-20:]))
    leaks = [f"{what} in {where}" for where, text in haystacks.items() for what, needle in needles.items()
             if needle and needle in text]
    assert not leaks, "secrets leaked: " + "; ".join(leaks)
