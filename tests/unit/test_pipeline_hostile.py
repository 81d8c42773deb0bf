"""The hostile corpus and a fuzzer through the whole batch pipeline (decoder, the reference store,
outputs, delivery): every hostile message ends as a dead letter, a warning or an enriched event,
nothing raises, and a good event after it is emitted."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostile.corpus import ANY, EVENT, RECEIVED_AT_MS, HostileMessage, corpus
from tests.hostile.strategies import mutations
from tests.unit.test_orchestrator import MemorySink
from worker.app import build_pipeline
from worker.clock import ManualClock
from worker.codec.avro import AvroCodec
from worker.codec.decode import DecodeOptions, decode_messages
from worker.codec.errors import DecodeError
from worker.config import Settings
from worker.identity.reference import ReferenceStore
from worker.kafka.records import OutputRecord, RawMessage
from worker.pipeline.deadletter import HEADER_OFFSET, HEADER_REASON
from worker.pipeline.orchestrator import BatchPipeline

SETTINGS = Settings(buffer={"enabled": False})  # type: ignore[arg-type]
TOPICS = SETTINGS.topics
CLOCK_MS = RECEIVED_AT_MS + 500
CORPUS = corpus()


def work(sink: MemorySink) -> BatchPipeline:
    return build_pipeline(SETTINGS, ReferenceStore(), sink, AvroCodec(), ManualClock(CLOCK_MS))


def good() -> tuple[str, bytes]:
    event_uuid = str(uuid.uuid4())
    body = {
        "type": "track",
        "tenant": "t1",
        "uuid": event_uuid,
        "distinct_id": "good",
        "event": "pageview",
        "timestamp": RECEIVED_AT_MS - 1000,
    }
    return event_uuid, json.dumps(body).encode()


def fate(records: list[OutputRecord], offset: int, good_uuid: str) -> list[tuple[str, str]]:
    """What became of the message at ``offset``: (kind, detail) per record of it."""
    out: list[tuple[str, str]] = []
    for record in records:
        if record.topic == TOPICS.dead_letters:
            headers = dict(record.headers)
            if headers[HEADER_OFFSET] == str(offset).encode():
                out.append(("dead_letter", headers[HEADER_REASON].decode()))
        elif record.topic in (TOPICS.enriched, TOPICS.warnings):
            obj: dict[str, Any] = json.loads(record.value or b"")
            event_uuid = obj.get("uuid", obj.get("event_uuid"))
            if event_uuid != good_uuid:
                kind = "enriched" if record.topic == TOPICS.enriched else "warning"
                out.append((kind, str(obj.get("type"))))
    return out


def run_one(
    pipeline: BatchPipeline,
    sink: MemorySink,
    offset: int,
    value: bytes | None,
    key: bytes | None = None,
    headers: tuple[tuple[str, bytes], ...] = (),
    received: int | None = RECEIVED_AT_MS,
) -> list[tuple[str, str]]:
    """``value`` then a good event in one batch; the hostile message's fate."""
    good_uuid, good_value = good()
    before = len(sink.delivered)
    batch = [
        RawMessage(TOPICS.track, 0, offset, key, value, headers, received),
        RawMessage(TOPICS.track, 0, offset + 1, b"t1:good", good_value, (), RECEIVED_AT_MS),
    ]
    outcome = pipeline.process(batch)
    new = sink.delivered[before:]
    assert any(
        r.topic == TOPICS.enriched and json.loads(r.value or b"")["uuid"] == good_uuid for r in new
    ), "the good event after it is emitted"
    assert outcome.next_offsets == {(TOPICS.track, 0): offset + 2}
    return fate(new, offset, good_uuid)


@pytest.fixture(scope="module")
def fates() -> dict[str, list[tuple[str, str]]]:
    sink = MemorySink()
    pipeline = work(sink)
    results = {}
    for index, m in enumerate(CORPUS):
        results[m.name] = run_one(
            pipeline, sink, 2 * index, m.value, m.key, m.headers, m.received_at_ms
        )
    return results


@pytest.mark.parametrize("message", CORPUS, ids=[m.name[:60] for m in CORPUS])
def test_hostile_message_through_the_pipeline(
    message: HostileMessage, fates: dict[str, list[tuple[str, str]]]
) -> None:
    fate_ = fates[message.name]
    assert fate_, f"{message.name}: no dead letter, warning or enriched event"
    dead = [detail for kind, detail in fate_ if kind == "dead_letter"]
    assert "internal_error" not in dead, fate_
    assert "store_rejected" not in dead, fate_
    elements = decode_messages(
        message.value,
        message.key,
        message.headers,
        "hostile/0/0",
        DecodeOptions(),
        received_at_ms=message.received_at_ms,
    )
    if len(elements) > 1:  # a batch: each element has its own fate, in order
        assert dead == [e.reason for e in elements if isinstance(e, DecodeError)], fate_
        assert any(kind == "enriched" for kind, _ in fate_) == any(
            not isinstance(e, DecodeError) for e in elements
        ), fate_
    elif message.expect == EVENT:
        assert not dead, fate_
        if message.warning is not None:
            assert ("warning", message.warning) in fate_
    elif message.expect != ANY:
        assert dead == [message.expect], fate_


FUZZ = settings(max_examples=150, deadline=None)


def _fuzz(value: bytes, received: int | None = RECEIVED_AT_MS) -> None:
    sink = MemorySink()
    fate_ = run_one(work(sink), sink, 0, value, received=received)
    assert fate_
    assert ("dead_letter", "internal_error") not in fate_


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_through_the_pipeline(data: bytes) -> None:
    _fuzz(data)
    _fuzz(b"{" + data)


@FUZZ
@given(mutations(), st.none() | st.integers(-(2**63), 2**63 - 1))
def test_mutated_valid_messages_through_the_pipeline(data: bytes, received: int | None) -> None:
    _fuzz(data, received)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = (
    "type",
    "event",
    "tenant",
    "team_id",
    "distinct_id",
    "other_id",
    "uuid",
    "timestamp",
    "sent_at",
    "offset",
    "source",
    "properties",
    "set",
    "set_once",
    "unset",
    "$set",
    "userId",
    "anonymousId",
    "traits",
    "process_person",
    "merge_dangerously",
)


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values, max_size=10))
def test_random_json_objects_through_the_pipeline(obj: dict[str, Any]) -> None:
    text = json.dumps(obj).replace("-Infinity", "-1e400").replace("Infinity", "1e400")
    _fuzz(text.encode())
