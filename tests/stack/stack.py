"""The whole test stack: emulator + KRaft broker + Connect worker(s) + unpacked plugin.

    with Stack() as s:              # or s = Stack(); s.start(); ...; s.stop()
        s.connect.create(...)       # Connect client of worker 1
        s.emu.records("Contact")    # emulator control client
        s.kafka.produce(topic, [...])

Work dir: ``tests/.work/<run-id>/`` with ``emulator/``, ``broker/``, ``worker-<n>/`` (each with its
config, ``*.log`` from log4j2 and ``*.out`` for stdout/stderr) and ``plugins/``.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import Optional

from .broker import Broker
from .connect import Connect
from .emulator import Emulator, EmulatorProcess
from .procs import install_signal_handlers, kill_all
from .util import REPO_ROOT, TESTS_DIR, tail
from .worker import Worker
from . import kafka_libs

PLUGIN_GLOB = "salesforce-sobject-sink-connector-*.zip"
KEEP_RUNS = 5


def find_plugin_zip() -> Optional[Path]:
    env = os.environ.get("PLUGIN_ZIP")
    if env:
        return Path(env)
    zips = sorted((REPO_ROOT / "java" / "target").glob(PLUGIN_GLOB), key=lambda p: p.stat().st_mtime)
    return zips[-1] if zips else None


def unpack_plugin(zip_path: Path, plugins_dir: Path) -> Path:
    """Unzip the Confluent Hub archive into ``plugins_dir`` (one top-level folder expected)."""
    plugins_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(plugins_dir)
        tops = {n.split("/", 1)[0] for n in zf.namelist() if n.strip("/")}
    if len(tops) != 1:
        raise AssertionError(f"{zip_path} must hold one top-level folder, has {sorted(tops)}")
    top = plugins_dir / tops.pop()
    if not (top / "manifest.json").exists():
        raise AssertionError(f"{top}/manifest.json missing (Confluent Hub layout)")
    if not list((top / "lib").glob("*.jar")):
        raise AssertionError(f"{top}/lib has no jars")
    return top


def _prune_old_runs(root: Path, keep: int) -> None:
    if not root.exists():
        return
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    # Never remove a run touched in the last hour: another session may still be writing to it.
    cutoff = time.time() - 3600
    for old in runs[:-keep] if keep else runs:
        if old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)


class Stack:
    def __init__(self, run_id: Optional[str] = None, work_root: Optional[Path] = None,
                 plugin_zip: Optional[Path] = None, require_plugin: bool = True,
                 with_emulator: bool = True, worker_props: Optional[dict] = None,
                 broker_props: Optional[dict] = None, worker_heap: str = "1g", broker_heap: str = "512m"):
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self.work_root = Path(work_root or os.environ.get("E2E_WORK_ROOT", TESTS_DIR / ".work"))
        self.dir = self.work_root / self.run_id
        self.plugin_zip = plugin_zip
        self.require_plugin = require_plugin
        self.with_emulator = with_emulator
        self.worker_props = dict(worker_props or {})
        self.broker_props = dict(broker_props or {})
        self.worker_heap = worker_heap
        self.broker_heap = broker_heap
        self.plugins_dir = self.dir / "plugins"
        self.plugin_dir: Optional[Path] = None
        self.group_id = "connect-e2e"
        self.broker: Optional[Broker] = None
        self.workers: list[Worker] = []
        self.emulator: Optional[EmulatorProcess] = None
        self.emu: Optional[Emulator] = None
        self._kafka = None
        self._worker_seq = 0
        self.startup_seconds: Optional[float] = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "Stack":
        t0 = time.monotonic()
        install_signal_handlers()
        _prune_old_runs(self.work_root, KEEP_RUNS - 1)
        shutil.rmtree(self.dir, ignore_errors=True)  # a reused run id starts from scratch
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            kafka_libs.ensure_kafka_libs()
            self._install_plugin()
            self.broker = Broker(self.dir, heap=self.broker_heap, extra_props=self.broker_props)
            self.broker.format()
            self.broker.start(wait=False)
            if self.with_emulator:  # starts while the broker JVM boots
                self.emulator = EmulatorProcess(self.dir).start()
                self.emu = self.emulator.client()
            self.broker.wait_ready()
            self.add_worker()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        self._log(f"stack up in {self.startup_seconds:.1f}s: {self.describe()}")
        return self

    def _install_plugin(self) -> None:
        self.plugins_dir.mkdir(parents=True, exist_ok=True)
        zip_path = self.plugin_zip or find_plugin_zip()
        if zip_path is None:
            if self.require_plugin:
                raise FileNotFoundError(
                    f"no {PLUGIN_GLOB} in {REPO_ROOT / 'java' / 'target'}: run `mvn -B -q package` first "
                    "(or set PLUGIN_ZIP)")
            self._log("WARNING: no plugin zip found; worker starts with an empty plugin.path")
            return
        self.plugin_dir = unpack_plugin(zip_path, self.plugins_dir)
        self._log(f"plugin {zip_path.name} unpacked into {self.plugin_dir}")
        # Debezium's SMTs (ExtractNewRecordState), a plugin of their own: CDC tests unwrap
        # Debezium envelopes in the sink connector, as operators do.
        debezium = self.plugins_dir / "debezium-smt"
        shutil.copytree(kafka_libs.ensure_debezium_smt(), debezium, ignore=shutil.ignore_patterns(".complete"))
        self._log(f"Debezium SMT jars installed into {debezium}")

    def add_worker(self, wait: bool = True, kafka_version: Optional[str] = None,
                   java_home: Optional[str] = None, group_id: Optional[str] = None,
                   jvm_opts: Optional[list] = None, plugin_path: Optional[Path] = None, **props) -> Worker:
        """Start one more worker, by default in the same Connect group (same internal topics).
        ``kafka_version`` / ``java_home`` run another Kafka version's worker (its jars fetched from
        Maven Central once) or JDK; ``group_id`` makes it a Connect cluster of its own (a worker of
        another version must not join the pinned workers' group); ``plugin_path`` replaces the
        stack's plugin folder (a worker with plugins the others do not scan at every start)."""
        assert self.broker is not None, "start() the stack first"
        self._worker_seq += 1
        w = Worker(self.dir, self._worker_seq, self.broker.bootstrap_servers, plugin_path or self.plugins_dir,
                   group_id or self.group_id, heap=self.worker_heap,
                   extra_props={**self.worker_props, **props},
                   kafka_version=kafka_version or kafka_libs.KAFKA_VERSION, java_home=java_home,
                   jvm_opts=jvm_opts)
        self.workers.append(w)
        w.start(wait=wait)
        return w

    def remove_worker(self, worker: Worker, hard: bool = False) -> None:
        """Stop (or kill -9) a worker and forget it; its directory and logs stay."""
        worker.kill() if hard else worker.stop()
        if worker in self.workers:
            self.workers.remove(worker)

    def stop(self) -> None:
        """Stop everything; never raises. Workers first, then the broker, then the emulator."""
        for w in reversed(self.workers):
            try:
                w.stop(grace=10)
            except Exception as exc:  # pragma: no cover
                self._log(f"stopping {w.name}: {exc}")
        if self.broker:
            try:
                self.broker.stop(grace=15)
            except Exception as exc:  # pragma: no cover
                self._log(f"stopping broker: {exc}")
        if self.emulator:
            try:
                self.emulator.stop()
            except Exception as exc:  # pragma: no cover
                self._log(f"stopping emulator: {exc}")
        kill_all()

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- access ------------------------------------------------------------------------------
    @property
    def worker(self) -> Worker:
        return self.workers[0]

    @property
    def connect(self) -> Connect:
        """Connect client of the first worker that is running (worker 1 normally)."""
        for w in self.workers:
            if w.running:
                return w.connect
        return self.workers[0].connect

    @property
    def kafka(self):
        if self._kafka is None:
            from .kafka_io import Kafka
            self._kafka = Kafka(self.broker.bootstrap_servers)
        return self._kafka

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def emulator_url(self) -> str:
        return self.emulator.url if self.emulator else ""

    def sink_config(self, topic: str, overrides: Optional[dict] = None) -> dict:
        """The one default connector config of tests, benchmarks and the demo: INSERT into Contact
        through CLIENT_CREDENTIALS against this stack's emulator, String keys, schemaless JSON
        values. ``overrides`` win; a value of ``None`` removes the key; values become strings."""
        from .connect import CONNECTOR_CLASS
        from .emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
        cfg = {
            "connector.class": CONNECTOR_CLASS,
            "tasks.max": "1",
            "topics": topic,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
            "salesforce.instance.url": self.emulator_url,
            "salesforce.auth.type": "CLIENT_CREDENTIALS",
            "salesforce.client.id": DEFAULT_CLIENT_ID,
            "salesforce.client.secret": DEFAULT_CLIENT_SECRET,
            "salesforce.sobject.type": "Contact",
            "salesforce.operation": "INSERT",
        }
        for k, v in (overrides or {}).items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v if isinstance(v, str) else str(v)
        return cfg

    def describe(self) -> str:
        parts = [f"work={self.dir}", f"kafka={self.broker.bootstrap_servers}" if self.broker else ""]
        parts += [f"{w.name}={w.url}" for w in self.workers]
        if self.emulator:
            parts.append(f"emulator={self.emulator.url}")
        return " ".join(p for p in parts if p)

    def diagnostics(self, lines: int = 80) -> str:
        """Log tails of every worker (and the broker when it is down) for failure messages."""
        out = [w.diagnostics(lines) for w in self.workers]
        if self.broker and not self.broker.running:
            out.append("broker is NOT running\n" + self.broker.diagnostics(30))
        if self.emulator and not self.emulator.running:
            out.append("emulator is NOT running\n" + tail(self.emulator.out_file, 30))
        return "\n".join(out)

    @staticmethod
    def _log(msg: str) -> None:
        print(f"[stack] {msg}", file=sys.stderr, flush=True)
