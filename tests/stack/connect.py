"""Kafka Connect REST client with waits that explain themselves on failure."""
from __future__ import annotations

import json
import time
from typing import Callable, Optional, Sequence
from urllib.parse import quote

import requests

from .util import WaitTimeout, wait_until

CONNECTOR_CLASS = "io.axual.connect.plugins.salesforce.SalesforceSinkConnector"


class ConnectError(AssertionError):
    def __init__(self, method: str, path: str, resp: requests.Response):
        self.status_code = resp.status_code
        try:
            self.body = resp.json()
        except ValueError:
            self.body = resp.text
        super().__init__(f"{method} {path} -> HTTP {resp.status_code}: {self.body}")


class Connect:
    """Client for one worker's REST API.

    ``diagnostics``: optional callable returning extra text (e.g. the worker log tail) appended to
    every wait failure.
    """

    def __init__(self, url: str, diagnostics: Optional[Callable[[], str]] = None, timeout: float = 30):
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only: never through a proxy from the environment
        self.timeout = timeout
        self._diagnostics = diagnostics

    # -- raw ---------------------------------------------------------------------------------
    def request(self, method: str, path: str, ok: Sequence[int] = (200, 201, 202, 204), retry_409: bool = True,
                **kw) -> requests.Response:
        deadline = time.monotonic() + 60
        while True:
            resp = self.http.request(method, self.url + path, timeout=self.timeout, **kw)
            # 409 = rebalance in progress; 503/500 with "still starting" while the herder starts
            transient = resp.status_code == 409 or (
                resp.status_code in (500, 503) and "starting" in resp.text.lower())
            if transient and retry_409 and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            if resp.status_code not in ok:
                raise ConnectError(method, path, resp)
            return resp

    def get(self, path: str, **kw):
        resp = self.request("GET", path, **kw)
        return resp.json() if resp.content else None

    # -- cluster -----------------------------------------------------------------------------
    def info(self) -> dict:
        return self.get("/")

    def ready(self) -> bool:
        try:
            return self.http.get(self.url + "/connectors", timeout=3).status_code == 200
        except requests.RequestException:
            return False

    def plugins(self, connectors_only: bool = True) -> list:
        return self.get("/connector-plugins" + ("?connectorsOnly=true" if connectors_only else "?connectorsOnly=false"))

    def plugin_config_def(self, connector_class: str = CONNECTOR_CLASS) -> list:
        return self.get(f"/connector-plugins/{quote(connector_class, safe='')}/config")

    def validate(self, config: dict, connector_class: Optional[str] = None) -> dict:
        """``PUT /connector-plugins/{class}/config/validate``; returns the raw answer."""
        cls = connector_class or config.get("connector.class") or CONNECTOR_CLASS
        body = dict(config)
        body.setdefault("connector.class", cls)
        resp = self.request("PUT", f"/connector-plugins/{quote(cls, safe='')}/config/validate", json=body)
        return resp.json()

    @staticmethod
    def validation_errors(result: dict) -> dict:
        """{key: [errors]} for every key with errors in a validate answer."""
        out = {}
        for c in result.get("configs", []):
            v = c.get("value", {})
            if v.get("errors"):
                out[v.get("name")] = v["errors"]
        return out

    # -- connectors --------------------------------------------------------------------------
    def connectors(self) -> list:
        return self.get("/connectors")

    def create(self, name: str, config: dict) -> dict:
        cfg = {k: str(v) if not isinstance(v, str) else v for k, v in config.items()}
        return self.request("POST", "/connectors", json={"name": name, "config": cfg}).json()

    def put_config(self, name: str, config: dict) -> dict:
        cfg = {k: str(v) if not isinstance(v, str) else v for k, v in config.items()}
        return self.request("PUT", f"/connectors/{quote(name, safe='')}/config", json=cfg).json()

    def config(self, name: str) -> dict:
        return self.get(f"/connectors/{quote(name, safe='')}/config")

    def delete(self, name: str, missing_ok: bool = True) -> None:
        ok = (200, 202, 204, 404) if missing_ok else (200, 202, 204)
        self.request("DELETE", f"/connectors/{quote(name, safe='')}", ok=ok)

    def delete_and_wait(self, name: str, timeout: float = 30) -> None:
        self.delete(name)
        wait_until(lambda: name not in self.connectors(), timeout, 0.3,
                   f"connector {name} to disappear after DELETE")

    def status(self, name: str) -> Optional[dict]:
        resp = self.request("GET", f"/connectors/{quote(name, safe='')}/status", ok=(200, 404))
        return resp.json() if resp.status_code == 200 else None

    def tasks(self, name: str) -> list:
        return self.get(f"/connectors/{quote(name, safe='')}/tasks")

    def pause(self, name: str) -> None:
        self.request("PUT", f"/connectors/{quote(name, safe='')}/pause")

    def resume(self, name: str) -> None:
        self.request("PUT", f"/connectors/{quote(name, safe='')}/resume")

    def stop_connector(self, name: str) -> None:
        self.request("PUT", f"/connectors/{quote(name, safe='')}/stop")

    def restart(self, name: str, include_tasks: bool = True, only_failed: bool = False) -> None:
        q = f"?includeTasks={str(include_tasks).lower()}&onlyFailed={str(only_failed).lower()}"
        self.request("POST", f"/connectors/{quote(name, safe='')}/restart{q}")

    def restart_task(self, name: str, task: int = 0) -> None:
        self.request("POST", f"/connectors/{quote(name, safe='')}/tasks/{task}/restart")

    def offsets(self, name: str) -> dict:
        return self.get(f"/connectors/{quote(name, safe='')}/offsets")

    # -- waiting -----------------------------------------------------------------------------
    def describe(self, name: str) -> str:
        """Status (with traces, pretty) plus the diagnostics hook output, for failure messages."""
        try:
            st = self.status(name)
            text = json.dumps(st, indent=2) if st else f"<no status for {name}>"
        except Exception as exc:  # worker down
            text = f"<status unavailable: {exc}>"
        text = text.replace("\\n", "\n").replace("\\t", "\t")
        if self._diagnostics:
            text += "\n" + self._diagnostics()
        return text

    def wait_state(self, name: str, state: str = "RUNNING", tasks: Optional[int] = 1,
                   task_state: Optional[str] = None, timeout: float = 60) -> dict:
        """Wait until the connector is in ``state`` and (if ``tasks`` is not None) it has at least
        ``tasks`` tasks, all in ``task_state`` (default: the same state). Fails fast when the
        connector or a task goes FAILED while something else was expected."""
        want_task = task_state or state
        seen = {}

        def check():
            st = self.status(name)
            seen["status"] = st
            if not st:
                return None
            cstate = st.get("connector", {}).get("state")
            tstates = [t.get("state") for t in st.get("tasks", [])]
            if state != "FAILED" and cstate == "FAILED":
                raise WaitTimeout(f"connector {name} FAILED while waiting for {state}:\n{self.describe(name)}")
            if want_task != "FAILED" and "FAILED" in tstates:
                raise WaitTimeout(f"a task of {name} FAILED while waiting for {want_task}:\n{self.describe(name)}")
            if cstate != state:
                return None
            if tasks is None:
                return st
            if len(tstates) < tasks or any(s != want_task for s in tstates):
                return None
            return st

        return wait_until(check, timeout, 0.3, lambda: (
            f"connector {name} state={state}, >= {tasks} task(s) {want_task}; "
            f"last status: {json.dumps(seen.get('status'))}\n{self.describe(name)}"))

    def wait_running(self, name: str, tasks: int = 1, timeout: float = 60) -> dict:
        return self.wait_state(name, "RUNNING", tasks, timeout=timeout)

    def wait_task_state(self, name: str, task: int = 0, state: str = "FAILED", timeout: float = 60) -> dict:
        """Wait until task ``task`` is in ``state``; returns that task's status entry (with ``trace``)."""
        seen = {}

        def check():
            st = self.status(name)
            seen["status"] = st
            for t in (st or {}).get("tasks", []):
                if t.get("id") == task and t.get("state") == state:
                    return t
            return None

        return wait_until(check, timeout, 0.3, lambda: (
            f"task {name}-{task} in state {state}; last status: {json.dumps(seen.get('status'))}\n"
            f"{self.describe(name)}"))

    def wait_failed(self, name: str, task: int = 0, timeout: float = 60) -> dict:
        return self.wait_task_state(name, task, "FAILED", timeout)
