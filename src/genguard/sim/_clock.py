"""The simulator's sense of time: rate buckets, retry-after verdicts, task progress and link expiry.

A running simulator reads the system's clocks; a test gives it a :class:`FakeClock` and moves time itself,
so what depends on time is checked without sleeping and without racing the wall clock. Pacing (``--ttft-ms``,
``--tokens-per-s``) and stalls stay real: they exist to be felt by a real client's timeouts.

>>> clock = FakeClock(start=100.0)
>>> clock.advance(2.5)
>>> clock.monotonic(), clock.time() - clock.epoch
(102.5, 102.5)
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """What the simulator asks of a clock: seconds that only go forward, and the Unix time."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The system's clocks."""

    __slots__ = ()

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that moves only when told to (``advance``); safe to move from a test while the server runs.

    ``time()`` is ``epoch + monotonic()``, with ``epoch`` the real Unix time when the clock was made, so
    timestamps look current.
    """

    __slots__ = ("_lock", "_now", "epoch")

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.epoch = time.time() - start

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self.epoch + self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never back)."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward, not by {seconds!r} s")
        with self._lock:
            self._now += seconds
