"""A single-node KRaft Kafka broker (combined broker + controller) run from Maven Central jars."""
from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Optional

from . import kafka_libs
from .log4j import write_log4j2
from .procs import ManagedProcess, Service
from .util import free_ports, java_bin, port_open, tail, wait_until, write_properties


class Broker(Service):
    """``kafka.Kafka server.properties`` in ``<work>/broker``. Ports are chosen once and kept across
    restarts, so clients' bootstrap address stays valid after ``kill()`` + ``start()``."""

    def __init__(self, work_dir: Path, heap: str = "512m", extra_props: Optional[dict] = None):
        self.dir = Path(work_dir) / "broker"
        self.data_dir = self.dir / "data"
        self.port, self.controller_port = free_ports(2)
        self.heap = heap
        self.extra_props = dict(extra_props or {})
        # as Kafka's Uuid.randomUuid(): never starting with '-' (StorageTool would read it as an option)
        self.cluster_id = "-"
        while self.cluster_id.startswith("-"):
            self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        self.config_file = self.dir / "server.properties"
        self.log_file = self.dir / "broker.log"      # log4j2 output
        self.out_file = self.dir / "broker.out"      # stdout/stderr of the JVM
        self.log4j_file = self.dir / "log4j2.properties"
        self.proc: Optional[ManagedProcess] = None
        self._formatted = False

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "3000",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "log.retention.hours": "24",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
        }
        props.update(self.extra_props)
        write_properties(self.config_file, props)
        write_log4j2(self.log4j_file, self.log_file, "INFO",
                     {"kafka.request.logger": "WARN", "org.apache.kafka.controller": "INFO",
                      "state.change.logger": "WARN", "kafka.log.LogCleaner": "WARN"})

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            java_bin(), f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.dir}", f"-XX:ErrorFile={self.dir}/hs_err_%p.log",
            "-cp", kafka_libs.classpath(), main, *args,
        ]

    def format(self) -> None:
        import subprocess
        self._write_config()
        res = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", self.cluster_id,
                       "-c", str(self.config_file)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120)
        (self.dir / "format.out").write_bytes(res.stdout)
        if res.returncode != 0:
            raise RuntimeError(f"kafka StorageTool format failed ({res.returncode}):\n"
                               f"{res.stdout.decode(errors='replace')}")
        self._formatted = True

    def start(self, wait: bool = True, timeout: float = 90) -> "Broker":
        if not self._formatted:
            self.format()
        self.proc = ManagedProcess("broker", self._java("kafka.Kafka", str(self.config_file)),
                                   self.out_file).start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        def ready():
            if not self.proc.running:
                raise AssertionError(f"broker exited with {self.proc.returncode}\n{self.diagnostics()}")
            return port_open(self.port) and self._metadata_ok()
        wait_until(ready, timeout, 0.3, lambda: f"broker on {self.bootstrap_servers} to answer metadata\n"
                   + self.diagnostics())

    def _metadata_ok(self) -> bool:
        try:
            from confluent_kafka.admin import AdminClient
        except ImportError:  # readiness by log line when the client is not installed
            return any("Kafka Server started" in l for l in tail(self.log_file, 400).splitlines())
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "socket.timeout.ms": 2000})
        try:
            md = admin.list_topics(timeout=2)
            return bool(md.brokers)
        except Exception:
            return False

    def diagnostics(self, lines: int = 60) -> str:
        return (f"--- {self.out_file} (tail)\n{tail(self.out_file, 20)}\n"
                f"--- {self.log_file} (tail)\n{tail(self.log_file, lines)}")
