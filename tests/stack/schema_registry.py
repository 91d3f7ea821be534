"""Apicurio Registry 2.4.2.Final (in-memory storage) as a local process, for the Avro tests.

Built once from Maven Central by ``kafka_libs.ensure_apicurio_registry()`` (a Quarkus build of
``tests/avro/registry/pom.xml``). It serves Apicurio's own API (``/apis/registry/v2``, what
Apicurio's converter and serializers speak natively) and the Confluent-compatible API
(``/apis/ccompat/v6``, what Confluent's serializers and Schema Registry clients speak).

Two wire formats reach a topic, both read by Apicurio's ``AvroConverter``:

* Confluent's: magic byte 0, the 4-byte schema id the ccompat API gave (a content id), Avro binary.
  Written here by Confluent's own Python ``AvroSerializer`` against ``ccompat_url``; the converter
  reads it with ``apicurio.registry.as-confluent=true`` and ``apicurio.registry.use-id=contentId``.
* Apicurio's default: magic byte 0, the 8-byte global id of the artifact version, Avro binary
  (``apicurio_frame``), the converter's default settings.
"""
from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Optional

import requests

from . import kafka_libs
from .procs import ManagedProcess, Service
from .util import free_port, java_bin, tail, wait_until


class SchemaRegistry(Service):
    def __init__(self, work_dir: Path, heap: str = "256m"):
        self.dir = Path(work_dir) / "schema-registry"
        self.out_file = self.dir / "registry.out"
        self.port = free_port()
        self.heap = heap
        self.proc: Optional[ManagedProcess] = None

    @property
    def url(self) -> str:
        """What Apicurio's converter takes as ``apicurio.registry.url``."""
        return f"http://127.0.0.1:{self.port}/apis/registry/v2"

    @property
    def ccompat_url(self) -> str:
        """What a Confluent client takes as ``url`` / ``schema.registry.url``."""
        return f"http://127.0.0.1:{self.port}/apis/ccompat/v6"

    def start(self, timeout: float = 180) -> "SchemaRegistry":
        runner = kafka_libs.ensure_apicurio_registry()
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [java_bin(), f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                # the registry's production defaults size a pool of 20-100 connections to its
                # in-memory database; one test client needs a few
                "-D%prod.quarkus.datasource.jdbc.initial-size=2", "-D%prod.quarkus.datasource.jdbc.min-size=2",
                "-jar", str(runner)]
        self.proc = ManagedProcess("schema-registry", argv, self.out_file, cwd=self.dir,
                                   env={"HTTP_PORT": str(self.port), "QUARKUS_HTTP_HOST": "127.0.0.1"}).start()

        def ready():
            if not self.proc.running:
                raise AssertionError(f"schema registry exited with {self.proc.returncode}\n{tail(self.out_file, 40)}")
            return requests.get(f"{self.url}/system/info", timeout=2).ok

        wait_until(ready, timeout, 0.5, lambda: f"schema registry on {self.url}\n{tail(self.out_file, 40)}",
                   ignore=(requests.RequestException,))
        return self

    def register(self, artifact_id: str, schema: str) -> int:
        """Registers ``schema`` as the next version of ``artifact_id`` (group ``default``) through
        Apicurio's v2 API, as its serializers do; returns the version's global id."""
        resp = requests.post(f"{self.url}/groups/default/artifacts", params={"ifExists": "RETURN_OR_UPDATE"},
                             data=schema.encode(), timeout=10,
                             headers={"Content-Type": "application/json", "X-Registry-ArtifactId": artifact_id,
                                      "X-Registry-ArtifactType": "AVRO"})
        assert resp.ok, f"register {artifact_id}: {resp.status_code} {resp.text}"
        return int(resp.json()["globalId"])


def apicurio_frame(global_id: int, parsed_schema, record: dict) -> bytes:
    """A value as Apicurio's serializer writes it by default: magic 0, 8-byte global id, Avro
    binary of ``record`` (``parsed_schema`` from ``fastavro.parse_schema``)."""
    from fastavro import schemaless_writer
    buf = io.BytesIO()
    buf.write(struct.pack(">bq", 0, global_id))
    schemaless_writer(buf, parsed_schema, record)
    return buf.getvalue()
