"""Conversion CPU benchmark: compiles bench/java/ConversionBench.java with plain javac against
the Kafka jars of the stack and the connector jar of the plugin zip, runs it, returns its JSON."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.stack import kafka_libs
from tests.stack.stack import find_plugin_zip
from tests.stack.util import REPO_ROOT, java_bin

SOURCE = REPO_ROOT / "bench" / "java" / "ConversionBench.java"
BUILD = REPO_ROOT / "target" / "bench-java"


def _connector_jar() -> Path:
    zip_path = find_plugin_zip()
    if zip_path is None:
        raise FileNotFoundError("no plugin zip in java/target: run mvn -B -q -DskipTests package")
    out = BUILD / "plugin"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        names = [n for n in zf.namelist() if n.endswith(".jar") and "/lib/salesforce-sobject-sink-connector" in n]
        if not names:
            raise FileNotFoundError(f"no connector jar in {zip_path}")
        target = out / Path(names[0]).name
        target.write_bytes(zf.read(names[0]))
    return target


def run(records: int, iterations: int, put_size: int = 500) -> dict:
    kafka_libs.ensure_kafka_libs()
    jar = _connector_jar()
    classes = BUILD / "classes"
    shutil.rmtree(classes, ignore_errors=True)
    classes.mkdir(parents=True)
    cp = kafka_libs.classpath() + ":" + str(jar)
    javac = str(Path(java_bin()).with_name("javac"))
    if not Path(javac).exists():
        javac = "javac"
    subprocess.run([javac, "-nowarn", "-d", str(classes), "-cp", cp, str(SOURCE)], check=True,
                   stdin=subprocess.DEVNULL)
    argv = [java_bin(), "-Xms1g", "-Xmx1g", "-XX:+UseG1GC", "-cp", f"{classes}:{cp}", "ConversionBench",
            str(records), str(iterations), str(put_size)]
    p = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"ConversionBench failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    if p.stderr.strip():
        print(p.stderr.strip(), file=sys.stderr)
    line = [x for x in p.stdout.splitlines() if x.startswith("{")][-1]
    return json.loads(line)
