"""The end of every batch: outputs of released buffered events, delivery, accounting, ack.

Shared by the batch orchestrator (events the batch's store calls released) and the buffer
releaser (events whose wait is over). Released entries are acknowledged in the store only once
Kafka acknowledged their outputs (with exactly-once outputs: once the transaction holding them
is committed, ``acknowledge``); a failed ack is only logged: the lease expires and the
entries are released again (at least once). A redelivered entry carries the resolution and the
release time of its first release (``Released.released_ms``), so its outputs repeat exactly:
they are stamped with that time, and its wait is ``released_ms - ingested_ms``. An exception
while building one released event's outputs dead-letters that event (``internal_error``).

``emit`` waits for Kafka's acknowledgements; ``send`` (at-least-once only) produces and returns
a ``Sending`` at once, and ``finish`` does the rest once its delivery reports are all in: the
dead letters of outputs too large, the accounting, and the acknowledgement of its released
entries (so an entry is still acknowledged only after its outputs are).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final

from worker.clock import Clock
from worker.errors import TransientError
from worker.observability.status import BatchStats
from worker.pipeline.deadletter import INTERNAL_ERROR
from worker.pipeline.decoding import Decoder
from worker.pipeline.delivery import Delivery, Shipment
from worker.pipeline.items import Decoded, Output, OutputKind, in_version_order
from worker.pipeline.outputs import OutputContext, event_outputs, tally
from worker.store.base import BufferingStore, Released

log = logging.getLogger(__name__)

ReleasedByTenant = Mapping[str, Sequence[Released]]


class Sending:
    """One ``Emitter.send``: its shipment, its released entries and its counters."""

    __slots__ = ("released", "shipment", "stats")

    def __init__(self, shipment: Shipment, released: ReleasedByTenant, stats: BatchStats) -> None:
        self.shipment = shipment
        self.released = released
        self.stats = stats


class Emitter:
    def __init__(
        self,
        *,
        store: BufferingStore,
        decoder: Decoder,
        outputs: OutputContext,
        delivery: Delivery,
        clock: Clock,
        acks_after_commit: bool = False,
    ) -> None:
        self._store = store
        self._decoder = decoder
        self._outputs = outputs
        self._delivery = delivery
        self._clock = clock
        self._acks_after_commit = acks_after_commit
        self._unacked: dict[str, list[Released]] = {}

    def emit(
        self,
        outs: Sequence[Output],
        released: ReleasedByTenant,
        now_ms: int,
        stats: BatchStats,
    ) -> None:
        """Deliver ``outs`` then the outputs of ``released`` (in their release order; the
        change records of one person or group in version order), count what was acknowledged,
        and acknowledge ``released`` in the store."""
        delivered = self._delivery.deliver(self._ordered(outs, released, now_ms, stats))
        account(delivered, stats, self._clock.now_ms())
        if self._acks_after_commit:
            for tenant, freed in released.items():
                self._unacked.setdefault(tenant, []).extend(freed)
        else:
            self._ack(released)

    def send(
        self,
        outs: Sequence[Output],
        released: ReleasedByTenant,
        now_ms: int,
        stats: BatchStats,
    ) -> Sending:
        """``emit`` without waiting (at-least-once outputs only): produce everything, in the
        same order; ``finish`` completes it once ``Sending.shipment`` is done."""
        ordered = self._ordered(outs, released, now_ms, stats)
        return Sending(self._delivery.send(ordered), released, stats)

    def wait(self, sending: Sending, timeout: float | None = None) -> None:
        """Wait until every delivery report of ``sending`` is in (``Delivery.wait``)."""
        self._delivery.wait(sending.shipment, timeout)

    def finish(self, sending: Sending) -> None:
        """``sending``'s reports are all in: cure its size failures (``Delivery.settle``),
        count what was acknowledged, acknowledge its released entries. Raises
        ``KafkaUnavailableError`` when an output failed otherwise."""
        delivered = self._delivery.settle(sending.shipment)
        account(delivered, sending.stats, self._clock.now_ms())
        self._ack(sending.released)

    def _ordered(
        self,
        outs: Sequence[Output],
        released: ReleasedByTenant,
        now_ms: int,
        stats: BatchStats,
    ) -> list[Output]:
        everything = list(outs)
        for freed in released.values():
            everything.extend(self.released_outputs(freed, now_ms, stats))
        return in_version_order(everything)

    def acknowledge(self) -> None:
        """With ``acks_after_commit`` (exactly-once outputs): the outputs of the released
        entries emitted since the last call are committed; acknowledge the entries now."""
        unacked, self._unacked = self._unacked, {}
        self._ack(unacked)

    def discard(self) -> None:
        """The outputs emitted since the last ``acknowledge`` were aborted: keep their entries
        (their leases expire and they are released again)."""
        self._unacked = {}

    def released_outputs(
        self, freed: Sequence[Released], now_ms: int, stats: BatchStats
    ) -> list[Output]:
        """Outputs of buffered events handed back by the store, in their release order."""
        outs: list[Output] = []
        for entry in freed:
            stats.releases[entry.reason] += 1
            item = self._decoder.released(entry, now_ms)
            if not isinstance(item, Decoded):
                outs.append(item)
                continue
            try:
                built = event_outputs(
                    item, entry.resolution, self._outputs, buffered_ms=waited_ms(entry, now_ms)
                )
                tally(entry.resolution, stats)
            except TransientError:
                raise
            except Exception as exc:  # one event never stops the partition
                built = [self._decoder.failed(item.message, exc, INTERNAL_ERROR)]
            outs.extend(built)
        return outs

    def _ack(self, released: ReleasedByTenant) -> None:
        for tenant, freed in released.items():
            try:
                self._store.ack(tenant, [r.entry_id for r in freed])
            except Exception as exc:  # the leases expire: the entries come back
                log.warning("buffer ack failed, entries will be redelivered: %r", exc)


def waited_ms(entry: Released, now_ms: int) -> int:
    """How long ``entry`` waited in the buffer: until its first release, or, from a store that
    does not say when that was, until ``now_ms``."""
    end = entry.released_ms or now_ms
    return max(end - entry.ingested_ms, 0)


def account(delivered: Sequence[Output], stats: BatchStats, now_ms: int) -> None:
    """Count acknowledged outputs; an enriched event of a Kafka input adds its delay (input's
    Kafka timestamp to ``now_ms``)."""
    emitted: Counter[tuple[str, OutputKind]] = Counter()
    delays = stats.delays_seconds
    for out in delivered:
        kind = out.kind
        emitted[(out.record.topic, kind)] += 1
        if kind is _ENRICHED:
            source = out.source
            if source.partition >= 0 and source.timestamp_ms:
                delays.append(max(now_ms - source.timestamp_ms, 0) / 1000)
        elif kind is _DEAD_LETTER:
            stats.dead_letters[out.label] += 1
        elif kind is _WARNING:
            stats.warnings[out.label] += 1
    for (topic, kind), count in emitted.items():
        stats.emitted[(topic, kind.value)] += count


_ENRICHED: Final = OutputKind.ENRICHED
_DEAD_LETTER: Final = OutputKind.DEAD_LETTER
_WARNING: Final = OutputKind.WARNING
