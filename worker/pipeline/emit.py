"""The end of every batch: outputs of released buffered events, delivery, accounting, ack.

Shared by the batch orchestrator (events the batch's store calls released) and the buffer
releaser (events whose wait is over). Released entries are acknowledged in the store only once
Kafka acknowledged their outputs; a failed ack is only logged: the lease expires and the
entries are released again (at least once).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from worker.clock import Clock
from worker.errors import TransientError
from worker.observability.status import BatchStats
from worker.pipeline.decoding import Decoder
from worker.pipeline.delivery import Delivery
from worker.pipeline.items import Decoded, Output, OutputKind
from worker.pipeline.outputs import OutputContext, event_outputs, tally
from worker.store.base import BufferingStore, Released

log = logging.getLogger(__name__)

ReleasedByTenant = Mapping[str, Sequence[Released]]


class Emitter:
    def __init__(
        self,
        *,
        store: BufferingStore,
        decoder: Decoder,
        outputs: OutputContext,
        delivery: Delivery,
        clock: Clock,
    ) -> None:
        self._store = store
        self._decoder = decoder
        self._outputs = outputs
        self._delivery = delivery
        self._clock = clock

    def emit(
        self,
        outs: Sequence[Output],
        released: ReleasedByTenant,
        now_ms: int,
        stats: BatchStats,
    ) -> None:
        """Deliver ``outs`` then the outputs of ``released`` (in their release order), count
        what was acknowledged, and acknowledge ``released`` in the store."""
        everything = list(outs)
        for freed in released.values():
            everything.extend(self.released_outputs(freed, now_ms, stats))
        delivered = self._delivery.deliver(everything)
        account(delivered, stats, self._clock.now_ms())
        self._ack(released)

    def released_outputs(
        self, freed: Sequence[Released], now_ms: int, stats: BatchStats
    ) -> list[Output]:
        """Outputs of buffered events handed back by the store, in their release order."""
        outs: list[Output] = []
        for entry in freed:
            stats.releases[entry.reason] += 1
            item = self._decoder.released(entry)
            if not isinstance(item, Decoded):
                outs.append(item)
                continue
            buffered_ms = max(now_ms - entry.ingested_ms, 0)
            outs.extend(
                event_outputs(
                    item, entry.resolution, self._outputs, now_ms=now_ms, buffered_ms=buffered_ms
                )
            )
            tally(entry.resolution, stats)
        return outs

    def _ack(self, released: ReleasedByTenant) -> None:
        for tenant, freed in released.items():
            try:
                self._store.ack(tenant, [r.entry_id for r in freed])
            except TransientError as exc:
                log.warning("buffer ack failed, entries will be redelivered: %s", exc)


def account(delivered: Sequence[Output], stats: BatchStats, now_ms: int) -> None:
    """Count acknowledged outputs; an enriched event of a Kafka input adds its delay (input's
    Kafka timestamp to ``now_ms``)."""
    for out in delivered:
        stats.emitted[(out.record.topic, out.kind.value)] += 1
        if out.kind is OutputKind.DEAD_LETTER:
            stats.dead_letters[out.label] += 1
        elif out.kind is OutputKind.WARNING:
            stats.warnings[out.label] += 1
        elif (
            out.kind is OutputKind.ENRICHED
            and out.source.partition >= 0
            and out.source.timestamp_ms
        ):
            stats.delays_seconds.append(max(now_ms - out.source.timestamp_ms, 0) / 1000)
