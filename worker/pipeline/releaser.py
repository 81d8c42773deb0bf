"""Buffer housekeeping between batches: release what waited long enough, emit it, ack it.

At most every ``interval_seconds`` (``buffer.release_interval_seconds``), in every tenant with
something due (``due_tenants``: one index read, however many tenants ever buffered): the store
releases due events and expired leases (``release_due``, at most ``batch_size`` per tenant),
the ``Emitter`` delivers their outputs and acknowledges them. The buffer's depth and oldest age,
for the gauges, are sampled over every tenant that buffers, but only every
``stats_interval_seconds``, so the sweep's cost does not grow with idle tenants. With
exactly-once outputs (a ``transaction``), the sweep's outputs are committed in a transaction of
their own before the entries are acknowledged. A tenant whose release fails for good (not a
``TransientError``) is logged and skipped until the next sweep, so it never stops the worker.
"""

from __future__ import annotations

import logging

from worker.clock import Clock
from worker.errors import TransientError
from worker.observability.status import BatchStats
from worker.pipeline.emit import Emitter
from worker.pipeline.ports import OutputTransaction
from worker.store.base import BufferingStore, Released

log = logging.getLogger(__name__)


class BufferReleaser:
    def __init__(
        self,
        *,
        store: BufferingStore,
        emitter: Emitter,
        clock: Clock,
        batch_size: int,
        interval_seconds: float,
        transaction: OutputTransaction | None = None,
        stats_interval_seconds: float = 15.0,
    ) -> None:
        self._store = store
        self._emitter = emitter
        self._clock = clock
        self._batch_size = batch_size
        self._interval = interval_seconds
        self._next_release = 0.0
        self._transaction = transaction
        self._stats_interval = stats_interval_seconds
        self._next_stats = 0.0

    def _sample(self, stats: BatchStats, now_ms: int) -> None:
        """The buffer's depth and oldest age over every tenant that buffers, for the gauges."""
        stats.buffer_events, stats.buffer_oldest_age_seconds = 0, 0.0
        for tenant in self._store.buffered_tenants():
            buffered = self._store.buffer_stats(tenant, now_ms)
            stats.buffer_events += buffered.events
            if buffered.oldest_age_ms is not None:
                age = buffered.oldest_age_ms / 1000
                stats.buffer_oldest_age_seconds = max(stats.buffer_oldest_age_seconds, age)

    def release(self) -> BatchStats | None:
        """One sweep when it is due (else ``None``): what it released and sampled. May raise
        ``TransientError``; the entries it released then come back after their lease."""
        if self._clock.monotonic() < self._next_release:
            return None
        self._next_release = self._clock.monotonic() + self._interval
        now_ms = self._clock.now_ms()
        stats = BatchStats()
        released: dict[str, list[Released]] = {}
        for tenant in self._store.due_tenants(now_ms):
            try:
                freed = self._store.release_due(tenant, now_ms, self._batch_size)
            except TransientError:
                raise
            except Exception as exc:  # one tenant's buffer never stops the worker
                log.error("buffer release of tenant %s failed: %r", tenant, exc)
                continue
            if freed:
                released[tenant] = freed
        if self._clock.monotonic() >= self._next_stats:
            self._next_stats = self._clock.monotonic() + self._stats_interval
            self._sample(stats, now_ms)
        if self._transaction is None:
            self._emitter.emit([], released, now_ms, stats)
            return stats
        self._emitter.discard()  # a batch's entries still unacknowledged were aborted with it
        try:
            self._emitter.emit([], released, now_ms, stats)
            self._transaction.commit()
        except BaseException:
            self._emitter.discard()
            self._transaction.abort()
            raise
        self._emitter.acknowledge()
        return stats
