"""What the benchmark ran on: cores, CPU, RAM, JDK, rustc, kernel, load."""
from __future__ import annotations

import os
import platform
import subprocess


def _run(argv: list) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "unknown"


def describe() -> dict:
    jdk = _run(["java", "-version"]).splitlines()
    return {
        "nproc": _run(["nproc"]),
        "cpu": cpu_model(),
        "ram": f"{ram_gib():.1f} GiB",
        "jdk": jdk[0] if jdk else "unknown",
        "rustc": _run(["rustc", "--version"]),
        "kernel": f"{platform.system()} {platform.release()}",
        "load_at_start": loadavg(),
        "cpus_visible": str(os.cpu_count()),
    }
