"""Direct Salesforce REST calls against the emulator: seeding records for UPDATE/DELETE scenarios
and a SOQL read of CreatedDate for the latency benchmark. These count as API requests in the
emulator too, so every measurement takes its counters around the connector's own run only."""
from __future__ import annotations

from typing import Iterable, Optional

import requests

from tests.stack import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

API = "/services/data/v62.0"


class SalesforceRest:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.trust_env = False
        self.token: Optional[str] = None

    def _auth(self) -> dict:
        if self.token is None:
            r = self.http.post(self.url + "/services/oauth2/token", data={
                "grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET}, timeout=30)
            r.raise_for_status()
            self.token = r.json()["access_token"]
        return {"Authorization": f"Bearer {self.token}"}

    def insert(self, sobject: str, records: Iterable[dict]) -> list:
        """Creates the records with Collections requests of 200; returns their Ids in order."""
        records = list(records)
        ids: list = []
        for i in range(0, len(records), 200):
            chunk = [{"attributes": {"type": sobject}, **r} for r in records[i:i + 200]]
            r = self.http.post(f"{self.url}{API}/composite/sobjects", headers=self._auth(),
                               json={"allOrNone": True, "records": chunk}, timeout=60)
            if r.status_code >= 300:
                raise AssertionError(f"seeding {sobject}: HTTP {r.status_code} {r.text[:500]}")
            for res in r.json():
                if not res.get("success"):
                    raise AssertionError(f"seeding {sobject}: {res}")
                ids.append(res["id"])
        return ids

    def query(self, soql: str) -> list:
        r = self.http.get(f"{self.url}{API}/query", params={"q": soql}, headers=self._auth(), timeout=120)
        if r.status_code >= 300:
            raise AssertionError(f"query {soql!r}: HTTP {r.status_code} {r.text[:500]}")
        body = r.json()
        out = list(body.get("records", []))
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            r = self.http.get(self.url + body["nextRecordsUrl"], headers=self._auth(), timeout=120)
            r.raise_for_status()
            body = r.json()
            out.extend(body.get("records", []))
        return out

