"""The main loop: poll a batch, process it, commit; back off without losing anything.

Invariants:
- A batch is committed only after ``BatchProcessor.process`` returned, i.e. after every output
  was acknowledged by Kafka and every identity or buffer write is in Redis.
- A batch that fails with a transient error is never committed: its partitions are rewound to
  the batch's first offsets and paused while the worker backs off, then resumed; the batch is
  re-read and processed again (at least once; idempotent in ``timestamp`` mode).
- Rebalance callbacks run inside ``poll_batch``, between batches, so a revoked partition never
  has half-done work: what was done is committed, what was not is re-read by the next owner.
- Shutdown (``request_shutdown``): stop polling, let the current batch finish and commit, close.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from worker.clock import Clock
from worker.errors import Component, TransientError
from worker.kafka.records import Partition, RawMessage
from worker.observability.status import BatchStats, Health
from worker.pipeline.offsets import first_offsets
from worker.pipeline.ports import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    next_offsets: dict[Partition, int]
    """Per partition, the offset of the next message to read: what may be committed."""
    stats: BatchStats = field(default_factory=BatchStats)


class RunObserver(Protocol):
    """What the loop reports, for metrics (implemented in ``observability.recorder``)."""

    def batch_done(self, size: int, seconds: float, stats: BatchStats) -> None: ...

    def transient_error(self, component: Component, during_commit: bool) -> None: ...

    def tick(self, source: Source) -> None:
        """Called about once a second from the loop: sample lag and assignment."""
        ...


class BatchProcessor:
    """Port for one batch's work (decode, resolve, emit); see ``pipeline.orchestrator``."""

    def process(self, batch: Sequence[RawMessage]) -> BatchOutcome:
        raise NotImplementedError

    def committed(self) -> None:
        """The batch the last ``process`` returned is committed (e.g. drop its replay
        receipts). Failures here must not raise: the batch stays committed."""

    def housekeeping(self) -> BatchStats | None:
        """Periodic work between batches (buffer releases); may raise ``TransientError``.
        Returns what it did, if anything."""
        return None


class Runner:
    def __init__(
        self,
        source: Source,
        processor: BatchProcessor,
        clock: Clock,
        *,
        max_messages: int,
        max_wait_seconds: float,
        health: Health | None = None,
        backoff_initial_seconds: float = 0.2,
        backoff_max_seconds: float = 10.0,
        observer: RunObserver | None = None,
        tick_seconds: float = 1.0,
    ) -> None:
        self._source = source
        self._processor = processor
        self._clock = clock
        self._max_messages = max_messages
        self._max_wait = max_wait_seconds
        self.health = health or Health()
        self._backoff_initial = backoff_initial_seconds
        self._backoff_max = backoff_max_seconds
        self._observer = observer
        self._tick_seconds = tick_seconds
        self._next_tick = 0.0
        self._stop = threading.Event()

    def request_shutdown(self) -> None:
        """Finish the current batch, commit it, then leave the loop (safe from a signal)."""
        self.health.stopping = True
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        backoff = self._backoff_initial
        while not self._stop.is_set():
            now = self._clock.monotonic()
            self.health.last_loop_monotonic = now
            batch: list[RawMessage] = []
            committing = False
            try:
                batch = self._source.poll_batch(self._max_messages, self._max_wait)
                self.health.mark_ok(Component.KAFKA)
                self.health.assigned = self._source.assignment
                if batch:
                    started = self._clock.monotonic()
                    outcome = self._processor.process(batch)
                    committing = True
                    self._source.commit(outcome.next_offsets)
                    committing = False
                    self._processor.committed()
                    if self._observer:
                        elapsed = self._clock.monotonic() - started
                        self._observer.batch_done(len(batch), elapsed, outcome.stats)
                    batch = []  # committed: a later failure (housekeeping) must not rewind it
                chores = self._processor.housekeeping()
                if chores is not None and self._observer:
                    self._observer.batch_done(0, 0.0, chores)
                if self._observer and now >= self._next_tick:
                    self._next_tick = now + self._tick_seconds
                    self._observer.tick(self._source)
                self.health.last_error = None
                self.health.mark_ok()
                backoff = self._backoff_initial
            except TransientError as exc:
                self._record_failure(exc, committing)
                if batch:
                    self._source.rewind(first_offsets(batch))
                self._back_off(backoff)
                backoff = min(backoff * 2, self._backoff_max)

    def _record_failure(self, exc: TransientError, during_commit: bool) -> None:
        self.health.last_error = f"{type(exc).__name__}: {exc}"
        if self._observer:
            self._observer.transient_error(exc.component, during_commit)
        self.health.mark_down(exc.component)
        log.warning("batch not committed, will retry: %s", self.health.last_error)

    def _back_off(self, seconds: float) -> None:
        """Pause every assigned partition and keep serving the group while waiting."""
        paused = self._source.assignment
        self._source.pause(paused)
        deadline = self._clock.monotonic() + seconds
        try:
            while not self._stop.is_set() and self._clock.monotonic() < deadline:
                self.health.last_loop_monotonic = self._clock.monotonic()
                # paused partitions return nothing; polling keeps the membership and runs
                # rebalance callbacks
                stray = self._source.poll_batch(self._max_messages, min(0.2, seconds))
                if stray:
                    self._source.rewind(first_offsets(stray))
        finally:
            self._source.resume(self._source.assignment & paused)
