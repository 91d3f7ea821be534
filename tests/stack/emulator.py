"""The Salesforce emulator (``sf-emulator``): process management and control-API client.

Control API (ARCHITECTURE.md): ``/__emulator/{reset,records/{type},requests,clients,latency,faults,
tokens/revoke,session,my_domain,limits,sobjects,bulk}``. The client passes rule/definition dicts through
unchanged, so tests follow the emulator's own JSON shapes.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

import requests

from .procs import ManagedProcess
from .util import REPO_ROOT, port_open, tail, wait_until

DEFAULT_CLIENT_ID = "test-client-id"
DEFAULT_CLIENT_SECRET = "test-client-secret"


def emulator_binary(build: bool = True) -> Path:
    """``$SF_EMULATOR_BIN``, else ``<target>/release/sf-emulator`` (built with cargo when missing)."""
    env = os.environ.get("SF_EMULATOR_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    binary = target / "release" / "sf-emulator"
    if not binary.exists() and build:
        print("[stack] building sf-emulator (cargo build --release -p sf-emulator)", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "-p", "sf-emulator"], cwd=str(REPO_ROOT),
                       check=True, stdin=subprocess.DEVNULL)
    if not binary.exists():
        raise FileNotFoundError(f"{binary} not found (cargo build --release -p sf-emulator)")
    return binary


class Emulator:
    """Client of the emulator's control API (and a plain HTTP session for /services calls)."""

    def __init__(self, url: str, timeout: float = 15):
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.trust_env = False
        self.timeout = timeout

    def _call(self, method: str, path: str, **kw) -> Any:
        resp = self.http.request(method, self.url + path, timeout=self.timeout, **kw)
        if resp.status_code >= 400:
            raise AssertionError(f"emulator {method} {path} -> HTTP {resp.status_code}: {resp.text}")
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    @staticmethod
    def _unwrap(body: Any, *keys: str) -> Any:
        if isinstance(body, dict):
            for k in keys:
                if k in body:
                    return body[k]
        return body

    # -- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        self._call("POST", "/__emulator/reset")

    def records(self, sobject: str, include_deleted: bool = False, timestamps: bool = False) -> list:
        """Every stored record of ``sobject`` (``Id`` plus fields, canonical names), in insertion order;
        ``timestamps`` adds ``__created_us``, the emulator's microsecond creation time."""
        params = [p for p, on in (("include_deleted=true", include_deleted), ("timestamps=true", timestamps)) if on]
        q = "?" + "&".join(params) if params else ""
        body = self._call("GET", f"/__emulator/records/{quote(sobject, safe='')}{q}")
        return self._unwrap(body, "records") or []

    def clear_records(self, sobject: str) -> None:
        self._call("DELETE", f"/__emulator/records/{quote(sobject, safe='')}")

    def sobjects(self) -> list:
        """Describe of every defined SObject."""
        return self._call("GET", "/__emulator/sobjects")

    def requests(self) -> list:
        """The request log (method, path, query, status, encodings, body bytes, api)."""
        body = self._call("GET", "/__emulator/requests")
        return self._unwrap(body, "requests") or []

    def clear_requests(self) -> None:
        self._call("DELETE", "/__emulator/requests")

    def stats(self) -> dict:
        """``GET /__emulator/stats`` (api_requests, api_used, api_max, by_kind, records_written,
        requests_logged)."""
        return self._call("GET", "/__emulator/stats")

    def request_summary(self) -> dict:
        """Summary of the request log: totals, by ``METHOD path``, by status, API calls."""
        reqs = self.requests()
        by_route = Counter(f"{r.get('method')} {r.get('path')}" for r in reqs)
        by_status = Counter(r.get("status") for r in reqs)
        return {
            "total": len(reqs),
            "api": sum(1 for r in reqs if r.get("api")),
            "by_route": dict(by_route),
            "by_status": dict(by_status),
            "token_requests": sum(1 for r in reqs if str(r.get("path", "")).endswith("/oauth2/token")),
        }

    # -- configuration -----------------------------------------------------------------------
    def add_client(self, client_id: str, client_secret: Optional[str] = None,
                   public_key_pem: Optional[str] = None, username: Optional[str] = None) -> None:
        body = {"client_id": client_id}
        if client_secret is not None:
            body["client_secret"] = client_secret
        if public_key_pem is not None:
            body["public_key_pem"] = public_key_pem
        if username is not None:
            body["username"] = username
        self._call("POST", "/__emulator/clients", json=body)

    def latency(self) -> int:
        return self._call("GET", "/__emulator/latency")["ms"]

    def faults(self) -> list:
        return self._unwrap(self._call("GET", "/__emulator/faults"), "rules")

    def limits(self) -> dict:
        return self._call("GET", "/__emulator/limits")

    def session_timeout(self) -> int:
        return self._call("GET", "/__emulator/session")["timeout_secs"]

    def set_latency(self, ms: int) -> None:
        self._call("POST", "/__emulator/latency", json={"ms": ms})

    def add_fault(self, rule: dict) -> Any:
        """One fault rule (or ``{"rules": [...], "seed": N}``), in the emulator's JSON shape
        (rust/emulator/src/faults.rs). ``kind``:

        * ``status`` — answer ``status``/``error_code``/``message``, write nothing;
        * ``reset`` — drop the connection before the write;
        * ``slow`` — write, then answer after ``delay_ms``;
        * ``delay`` — wait a random 0..``delay_ms``, then write and answer (concurrent requests
          commit in either order);
        * ``commit_then_reset`` — write, then drop the connection without an answer;
        * ``commit_late`` — the write lands after ``delay_ms`` (set it above the client's
          ``salesforce.request.timeout.ms``: the client has given up by then);
        * ``record_error`` — fail single records of Collections requests (``error_code``,
          ``status``, ``message``); ``record_contains`` picks the records whose JSON contains it.

        Matching: ``method``, ``path_contains``; firing: ``skip``, ``count``, ``probability``."""
        return self._call("POST", "/__emulator/faults", json=rule)

    def add_faults(self, rules: list) -> Any:
        return self._call("POST", "/__emulator/faults", json=rules)

    def clear_faults(self) -> None:
        self._call("DELETE", "/__emulator/faults")

    def revoke_tokens(self) -> None:
        self._call("POST", "/__emulator/tokens/revoke")

    def set_session_timeout(self, timeout_secs: int) -> None:
        self._call("POST", "/__emulator/session", json={"timeout_secs": timeout_secs})

    def set_my_domain(self, login_url: Optional[str]) -> None:
        """The org's My Domain login URL, a JWT audience accepted besides login/test.salesforce.com."""
        self._call("POST", "/__emulator/my_domain", json={"login_url": login_url})

    def set_limits(self, max: int, used: int = 0) -> None:  # noqa: A002 - mirrors the API
        self._call("POST", "/__emulator/limits", json={"max": max, "used": used})

    def define_sobject(self, definition: dict) -> Any:
        return self._call("POST", "/__emulator/sobjects", json=definition)

    def bulk(self) -> dict:
        """``GET /__emulator/bulk``: Bulk API 2.0 settings plus counters (jobs_created,
        jobs_completed, jobs_failed, jobs_aborted, records_processed, uploads)."""
        return self._call("GET", "/__emulator/bulk")

    def set_bulk(self, **settings: Any) -> dict:
        """``POST /__emulator/bulk`` (records_per_second, fail_next_jobs, fail_message,
        unprocessed_next_jobs, process_first, max_upload_bytes, daily_records_limit,
        daily_batches_limit, daily_records_used, seed); returns the new settings."""
        return self._call("POST", "/__emulator/bulk", json=settings)

    # -- waiting -----------------------------------------------------------------------------
    def wait_records(self, sobject: str, count: int, timeout: float = 60,
                     diagnostics=None) -> list:
        """Wait until exactly-or-more ``count`` records of ``sobject`` exist; returns them."""
        seen = {}

        def check():
            recs = self.records(sobject)
            seen["n"] = len(recs)
            seen["recs"] = recs
            return recs if len(recs) >= count else None

        def msg():
            text = (f"{count} {sobject} record(s) in the emulator; saw {seen.get('n')}: "
                    f"{str(seen.get('recs'))[:2000]}\nlast requests: {str(self._safe_requests()[-10:])[:3000]}")
            if diagnostics:
                text += "\n" + diagnostics()
            return text

        return wait_until(check, timeout, 0.3, msg)

    def _safe_requests(self) -> list:
        try:
            return self.requests()
        except Exception:
            return []


