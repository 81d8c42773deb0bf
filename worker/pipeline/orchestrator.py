"""One batch: decode → resolve (one store call per tenant) → outputs → deliver → ack the buffer.

``process`` returns only once Kafka acknowledged every output record of the batch, so the offsets
it returns may be committed. Nothing one event holds can stop a partition: undecodable messages
become dead letters, rule violations become warning records, an output too large for its topic
turns the input into a dead letter, an event the store refuses for good is found by bisection
and dead-lettered (``store_rejected``), and any other exception while handling one event
dead-letters that event (``internal_error``) while the batch goes on. Only a failing dependency
(Redis, Kafka or the schema registry unavailable: a ``TransientError``) fails the batch, which
the runner retries whole.

Once the runner committed a batch, ``committed`` tells the store to drop the replay receipts of
its events (``BufferingStore.forget``, per tenant): they will not be read again.

``start`` (at-least-once outputs) does the same work but returns once the outputs are produced,
with a ``PendingBatch`` the runner finishes once Kafka acknowledged them, so it can decode and
resolve the next batches meanwhile (``batch.max_in_flight``). The runner splits it further:
``plan`` decodes a batch and encodes its store round, ``launch`` sends the round, ``receive``
reads its answers and ``complete`` produces the outputs; between ``launch`` and ``receive`` the
runner completes the previous batch, polls and plans the next one while Redis runs the round.
Batches are committed, and told
``committed``, in the order they were started. With exactly-once outputs (a transactional sink)
``complete`` delivers the batch whole into the open transaction (as ``process`` does), which the
runner commits before it polls again; the next batch's round runs in Redis meanwhile.

Each step is its own part, built in ``worker.app``: ``Decoder`` (pipeline.decoding),
``Resolver`` (pipeline.resolving: the store calls and their bisection), ``event_outputs``
(pipeline.outputs, pure), ``Emitter`` (pipeline.emit: delivery, accounting, buffer acks) and
``BufferReleaser`` (pipeline.releaser, the housekeeping between batches).
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import cast

from worker.clock import Clock
from worker.errors import TransientError
from worker.identity.model import Resolution
from worker.kafka.records import RawMessage
from worker.observability.status import BatchStats
from worker.pipeline.deadletter import INTERNAL_ERROR
from worker.pipeline.decoding import Decoder
from worker.pipeline.emit import Emitter, ReleasedByTenant, Sending
from worker.pipeline.items import Decoded, Output
from worker.pipeline.offsets import next_offsets
from worker.pipeline.outputs import OutputContext, event_outputs, tally
from worker.pipeline.ports import Sink
from worker.pipeline.releaser import BufferReleaser
from worker.pipeline.resolving import Planned, Rejected, Resolved, Resolver
from worker.pipeline.runner import DONE, BatchOutcome, BatchProcessor, PendingBatch, PlannedBatch
from worker.store.base import BufferingStore

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
        sink: Sink | None = None,
    ) -> None:
        self._store = store
        self._decoder = decoder
        self._outputs = outputs
        self._emitter = emitter
        self._clock = clock
        self._releaser = releaser
        self._log_personal_data = log_personal_data
        self._resolver = Resolver(store)
        self._sink = sink
        """the sink ``start`` produces to without waiting (none: every batch waits)"""
        self._sources: deque[dict[str, list[str]]] = deque()
        """per batch processed and not yet committed, oldest first: per tenant, the sources of
        its events (forgotten once committed)"""

    def process(self, batch: Sequence[RawMessage]) -> BatchOutcome:
        """One batch, once Kafka acknowledged its outputs; a batch processed earlier and not
        committed is given up (its attempt failed)."""
        self._sources.clear()
        self._emitter.discard()  # a failed attempt's outputs were aborted (exactly-once)
        outs, released, decoded, now_ms, stats = self._complete(self._plan(batch))
        self._emitter.emit(outs, released, now_ms, stats)
        self._sources.append(_sources_by_tenant(decoded))
        return BatchOutcome(next_offsets=next_offsets(batch), stats=stats)

    def start(self, batch: Sequence[RawMessage]) -> tuple[BatchOutcome, PendingBatch]:
        """One batch, its outputs produced but not waited for; the ``PendingBatch`` finishes
        it. Batches started earlier stay in flight."""
        if not self.overlaps:
            return self.process(batch), DONE
        planned = self.plan(batch)
        self.launch(planned)
        return self.complete(planned)

    @property
    def overlaps(self) -> bool:
        """With a sink: the store round of a batch runs while the previous batch's outputs
        are produced (and committed, exactly once) and the next batch is decoded."""
        return self._sink is not None

    def plan(self, batch: Sequence[RawMessage]) -> PlannedBatch:
        """Decode ``batch`` and plan its store round (not sent)."""
        return self._plan(batch)

    def launch(self, planned: PlannedBatch) -> None:
        """Send the batch's store round; Redis runs it while the caller goes on."""
        cast(_Planned, planned).resolve.send()

    def receive(self, planned: PlannedBatch) -> None:
        """Read the batch's store answers (the next round may be sent after this)."""
        ready = cast(_Planned, planned)
        ready.resolved = ready.resolve.resolved()

    def complete(self, planned: PlannedBatch) -> tuple[BatchOutcome, PendingBatch]:
        """Read the batch's store answers (unless ``receive`` did), build and produce its
        outputs: not waited for (at least once), or delivered whole in the open transaction
        (exactly once: a failed record dooms the transaction, ``Delivery.deliver``)."""
        outs, released, decoded, now_ms, stats = self._complete(cast(_Planned, planned))
        pending: PendingBatch = DONE
        if self._sink is not None and self._sink.transactional:
            self._emitter.emit(outs, released, now_ms, stats)
        else:
            pending = _Pending(self._emitter, self._emitter.send(outs, released, now_ms, stats))
        # only once produced: a batch that raised here is not told ``committed`` either
        self._sources.append(_sources_by_tenant(decoded))
        return BatchOutcome(next_offsets=next_offsets(planned.batch), stats=stats), pending

    def drop(self, planned: PlannedBatch) -> None:
        """A planned batch that will not be completed (the runner gave up)."""
        cast(_Planned, planned).resolve.abandon()

    def poll(self) -> None:
        if self._sink is not None:
            self._sink.poll(0)

    def abandon(self, batches: int) -> None:
        """The newest ``batches`` batches in flight failed: they will not be told
        ``committed``."""
        for _ in range(min(batches, len(self._sources))):
            self._sources.pop()
        self._emitter.discard()  # exactly once: their transaction was aborted

    def _plan(self, batch: Sequence[RawMessage]) -> _Planned:
        """Decode ``batch`` and plan its store calls."""
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
        resolve = self._resolver.plan(decoded, now_ms, stats)
        return _Planned(batch, resolve, outs, decoded, now_ms, stats)

    def _complete(
        self, planned: _Planned
    ) -> tuple[list[Output], ReleasedByTenant, list[Decoded], int, BatchStats]:
        """The store's answers of a planned batch, and its outputs (and those of what its
        store calls released)."""
        outs, stats = planned.outs, planned.stats
        resolved = planned.resolved if planned.resolved is not None else planned.resolve.resolved()
        for item, answer in resolved.answers:
            if isinstance(answer, Rejected):
                outs.append(self._decoder.failed(item.message, answer.error, answer.reason))
            else:
                outs.extend(self._outputs_of(item, answer, stats))
        return outs, resolved.released, planned.decoded, planned.now_ms, stats

    def committed(self) -> None:
        """Drop the replay receipts of the events of the oldest batch not committed yet (it
        is now); a failure is only logged (receipts expire on their own)."""
        self._emitter.acknowledge()  # released entries, with exactly-once outputs
        if not self._sources:
            return
        sources = self._sources.popleft()
        for tenant, refs in sources.items():
            try:
                self._store.forget(tenant, refs)
            except Exception as exc:  # the batch is committed whatever happens
                log.warning("could not drop replay receipts of tenant %s: %r", tenant, exc)

    def housekeeping(self) -> BatchStats | None:
        return self._releaser.release() if self._releaser is not None else None

    def _outputs_of(self, item: Decoded, resolution: Resolution, stats: BatchStats) -> list[Output]:
        """The event's outputs, counted; its dead letter if building them raised."""
        try:
            outs = event_outputs(item, resolution, self._outputs)
            tally(resolution, stats)
            self._log_resolved(item, resolution)
        except TransientError:
            raise
        except Exception as exc:  # one event never stops the partition
            return [self._decoder.failed(item.message, exc, INTERNAL_ERROR)]
        return outs

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


