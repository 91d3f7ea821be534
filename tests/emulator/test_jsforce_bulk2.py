"""The emulator's Bulk API 2.0 ingest driven by jsforce's ``conn.bulk2`` (Node.js), a client nobody
here wrote, in the emulator's unkind modes: batches of 50 rows run in parallel in random order,
results print stored values (``normalize_echo``) and three rows of one job meet a row lock.

``tests/emulator/jsforce/bulk2.mjs`` runs the client and prints what it saw; this test installs
jsforce from the npm registry (``npm ci`` on the committed lock file, once) and checks that against
the records the emulator stored.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from tests.stack.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EmulatorProcess

HERE = Path(__file__).parent / "jsforce"


@pytest.fixture(scope="module")
def jsforce_dir() -> Path:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed for jsforce")
    if not (HERE / "node_modules" / "jsforce" / "package.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True, timeout=600)
    return HERE


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = EmulatorProcess(tmp_path_factory.mktemp("jsforce-emu")).start()
    try:
        yield emu
    finally:
        emu.stop()


def test_jsforce_bulk2_insert_upsert_update_delete_and_steps(jsforce_dir, emulator):
    http = requests.Session()
    http.trust_env = False
    url = emulator.url

    def control(method: str, path: str, body=None):
        r = http.request(method, f"{url}/__emulator/{path}", json=body, timeout=15)
        assert r.status_code < 400, r.text
        return r.json()

    control("POST", "reset")
    control("POST", "bulk", {"records_per_batch": 50, "normalize_echo": True})
    # The fifth job (the step-by-step insert) meets three row locks.
    control("POST", "faults", {"rules": [{"kind": "record_error", "path_contains": "/jobs/ingest", "skip": 4, "count": 3}]})
    token = http.post(f"{url}/services/oauth2/token", timeout=15, data={
        "grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
    }).json()
    tag = uuid.uuid4().hex[:8]
    run = subprocess.run(["node", "bulk2.mjs", token["instance_url"], token["access_token"], tag], cwd=jsforce_dir,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    stored = {r["Id"]: r for r in control("GET", "records/Contact")}
    ins = seen["insert"]
    assert sorted(r["last"] for r in ins["ok"]) == [f"Hopper-{tag}", f"Lovelace-{tag}"], ins
    assert all(str(r["created"]).lower() == "true" for r in ins["ok"]), ins
    assert ins["failed"] == [{"error": "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --",
                              "first": "NoLastName"}], ins
    assert ins["unprocessed"] == 0
    lovelace = next(r for r in ins["ok"] if r["last"].startswith("Lovelace"))
    assert stored[lovelace["id"]]["Description"] == 'a comma, and "quotes"'

    assert sorted(r["key"] for r in seen["upsert"]) == [f"{tag}-1", f"{tag}-2"]
    assert {r["id"] for r in seen["upsert"]} == {seen["update"]["id"], seen["delete"]["id"]}
    assert (seen["update"]["ok"], seen["delete"]["ok"]) == (1, 1)
    assert stored[seen["update"]["id"]]["FirstName"] == "Uno"
    assert seen["delete"]["id"] not in stored, "deleted"

    steps = seen["steps"]
    assert steps["state"] == "JobComplete", steps
    assert steps["ok"] == 117 and len(steps["failed"]) == 3, steps
    assert set(steps["failed"]) == {"UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--"}
    assert sum(1 for r in stored.values() if r["LastName"].startswith(f"Bulk-{tag}-")) == 117

    # jsforce's requests are logged as Bulk kinds.
    kinds = control("GET", "stats")["by_kind"]
    for kind in ("bulk_create", "bulk_upload", "bulk_close", "bulk_poll", "bulk_results"):
        assert kinds.get(kind, 0) >= 1, kinds
