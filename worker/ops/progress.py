"""A one-line progress report on stderr: done/total, rate and ETA, redrawn in place on a
terminal and printed at most every few seconds elsewhere (a log file gets a few lines)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(
        self,
        out: TextIO,
        total: int,
        label: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        every_seconds: float | None = None,
    ) -> None:
        self._out = out
        self._total = total
        self._label = label
        self._clock = clock
        self._start = clock()
        self._tty = bool(getattr(out, "isatty", lambda: False)())
        self._every = every_seconds if every_seconds is not None else (0.2 if self._tty else 5.0)
        self._last = self._start
        self.done = 0

    def line(self) -> str:
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = self.done / elapsed
        left = max(self._total - self.done, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        pct = f"{100 * self.done / self._total:5.1f}%" if self._total else "  -  "
        return (
            f"{self._label}: {self.done}/{self._total} {pct} {rate:,.0f}/s "
            f"elapsed {elapsed:.0f}s ETA {eta}"
        )

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._write()

    def _write(self) -> None:
        if self._tty:
            self._out.write("\r\033[K" + self.line())
        else:
            self._out.write(self.line() + "\n")
        self._out.flush()

    def finish(self) -> None:
        self._write()
        if self._tty:
            self._out.write("\n")
        self._out.flush()
