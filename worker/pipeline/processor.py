"""One batch: decode → resolve (one store call per tenant chunk) → encode → produce → confirm.

``process`` returns only once Kafka acknowledged every output record of the batch, so the offsets
it returns may be committed. Bad input never stops a partition: undecodable messages become dead
letters, rule violations become warning records, and an output too large for its topic turns the
input into a dead letter. Anything transient (Redis or Kafka unavailable) raises a
``TransientError`` and the runner retries the whole batch.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from worker.clock import Clock
from worker.codec.decode import DecodeOptions, decode_message
from worker.codec.encode import OutputEncoder
from worker.codec.envelope import InputEvent, to_identity_event
from worker.codec.errors import DecodeError, EncodeError, SchemaRegistryUnavailableError
from worker.config import BufferSettings, TopicSettings
from worker.errors import KafkaUnavailableError, TransientError, TransientSchemaRegistryError
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    EventKind,
    IdentityEvent,
    IdentityWarning,
    Outcome,
    Resolution,
    WarningKind,
)
from worker.identity.timestamps import normalize_timestamp
from worker.kafka.records import OutputRecord, RawMessage
from worker.kafka.sink import KafkaSink
from worker.pipeline.deadletter import dead_letter
from worker.pipeline.person_changes import AnnouncedVersions, changed_person, merged_away
from worker.pipeline.runner import BatchOutcome, BatchProcessor, BatchStats
from worker.store.base import BufferingStore, Released

log = logging.getLogger(__name__)

BUFFER_SOURCE = "identity-worker.buffer"
"""``iw.source.topic`` of a dead letter made from a released buffered event."""

_REFUSALS = {
    WarningKind.CANNOT_MERGE_ALREADY_IDENTIFIED: "refused_identified",
    WarningKind.MERGE_LIMIT_EXCEEDED: "refused_limit",
    WarningKind.CANNOT_MERGE_WITH_ILLEGAL_DISTINCT_ID: "refused_illegal",
}


@dataclass(frozen=True, slots=True)
class _Decoded:
    message: RawMessage
    event: InputEvent
    identity: IdentityEvent
    pre_warnings: tuple[IdentityWarning, ...]


@dataclass(frozen=True, slots=True)
class _Out:
    """An output record with what it is, for accounting once it is acknowledged."""

    source: RawMessage
    record: OutputRecord
    kind: str  # enriched | override | person_change | warning | dead_letter
    label: str = ""  # the warning type, or the dead letter's reason


class Processor(BatchProcessor):
    def __init__(
        self,
        *,
        store: BufferingStore,
        sink: KafkaSink,
        encoder: OutputEncoder,
        decode_options: DecodeOptions,
        identity_config: IdentityConfig,
        topics: TopicSettings,
        clock: Clock,
        flush_timeout_seconds: float = 30.0,
        buffer: BufferSettings | None = None,
        log_personal_data: bool = False,
    ) -> None:
        self._store = store
        self._log_personal_data = log_personal_data
        self._buffer = buffer or BufferSettings(enabled=False)
        self._payloads = OutputEncoder("json", decode_options.avro)
        self._next_release = 0.0
        self._announced = AnnouncedVersions()
        self._sink = sink
        self._encoder = encoder
        self._decode_options = decode_options
        self._identity_config = identity_config
        self._topics = topics
        self._clock = clock
        self._flush_timeout = flush_timeout_seconds

    def process(self, batch: Sequence[RawMessage]) -> BatchOutcome:
        now_ms = self._clock.now_ms()
        stats = BatchStats()
        outs: list[_Out] = []
        decoded: list[_Decoded] = []

        for message in batch:
            stats.consumed[message.topic] += 1
            try:
                event = decode_message(
                    message.value,
                    message.key,
                    message.headers,
                    message.source_ref,
                    self._decode_options,
                    received_at_ms=message.timestamp_ms,
                )
            except DecodeError as exc:
                record = dead_letter(message, self._topics.dead_letters, exc)
                outs.append(_Out(message, record, "dead_letter", exc.reason))
                continue
            except SchemaRegistryUnavailableError as exc:
                raise TransientSchemaRegistryError(str(exc)) from exc
            timestamp_ms, warning = normalize_timestamp(
                event.timestamp_ms,
                event.sent_at_ms,
                now_ms,
                self._identity_config.future_timestamp_margin_ms,
                ignored=event.ignored_timestamp,
            )
            identity = to_identity_event(event, timestamp_ms)
            if self._bufferable(event):
                identity = replace(identity, buffer_payload=self._payloads.input_event(event))
            decoded.append(_Decoded(message, event, identity, (warning,) if warning else ()))

        released: dict[str, list[Released]] = {}
        for item, resolution in self._resolve(decoded, now_ms, stats, released):
            outs.extend(self._outputs(item, resolution, now_ms, stats))
        for freed in released.values():
            outs.extend(self._released_outputs(freed, now_ms, stats))

        self._emit(outs, stats)
        self._ack(released)
        return BatchOutcome(next_offsets=next_offsets(batch), stats=stats)

    def _bufferable(self, event: InputEvent) -> bool:
        """A backend event that merges nothing and processes its person (docs/BUFFER.md)."""
        if not (self._buffer.enabled and event.is_backend and event.process_person):
            return False
        return event.kind is EventKind.TRACK or (
            event.kind is EventKind.IDENTIFY and event.other_id is None
        )

    def _emit(self, outs: list[_Out], stats: BatchStats) -> None:
        for out in outs:
            self._sink.produce(out.record)
        self._account(self._confirm(outs), stats)

    def _ack(self, released: dict[str, list[Released]]) -> None:
        """Forget released entries whose outputs Kafka acknowledged. A failed ack is only
        logged: the lease expires and the entries are released again (at least once)."""
        for tenant, freed in released.items():
            try:
                self._store.ack(tenant, [r.event_uuid for r in freed])
            except TransientError as exc:
                log.warning("buffer ack failed, entries will be redelivered: %s", exc)

    def housekeeping(self) -> BatchStats | None:
        """At most every ``buffer.release_interval_seconds``: release what waited long enough
        (and expired leases) in every tenant that buffers, emit it, acknowledge it."""
        if not self._buffer.enabled or self._clock.monotonic() < self._next_release:
            return None
        self._next_release = self._clock.monotonic() + self._buffer.release_interval_seconds
        now_ms = self._clock.now_ms()
        stats = BatchStats(buffer_events=0, buffer_oldest_age_seconds=0.0)
        released: dict[str, list[Released]] = {}
        for tenant in self._store.buffered_tenants():
            freed = self._store.release_due(tenant, now_ms, self._buffer.release_batch_size)
            if freed:
                released[tenant] = freed
            buffered = self._store.buffer_stats(tenant, now_ms)
            stats.buffer_events = (stats.buffer_events or 0) + buffered.events
            if buffered.oldest_age_ms is not None:
                age = buffered.oldest_age_ms / 1000
                stats.buffer_oldest_age_seconds = max(stats.buffer_oldest_age_seconds or 0, age)
        outs: list[_Out] = []
        for freed in released.values():
            outs.extend(self._released_outputs(freed, now_ms, stats))
        self._emit(outs, stats)
        self._ack(released)
        return stats

    def _released_outputs(
        self, freed: list[Released], now_ms: int, stats: BatchStats
    ) -> list[_Out]:
        """Outputs of buffered events handed back by the store, in their release order."""
        outs: list[_Out] = []
        for entry in freed:
            stats.releases[entry.reason] += 1
            source = RawMessage(BUFFER_SOURCE, -1, -1, None, entry.payload, (), entry.ingested_ms)
            try:
                event = decode_message(
                    entry.payload, None, None, entry.event_uuid, self._decode_options
                )
            except DecodeError as exc:  # only a foreign writer in our keys could cause this
                record = dead_letter(source, self._topics.dead_letters, exc)
                outs.append(_Out(source, record, "dead_letter", exc.reason))
                continue
            item = _Decoded(source, event, to_identity_event(event, event.timestamp_ms), ())
            buffered_ms = max(now_ms - entry.ingested_ms, 0)
            outs.extend(self._outputs(item, entry.resolution, now_ms, stats, buffered_ms))
        return outs

    def _resolve(
        self,
        decoded: list[_Decoded],
        now_ms: int,
        stats: BatchStats,
        released: dict[str, list[Released]],
    ) -> list[tuple[_Decoded, Resolution]]:
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

    def _outputs(
        self,
        item: _Decoded,
        resolution: Resolution,
        now_ms: int,
        stats: BatchStats,
        buffered_ms: int = 0,
    ) -> list[_Out]:
        event, message = item.event, item.message
        warnings = (*item.pre_warnings, *resolution.warnings)
        out: list[_Out] = []
        try:
            for warning in warnings:
                rec = self._encoder.warning(
                    event.tenant,
                    warning,
                    event_uuid=event.uuid,
                    distinct_id=event.distinct_id,
                    timestamp_ms=now_ms,
                )
                record = OutputRecord(self._topics.warnings, rec.value, rec.key)
                out.append(_Out(message, record, "warning", warning.kind.value))
                if warning.kind in _REFUSALS:
                    stats.merges[_REFUSALS[warning.kind]] += 1
            if resolution.outcome is Outcome.EMIT:
                rec = self._encoder.enriched(event, resolution, buffered_ms=buffered_ms)
                record = OutputRecord(self._topics.enriched, rec.value, rec.key)
                out.append(_Out(message, record, "enriched"))
            elif resolution.outcome is Outcome.BUFFER:
                stats.buffered += 1
            else:
                stats.rejected += 1
            for rec in self._encoder.overrides(event, resolution, timestamp_ms=now_ms):
                record = OutputRecord(self._topics.overrides, rec.value, rec.key)
                out.append(_Out(message, record, "override"))
            out.extend(self._person_changes(item, resolution, now_ms))
        except EncodeError as exc:
            dead = dead_letter(message, self._topics.dead_letters, exc, reason="encode_failed")
            return [_Out(message, dead, "dead_letter", "encode_failed")]
        if self._log_personal_data and log.isEnabledFor(logging.DEBUG):
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
        if resolution.merged:
            stats.merges["merged"] += 1
        if resolution.person_created:
            stats.persons_created += 1
        return out

    def _person_changes(self, item: _Decoded, resolution: Resolution, now_ms: int) -> list[_Out]:
        """Merged-away persons first, then the person's new state if its version moved."""
        if resolution.person_id is None or resolution.person_version is None:
            return []
        topic, event = self._topics.person_changes, item.event
        out = []
        for old in merged_away(resolution):
            rec = self._encoder.person_merged(
                event.tenant,
                old,
                resolution.person_id,
                resolution.person_version,
                event_uuid=event.uuid,
                timestamp_ms=now_ms,
            )
            out.append(_Out(item.message, OutputRecord(topic, rec.value, rec.key), "person_change"))
        if changed_person(resolution, self._announced):
            rec = self._encoder.person_change(event, resolution, timestamp_ms=now_ms)
            out.append(_Out(item.message, OutputRecord(topic, rec.value, rec.key), "person_change"))
        return out

    def _confirm(self, outs: list[_Out]) -> list[_Out]:
        """Wait for every delivery; dead-letter inputs whose output is too large; else raise.

        Returns what was delivered. A size failure is retried once in a request of its own (the
        broker rejects a whole batch when one record is too large); a record still too large
        alone turns its input message into a dead letter. Such a retried record lands after the
        batch's other records.
        """
        failures = self._sink.flush(self._flush_timeout)
        if not failures:
            return outs
        by_record = {id(out.record): out for out in outs}
        lost: set[int] = set()
        dead: dict[tuple[str, int, int], _Out] = {}
        for failure in failures:
            out = by_record.get(id(failure.record))
            if not failure.too_large or out is None:
                raise KafkaUnavailableError(
                    f"delivery to {failure.record.topic} failed: {failure.reason}"
                )
            alone = self._sink.produce_alone(failure.record, self._flush_timeout)
            if alone is None:
                continue
            if not alone.too_large or out.kind == "dead_letter":
                raise KafkaUnavailableError(
                    f"delivery to {failure.record.topic} failed: {alone.reason} (a dead letter "
                    "too large for its topic needs a larger max.message.bytes there)"
                )
            lost.add(id(out.record))
            message = out.source
            error = EncodeError(f"output for {failure.record.topic} too large: {alone.reason}")
            record = dead_letter(
                message, self._topics.dead_letters, error, reason="output_too_large"
            )
            dead[(message.topic, message.partition, message.offset)] = _Out(
                message, record, "dead_letter", "output_too_large"
            )
        for out in dead.values():  # one dead letter per input, however many outputs failed
            undelivered = self._sink.produce_alone(out.record, self._flush_timeout)
            if undelivered is not None:
                raise KafkaUnavailableError(f"dead-letter delivery failed: {undelivered.reason}")
        return [out for out in outs if id(out.record) not in lost] + list(dead.values())

    def _account(self, delivered: list[_Out], stats: BatchStats) -> None:
        now_ms = self._clock.now_ms()
        for out in delivered:
            stats.emitted[(out.record.topic, out.kind)] += 1
            if out.kind == "dead_letter":
                stats.dead_letters[out.label] += 1
            elif out.kind == "warning":
                stats.warnings[out.label] += 1
            elif out.kind == "enriched" and out.source.partition >= 0 and out.source.timestamp_ms:
                stats.delays_seconds.append(max(now_ms - out.source.timestamp_ms, 0) / 1000)


def next_offsets(batch: Sequence[RawMessage]) -> dict[tuple[str, int], int]:
    """Per partition, one past the highest offset in ``batch``: what to commit."""
    offsets: dict[tuple[str, int], int] = {}
    for message in batch:
        key = (message.topic, message.partition)
        offsets[key] = max(offsets.get(key, 0), message.offset + 1)
    return offsets
