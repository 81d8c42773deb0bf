"""Time as an injected dependency: ``SystemClock`` in production, ``ManualClock`` in tests."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time, milliseconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and deadlines)."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = now_ms
        self._mono = 0.0

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now_ms += round(seconds * 1000)
        self._mono += seconds


class ShiftedClock(SystemClock):
    """The system clock plus an offset that tests move forward: time passes for real, and a
    test can also jump (e.g. past the buffer's delay) without sleeping."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now_ms(self) -> int:
        return super().now_ms() + round(self._offset * 1000)

    def monotonic(self) -> float:
        return super().monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds
