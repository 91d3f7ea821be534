"""A one-by-one model of SPEC §2 in External ID mode: what Salesforce must hold after a stream of
records is applied in offset order, and which records must be rejected (DLQ).

The model knows nothing about batching, waves, Collections or retries: the connector must end up
exactly where applying the records one at a time ends up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

OPERATIONS = ("INSERT", "UPDATE", "DELETE", "UPSERT")


@dataclass
class ExternalIdModel:
    operation: str = "INSERT"           # salesforce.operation
    tombstone_delete: bool = False      # salesforce.tombstone.delete
    delete_missing_ignore: bool = False  # salesforce.delete.missing=IGNORE
    skip_nulls: bool = False            # salesforce.null.fields=SKIP
    # external ID (lower case: Salesforce matches text external IDs case-insensitively) -> fields
    state: dict = field(default_factory=dict)
    # offset -> why the record is rejected
    rejected: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)

    def apply(self, offset: int, key: Optional[str], value: Optional[dict], header: Optional[str] = None) -> str:
        """Applies one record; returns what happened: WRITTEN/SKIPPED/REJECTED:<reason>."""
        if header is not None:
            op = header.upper()
            if op not in OPERATIONS:
                return self._reject(offset, f"unknown header value '{header}'")
        else:
            op = self.operation
        if value is None:
            if op == "DELETE" or self.tombstone_delete:
                op = "DELETE"
            else:
                self.skipped.append(offset)
                return "SKIPPED"
        if op == "INSERT":
            op = "UPSERT"  # External ID mode: INSERT is performed as UPSERT
        if key is None or not str(key).strip():
            return self._reject(offset, "null key")
        k = str(key).lower()
        if op == "UPSERT":
            self.state.setdefault(k, {}).update(self._fields(value))
        elif op == "UPDATE":
            if k not in self.state:
                return self._reject(offset, "NOT_FOUND")
            self.state[k].update(self._fields(value))
        elif op == "DELETE":
            if k not in self.state:
                if self.delete_missing_ignore:
                    return "WRITTEN"
                return self._reject(offset, "NOT_FOUND")
            del self.state[k]
        return "WRITTEN"

    def _fields(self, value: dict) -> dict:
        return {f: v for f, v in value.items() if not (self.skip_nulls and v is None)}

    def _reject(self, offset: int, reason: str) -> str:
        self.rejected[offset] = reason
        return "REJECTED:" + reason

    def expected(self, fields) -> dict:
        """{external id: {field: value}} restricted to ``fields`` (absent fields read as None)."""
        return {k: {f: v.get(f) for f in fields} for k, v in self.state.items()}


def emulator_state(records: list, ext_field: str, fields) -> dict:
    """The emulator's records in the model's shape (external IDs lower-cased)."""
    out = {}
    for r in records:
        k = str(r.get(ext_field)).lower()
        assert k not in out, f"two live records share {ext_field}={k}: {records}"
        out[k] = {f: r.get(f) for f in fields}
    return out
