"""Output records: enriched events, overrides and warnings, as Avro and as JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from worker.codec import (
    AvroCodec,
    DecodeOptions,
    EncodeError,
    InputEvent,
    OutputEncoder,
    OutputFormat,
    SchemaName,
    decode_message,
    native,
)
from worker.codec.avro import load_schema_text
from worker.codec.wire import parse_frame
from worker.identity.model import (
    DistinctIdOverride,
    EventKind,
    GroupInput,
    IdentityWarning,
    Outcome,
    PersonMode,
    PropertyUpdates,
    Resolution,
    WarningKind,
)

CODEC = AvroCodec()
UUID = "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f"

EVENT = InputEvent(
    tenant="t1",
    kind=EventKind.ALIAS,
    uuid=UUID,
    distinct_id="user-1",
    event="$create_alias",
    timestamp_ms=1_700_000_000_000,
    sent_at_ms=None,
    other_id="anon-1",
    merge_dangerously=False,
    process_person=True,
    is_backend=False,
    properties={"alias": "anon-1", "ünï": ["cödé", 1.5, None, {"deep": True}]},
    updates=PropertyUpdates(set=(("plan", "pro"),), unset=("old",)),
    raw_format="json",
)

RESOLUTION = Resolution(
    event_uuid=UUID,
    outcome=Outcome.EMIT,
    person_id="p-new",
    person_mode=PersonMode.FULL,
    properties={"plan": "pro", "n": 3},
    created_at_ms=1_600_000_000_000,
    is_identified=True,
    warnings=(
        IdentityWarning(WarningKind.CANNOT_MERGE_ALREADY_IDENTIFIED, {"other_person": "p-x"}),
        IdentityWarning(WarningKind.EVENT_TIMESTAMP_IN_FUTURE),
    ),
    overrides=(
        DistinctIdOverride("anon-1", "p-old", "p-new"),
        DistinctIdOverride("anon-2", "p-old", "p-new"),
    ),
    merged=True,
)

PERSON_FIELDS = {
    "person_id": "p-new",
    "person_created_at": 1_600_000_000_000,
    "is_identified": True,
    "person_mode": "full",
    "buffered_ms": 1_500,
}


def _avro_input_event() -> InputEvent:
    value = OutputEncoder("avro").input_event(EVENT)
    return decode_message(value, None, None, "r", DecodeOptions(avro=CODEC))


def test_enriched_avro_carries_the_input_event_unchanged() -> None:
    record = OutputEncoder("avro", CODEC).enriched(EVENT, RESOLUTION, buffered_ms=1_500)
    assert record.key == b"t1:p-new"
    schema_id, _ = parse_frame(record.value)
    assert schema_id == CODEC.schema_id(SchemaName.ENRICHED_EVENT)
    decoded = CODEC.decode(SchemaName.ENRICHED_EVENT, record.value).record
    assert {k: decoded[k] for k in PERSON_FIELDS} == PERSON_FIELDS
    assert json.loads(decoded["person_properties"]) == {"plan": "pro", "n": 3}
    # the leading Event fields decode to the same input event
    event_only = CODEC.decode(SchemaName.EVENT, OutputEncoder("avro", CODEC).input_event(EVENT))
    assert {k: decoded[k] for k in event_only.record} == event_only.record


def test_enriched_avro_reuses_the_input_body() -> None:
    e = _avro_input_event()
    assert e.avro_body is not None
    fast = OutputEncoder("avro", CODEC).enriched(e, RESOLUTION, buffered_ms=7)
    slow = OutputEncoder("avro", CODEC, reuse_input_body=False).enriched(
        e, RESOLUTION, buffered_ms=7
    )
    assert fast == slow
    assert parse_frame(fast.value)[1].startswith(e.avro_body)


def test_enriched_json() -> None:
    record = OutputEncoder("json").enriched(EVENT, RESOLUTION, buffered_ms=1_500)
    assert record.key == b"t1:p-new"
    obj = json.loads(record.value)
    assert {k: obj[k] for k in PERSON_FIELDS} == PERSON_FIELDS
    assert obj["person_properties"] == {"plan": "pro", "n": 3}
    assert obj["properties"] == EVENT.properties
    assert obj["set"] == {"plan": "pro"}
    assert obj["set_once"] is None
    assert obj["unset"] == ["old"]
    assert "cödé" in record.value.decode("utf-8")  # non-ASCII is kept, not escaped


def test_enriched_json_is_the_input_event_then_the_person_fields_in_schema_order() -> None:
    grouped = dataclasses.replace(EVENT, groups=(GroupInput("team", "t-1"),))
    for e in (EVENT, grouped):
        record = OutputEncoder("json").enriched(e, RESOLUTION, buffered_ms=1_500)
        obj = json.loads(record.value)
        event_fields = json.loads(json.dumps(native.to_json_object(e)))
        person_fields = [*list(PERSON_FIELDS)[:1], "person_properties", *list(PERSON_FIELDS)[1:]]
        assert list(obj) == [*event_fields, *person_fields, "groups"]
        assert {k: obj[k] for k in event_fields} == event_fields
        schema = json.loads(load_schema_text(SchemaName.ENRICHED_EVENT))
        assert list(obj) == [f["name"] for f in schema["fields"]]


def test_enriched_json_decodes_back_to_the_input_event() -> None:
    record = OutputEncoder("json").enriched(EVENT, RESOLUTION)
    assert decode_message(record.value, None, None, "r", DecodeOptions()) == EVENT


def test_personless_enriched_event() -> None:
    personless = dataclasses.replace(
        RESOLUTION,
        person_mode=PersonMode.PROPERTYLESS,
        properties={},
        created_at_ms=None,
        is_identified=False,
    )
    formats: tuple[OutputFormat, ...] = ("avro", "json")
    for fmt in formats:
        record = OutputEncoder(fmt).enriched(EVENT, personless)
        if fmt == "avro":
            fields: dict[str, Any] = CODEC.decode(SchemaName.ENRICHED_EVENT, record.value).record
            assert fields["person_properties"] == "{}"
        else:
            fields = json.loads(record.value)
            assert fields["person_properties"] == {}
        assert fields["person_mode"] == "propertyless"
        assert fields["person_created_at"] is None


def test_a_rejected_event_has_no_enriched_record() -> None:
    rejected = dataclasses.replace(
        RESOLUTION, outcome=Outcome.REJECT, person_id=None, person_mode=None
    )
    with pytest.raises(EncodeError):
        OutputEncoder("json").enriched(EVENT, rejected)


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_overrides(fmt: Any) -> None:
    records = OutputEncoder(fmt, CODEC).overrides(EVENT, RESOLUTION, timestamp_ms=99)
    assert [r.key for r in records] == [b"t1:anon-1", b"t1:anon-2"]
    first = (
        CODEC.decode(SchemaName.DISTINCT_ID_OVERRIDE, records[0].value).record
        if fmt == "avro"
        else json.loads(records[0].value)
    )
    assert first == {
        "tenant": "t1",
        "distinct_id": "anon-1",
        "old_person_id": "p-old",
        "new_person_id": "p-new",
        "event_uuid": UUID,
        "timestamp": 99,
    }
    default_ts = OutputEncoder(fmt, CODEC).overrides(EVENT, RESOLUTION)[0]
    assert default_ts.key == b"t1:anon-1"


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_warnings(fmt: Any) -> None:
    records = OutputEncoder(fmt, CODEC).warnings(EVENT, RESOLUTION, timestamp_ms=123)
    assert [r.key for r in records] == [b"t1", b"t1"]
    decoded = [
        CODEC.decode(SchemaName.INGESTION_WARNING, r.value).record
        if fmt == "avro"
        else json.loads(r.value)
        for r in records
    ]
    assert decoded == [
        {
            "type": "cannot_merge_already_identified",
            "tenant": "t1",
            "event_uuid": UUID,
            "distinct_id": "user-1",
            "details": {"other_person": "p-x"},
            "timestamp": 123,
        },
        {
            "type": "event_timestamp_in_future",
            "tenant": "t1",
            "event_uuid": UUID,
            "distinct_id": "user-1",
            "details": {},
            "timestamp": 123,
        },
    ]


def test_standalone_warning_without_event() -> None:
    record = OutputEncoder("avro", CODEC).warning(
        "t2",
        IdentityWarning(WarningKind.SKIPPING_EVENT_INVALID_DISTINCT_ID, {"length": "401"}),
        event_uuid=None,
        distinct_id=None,
        timestamp_ms=5,
    )
    decoded = CODEC.decode(SchemaName.INGESTION_WARNING, record.value).record
    assert decoded["event_uuid"] is None
    assert decoded["details"] == {"length": "401"}


def test_unknown_output_format() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        OutputEncoder("xml")  # type: ignore[arg-type]
