"""Small helpers shared by the stack and the tests: waiting, ports, log tails."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, TypeVar, Union

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO_ROOT / "tests"


class WaitTimeout(AssertionError):
    """Raised by wait_until when the predicate never became truthy."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.25,
    message: Union[str, Callable[[], str], None] = None,
    ignore: tuple = (),
) -> T:
    """Call ``predicate`` until it returns a truthy value and return that value.

    ``ignore``: exception types treated as "not yet" (e.g. connection errors while a server starts).
    On timeout raises :class:`WaitTimeout` (an AssertionError) whose text says what was awaited,
    the last value seen and the last ignored exception; ``message`` may be a callable so expensive
    diagnostics (status traces, log tails) are only computed on failure.
    """
    deadline = time.monotonic() + timeout
    last = None
    last_exc: Optional[BaseException] = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except ignore as exc:  # type: ignore[misc]
            last_exc = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    text = message() if callable(message) else (message or getattr(predicate, "__name__", "condition"))
    detail = f"timed out after {timeout:.0f}s waiting for: {text}\nlast value seen: {last!r}"
    if last_exc is not None:
        detail += f"\nlast error: {type(last_exc).__name__}: {last_exc}"
    raise WaitTimeout(detail)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Union[str, Path], lines: int = 80, max_bytes: int = 256 * 1024) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    p = Path(path)
    if not p.exists():
        return f"<{p} does not exist>"
    size = p.stat().st_size
    with p.open("rb") as f:
        if size > max_bytes:
            f.seek(size - max_bytes)
        data = f.read().decode("utf-8", errors="replace")
    return "\n".join(data.splitlines()[-lines:])


def grep(path: Union[str, Path], needle: str) -> list[str]:
    """Lines of a text file containing ``needle`` (case-sensitive)."""
    p = Path(path)
    if not p.exists():
        return []
    with p.open("r", encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in f if needle in line]


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return "java"


def write_properties(path: Path, props: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for k, v in props.items():
            f.write(f"{k}={v}\n")


def first(items: Iterable[T]) -> Optional[T]:
    for it in items:
        return it
    return None