class _Planned(PlannedBatch):
    """A decoded batch and its planned store calls."""

    __slots__ = ("decoded", "now_ms", "outs", "resolve", "resolved", "stats")

    def __init__(
        self,
        batch: Sequence[RawMessage],
        resolve: Planned,
        outs: list[Output],
        decoded: list[Decoded],
        now_ms: int,
        stats: BatchStats,
    ) -> None:
        super().__init__(batch)
        self.resolve = resolve
        self.outs = outs
        self.decoded = decoded
        self.now_ms = now_ms
        self.stats = stats
        self.resolved: Resolved | None = None
        """the store's answers, once read (``receive``)"""


class _Pending(PendingBatch):
    """A started batch: its outputs are produced; ``finish`` once Kafka answered for all."""

    __slots__ = ("_emitter", "_sending")

    def __init__(self, emitter: Emitter, sending: Sending) -> None:
        self._emitter = emitter
        self._sending = sending

    def done(self) -> bool:
        return self._sending.shipment.done

    def wait(self, timeout: float | None = None) -> None:
        self._emitter.wait(self._sending, timeout)

    def finish(self) -> None:
        self._emitter.finish(self._sending)


def _sources_by_tenant(decoded: Sequence[Decoded]) -> dict[str, list[str]]:
    sources: dict[str, list[str]] = defaultdict(list)
    for item in decoded:
        if item.identity.source is not None:
            sources[item.identity.tenant].append(item.identity.source)
    return dict(sources)
