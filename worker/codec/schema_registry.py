"""A ``SchemaResolver`` backed by a Confluent schema registry.

``confluent_kafka.schema_registry`` needs optional packages (authlib, httpx2, cachetools,
attrs); it is imported only when a registry is configured, so the worker runs without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources.abc import Traversable
from typing import Any, Protocol

from worker.codec.avro import SCHEMA_DIR, SchemaName, load_schema_text
from worker.codec.errors import SchemaRegistryUnavailableError

_NOT_FOUND = 404


class RegistryClient(Protocol):
    """The part of ``confluent_kafka.schema_registry.SchemaRegistryClient`` we use."""

    def get_schema(self, schema_id: int) -> Any: ...

    def register_schema(self, subject_name: str, schema: Any) -> int: ...


class ConfluentSchemaResolver:
    """Fetches writer schemas by id. The client caches what it fetched (ids never change)."""

    def __init__(self, client: RegistryClient) -> None:
        self._client = client

    @classmethod
    def from_config(cls, conf: Mapping[str, Any]) -> ConfluentSchemaResolver:
        """Build the client from its configuration (``{"url": ..., "basic.auth.user.info": ...}``;
        ``mock://name`` gives confluent's in-memory mock)."""
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
        except ImportError as exc:
            raise ImportError(
                "a schema registry is configured but confluent_kafka.schema_registry cannot be "
                f"imported ({exc}); install 'confluent-kafka[schemaregistry]'"
            ) from exc
        return cls(SchemaRegistryClient.new_client(dict(conf)))

    @property
    def client(self) -> RegistryClient:
        return self._client

    def get_schema(self, schema_id: int) -> str:
        try:
            schema = self._client.get_schema(schema_id)
        except Exception as exc:  # SchemaRegistryError, httpx errors: converted here
            if getattr(exc, "http_status_code", None) == _NOT_FOUND:
                raise LookupError(f"schema id {schema_id} is not in the registry") from exc
            raise SchemaRegistryUnavailableError(
                f"schema registry lookup of id {schema_id} failed: {exc}"
            ) from exc
        schema_type = getattr(schema, "schema_type", None) or "AVRO"
        if schema_type != "AVRO":
            raise LookupError(f"schema id {schema_id} is a {schema_type} schema, not AVRO")
        if getattr(schema, "references", None):
            raise LookupError(f"schema id {schema_id} uses schema references (unsupported)")
        text = getattr(schema, "schema_str", None)
        if not isinstance(text, str):
            raise LookupError(f"schema id {schema_id} has no schema text")
        return text


def register_schemas(
    resolver: ConfluentSchemaResolver,
    subjects: Mapping[SchemaName, str],
    schema_dir: Traversable = SCHEMA_DIR,
) -> dict[SchemaName, int]:
    """Register our schemas under ``subjects`` (e.g. ``{EVENT: "events-value", ...}``) and return
    the ids the registry gave them, to build an ``AvroCodec(schema_ids=...)`` with.

    Registering an already registered schema returns its existing id. Schemas not in
    ``subjects`` are not registered and are absent from the result.
    """
    from confluent_kafka.schema_registry import Schema

    ids: dict[SchemaName, int] = {}
    for name, subject in subjects.items():
        schema = Schema(load_schema_text(name, schema_dir), "AVRO")
        try:
            ids[name] = resolver.client.register_schema(subject, schema)
        except Exception as exc:
            raise SchemaRegistryUnavailableError(
                f"registering {name.value} under {subject} failed: {exc}"
            ) from exc
    return ids
