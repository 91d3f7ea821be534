"""Child processes in their own process group, always cleaned up.

Every process is started with ``start_new_session=True`` (own process group, killed as a group) and
``PR_SET_PDEATHSIG=SIGKILL`` (the kernel kills it if the Python process dies, even by SIGKILL), set
through util-linux ``setpriv --pdeathsig KILL`` (exec'd in place, same pid) when it exists, else a
``preexec_fn`` prctl call.
All live processes are also killed by an ``atexit`` hook and on SIGTERM/SIGHUP.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

_LIVE: "set[ManagedProcess]" = set()
_LOCK = threading.Lock()
_PR_SET_PDEATHSIG = 1

try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not Linux: rely on atexit / signal handlers only
    _libc = None


_SETPRIV = shutil.which("setpriv")


def _preexec() -> None:
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ManagedProcess:
    """One long-running child whose stdout+stderr go to ``out_file``."""

    def __init__(self, name: str, argv: Sequence[str], out_file: Path, cwd: Optional[Path] = None,
                 env: Optional[dict] = None):
        self.name = name
        self.argv = list(argv)
        self.out_file = Path(out_file)
        self.cwd = cwd
        self.env = env
        self.proc: Optional[subprocess.Popen] = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "ManagedProcess":
        if self.running:
            raise RuntimeError(f"{self.name} already running (pid {self.proc.pid})")
        self.out_file.parent.mkdir(parents=True, exist_ok=True)
        out = self.out_file.open("ab")
        out.write(f"\n===== {time.strftime('%H:%M:%S')} starting: {' '.join(self.argv)}\n".encode())
        out.flush()
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        argv = self.argv
        preexec = None
        if _SETPRIV:
            argv = [_SETPRIV, "--pdeathsig", "KILL", "--"] + argv
        elif _libc is not None:
            preexec = _preexec
        self.proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=str(self.cwd) if self.cwd else None, env=env,
            start_new_session=True, preexec_fn=preexec,
        )
        out.close()
        with _LOCK:
            _LIVE.add(self)
        return self

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.poll() if self.proc else None

    def signal(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it (a crash, as far as the child knows)."""
        self.signal(signal.SIGKILL)
        self._reap(10)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
        # kill leftovers of the group even when the leader exited
        self.signal(signal.SIGKILL)
        self._reap(10)

    def _reap(self, timeout: float) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with _LOCK:
            _LIVE.discard(self)

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.pid} running={self.running}>"


def kill_all() -> None:
    with _LOCK:
        procs = list(_LIVE)
    for p in procs:
        p.signal(signal.SIGKILL)
    for p in procs:
        p._reap(5)


atexit.register(kill_all)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so ``finally`` blocks and fixtures run; only from the
    main thread. SIGINT already raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        return

    def _handler(signum, _frame):
        kill_all()
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _handler)
        except (ValueError, OSError):
            pass


class Service:
    """Lifecycle shared by the broker and the workers: a ``ManagedProcess`` in ``self.proc`` and a
    ``start(timeout=...)`` of their own."""

    proc: Optional[ManagedProcess] = None

    def stop(self, grace: float = 20) -> None:
        if self.proc:
            self.proc.stop(grace)

    def kill(self) -> None:
        """kill -9 (process group)."""
        if self.proc:
            self.proc.kill()

    def restart(self, hard: bool = False, timeout: float = 90):
        self.kill() if hard else self.stop()
        return self.start(timeout=timeout)

    @property
    def running(self) -> bool:
        return bool(self.proc and self.proc.running)
