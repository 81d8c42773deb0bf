"""Person and group changes of one key reach Kafka oldest version first, whatever the order the
batch produced them in (a compacted topic keeps a key's last record)."""

from __future__ import annotations

import json

from tests.unit.test_orchestrator import TOPICS, MemorySink, event, message
from worker.app import build_pipeline
from worker.clock import ManualClock
from worker.codec.avro import AvroCodec
from worker.config import Settings
from worker.identity.reference import ReferenceStore
from worker.kafka.records import OutputRecord, RawMessage
from worker.pipeline.items import Output, OutputKind, in_version_order
from worker.store.codec import BufferPolicy

T0 = 1_760_000_000_000
SOURCE = RawMessage("in", 0, 0, None, b"")


def change(key: bytes, version: int | None, topic: str = "changes") -> Output:
    record = OutputRecord(topic, str(version).encode(), key)
    kind = OutputKind.PERSON_CHANGE if version is not None else OutputKind.ENRICHED
    return Output(SOURCE, record, kind, version=version)


def test_changes_of_one_key_are_put_in_version_order_in_their_own_slots() -> None:
    outs = [
        change(b"a", 3),
        change(b"x", None, topic="enriched"),
        change(b"b", 9),
        change(b"a", 1),
        change(b"a", 2),
        change(b"b", 4),
    ]
    ordered = in_version_order(outs)
    assert [(o.record.key, o.version) for o in ordered] == [
        (b"a", 1),
        (b"x", None),
        (b"b", 4),
        (b"a", 2),
        (b"a", 3),
        (b"b", 9),
    ]


def test_the_same_key_on_two_topics_is_ordered_apart() -> None:
    outs = [change(b"a", 2, topic="p"), change(b"a", 1, topic="g")]
    assert in_version_order(outs) == outs


def test_an_identify_that_releases_a_buffered_event_announces_its_person_in_version_order() -> None:
    """Arrival mode: the identify joins anon to user's person, the released event's ``$set``
    applies next, the identify's own ``$set`` last (docs/BUFFER.md), so the identify's answer
    carries a later version than the released event's, yet is produced first."""
    settings = Settings(
        buffer={"enabled": True, "delay_seconds": 60},  # type: ignore[arg-type]
        identity={"ordering": "arrival"},  # type: ignore[arg-type]
    )
    store = ReferenceStore(settings.identity.to_config(), buffer=BufferPolicy(delay_ms=60_000))
    sink = MemorySink()
    work = build_pipeline(settings, store, sink, AvroCodec(), ManualClock(T0))
    work.process([message(0, event("track", "user"))])
    before = len(sink.delivered)
    work.process([message(1, event("track", "anon", source="backend", set={"plan": "a"}))])
    assert sink.delivered[before:] == []  # the backend event waits for a person
    work.process([message(2, event("identify", "user", other_id="anon", set={"name": "Ada"}))])
    versions: dict[bytes | None, list[int]] = {}
    for record in sink.on(TOPICS.person_changes):
        body = json.loads(record.value or b"")
        versions.setdefault(record.key, []).append(body["version"])
    assert versions, "the merge announced the person"
    assert any(len(v) > 1 for v in versions.values()), versions
    for announced in versions.values():
        assert announced == sorted(announced), versions
