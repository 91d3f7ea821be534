"""log4j2 configuration files (properties format: no extra jars needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

PATTERN = "[%d{ISO8601}] %p %X{connector.context}%m (%c{1.})%n"


def write_log4j2(path: Path, log_file: Path, root_level: str = "INFO",
                 levels: Optional[Mapping[str, str]] = None) -> Path:
    lines = [
        "status = warn",
        "name = e2e",
        "appender.file.type = File",
        "appender.file.name = FILE",
        f"appender.file.fileName = {log_file}",
        "appender.file.append = true",
        "appender.file.immediateFlush = true",
        "appender.file.layout.type = PatternLayout",
        f"appender.file.layout.pattern = {PATTERN}",
        f"rootLogger.level = {root_level}",
        "rootLogger.appenderRef.file.ref = FILE",
    ]
    for i, (logger, level) in enumerate(sorted((levels or {}).items())):
        lines += [f"logger.l{i}.name = {logger}", f"logger.l{i}.level = {level}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


PATTERN_LOG4J1 = "[%d{ISO8601}] %p %X{connector.context}%m (%c)%n"


def write_log4j1(path: Path, log_file: Path, root_level: str = "INFO",
                 levels: Optional[Mapping[str, str]] = None) -> Path:
    """log4j 1.x properties (Kafka workers before 4.0: reload4j, ``-Dlog4j.configuration=file:...``)."""
    lines = [
        f"log4j.rootLogger={root_level}, file",
        "log4j.appender.file=org.apache.log4j.FileAppender",
        f"log4j.appender.file.File={log_file}",
        "log4j.appender.file.Append=true",
        "log4j.appender.file.ImmediateFlush=true",
        "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
        f"log4j.appender.file.layout.ConversionPattern={PATTERN_LOG4J1}",
    ]
    lines += [f"log4j.logger.{logger}={level}" for logger, level in sorted((levels or {}).items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
