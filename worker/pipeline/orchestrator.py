"""One batch: decode → resolve (one store call per tenant) → outputs → deliver → ack the buffer.

``process`` returns only once Kafka acknowledged every output record of the batch, so the offsets
it returns may be committed. Bad input never stops a partition: undecodable messages become dead
letters, rule violations become warning records, and an output too large for its topic turns the
input into a dead letter. Anything transient (Redis, Kafka or the schema registry unavailable)
raises a ``TransientError`` and the runner retries the whole batch.

Each step is its own part, built in ``worker.app``: ``Decoder`` (pipeline.decoding),
``event_outputs`` (pipeline.outputs, pure), ``Emitter`` (pipeline.emit: delivery, accounting,
buffer acks) and ``BufferReleaser`` (pipeline.releaser, the housekeeping between batches).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence

from worker.clock import Clock
from worker.identity.model import Resolution
from worker.kafka.records import RawMessage
from worker.observability.status import BatchStats
from worker.pipeline.decoding import Decoder
from worker.pipeline.emit import Emitter
from worker.pipeline.items import Decoded, Output
from worker.pipeline.offsets import next_offsets
from worker.pipeline.outputs import OutputContext, event_outputs, tally
from worker.pipeline.releaser import BufferReleaser
from worker.pipeline.runner import BatchOutcome, BatchProcessor
from worker.store.base import BufferingStore, Released

log = logging.getLogger(__name__)


class BatchPipeline(BatchProcessor):
    def __init__(
        self,
        *,
        store: BufferingStore,
        decoder: Decoder,
        outputs: OutputContext,
        emitter: Emitter,
        clock: Clock,
        releaser: BufferReleaser | None = None,
        log_personal_data: bool = False,
    ) -> None:
        self._store = store
        self._decoder = decoder
        self._outputs = outputs
        self._emitter = emitter
        self._clock = clock
        self._releaser = releaser
        self._log_personal_data = log_personal_data

    def process(self, batch: Sequence[RawMessage]) -> BatchOutcome:
        now_ms = self._clock.now_ms()
        stats = BatchStats()
        outs: list[Output] = []
        decoded: list[Decoded] = []
        for message in batch:
            stats.consumed[message.topic] += 1
            for item in self._decoder.decode_all(message, now_ms):
                if isinstance(item, Decoded):
                    decoded.append(item)
                else:
                    outs.append(item)
        released: dict[str, list[Released]] = {}
        for item, resolution in self._resolve(decoded, now_ms, stats, released):
            outs.extend(event_outputs(item, resolution, self._outputs, now_ms=now_ms))
            tally(resolution, stats)
            self._log_resolved(item, resolution)
        self._emitter.emit(outs, released, now_ms, stats)
        return BatchOutcome(next_offsets=next_offsets(batch), stats=stats)

    def housekeeping(self) -> BatchStats | None:
        return self._releaser.release() if self._releaser is not None else None

    def _resolve(
        self,
        decoded: list[Decoded],
        now_ms: int,
        stats: BatchStats,
        released: dict[str, list[Released]],
    ) -> list[tuple[Decoded, Resolution]]:
        """One store call per tenant; the result keeps the batch's order. Buffered events the
        calls released are collected per tenant in ``released``."""
        by_tenant: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(decoded):
            by_tenant[item.identity.tenant].append(index)
        resolved: dict[int, Resolution] = {}
        for tenant, indexes in by_tenant.items():
            events = [decoded[i].identity for i in indexes]
            started = time.perf_counter()
            result = self._store.resolve_buffered(tenant, events, now_ms)
            stats.store_seconds.append(time.perf_counter() - started)
            resolved.update(zip(indexes, result.resolutions, strict=True))
            if result.released:
                released[tenant] = result.released
        return [(item, resolved[i]) for i, item in enumerate(decoded)]

    def _log_resolved(self, item: Decoded, resolution: Resolution) -> None:
        if not (self._log_personal_data and log.isEnabledFor(logging.DEBUG)):
            return
        event = item.event
        log.debug(
            "resolved",
            extra={
                "tenant": event.tenant,
                "distinct_id": event.distinct_id,
                "event_uuid": event.uuid,
                "person_id": resolution.person_id,
                "outcome": resolution.outcome.value,
                "properties": dict(resolution.properties),
            },
        )
