"""One batch through the pipeline's parts, without Kafka or Redis: the pure reference store and
an in-memory sink that rejects records over a per-topic size limit the way a broker does."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from worker.app import build_pipeline
from worker.clock import ManualClock
from worker.codec.avro import AvroCodec
from worker.config import Settings
from worker.errors import InternalError, KafkaUnavailableError
from worker.identity.ids import person_id_for
from worker.identity.model import IdentityEvent, Outcome, Person, PersonMode, Resolution
from worker.identity.reference import ReferenceStore
from worker.kafka.records import DeliveryFailure, OutputRecord, RawMessage
from worker.pipeline.deadletter import HEADER_OFFSET, HEADER_REASON, HEADER_TOPIC
from worker.pipeline.orchestrator import BatchPipeline
from worker.store.base import BatchResult, BufferStats, Released

T0 = 1_760_000_000_000
TOPICS = Settings().topics


class Unbuffered:
    """The reference store as a ``BufferingStore`` that buffers nothing; a test can script
    released entries (``to_release``) to exercise their emission and acknowledgement."""

    def __init__(self) -> None:
        self.reference = ReferenceStore()
        self.calls: list[tuple[str, int]] = []
        self.to_release: list[Released] = []
        """handed back, once, by the next ``resolve_buffered``"""
        self.acked: list[str] = []
        self.forgotten: list[tuple[str, list[str]]] = []
        self._versions: dict[str, int] = {}

    def resolve_batch(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
    ) -> list[Resolution]:
        return self._changed(self.reference.resolve_batch(tenant, events, now_ms))

    def _changed(self, resolutions: list[Resolution]) -> list[Resolution]:
        """``person_changed`` as the store reports it, or, where the model leaves it unset,
        set when the person's version moved past the last one this adapter saw."""
        out = []
        for r in resolutions:
            if r.person_id is not None and r.person_version is not None:
                moved = r.person_version > self._versions.get(r.person_id, -1)
                self._versions[r.person_id] = max(
                    r.person_version, self._versions.get(r.person_id, -1)
                )
                r = replace(r, person_changed=r.person_changed or moved)
            out.append(r)
        return out

    def person_for(self, tenant: str, distinct_id: str) -> Person | None:
        return self.reference.person_for(tenant, distinct_id)

    def persons(self, tenant: str) -> list[Person]:
        return self.reference.persons(tenant)

    def resolve_buffered(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
    ) -> BatchResult:
        self.calls.append((tenant, len(events)))
        released, self.to_release = self.to_release, []
        return BatchResult(self.resolve_batch(tenant, events, now_ms), released)

    def release_due(self, tenant: str, now_ms: int, limit: int) -> list[Released]:
        return []

    def ack(self, tenant: str, event_uuids: Sequence[str]) -> None:
        self.acked.extend(event_uuids)

    def forget(self, tenant: str, sources: Sequence[str]) -> None:
        self.forgotten.append((tenant, list(sources)))
        self.reference.forget(tenant, sources)

    def buffered_tenants(self) -> list[str]:
        return []

    def due_tenants(self, now_ms: int) -> list[str]:
        return []

    def buffer_stats(self, tenant: str, now_ms: int) -> BufferStats:
        return BufferStats(events=0, ids=0, leased=0, oldest_age_ms=None)


Report = Callable[[DeliveryFailure | None], None]


class MemorySink:
    """Implements the ``Sink`` port in memory. Like a broker, a flush fails every pending record
    of a topic as too large when one of them exceeds the topic's ``limits``; ``broken`` topics
    fail every delivery with another error. Records produced with a ``report`` are answered by
    ``poll`` (or ``flush``), unless ``hold`` is set: their acknowledgement is then late, as it
    is for the next ``late`` polls."""

    def __init__(self, limits: dict[str, int] | None = None, broken: Sequence[str] = ()) -> None:
        self.limits = limits or {}
        self.broken = set(broken)
        self.delivered: list[OutputRecord] = []
        self.hold = False
        self.late = 0
        self.polls = 0
        self._pending: list[tuple[OutputRecord, int, Report | None]] = []

    transactional = False

    def abort_transaction(self, timeout: float) -> None:
        raise InternalError("not a transactional sink")

    def produce(self, record: OutputRecord, tag: int = 0, report: Report | None = None) -> None:
        self._pending.append((record, tag, report))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def poll(self, timeout: float = 0.0) -> None:
        self.polls += 1
        if self.late > 0:
            self.late -= 1
        elif not self.hold:
            for failure, report in self._answer():
                if report is not None:
                    report(failure)

    def flush(self, timeout: float) -> list[DeliveryFailure]:
        failures = []
        for failure, report in self._answer():
            if report is not None:
                report(failure)
            elif failure is not None:
                failures.append(failure)
        return failures

    def _answer(self) -> list[tuple[DeliveryFailure | None, Report | None]]:
        pending, self._pending = self._pending, []
        oversize = {
            r.topic
            for r, _, _ in pending
            if len(r.value or b"") > self.limits.get(r.topic, 1 << 30)
        }
        answers: list[tuple[DeliveryFailure | None, Report | None]] = []
        for record, tag, report in pending:
            if record.topic in self.broken:
                failure = DeliveryFailure(record, "broker down", too_large=False, tag=tag)
                answers.append((failure, report))
            elif record.topic in oversize:
                answers.append(
                    (DeliveryFailure(record, "too large", too_large=True, tag=tag), report)
                )
            else:
                self.delivered.append(record)
                answers.append((None, report))
        return answers

    def produce_alone(
        self, record: OutputRecord, timeout: float, tag: int = 0
    ) -> DeliveryFailure | None:
        if self._pending:
            raise InternalError("produce_alone needs an empty queue")
        self.produce(record, tag)
        failures = self.flush(timeout)
        return failures[0] if failures else None

    def on(self, topic: str) -> list[OutputRecord]:
        return [r for r in self.delivered if r.topic == topic]

    def json(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(r.value or b"") for r in self.on(topic)]