class EmulatorProcess:
    def __init__(self, work_dir: Path, binary: Optional[Path] = None, extra_args: Optional[list] = None):
        self.dir = Path(work_dir) / "emulator"
        self.binary = binary
        self.port_file = self.dir / "port"
        self.out_file = self.dir / "emulator.out"
        self.extra_args = list(extra_args or [])
        self.proc: Optional[ManagedProcess] = None
        self.port: Optional[int] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "EmulatorProcess":
        binary = self.binary or emulator_binary()
        self.dir.mkdir(parents=True, exist_ok=True)
        # keep the port across restarts
        port_arg = str(self.port) if self.port else "0"
        self.port_file.unlink(missing_ok=True)
        self.proc = ManagedProcess(
            "emulator", [str(binary), "--port", port_arg, "--port-file", str(self.port_file), *self.extra_args],
            self.out_file, env={"RUST_LOG": os.environ.get("EMULATOR_RUST_LOG", "info")}).start()

        def ready():
            if not self.proc.running:
                raise AssertionError(f"sf-emulator exited with {self.proc.returncode}\n{tail(self.out_file, 40)}")
            text = self.port_file.read_text().strip() if self.port_file.exists() else ""
            if not text.isdigit():
                return None
            self.port = int(text)
            return port_open(self.port)

        wait_until(ready, timeout, 0.1, lambda: f"sf-emulator to write {self.port_file} and listen\n"
                   + tail(self.out_file, 40))
        return self

    def client(self) -> Emulator:
        return Emulator(self.url)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop(5)

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()

    @property
    def running(self) -> bool:
        return bool(self.proc and self.proc.running)
