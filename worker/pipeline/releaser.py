"""Buffer housekeeping between batches: release what waited long enough, emit it, ack it.

At most every ``interval_seconds`` (``buffer.release_interval_seconds``), in every tenant that
buffers: the store releases due events and expired leases (``release_due``, at most
``batch_size`` per tenant), the ``Emitter`` delivers their outputs and acknowledges them. The
buffer's depth and oldest age are sampled on the way, for the gauges.
"""

from __future__ import annotations

from worker.clock import Clock
from worker.observability.status import BatchStats
from worker.pipeline.emit import Emitter
from worker.store.base import BufferingStore, Released


class BufferReleaser:
    def __init__(
        self,
        *,
        store: BufferingStore,
        emitter: Emitter,
        clock: Clock,
        batch_size: int,
        interval_seconds: float,
    ) -> None:
        self._store = store
        self._emitter = emitter
        self._clock = clock
        self._batch_size = batch_size
        self._interval = interval_seconds
        self._next_release = 0.0

    def release(self) -> BatchStats | None:
        """One sweep when it is due (else ``None``): what it released and sampled. May raise
        ``TransientError``; the entries it released then come back after their lease."""
        if self._clock.monotonic() < self._next_release:
            return None
        self._next_release = self._clock.monotonic() + self._interval
        now_ms = self._clock.now_ms()
        stats = BatchStats(buffer_events=0, buffer_oldest_age_seconds=0.0)
        released: dict[str, list[Released]] = {}
        for tenant in self._store.due_tenants(now_ms):
            freed = self._store.release_due(tenant, now_ms, self._batch_size)
            if freed:
                released[tenant] = freed
            buffered = self._store.buffer_stats(tenant, now_ms)
            stats.buffer_events = (stats.buffer_events or 0) + buffered.events
            if buffered.oldest_age_ms is not None:
                age = buffered.oldest_age_ms / 1000
                stats.buffer_oldest_age_seconds = max(stats.buffer_oldest_age_seconds or 0, age)
        self._emitter.emit([], released, now_ms, stats)
        return stats