def pipeline(sink: MemorySink, store: Unbuffered | None = None) -> BatchPipeline:
    settings = Settings(buffer={"enabled": False})  # type: ignore[arg-type]
    return build_pipeline(settings, store or Unbuffered(), sink, AvroCodec(), ManualClock(T0))


def message(
    offset: int, value: bytes | None, topic: str = TOPICS.track, partition: int = 0
) -> RawMessage:
    return RawMessage(topic, partition, offset, b"k", value, (), T0 - 5)


def event(kind: str, distinct_id: str, tenant: str = "t", **fields: Any) -> bytes:
    body = {
        "type": kind,
        "tenant": tenant,
        "uuid": str(uuid.uuid4()),
        "distinct_id": distinct_id,
        "timestamp": T0 - 1000,
        **({"event": "pageview"} if kind == "track" else {}),
        **fields,
    }
    return json.dumps(body).encode()


def test_undecodable_messages_become_dead_letters_and_the_batch_is_committed_past_them() -> None:
    sink = MemorySink()
    batch = [
        message(7, b"{not json"),
        message(8, None),
        message(9, event("track", "u1")),
    ]
    outcome = pipeline(sink).process(batch)

    dead = sink.on(TOPICS.dead_letters)
    assert [r.value for r in dead] == [b"{not json", None]  # the input, unchanged
    reasons = [dict(r.headers)[HEADER_REASON].decode() for r in dead]
    assert reasons == ["json_invalid", "empty_value"]
    assert [dict(r.headers)[HEADER_OFFSET] for r in dead] == [b"7", b"8"]
    (enriched,) = sink.json(TOPICS.enriched)
    assert enriched["distinct_id"] == "u1"
    assert enriched["person_id"] == person_id_for("t", "u1")
    assert outcome.next_offsets == {(TOPICS.track, 0): 10}
    assert outcome.stats.dead_letters == {"json_invalid": 1, "empty_value": 1}
    assert outcome.stats.consumed == {TOPICS.track: 3}


def test_offsets_are_per_partition_and_one_store_call_is_made_per_tenant() -> None:
    store = Unbuffered()
    batch = [
        message(3, event("track", "a", tenant="t1"), partition=0),
        message(41, event("track", "b", tenant="t2"), partition=1),
        message(4, event("track", "c", tenant="t1"), partition=0),
        message(40, event("identify", "d", tenant="t2"), topic=TOPICS.identify, partition=1),
    ]
    outcome = pipeline(MemorySink(), store).process(batch)
    assert outcome.next_offsets == {
        (TOPICS.track, 0): 5,
        (TOPICS.track, 1): 42,
        (TOPICS.identify, 1): 41,
    }
    assert sorted(store.calls) == [("t1", 2), ("t2", 2)]


def test_a_merge_emits_overrides_and_person_changes() -> None:
    sink = MemorySink()
    work = pipeline(sink)
    work.process([message(0, event("track", "anon")), message(1, event("track", "user"))])
    anon_person, user_person = person_id_for("t", "anon"), person_id_for("t", "user")
    before = len(sink.on(TOPICS.person_changes))

    outcome = work.process(
        [message(2, event("identify", "user", other_id="anon"), topic=TOPICS.identify)]
    )

    (enriched,) = sink.json(TOPICS.enriched)[-1:]
    survivor = enriched["person_id"]
    merged = ({anon_person, user_person} - {survivor}).pop()
    overrides = sink.json(TOPICS.overrides)
    assert overrides, "the merged person's ids are overridden"
    assert all(o["old_person_id"] == merged and o["new_person_id"] == survivor for o in overrides)
    changes = sink.json(TOPICS.person_changes)[before:]
    assert changes[0]["person_id"] == merged
    assert changes[0]["merged_into"] == survivor
    assert changes[-1]["person_id"] == survivor
    assert changes[-1]["merged_into"] is None
    assert changes[-1]["is_identified"] is True
    assert outcome.stats.merges["merged"] == 1
    assert outcome.stats.emitted[(TOPICS.overrides, "override")] == len(overrides)


