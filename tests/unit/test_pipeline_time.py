"""The "now" of an event is its message's Kafka timestamp, so a replay or a lagging worker
writes the same records; each event names its source; receipts are forgotten once the batch is
committed; released events are stamped with their first release; buffered payloads are read
back as our native JSON whatever the configured tenant fields."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from tests.unit.test_orchestrator import (
    T0,
    TOPICS,
    MemorySink,
    Unbuffered,
    _released,
    event,
    pipeline,
)
from worker.app import build_pipeline
from worker.clock import ManualClock
from worker.codec.avro import AvroCodec
from worker.config import Settings
from worker.identity.buffer import BufferPolicy
from worker.identity.ids import person_id_for
from worker.identity.model import IdentityEvent, IdentityWarning, WarningKind
from worker.identity.reference import ReferenceStore
from worker.kafka.records import RawMessage
from worker.store.base import BatchResult

HOUR = 3_600_000
SENT = T0 - 20_000
"""the Kafka timestamp of the messages: they were produced 20 s before the clock's T0"""


def at(
    offset: int, value: bytes, stamp: int | None = SENT, topic: str = TOPICS.track
) -> RawMessage:
    return RawMessage(topic, 0, offset, b"k", value, (), stamp)


def batch() -> list[RawMessage]:
    """A skewed client, a timestamp in the future, a merge (overrides, person changes)."""
    return [
        at(0, event("track", "anon", timestamp=T0 - 50_000, sent_at=T0 - 40_000)),
        at(1, event("track", "user", timestamp=T0 + 48 * HOUR)),
        at(2, event("identify", "user", other_id="anon"), topic=TOPICS.identify),
    ]


BATCH = batch()


def run(clock_ms: int, messages: Sequence[RawMessage]) -> MemorySink:
    sink = MemorySink()
    settings = Settings(buffer={"enabled": False})  # type: ignore[arg-type]
    work = build_pipeline(settings, Unbuffered(), sink, AvroCodec(), ManualClock(clock_ms))
    work.process(messages)
    return sink


def test_a_replay_hours_later_writes_the_same_records() -> None:
    first, later = run(T0, BATCH), run(T0 + 5 * HOUR, BATCH)
    assert first.on(TOPICS.overrides)
    assert first.on(TOPICS.person_changes)
    assert first.on(TOPICS.warnings)
    assert first.delivered == later.delivered


def test_skew_correction_and_the_future_clamp_use_the_message_time() -> None:
    sink = run(T0 + 5 * HOUR, BATCH)
    enriched = sink.json(TOPICS.enriched)
    # corrected: message time - (sent_at - timestamp) = SENT - 10 s (the person is created then)
    assert enriched[0]["person_created_at"] == SENT - 10_000
    # clamped to the message time, with a warning stamped with it
    assert enriched[1]["person_created_at"] == SENT
    (warning,) = sink.json(TOPICS.warnings)
    assert warning["type"] == "event_timestamp_in_future"
    assert warning["timestamp"] == SENT
    stamps = {r["timestamp"] for r in sink.json(TOPICS.overrides)}
    stamps |= {r["timestamp"] for r in sink.json(TOPICS.person_changes)}
    assert stamps == {SENT}


def test_a_message_without_a_kafka_timestamp_falls_back_to_the_clock() -> None:
    value = event("track", "anon", timestamp=T0 - 50_000, sent_at=T0 - 40_000)
    sink = run(T0 + HOUR, [at(0, value, stamp=None)])
    (enriched,) = sink.json(TOPICS.enriched)
    assert enriched["person_created_at"] == T0 + HOUR - 10_000


class Recording(Unbuffered):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[IdentityEvent] = []

    def resolve_buffered(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
    ) -> BatchResult:
        self.seen += events
        return super().resolve_buffered(tenant, events, now_ms)


def test_each_event_names_its_message_as_its_source() -> None:
    store = Recording()
    pipeline(MemorySink(), store).process(
        [at(7, event("track", "a")), at(9, event("track", "b"), topic=TOPICS.identify)]
    )
    assert [e.source for e in store.seen] == [f"{TOPICS.track}/0/7", f"{TOPICS.identify}/0/9"]


def test_committed_forgets_the_receipts_of_the_batch_per_tenant() -> None:
    store = Recording()
    work = pipeline(MemorySink(), store)
    work.process(
        [
            at(1, event("track", "a", tenant="t1")),
            at(2, b"{not json"),
            at(3, event("track", "b", tenant="t2")),
            at(4, event("track", "c", tenant="t1")),
        ]
    )
    assert store.forgotten == []  # not before the commit
    work.committed()
    ref = f"{TOPICS.track}/0/"
    assert sorted(store.forgotten) == [("t1", [ref + "1", ref + "4"]), ("t2", [ref + "3"])]
    work.committed()  # nothing new was processed: nothing more to forget
    assert len(store.forgotten) == 2


def test_a_failing_forget_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(Unbuffered):
        def forget(self, tenant: str, sources: Sequence[str]) -> None:
            raise ConnectionError("Redis went away")

    work = pipeline(MemorySink(), Failing())
    work.process([at(1, event("track", "a"))])
    with caplog.at_level(logging.WARNING):
        work.committed()
    assert "could not drop replay receipts" in caplog.text


def test_a_released_event_is_stamped_with_its_first_release() -> None:
    store, sink = Unbuffered(), MemorySink()
    payload = event("track", "w")
    entry = _released("w", "redelivery", payload)
    first_release = T0 - 15_000
    warned = replace(
        entry.resolution,
        warnings=(IdentityWarning(WarningKind.BUFFER_OVERFLOW),),
        person_changed=True,
    )
    store.to_release = [replace(entry, resolution=warned, released_ms=first_release)]
    pipeline(sink, store).process([at(0, event("track", "other"))])

    (w,) = [e for e in sink.json(TOPICS.enriched) if e["distinct_id"] == "w"]
    assert w["buffered_ms"] == first_release - entry.ingested_ms == 45_000
    (warning,) = sink.json(TOPICS.warnings)
    assert warning["timestamp"] == first_release
    changes = [c for c in sink.json(TOPICS.person_changes) if c["person_id"] == w["person_id"]]
    assert [c["timestamp"] for c in changes] == [first_release]


def native(kind: str, distinct_id: str, **fields: Any) -> bytes:
    body = json.loads(event(kind, distinct_id, **fields))
    del body["tenant"]
    return json.dumps({**body, "project": "acme"}).encode()


def test_released_payloads_keep_their_tenant_whatever_the_tenant_fields() -> None:
    """Regression: with ``formats.tenant_fields`` set, a released event was decoded with those
    fields, not its payload's own ``tenant``: dead-lettered, or filed under the default tenant."""
    settings = Settings(
        formats={"tenant_fields": ["project"], "default_tenant": "fallback"},  # type: ignore[arg-type]
    )
    store = ReferenceStore(buffer=BufferPolicy(delay_ms=60_000))
    sink = MemorySink()
    work = build_pipeline(settings, store, sink, AvroCodec(), ManualClock(T0))
    waiting = native("track", "u", source="backend")
    work.process([at(0, waiting)])
    assert sink.on(TOPICS.enriched) == []  # it waits: "u" has no person yet

    work.process([at(1, native("identify", "u"), topic=TOPICS.identify)])

    assert sink.on(TOPICS.dead_letters) == []
    enriched = sink.json(TOPICS.enriched)
    assert [e["uuid"] for e in enriched][-1] == json.loads(waiting)["uuid"]
    assert {(e["tenant"], e["person_id"]) for e in enriched} == {
        ("acme", person_id_for("acme", "u"))
    }
