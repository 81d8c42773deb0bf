"""Reading messages written with other (newer or older) compatible writer schemas."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.support.avro import avro_body
from worker.codec import DecodeError, DecodeOptions, decode_message
from worker.codec.avro import AvroCodec, SchemaName, load_schema_text
from worker.codec.errors import SchemaRegistryUnavailableError
from worker.codec.wire import frame
from worker.identity.model import EventKind

UUID = "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f"
EVENT_SCHEMA: dict[str, Any] = json.loads(load_schema_text(SchemaName.EVENT))


def _newer_schema() -> dict[str, Any]:
    """Event plus a field with a default, plus a new source symbol."""
    schema = copy.deepcopy(EVENT_SCHEMA)
    schema["fields"].append({"name": "ip", "type": ["null", "string"], "default": None})
    for field in schema["fields"]:
        if field["name"] == "source":
            field["type"]["symbols"].append("edge")
    return schema


def _older_schema() -> dict[str, Any]:
    """Event without the optional fields sent_at, source, set_once and unset."""
    schema = copy.deepcopy(EVENT_SCHEMA)
    dropped = {"sent_at", "source", "set_once", "unset"}
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in dropped]
    return schema


BASE_RECORD: dict[str, Any] = {
    "uuid": UUID,
    "type": "identify",
    "tenant": "t1",
    "distinct_id": "user-1",
    "event": None,
    "timestamp": 1_700_000_000_000,
    "other_id": "anon-1",
    "merge_dangerously": False,
    "process_person": True,
    "properties": '{"k":"v"}',
    "set": '{"name":"Ada"}',
}


class DictResolver:
    """A SchemaResolver over a dict; counts lookups."""

    def __init__(self, schemas: dict[int, str]) -> None:
        self.schemas = schemas
        self.calls = 0

    def get_schema(self, schema_id: int) -> str:
        self.calls += 1
        return self.schemas[schema_id]


def _options(resolver: Any) -> DecodeOptions:
    return DecodeOptions(avro=AvroCodec(resolver=resolver))


def test_newer_writer_with_an_added_field_and_symbol() -> None:
    resolver = DictResolver({100: json.dumps(_newer_schema())})
    options = _options(resolver)
    record = {**BASE_RECORD, "sent_at": None, "source": "edge", "set_once": None, "unset": []}
    record["ip"] = "10.0.0.1"
    value = frame(100, avro_body(_newer_schema(), record))
    e = decode_message(value, None, None, "r", options)
    assert e.kind is EventKind.IDENTIFY
    assert e.other_id == "anon-1"
    assert e.is_backend is False  # unknown symbol "edge" reads as the enum default, client
    assert e.avro_body is None  # not our schema: the body cannot be reused
    decode_message(value, None, None, "r", options)
    assert resolver.calls == 1  # the writer schema is cached by id


def test_older_writer_lacking_optional_fields_gets_defaults() -> None:
    options = _options(DictResolver({101: json.dumps(_older_schema())}))
    value = frame(101, avro_body(_older_schema(), BASE_RECORD))
    e = decode_message(value, None, None, "r", options)
    assert e.sent_at_ms is None
    assert e.is_backend is False
    assert e.updates.set == (("name", "Ada"),)
    assert e.updates.set_once == ()
    assert e.updates.unset == ()


def test_same_schema_under_another_id_takes_the_fast_path() -> None:
    options = _options(DictResolver({555: load_schema_text(SchemaName.EVENT)}))
    record = {**BASE_RECORD, "sent_at": 5, "source": "backend", "set_once": None, "unset": []}
    body = avro_body(EVENT_SCHEMA, record)
    e = decode_message(frame(555, body), None, None, "r", options)
    assert e.avro_body == body
    assert e.is_backend


def test_incompatible_writer_is_rejected() -> None:
    schema = copy.deepcopy(EVENT_SCHEMA)
    for field in schema["fields"]:
        if field["name"] == "distinct_id":
            field["type"] = "long"
    options = _options(DictResolver({102: json.dumps(schema)}))
    record = {**BASE_RECORD, "distinct_id": 5}
    with pytest.raises(DecodeError) as info:
        decode_message(frame(102, avro_body(schema, record)), None, None, "r", options)
    assert info.value.reason == "incompatible_schema"


def test_unknown_id_and_unusable_schema() -> None:
    options = _options(DictResolver({103: '{"type": "nonsense"}'}))
    for schema_id in (104, 103):
        with pytest.raises(DecodeError) as info:
            decode_message(frame(schema_id, b"\x00"), None, None, "r", options)
        assert info.value.reason == "unknown_schema_id"


def test_resolver_failure_is_transient_not_a_decode_error() -> None:
    class Down:
        def get_schema(self, schema_id: int) -> str:
            raise ConnectionError("registry down")

    with pytest.raises(SchemaRegistryUnavailableError):
        decode_message(frame(105, b"\x00"), None, None, "r", _options(Down()))
