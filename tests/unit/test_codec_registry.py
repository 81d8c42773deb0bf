"""The Confluent-registry-backed SchemaResolver, against confluent's in-memory mock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.avro import avro_body
from worker.codec import DecodeOptions, decode_message
from worker.codec.avro import SCHEMA_IDS, AvroCodec, SchemaName, load_schema_text
from worker.codec.wire import frame

schema_registry = pytest.importorskip("confluent_kafka.schema_registry")

UUID = "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f"


def _newer_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(load_schema_text(SchemaName.EVENT))
    schema["fields"].append({"name": "ip", "type": ["null", "string"], "default": None})
    return schema


BASE_RECORD: dict[str, Any] = {
    "uuid": UUID,
    "type": "identify",
    "tenant": "t1",
    "distinct_id": "user-1",
    "event": None,
    "timestamp": 1_700_000_000_000,
    "sent_at": None,
    "other_id": "anon-1",
    "merge_dangerously": False,
    "process_person": True,
    "source": "backend",
    "properties": "{}",
    "set": None,
    "set_once": None,
    "unset": [],
}


def _options(resolver: Any) -> DecodeOptions:
    return DecodeOptions(avro=AvroCodec(resolver=resolver))


schema_registry = pytest.importorskip("confluent_kafka.schema_registry")


def _mock_resolver() -> Any:
    from worker.codec.schema_registry import ConfluentSchemaResolver

    return ConfluentSchemaResolver.from_config({"url": "mock://identity-worker-tests"})


def test_confluent_mock_registry_resolves_a_newer_writer() -> None:
    resolver = _mock_resolver()
    client = resolver.client
    # registry ids start at 1 like the local ones: burn ids so the writer's id is not local
    for i in range(len(SCHEMA_IDS)):
        client.register_schema(f"filler-{i}", schema_registry.Schema(f'"string{i}"', "AVRO"))
    schema_id = client.register_schema(
        "events-value", schema_registry.Schema(json.dumps(_newer_schema()), "AVRO")
    )
    assert schema_id not in SCHEMA_IDS.values()
    record = {**BASE_RECORD, "ip": "::1"}
    e = decode_message(
        frame(schema_id, avro_body(_newer_schema(), record)), None, None, "r", _options(resolver)
    )
    assert e.distinct_id == "user-1"
    assert e.is_backend


def test_confluent_resolver_maps_not_found_and_other_types() -> None:
    resolver = _mock_resolver()
    with pytest.raises(LookupError):
        resolver.get_schema(4242)
    schema_id = resolver.client.register_schema(
        "proto", schema_registry.Schema('syntax = "proto3";', "PROTOBUF")
    )
    with pytest.raises(LookupError, match="PROTOBUF"):
        resolver.get_schema(schema_id)


def test_register_schemas_returns_ids_for_a_codec() -> None:
    from worker.codec.schema_registry import register_schemas

    resolver = _mock_resolver()
    subjects = {name: f"{name.value}-value" for name in SchemaName}
    ids = register_schemas(resolver, subjects)
    assert set(ids) == set(SchemaName)
    codec = AvroCodec(schema_ids=ids, resolver=resolver)
    assert codec.schema_id(SchemaName.EVENT) == ids[SchemaName.EVENT]
    assert register_schemas(resolver, subjects) == ids  # idempotent
