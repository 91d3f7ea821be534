"""Fetch the Kafka 4.1.1 broker + Connect worker jars from Maven Central (once).

``python -m tests.stack.kafka_libs`` prints the folder. The jars land in
``tests/.kafka/libs-<version>/`` (gitignored) and are reused while ``.complete`` exists there.

Workers of other Kafka versions (the worker-version matrix) get only the worker's jars, from
``tests/kafka/worker-pom.xml``, in ``tests/.kafka/worker-<version>/``:
``python -m tests.stack.kafka_libs 2.8.2``.

Plugins the stack installs beside the connector (Debezium's SMTs, Apicurio's Avro converter) and
the Apicurio Registry the Avro tests run are fetched the same way, into ``tests/.kafka/``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .util import REPO_ROOT, TESTS_DIR

KAFKA_VERSION = "4.1.1"
POM = TESTS_DIR / "kafka" / "pom.xml"
WORKER_POM = TESTS_DIR / "kafka" / "worker-pom.xml"


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    override = os.environ.get("KAFKA_LIBS_DIR")
    if override:
        return Path(override)
    return TESTS_DIR / ".kafka" / f"libs-{version}"


def ensure_kafka_libs(version: str = KAFKA_VERSION, quiet: bool = True) -> Path:
    target = libs_dir(version)
    if (target / ".complete").exists():
        return target
    if os.environ.get("KAFKA_LIBS_DIR"):
        raise RuntimeError(f"KAFKA_LIBS_DIR={target} has no .complete marker")
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-B", "-f", str(POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
    if quiet:
        cmd.insert(2, "-q")
    print(f"[stack] fetching Kafka {version} jars from Maven Central into {target}", file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL)
    jars = list(tmp.glob("*.jar"))
    if not any(j.name.startswith(f"kafka_2.13-{version}") for j in jars):
        raise RuntimeError(f"kafka_2.13-{version}.jar missing in {tmp}: {sorted(j.name for j in jars)}")
    (tmp / ".complete").write_text(f"{len(jars)} jars\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


DEBEZIUM_VERSION = "3.6.1.Final"
DEBEZIUM_POM = TESTS_DIR / "debezium" / "pom.xml"
# The worker provides Kafka's jars (and their compression codecs, and SLF4J): a plugin must not
# bring its own copies of the Connect API.
_WORKER_PROVIDED = "org.apache.kafka,org.lz4,org.xerial.snappy,com.github.luben,org.slf4j"


def ensure_debezium_smt(version: str = DEBEZIUM_VERSION, quiet: bool = True) -> Path:
    """Debezium's SMT jars (ExtractNewRecordState) with their dependencies, fetched once into
    ``tests/.kafka/debezium-<version>/`` from ``tests/debezium/pom.xml``."""
    return _fetch_plugin_jars(f"debezium-{version}", DEBEZIUM_POM, "debezium-connect-plugins-",
                              f"Debezium {version} SMT", quiet)


APICURIO_CONVERTER_VERSION = "2.6.13.Final"
APICURIO_CONVERTER_POM = TESTS_DIR / "avro" / "converter" / "pom.xml"


def ensure_apicurio_converter(version: str = APICURIO_CONVERTER_VERSION, quiet: bool = True) -> Path:
    """Apicurio Registry's Connect converters (``io.apicurio.registry.utils.converter.AvroConverter``)
    with their dependencies, fetched once into ``tests/.kafka/apicurio-converter-<version>/`` from
    ``tests/avro/converter/pom.xml``."""
    return _fetch_plugin_jars(f"apicurio-converter-{version}", APICURIO_CONVERTER_POM,
                              "apicurio-registry-utils-converter-", f"Apicurio converter {version}", quiet)


def _fetch_plugin_jars(folder: str, pom: Path, required_prefix: str, what: str, quiet: bool) -> Path:
    """A Connect plugin's jars without what the worker provides: ``pom``'s runtime dependencies
    copied once into ``tests/.kafka/<folder>/`` (``.complete`` marks a finished copy)."""
    target = TESTS_DIR / ".kafka" / folder
    if (target / ".complete").exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-B", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={tmp}", "-DincludeScope=runtime", f"-DexcludeGroupIds={_WORKER_PROVIDED}"]
    if quiet:
        cmd.insert(2, "-q")
    print(f"[stack] fetching {what} jars from Maven Central into {target}", file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL)
    jars = sorted(j.name for j in tmp.glob("*.jar"))
    if not any(j.startswith(required_prefix) for j in jars):
        raise RuntimeError(f"{required_prefix}*.jar missing in {tmp}: {jars}")
    (tmp / ".complete").write_text(f"{len(jars)} jars\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def ensure_basic_auth_extension(version: str = KAFKA_VERSION, quiet: bool = True) -> Path:
    """Connect's ``BasicAuthSecurityRestExtension`` jar (``org.apache.kafka:connect-basic-auth-extension``)
    as a plugin directory, fetched once into ``tests/.kafka/basic-auth-<version>/`` from Maven Central."""
    target = TESTS_DIR / ".kafka" / f"basic-auth-{version}"
    if (target / ".complete").exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-B", "dependency:copy", f"-Dartifact=org.apache.kafka:connect-basic-auth-extension:{version}",
           f"-DoutputDirectory={tmp}"]
    if quiet:
        cmd.insert(2, "-q")
    print(f"[stack] fetching connect-basic-auth-extension {version} from Maven Central into {target}", file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL)
    (tmp / ".complete").write_text("1 jar\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target
APICURIO_REGISTRY_VERSION = "2.4.2.Final"
APICURIO_REGISTRY_POM = TESTS_DIR / "avro" / "registry" / "pom.xml"


def ensure_apicurio_registry(version: str = APICURIO_REGISTRY_VERSION, quiet: bool = True) -> Path:
    """The runnable jar of Apicurio Registry ``version`` (in-memory storage): a Quarkus build of
    ``tests/avro/registry/pom.xml`` over Maven Central's artifacts, once, into
    ``tests/.kafka/apicurio-registry-<version>/`` (about 130 MB of jars; a minute or two)."""
    target = TESTS_DIR / ".kafka" / f"apicurio-registry-{version}"
    runner = target / f"apicurio-registry-runtime-{version}-runner.jar"
    if (target / ".complete").exists():
        return runner
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-B", "-f", str(APICURIO_REGISTRY_POM), "package", "-DskipTests", f"-Dregistry.out={tmp}"]
    if quiet:
        cmd.insert(2, "-q")
    print(f"[stack] building Apicurio Registry {version} from Maven Central into {target}", file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL)
    if not (tmp / runner.name).is_file():
        raise RuntimeError(f"{runner.name} missing in {tmp}: {sorted(p.name for p in tmp.iterdir())}")
    (tmp / ".complete").write_text(f"{runner.name}\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return runner


def classpath(version: str = KAFKA_VERSION) -> str:
    return str(ensure_kafka_libs(version) / "*")


def version_tuple(version: str) -> tuple:
    """``"3.6.2"`` -> ``(3, 6, 2)`` (a suffix such as ``-rc1`` is ignored)."""
    return tuple(int(part) for part in version.split("-", 1)[0].split("."))


def log_family(version: str) -> str:
    """How a worker of ``version`` logs: ``log4j2`` from Kafka 4.0 on, ``log4j1`` (log4j 1.x API,
    configured by ``-Dlog4j.configuration``) before."""
    return "log4j2" if version_tuple(version) >= (4, 0) else "log4j1"


def ensure_worker_libs(version: str = KAFKA_VERSION, quiet: bool = True) -> Path:
    """The jars of a Connect worker of Kafka ``version``: the pinned broker's folder for the pinned
    version, else ``tests/.kafka/worker-<version>/`` fetched from Maven Central once."""
    if version == KAFKA_VERSION:
        return ensure_kafka_libs(version, quiet)
    target = TESTS_DIR / ".kafka" / f"worker-{version}"
    if (target / ".complete").exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mvn", "-B", "-f", str(WORKER_POM), "dependency:copy-dependencies",
           f"-Dkafka.version={version}", f"-P{log_family(version)}",
           f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
    if quiet:
        cmd.insert(2, "-q")
    print(f"[stack] fetching Kafka Connect {version} worker jars from Maven Central into {target}",
          file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL)
    jars = list(tmp.glob("*.jar"))
    if not any(j.name == f"connect-runtime-{version}.jar" for j in jars):
        raise RuntimeError(f"connect-runtime-{version}.jar missing in {tmp}: {sorted(j.name for j in jars)}")
    (tmp / ".complete").write_text(f"{len(jars)} jars\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def worker_classpath(version: str = KAFKA_VERSION) -> str:
    return str(ensure_worker_libs(version) / "*")


if __name__ == "__main__":
    print(ensure_worker_libs(sys.argv[1]) if len(sys.argv) > 1 else ensure_kafka_libs())
