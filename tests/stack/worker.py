"""A Kafka Connect worker in distributed mode, run from Maven Central jars.

By default the pinned Kafka version on the JDK of ``JAVA_HOME`` (or ``java`` on the PATH);
``kafka_version`` / ``java_home`` pick another worker version or JDK (the worker-version matrix)."""
from __future__ import annotations

import os

from pathlib import Path
from typing import Optional

from . import kafka_libs
from .connect import Connect
from .log4j import write_log4j1, write_log4j2
from .procs import ManagedProcess, Service
from .util import free_port, java_bin, tail, wait_until, write_properties

DEFAULT_LOG_LEVELS = {
    "io.axual": "DEBUG",
    "org.reflections": "ERROR",
    "org.apache.kafka.clients.consumer.ConsumerConfig": "WARN",
    "org.apache.kafka.clients.producer.ProducerConfig": "WARN",
    "org.apache.kafka.clients.admin.AdminClientConfig": "WARN",
    "org.apache.kafka.common.config.AbstractConfig": "WARN",
    "org.apache.kafka.common.utils.AppInfoParser": "WARN",
    "org.eclipse.jetty": "WARN",
    "org.glassfish": "WARN",
}


class Worker(Service):
    """``ConnectDistributed worker.properties`` in ``<work>/worker-<n>``. The REST port is chosen once
    and kept across restarts."""

    def __init__(self, work_dir: Path, index: int, bootstrap_servers: str, plugin_path: Path,
                 group_id: str, heap: str = "1g", extra_props: Optional[dict] = None,
                 log_levels: Optional[dict] = None, env: Optional[dict] = None,
                 kafka_version: str = kafka_libs.KAFKA_VERSION, java_home: Optional[str] = None,
                 jvm_opts: Optional[list] = None, classpath_extra: Optional[list] = None):
        self.index = index
        self.kafka_version = kafka_version
        self.java_home = java_home
        self.jvm_opts = list(jvm_opts or [])
        # Jars the worker itself loads (not plugins), e.g. a JAAS login module
        self.classpath_extra = [str(p) for p in (classpath_extra or [])]
        self.log_family = kafka_libs.log_family(kafka_version)
        self.name = f"worker-{index}"
        self.dir = Path(work_dir) / self.name
        self.port = free_port()
        self.bootstrap_servers = bootstrap_servers
        self.plugin_path = Path(plugin_path)
        self.group_id = group_id
        self.heap = heap
        self.extra_props = dict(extra_props or {})
        self.log_levels = {**DEFAULT_LOG_LEVELS, **(log_levels or {})}
        # Test-only switch outside the connector config: connectors named native-panic-put-* panic in put().
        self.env = {"RUST_BACKTRACE": "1", "SALESFORCE_SINK_TEST_NATIVE_PANIC": "put:native-panic-put-*", **(env or {})}
        self.config_file = self.dir / "worker.properties"
        self.log_file = self.dir / "worker.log"   # log4j output (grep this)
        self.out_file = self.dir / "worker.out"   # JVM stdout/stderr (native panics' stderr, hs_err notes)
        self.log4j_file = self.dir / ("log4j2.properties" if self.log_family == "log4j2" else "log4j.properties")
        self.proc: Optional[ManagedProcess] = None
        self.connect = Connect(self.url, diagnostics=lambda: self.diagnostics())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        props = {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "config.storage.topic": f"{self.group_id}-configs",
            "offset.storage.topic": f"{self.group_id}-offsets",
            "status.storage.topic": f"{self.group_id}-status",
            "config.storage.replication.factor": "1",
            "offset.storage.replication.factor": "1",
            "status.storage.replication.factor": "1",
            "offset.storage.partitions": "5",
            "status.storage.partitions": "1",
            "offset.flush.interval.ms": "1000",
            "listeners": self.url,
            "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": str(self.port),
            "rest.advertised.listener": "http",
            "plugin.path": str(self.plugin_path),
            "connector.client.config.override.policy": "All",
            # quick failover for crash tests: lost tasks are reassigned after this delay
            "scheduled.rebalance.max.delay.ms": "5000",
            "session.timeout.ms": "6000",
            "heartbeat.interval.ms": "1000",
            "task.shutdown.graceful.timeout.ms": "5000",
            # sink tasks' consumers: a kill -9'd worker's partitions move on after 6 s, not 45 s
            "consumer.session.timeout.ms": "6000",
            "consumer.heartbeat.interval.ms": "1000",
            # Secrets as ${file:/path:key} in connector configs (tests/e2e/test_secrets.py): only
            # configs that use that syntax are affected.
            "config.providers": "file",
            "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
        }
        props.update(self.extra_props)
        write_properties(self.config_file, props)
        write_log = write_log4j2 if self.log_family == "log4j2" else write_log4j1
        write_log(self.log4j_file, self.log_file, "INFO", self.log_levels)

    @property
    def java(self) -> str:
        if self.java_home:
            return str(Path(self.java_home) / "bin" / "java")
        return java_bin()

    def _log_config_flag(self) -> str:
        if self.log_family == "log4j2":
            return f"-Dlog4j2.configurationFile={self.log4j_file}"
        return f"-Dlog4j.configuration=file:{self.log4j_file}"

    def start(self, wait: bool = True, timeout: float = 90) -> "Worker":
        self._write_config()
        argv = [
            self.java, f"-Xmx{self.heap}", "-Xms256m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", self._log_config_flag(),
            f"-Dkafka.logs.dir={self.dir}", f"-XX:ErrorFile={self.dir}/hs_err_%p.log",
            *self.jvm_opts,
            "-cp", os.pathsep.join([kafka_libs.worker_classpath(self.kafka_version), *self.classpath_extra]),
            "org.apache.kafka.connect.cli.ConnectDistributed", str(self.config_file),
        ]
        self.proc = ManagedProcess(self.name, argv, self.out_file, env=self.env).start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        def ready():
            if not self.proc.running:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}\n{self.diagnostics()}")
            return self.connect.ready()
        wait_until(ready, timeout, 0.3, lambda: f"{self.name} REST API {self.url}/connectors to answer 200\n"
                   + self.diagnostics())

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_file, lines)

    def diagnostics(self, lines: int = 80) -> str:
        return (f"--- {self.log_file} (tail)\n{tail(self.log_file, lines)}\n"
                f"--- {self.out_file} (tail)\n{tail(self.out_file, 20)}")
