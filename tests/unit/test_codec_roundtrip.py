"""Property tests: any valid input event survives Avro and JSON encode → decode unchanged."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from worker.codec import AvroCodec, DecodeOptions, InputEvent, OutputEncoder, decode_message
from worker.codec.fields import MAX_SAFE_INTEGER, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from worker.identity.model import (
    EventKind,
    JsonValue,
    Outcome,
    PersonMode,
    PropertyUpdates,
    Resolution,
)

CODEC = AvroCodec()
OPTIONS = DecodeOptions(avro=CODEC)
AVRO = OutputEncoder("avro", CODEC)
AVRO_NO_REUSE = OutputEncoder("avro", CODEC, reuse_input_body=False)
JSON = OutputEncoder("json", CODEC)

json_values: st.SearchStrategy[JsonValue] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=5)
timestamps = st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS)


@st.composite
def input_events(draw: st.DrawFn) -> InputEvent:
    kind = draw(st.sampled_from(list(EventKind)))
    event = draw(st.text(min_size=1)) if kind is EventKind.TRACK else draw(st.none() | st.text())
    other_id = draw(st.text()) if kind is EventKind.ALIAS else draw(st.none() | st.text())
    return InputEvent(
        tenant=draw(st.text(min_size=1).filter(lambda t: ":" not in t)),
        kind=kind,
        uuid=str(draw(st.uuids())),
        distinct_id=draw(st.text()),
        event=event,
        timestamp_ms=draw(timestamps),
        sent_at_ms=draw(st.none() | timestamps),
        other_id=other_id,
        merge_dangerously=draw(st.booleans()),
        process_person=draw(st.booleans()),
        is_backend=draw(st.booleans()),
        properties=draw(json_objects),
        updates=PropertyUpdates(
            set=tuple(draw(json_objects).items()),
            set_once=tuple(draw(json_objects).items()),
            unset=tuple(draw(st.lists(st.text(), max_size=4))),
        ),
        raw_format="avro",
    )


@given(input_events())
def test_avro_round_trip(e: InputEvent) -> None:
    decoded = decode_message(AVRO.input_event(e), None, None, "r", OPTIONS)
    assert decoded == e
    assert decoded.avro_body is not None


@given(input_events())
def test_json_round_trip(e: InputEvent) -> None:
    decoded = decode_message(JSON.input_event(e), None, None, "r", OPTIONS)
    assert decoded == dataclasses.replace(e, raw_format="json")


@given(input_events(), json_objects, st.integers(0, 10**9))
def test_enriched_reuse_of_the_input_body_is_exact(
    e: InputEvent, person_properties: dict[str, JsonValue], buffered_ms: int
) -> None:
    decoded = decode_message(AVRO.input_event(e), None, None, "r", OPTIONS)
    resolution = Resolution(
        event_uuid=e.uuid,
        outcome=Outcome.EMIT,
        person_id="p",
        person_mode=PersonMode.FULL,
        properties=person_properties,
        created_at_ms=None,
        is_identified=False,
    )
    fast = AVRO.enriched(decoded, resolution, buffered_ms=buffered_ms)
    slow = AVRO_NO_REUSE.enriched(decoded, resolution, buffered_ms=buffered_ms)
    assert fast == slow
