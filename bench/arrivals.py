"""Throughput from the emulator's written-records counter, shared by the benchmark phases."""
from __future__ import annotations

import time
from typing import Optional


class Arrivals:
    """Records/s from the first record's arrival in the emulator to the last one's (the records
    that arrived with the first poll are not counted: their time is unknown)."""

    def __init__(self, base: int, n: int):
        self.base, self.n = base, n
        self.t_first: Optional[float] = None
        self.n_first = 0
        self.t_last: Optional[float] = None

    def on_poll(self, written: int) -> None:
        now = time.monotonic()
        done = written - self.base
        if done > 0 and self.t_first is None:
            self.t_first, self.n_first = now, done
        if done >= self.n and self.t_last is None:
            self.t_last = now

    def rate(self) -> tuple:
        """(seconds, records counted, records/s)."""
        span = max(self.t_last - self.t_first, 1e-3)
        counted = self.n - self.n_first
        return span, counted, (counted / span if counted > 0 else self.n / span)
