"""The Prometheus JMX exporter java agent, as operators attach it to a Connect worker.

``agent_args(port, work_dir)`` fetches ``io.prometheus.jmx:jmx_prometheus_javaagent`` from Maven
Central (once, into ``tests/.kafka/agents/``), writes an exporter config that exports the sink's
task MBeans (the README's example) and returns the ``-javaagent`` JVM argument for
``Worker(jvm_opts=...)``. ``scrape(port)`` reads the endpoint into {(name, labels): value}.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import requests

from .util import REPO_ROOT, TESTS_DIR

VERSION = "1.0.1"
ARTIFACT = f"io.prometheus.jmx:jmx_prometheus_javaagent:{VERSION}"
AGENTS_DIR = TESTS_DIR / ".kafka" / "agents"

# The example config of docs/operations.md (keep them in step).
EXPORTER_CONFIG = """\
lowercaseOutputName: true
includeObjectNames: ["io.axual.connect.salesforce:type=sink-task-metrics,*"]
rules:
  # Totals since the task started: counters (Prometheus appends _total), so rate() works.
  - pattern: 'io.axual.connect.salesforce<type=sink-task-metrics, connector=(.+), task=(.+)><>(Records(?:Written|Failed|Retried|Skipped)|Requests(?:Collections|Single|Query|Bulk|Token|Limits|Other)|TokenRefreshes|IdCacheHits|IdCacheMisses|WriteRecords|WriteRequests):'
    name: salesforce_sink_$3
    labels:
      connector: "$1"
      task: "$2"
    type: COUNTER
  # Everything else is a level: rates, latencies, buffered records, quota, health.
  - pattern: 'io.axual.connect.salesforce<type=sink-task-metrics, connector=(.+), task=(.+)><>(\\w+)'
    name: salesforce_sink_$3
    labels:
      connector: "$1"
      task: "$2"
    type: GAUGE
"""


def ensure_agent() -> Path:
    jar = AGENTS_DIR / f"jmx_prometheus_javaagent-{VERSION}.jar"
    if jar.is_file():
        return jar
    tmp = AGENTS_DIR / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"[stack] fetching {ARTIFACT} from Maven Central into {AGENTS_DIR}", file=sys.stderr)
    subprocess.run(["mvn", "-B", "-q", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={tmp}"],
                   check=True, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL)
    (tmp / jar.name).rename(jar)
    shutil.rmtree(tmp, ignore_errors=True)
    return jar


# Also the worker's plugin metrics (KIP-877, Kafka 4.1+), in the exporter's default naming: tests
# check that the task publishes there too.
PLUGIN_METRICS_CONFIG = EXPORTER_CONFIG.replace(
    'includeObjectNames: ["io.axual.connect.salesforce:type=sink-task-metrics,*"]',
    'includeObjectNames: ["io.axual.connect.salesforce:type=sink-task-metrics,*", "kafka.connect:type=plugins,*"]',
) + "  - pattern: 'kafka.connect<type=plugins, .*'\n"


def agent_args(port: int, work_dir: Path, plugin_metrics: bool = False) -> list:
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "jmx-exporter.yaml"
    config.write_text(PLUGIN_METRICS_CONFIG if plugin_metrics else EXPORTER_CONFIG)
    return [f"-javaagent:{ensure_agent()}=127.0.0.1:{port}:{config}"]


_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> dict:
    """{(metric name, frozenset of (label, value)): float} from the exporter's text format."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m:
            labels = frozenset(_LABEL.findall(m.group(3) or ""))
            out[(m.group(1), labels)] = float(m.group(4))
    return out


def task_metric(samples: dict, name: str, connector: str, task: str = "0"):
    """The value of ``salesforce_sink_<name>`` (a gauge) or ``salesforce_sink_<name>_total`` (a
    counter) for one task, or None."""
    labels = frozenset({("connector", connector), ("task", task)})
    value = samples.get((f"salesforce_sink_{name}", labels))
    return value if value is not None else samples.get((f"salesforce_sink_{name}_total", labels))