def test_a_refused_merge_emits_a_warning_and_is_counted() -> None:
    sink = MemorySink()
    outcome = pipeline(sink).process(
        [message(0, event("identify", "user", other_id="anonymous"), topic=TOPICS.identify)]
    )
    (warning,) = sink.json(TOPICS.warnings)
    assert warning["type"] == "cannot_merge_with_illegal_distinct_id"
    assert warning["distinct_id"] == "user"
    assert sink.on(TOPICS.overrides) == []
    assert outcome.stats.warnings == {"cannot_merge_with_illegal_distinct_id": 1}
    assert outcome.stats.merges == {"refused_illegal": 1}


def test_an_output_too_large_turns_its_input_into_a_dead_letter() -> None:
    sink = MemorySink(limits={TOPICS.enriched: 2000})
    large = event("track", "large", properties={"blob": "x" * 5000})
    batch = [message(0, event("track", "a")), message(1, large), message(2, event("track", "b"))]
    outcome = pipeline(sink).process(batch)

    # the neighbours failed with it (one broker batch), were retried alone and delivered
    assert [e["distinct_id"] for e in sink.json(TOPICS.enriched)] == ["a", "b"]
    (dead,) = sink.on(TOPICS.dead_letters)
    assert dead.value == large
    assert dict(dead.headers)[HEADER_REASON] == b"output_too_large"
    assert dict(dead.headers)[HEADER_OFFSET] == b"1"
    # the large input's other outputs (its person change) were delivered and count
    stats = outcome.stats
    assert stats.emitted[(TOPICS.enriched, "enriched")] == 2
    assert stats.emitted[(TOPICS.dead_letters, "dead_letter")] == 1
    assert stats.dead_letters == {"output_too_large": 1}
    assert (
        len(sink.on(TOPICS.person_changes))
        == stats.emitted[(TOPICS.person_changes, "person_change")]
        == 3
    )
    assert outcome.next_offsets == {(TOPICS.track, 0): 3}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (event("track", "u", properties={"p": "x" * 500}), "dead-letter delivery failed"),
        (b"{" + b"x" * 500, "needs a larger max.message.bytes"),
    ],
    ids=["dead letter of a too large output", "dead letter of an undecodable input"],
)
def test_a_dead_letter_too_large_for_its_topic_fails_the_batch(value: bytes, error: str) -> None:
    sink = MemorySink(limits={TOPICS.enriched: 100, TOPICS.dead_letters: 100})
    with pytest.raises(KafkaUnavailableError, match=error):
        pipeline(sink).process([message(0, value)])


def test_a_delivery_failure_other_than_size_fails_the_batch() -> None:
    sink = MemorySink(broken=[TOPICS.enriched])
    with pytest.raises(KafkaUnavailableError, match="broker down"):
        pipeline(sink).process([message(0, event("track", "u"))])


def _released(distinct_id: str, reason: str, payload: bytes) -> Released:
    uuid_ = json.loads(payload)["uuid"] if payload.startswith(b"{") else str(uuid.uuid4())
    resolution = Resolution(
        event_uuid=uuid_,
        outcome=Outcome.EMIT,
        person_id=person_id_for("t", distinct_id),
        person_mode=PersonMode.FULL,
        properties={},
        created_at_ms=T0 - 60_000,
        is_identified=False,
        person_version=1,
    )
    return Released(uuid_, reason, T0 - 60_000, payload, resolution, entry_id=uuid_)


def test_released_events_are_emitted_then_acknowledged() -> None:
    store, sink = Unbuffered(), MemorySink()
    waited = _released("w", "merge", event("track", "w"))
    foreign = _released("x", "timeout", b"\x07 not ours")
    store.to_release = [waited, foreign]
    outcome = pipeline(sink, store).process([message(0, event("identify", "w"))])

    enriched = sink.json(TOPICS.enriched)
    assert [(e["distinct_id"], e["buffered_ms"]) for e in enriched] == [("w", 0), ("w", 60_000)]
    (dead,) = sink.on(TOPICS.dead_letters)
    assert dict(dead.headers)[HEADER_REASON] == b"unknown_magic_byte"
    assert dict(dead.headers)[HEADER_TOPIC] == b"identity-worker.buffer"
    assert store.acked == [waited.event_uuid, foreign.event_uuid]
    assert outcome.stats.releases == {"merge": 1, "timeout": 1}


def test_released_events_are_not_acknowledged_when_their_delivery_fails() -> None:
    store, sink = Unbuffered(), MemorySink(broken=[TOPICS.enriched])
    store.to_release = [_released("w", "merge", event("track", "w"))]
    with pytest.raises(KafkaUnavailableError):
        pipeline(sink, store).process([message(0, event("track", "other"))])
    assert store.acked == []
