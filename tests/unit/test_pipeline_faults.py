"""One event's failure never stops the batch: every stage that can raise for one event (decoding,
event time, the store, output encoding) dead-letters that event and the batch goes on; the store's
permanent refusals are narrowed down to the guilty events by bisection."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from tests.unit.test_orchestrator import (
    T0,
    TOPICS,
    MemorySink,
    Unbuffered,
    event,
    message,
    pipeline,
)
from worker.errors import PermanentStoreError, TransientStoreError
from worker.identity.model import IdentityEvent, Resolution
from worker.kafka.records import OutputRecord
from worker.pipeline import decoding
from worker.pipeline.deadletter import HEADER_MESSAGE, HEADER_OFFSET, HEADER_REASON
from worker.store.base import BatchResult


class Refusing(Unbuffered):
    """Refuses, for good, every call holding an event of a ``poisoned`` distinct id (as the
    script does: a refused call applies nothing); records the calls and the events applied."""

    def __init__(self, poisoned: Sequence[str], error: type[Exception] = PermanentStoreError):
        super().__init__()
        self.poisoned = set(poisoned)
        self.error = error
        self.call_sizes: list[int] = []
        self.applied: list[str] = []

    def resolve_buffered(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
    ) -> BatchResult:
        self.call_sizes.append(len(events))
        if any(e.distinct_id in self.poisoned for e in events):
            raise self.error("ERR user_script: bad ARGV: property operation 1 of op 3")
        self.applied += [e.distinct_id for e in events]
        return super().resolve_buffered(tenant, events, now_ms)


def reasons(sink: MemorySink) -> list[tuple[bytes, str]]:
    return [
        (dict(r.headers)[HEADER_OFFSET], dict(r.headers)[HEADER_REASON].decode())
        for r in sink.on(TOPICS.dead_letters)
    ]


def emitted_ids(sink: MemorySink) -> list[str]:
    return [e["distinct_id"] for e in sink.json(TOPICS.enriched)]


def test_a_permanent_store_error_dead_letters_only_the_guilty_event() -> None:
    store, sink = Refusing(["bad"]), MemorySink()
    names = ["a", "b", "c", "bad", "d", "e", "f", "g"]
    batch = [message(i, event("track", name)) for i, name in enumerate(names)]
    outcome = pipeline(sink, store).process(batch)

    assert reasons(sink) == [(b"3", "store_rejected")]
    (dead,) = sink.on(TOPICS.dead_letters)
    assert dead.value == batch[3].value  # the input, unchanged
    assert dict(dead.headers)[HEADER_MESSAGE].startswith(b"PermanentStoreError: ERR user_script")
    assert emitted_ids(sink) == ["a", "b", "c", "d", "e", "f", "g"]
    assert store.applied == ["a", "b", "c", "d", "e", "f", "g"]  # in order, each once
    assert store.call_sizes[0] == 8
    assert len(store.call_sizes) <= 1 + 2 * 3
    assert outcome.next_offsets == {(TOPICS.track, 0): 8}
    assert outcome.stats.dead_letters == {"store_rejected": 1}


def test_several_guilty_events_are_found_and_the_others_keep_their_order() -> None:
    store, sink = Refusing(["x", "y"]), MemorySink()
    names = ["x", "a", "b", "c", "d", "y", "e", "x"]
    batch = [message(i, event("track", name)) for i, name in enumerate(names)]
    pipeline(sink, store).process(batch)

    assert reasons(sink) == [(offset, "store_rejected") for offset in (b"0", b"5", b"7")]
    assert emitted_ids(sink) == ["a", "b", "c", "d", "e"]
    assert store.applied == ["a", "b", "c", "d", "e"]


def test_a_merge_after_a_guilty_event_still_sees_the_events_before_it() -> None:
    store, sink = Refusing(["bad"]), MemorySink()
    batch = [
        message(0, event("track", "anon")),
        message(1, event("track", "bad")),
        message(2, event("identify", "user", other_id="anon"), topic=TOPICS.identify),
    ]
    pipeline(sink, store).process(batch)
    assert [o["distinct_id"] for o in sink.json(TOPICS.overrides)] in (["anon"], ["user"])
    assert emitted_ids(sink) == ["anon", "user"]


def test_an_unexpected_exception_in_the_store_is_an_internal_error() -> None:
    store, sink = Refusing(["bad"], error=ValueError), MemorySink()
    batch = [message(i, event("track", n)) for i, n in enumerate(["a", "bad", "b"])]
    pipeline(sink, store).process(batch)
    assert reasons(sink) == [(b"1", "internal_error")]
    (dead,) = sink.on(TOPICS.dead_letters)
    assert dict(dead.headers)[HEADER_MESSAGE].startswith(b"ValueError: ")
    assert emitted_ids(sink) == ["a", "b"]


def test_a_transient_store_error_fails_the_batch_for_a_retry() -> None:
    store, sink = Refusing(["bad"], error=TransientStoreError), MemorySink()
    batch = [message(i, event("track", n)) for i, n in enumerate(["a", "bad"])]
    with pytest.raises(TransientStoreError):
        pipeline(sink, store).process(batch)
    assert sink.delivered == []
    assert store.call_sizes == [2]  # no bisection: a retry of the whole batch


@pytest.mark.interpreted_only(reason="plants a bug by replacing a compiled function")
def test_an_exception_while_decoding_one_message_dead_letters_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = decoding.decode_messages  # type: ignore[attr-defined]
    bad = event("track", "bad")

    def decode(value: bytes | None, *args: object, **kwargs: object) -> object:
        if value == bad:
            raise KeyError("a bug in a decoder")
        return real(value, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(decoding, "decode_messages", decode)
    sink = MemorySink()
    batch = [message(0, event("track", "a")), message(1, bad), message(2, event("track", "b"))]
    outcome = pipeline(sink).process(batch)
    assert reasons(sink) == [(b"1", "internal_error")]
    (dead,) = sink.on(TOPICS.dead_letters)
    assert dict(dead.headers)[HEADER_MESSAGE] == b"KeyError: 'a bug in a decoder'"
    assert emitted_ids(sink) == ["a", "b"]
    assert outcome.stats.dead_letters == {"internal_error": 1}


@pytest.mark.interpreted_only(reason="plants a bug by replacing a compiled function")
def test_an_exception_while_fixing_the_event_time_dead_letters_the_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = decoding.normalize_timestamp  # type: ignore[attr-defined]

    def normalize(timestamp_ms: int, *args: object, **kwargs: object) -> object:
        if timestamp_ms == 42:
            raise OverflowError("a bug in the event-time rules")
        return real(timestamp_ms, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(decoding, "normalize_timestamp", normalize)
    sink = MemorySink()
    batch = [message(0, event("track", "bad", timestamp=42)), message(1, event("track", "b"))]
    pipeline(sink).process(batch)
    assert reasons(sink) == [(b"0", "internal_error")]
    assert emitted_ids(sink) == ["b"]


@pytest.mark.interpreted_only(reason="plants a bug by replacing a compiled function")
def test_an_exception_while_encoding_one_event_s_outputs_dead_letters_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.codec.encode import OutputEncoder

    real = OutputEncoder.enriched

    def enriched(self: OutputEncoder, ev: object, res: Resolution, **kw: int) -> OutputRecord:
        if res.person_id is not None and getattr(ev, "distinct_id", "") == "bad":
            raise RecursionError("a bug in an encoder")
        return real(self, ev, res, **kw)  # type: ignore[arg-type, return-value]

    monkeypatch.setattr(OutputEncoder, "enriched", enriched)
    sink = MemorySink()
    batch = [message(i, event("track", n)) for i, n in enumerate(["a", "bad", "b"])]
    pipeline(sink).process(batch)
    assert reasons(sink) == [(b"1", "internal_error")]
    assert emitted_ids(sink) == ["a", "b"]
    # none of the guilty event's records went out, not even its person change
    people = {c["person_id"] for c in sink.json(TOPICS.person_changes)}
    assert len(people) == 2


def test_the_next_batch_goes_on_after_a_refused_event() -> None:
    store, sink = Refusing(["bad"]), MemorySink()
    work = pipeline(sink, store)
    work.process([message(0, event("track", "bad"))])
    work.process([message(1, event("track", "after"))])
    assert reasons(sink) == [(b"0", "store_rejected")]
    assert emitted_ids(sink) == ["after"]
    assert json.loads(sink.on(TOPICS.enriched)[0].value or b"")["timestamp"] == T0 - 1000
