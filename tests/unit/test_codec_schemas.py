"""The .avsc files: they parse, optional fields have defaults, ids are complete, round trips."""

from __future__ import annotations

import json
from typing import Any

import fastavro
import pytest

from worker.codec.avro import SCHEMA_DIR, SCHEMA_IDS, AvroCodec, SchemaName, load_schema_text
from worker.codec.wire import parse_frame

REQUIRED_FIELDS = {
    SchemaName.EVENT: {"uuid", "type", "tenant", "distinct_id", "timestamp"},
    SchemaName.ENRICHED_EVENT: {"uuid", "type", "tenant", "distinct_id", "timestamp", "person_id"},
    SchemaName.DISTINCT_ID_OVERRIDE: {
        "tenant",
        "distinct_id",
        "old_person_id",
        "new_person_id",
        "timestamp",
    },
    SchemaName.INGESTION_WARNING: {"type", "tenant", "timestamp"},
    SchemaName.PERSON_CHANGE: {"tenant", "person_id", "version", "timestamp"},
    SchemaName.GROUP_CHANGE: {"tenant", "group_type", "group_key", "version", "timestamp"},
}

SAMPLE_RECORDS: dict[SchemaName, dict[str, Any]] = {
    SchemaName.EVENT: {
        "uuid": "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f",
        "type": "identify",
        "tenant": "t1",
        "distinct_id": "user-1",
        "event": "$identify",
        "timestamp": 1_700_000_000_123,
        "sent_at": 1_700_000_000_456,
        "other_id": "anon-1",
        "merge_dangerously": False,
        "process_person": True,
        "source": "backend",
        "properties": '{"a":[1,2.5,{"b":null}],"é":"ü"}',
        "set": '{"email":"x@example.com"}',
        "set_once": None,
        "unset": ["old"],
        "event_groups": [
            {
                "group_type": "company",
                "group_key": "acme",
                "attach": True,
                "remember": False,
                "set": '{"name":"Acme"}',
                "set_once": None,
                "unset": [],
            }
        ],
    },
    SchemaName.DISTINCT_ID_OVERRIDE: {
        "tenant": "t1",
        "distinct_id": "anon-1",
        "old_person_id": "p-old",
        "new_person_id": "p-new",
        "event_uuid": None,
        "timestamp": 1_700_000_000_000,
    },
    SchemaName.INGESTION_WARNING: {
        "type": "cannot_merge_already_identified",
        "tenant": "t1",
        "event_uuid": "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f",
        "distinct_id": None,
        "details": {"other": "x"},
        "timestamp": 1_700_000_000_000,
    },
}
SAMPLE_RECORDS[SchemaName.PERSON_CHANGE] = {
    "tenant": "t1",
    "person_id": "p-1",
    "version": 3,
    "properties": '{"plan":"pro"}',
    "created_at": 1_700_000_000_000,
    "is_identified": True,
    "merged_into": None,
    "event_uuid": "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f",
    "timestamp": 1_700_000_000_001,
}
SAMPLE_RECORDS[SchemaName.GROUP_CHANGE] = {
    "tenant": "t1",
    "group_type": "company",
    "group_key": "acme",
    "version": 2,
    "properties": '{"name":"Acme"}',
    "event_uuid": None,
    "timestamp": 1_700_000_000_001,
}
SAMPLE_RECORDS[SchemaName.ENRICHED_EVENT] = {
    **SAMPLE_RECORDS[SchemaName.EVENT],
    "person_id": "p-1",
    "person_properties": '{"email":"x@example.com"}',
    "person_created_at": None,
    "is_identified": True,
    "person_mode": "force_upgrade",
    "buffered_ms": 60_000,
    "groups": '{"company":{"key":"acme","properties":{"name":"Acme"}}}',
}


def _schema(name: SchemaName) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(load_schema_text(name))
    return result


def test_every_avsc_file_is_a_known_schema_with_an_id() -> None:
    stems = {p.name.removesuffix(".avsc") for p in SCHEMA_DIR.iterdir() if p.name.endswith(".avsc")}
    assert stems == {name.value for name in SchemaName}
    assert set(SCHEMA_IDS) == set(SchemaName)
    assert len(set(SCHEMA_IDS.values())) == len(SCHEMA_IDS)


@pytest.mark.parametrize("name", list(SchemaName))
def test_schema_parses_with_fastavro(name: SchemaName) -> None:
    schema = _schema(name)
    parsed: dict[str, Any] = fastavro.parse_schema(schema)  # type: ignore[assignment]
    assert schema["namespace"] == "io.identityworker"
    assert schema["name"] == name.value
    assert parsed["name"] == f"io.identityworker.{name.value}"


@pytest.mark.parametrize("name", list(SchemaName))
def test_every_optional_field_has_a_default(name: SchemaName) -> None:
    for field in _schema(name)["fields"]:
        if field["name"] in REQUIRED_FIELDS[name]:
            assert "default" not in field, field["name"]
            continue
        assert "default" in field, f"{name.value}.{field['name']} needs a default"
        if isinstance(field["type"], list):
            # a union's default must match its first branch: nullable fields are ["null", ...]
            assert field["type"][0] == "null"
            assert field["default"] is None


def test_enriched_event_starts_with_the_event_fields() -> None:
    event_fields = _schema(SchemaName.EVENT)["fields"]
    enriched_fields = _schema(SchemaName.ENRICHED_EVENT)["fields"]
    assert enriched_fields[: len(event_fields)] == event_fields


@pytest.mark.parametrize("name", list(SchemaName))
def test_round_trip(name: SchemaName) -> None:
    codec = AvroCodec()
    data = codec.encode(name, SAMPLE_RECORDS[name])
    schema_id, _ = parse_frame(data)
    assert schema_id == SCHEMA_IDS[name]
    decoded = codec.decode(name, data)
    assert decoded.record == SAMPLE_RECORDS[name]
    assert decoded.same_schema
    assert type(decoded.record["timestamp"]) is int  # logical types are read as plain ms


def test_appended_encoding_equals_full_encoding() -> None:
    codec = AvroCodec()
    event = SAMPLE_RECORDS[SchemaName.EVENT]
    enriched = SAMPLE_RECORDS[SchemaName.ENRICHED_EVENT]
    tail = {k: v for k, v in enriched.items() if k not in event}
    body = codec.encode_body(SchemaName.EVENT, event)
    appended = codec.encode_appended(SchemaName.ENRICHED_EVENT, SchemaName.EVENT, body, tail)
    assert appended == codec.encode(SchemaName.ENRICHED_EVENT, enriched)


def test_codec_rejects_incomplete_or_clashing_ids() -> None:
    with pytest.raises(ValueError, match="no schema id"):
        AvroCodec(schema_ids={SchemaName.EVENT: 1})
    with pytest.raises(ValueError, match="distinct"):
        AvroCodec(schema_ids=dict.fromkeys(SchemaName, 7))
