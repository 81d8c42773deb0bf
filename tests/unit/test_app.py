"""Wiring: the Avro codec follows the schema-registry setting."""

from __future__ import annotations

import pytest

from worker.app import build_avro
from worker.codec.avro import SCHEMA_IDS, SchemaName
from worker.config import Settings

pytest.importorskip("confluent_kafka.schema_registry", reason="registry client deps missing")


def test_without_a_registry_the_fixed_ids_are_used() -> None:
    codec = build_avro(Settings())
    assert {name: codec.schema_id(name) for name in SchemaName} == dict(SCHEMA_IDS)


def test_with_a_registry_our_schemas_are_registered_and_used() -> None:
    settings = Settings(formats={"schema_registry_url": "mock://app-test"})  # type: ignore[arg-type]
    codec = build_avro(settings)
    ids = {name: codec.schema_id(name) for name in SchemaName}
    assert len(set(ids.values())) == len(SchemaName)
    record = {
        "uuid": "6a3053f1-29a7-51d5-a234-8322e423c83d",
        "tenant": "t",
        "type": "track",
        "distinct_id": "d",
        "event": "e",
        "timestamp": 1,
    }
    framed = codec.encode(SchemaName.EVENT, record)
    assert framed[1:5] == ids[SchemaName.EVENT].to_bytes(4, "big")
    assert codec.decode(SchemaName.EVENT, framed).record["distinct_id"] == "d"
