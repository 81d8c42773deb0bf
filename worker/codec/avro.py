"""Avro bodies in the Confluent wire format, with a local schema table and schema evolution.

Our schemas live in ``schemas/*.avsc`` (shipped inside the package as ``worker/schemas/``, read
with ``importlib.resources``) and are parsed once. Each has a fixed id in
``SCHEMA_IDS`` (the only place ids are written) that we frame our own output with. A message
whose schema id is not in the local table is read with the writer schema fetched from a
``SchemaResolver`` (e.g. a Confluent schema registry) and our schema as reader schema, so newer
or older compatible writers are accepted (Avro schema resolution: fields the reader lacks are
skipped, fields the writer lacks take the reader's default).

Timestamps are read and written as plain ``int`` milliseconds: the ``logicalType`` annotations
stay in the ``.avsc`` files (and in the registry) for other consumers, but are removed before
parsing so fastavro does not build ``datetime`` objects (they carry no meaning for the binary
encoding or for schema resolution).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Any, Final, Protocol

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import to_parsing_canonical_form
from fastavro.types import Schema

from worker.codec.avro_binary import RecordNode, plan
from worker.codec.errors import DecodeError, EncodeError, SchemaRegistryUnavailableError
from worker.codec.wire import frame, parse_frame


class SchemaName(StrEnum):
    """Our record schemas; the value is the ``.avsc`` file's stem and the record's name."""

    EVENT = "Event"
    ENRICHED_EVENT = "EnrichedEvent"
    DISTINCT_ID_OVERRIDE = "DistinctIdOverride"
    INGESTION_WARNING = "IngestionWarning"
    PERSON_CHANGE = "PersonChange"
    GROUP_CHANGE = "GroupChange"


SCHEMA_IDS: Final[Mapping[SchemaName, int]] = MappingProxyType(
    {
        SchemaName.EVENT: 1,
        SchemaName.ENRICHED_EVENT: 2,
        SchemaName.DISTINCT_ID_OVERRIDE: 3,
        SchemaName.INGESTION_WARNING: 4,
        SchemaName.PERSON_CHANGE: 5,
        SchemaName.GROUP_CHANGE: 6,
    }
)
"""Local schema ids, used when no registry is configured. With a registry, pass the ids it
assigned to our schemas instead (``schema_registry.register_schemas``): registry ids start at 1
too, and a local id always wins over the resolver."""

SCHEMA_DIR: Final[Traversable] = resources.files("worker.schemas")
"""The ``.avsc`` files: the top-level ``schemas/`` folder, which the wheel ships as the
``worker.schemas`` package (pyproject.toml maps one onto the other; an editable install reads the
folder itself)."""


class SchemaResolver(Protocol):
    """Finds a writer schema by id.

    ``get_schema`` returns the schema's JSON text. It raises ``LookupError`` when the id does not
    exist, and ``SchemaRegistryUnavailableError`` when it cannot tell (network, server errors).
    """

    def get_schema(self, schema_id: int) -> str: ...


def load_schema_text(name: SchemaName, schema_dir: Traversable = SCHEMA_DIR) -> str:
    """The ``.avsc`` text of one of our schemas, as registered in a schema registry."""
    return schema_dir.joinpath(f"{name.value}.avsc").read_text(encoding="utf-8")


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


_OBJECT_REPR: Final = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


def _reason(exc: Exception) -> str:
    """A decoding error's text for its dead letter: the same for the same bytes, so without the
    memory address of a Python object fastavro may name (``cannot read boolean from
    <_io.BytesIO object at 0x...>`` reads ``... from <_io.BytesIO>``)."""
    text = _OBJECT_REPR.sub(r"<\1>", str(exc))
    return f"{type(exc).__name__}: {text}"


@dataclass(frozen=True, slots=True)
class _ParsedSchema:
    schema: Schema
    canonical: str
    nodes: RecordNode | None
    """The direct reader and writer of the schema (``worker.codec.avro_binary``), when it has
    one; fastavro handles what they cannot."""


def _parse(schema_json: Any, direct: bool) -> _ParsedSchema:
    plain = _without_logical_types(schema_json)
    schema = parse_schema(plain)
    return _ParsedSchema(schema, to_parsing_canonical_form(schema), plan(plain) if direct else None)


@dataclass(frozen=True, slots=True)
class AvroRecord:
    """A decoded wire-format message.

    ``same_schema`` is true when the writer schema is ours (same parsing canonical form as the
    reader schema): ``body`` is then exactly our encoding of ``record``.
    """

    record: dict[str, Any]
    schema_id: int
    body: bytes
    same_schema: bool


class AvroCodec:
    """Encodes our records and decodes wire-format messages against our schemas.

    Thread-compatible, not thread-safe: the writer-schema cache is a plain dict.

    ``direct`` (the default): our own schemas are read and written with the direct nodes of
    ``worker.codec.avro_binary`` where they cover the schema and the value, with fastavro for
    the rest (the same bytes, records and errors, with less CPU); ``False``: fastavro for all.
    """

    def __init__(
        self,
        *,
        schema_ids: Mapping[SchemaName, int] = SCHEMA_IDS,
        resolver: SchemaResolver | None = None,
        schema_dir: Traversable = SCHEMA_DIR,
        direct: bool = True,
    ) -> None:
        missing = set(SchemaName) - set(schema_ids)
        if missing:
            raise ValueError(f"no schema id for {sorted(missing)}")
        if len(set(schema_ids.values())) != len(schema_ids):
            raise ValueError(f"schema ids must be distinct: {dict(schema_ids)}")
        self._ids = dict(schema_ids)
        self._resolver = resolver
        self._direct = direct
        self._json: dict[SchemaName, dict[str, Any]] = {
            name: json.loads(load_schema_text(name, schema_dir)) for name in SchemaName
        }
        self._local = {name: _parse(schema, direct) for name, schema in self._json.items()}
        self._tails: dict[tuple[SchemaName, SchemaName], _ParsedSchema] = {}
        self._writers: dict[int, _ParsedSchema] = {
            self._ids[name]: parsed for name, parsed in self._local.items()
        }

    def schema_id(self, name: SchemaName) -> int:
        return self._ids[name]

    def encode_body(self, name: SchemaName, record: Mapping[str, Any]) -> bytes:
        """The Avro body of ``record`` (no wire-format header)."""
        parsed = self._local[name]
        if parsed.nodes is not None:
            fast = bytearray()
            try:
                parsed.nodes.write_body(fast, record)
                return bytes(fast)
            except Exception:  # noqa: S110 - fastavro below encodes it or says why not
                pass
        out = io.BytesIO()
        try:
            schemaless_writer(out, parsed.schema, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{name.value}: {exc}") from exc
        return out.getvalue()

    def encode(self, name: SchemaName, record: Mapping[str, Any]) -> bytes:
        """``record`` in the wire format, framed with our id for ``name``."""
        return frame(self._ids[name], self.encode_body(name, record))

    def encode_appended(
        self,
        name: SchemaName,
        base: SchemaName,
        base_body: bytes,
        tail: Mapping[str, Any],
    ) -> bytes:
        """``name`` in the wire format, from the body of a ``base`` record plus ``tail`` (the
        fields ``name`` has after ``base``'s). Valid because an Avro record's encoding is its
        fields' encodings end to end and ``name``'s fields start with ``base``'s."""
        tail_schema = self._tail_schema(name, base)
        if tail_schema.nodes is not None:
            fast = bytearray(base_body)
            try:
                tail_schema.nodes.write_body(fast, tail)
                return frame(self._ids[name], bytes(fast))
            except Exception:  # noqa: S110 - fastavro below encodes it or says why not
                pass
        out = io.BytesIO()
        out.write(base_body)
        try:
            schemaless_writer(out, tail_schema.schema, tail)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{name.value} tail: {exc}") from exc
        return frame(self._ids[name], out.getvalue())

    def _tail_schema(self, name: SchemaName, base: SchemaName) -> _ParsedSchema:
        cached = self._tails.get((name, base))
        if cached is not None:
            return cached
        fields = self._json[name]["fields"]
        base_fields = self._json[base]["fields"]
        if fields[: len(base_fields)] != base_fields:
            raise ValueError(f"{name.value} does not start with the fields of {base.value}")
        parsed = _parse(
            {
                "type": "record",
                "name": f"{name.value}Tail",
                "namespace": self._json[name].get("namespace", ""),
                "fields": fields[len(base_fields) :],
            },
            self._direct,
        )
        self._tails[(name, base)] = parsed
        return parsed

    def decode(self, name: SchemaName, data: bytes) -> AvroRecord:
        """Read a wire-format message as a ``name`` record, resolving the writer schema by id.

        Raises ``DecodeError`` (``unknown_magic_byte``, ``invalid_frame``, ``unknown_schema_id``,
        ``incompatible_schema``, ``avro_invalid``) or ``SchemaRegistryUnavailableError``.
        """
        schema_id, body = parse_frame(data)
        reader = self._local[name]
        writer = self._writer(schema_id)
        same = writer.canonical == reader.canonical
        if same and reader.nodes is not None:
            try:
                return AvroRecord(reader.nodes.read_body(body), schema_id, body, same)
            except Exception:  # noqa: S110 - fastavro below reads it or says why not
                pass
        buffer = io.BytesIO(body)
        try:
            if same:
                record = schemaless_reader(buffer, reader.schema, None)
            else:
                record = schemaless_reader(buffer, writer.schema, reader.schema)
        except SchemaResolutionError as exc:
            raise DecodeError(
                "incompatible_schema",
                f"schema id {schema_id} cannot be read as {name.value}: {exc}",
            ) from exc
        except Exception as exc:  # fastavro raises many types; none may leave the codec
            raise DecodeError("avro_invalid", _reason(exc)) from exc
        if buffer.tell() != len(body):
            raise DecodeError(
                "avro_invalid", f"{len(body) - buffer.tell()} trailing bytes after the record"
            )
        if not isinstance(record, dict):
            raise DecodeError("avro_invalid", f"expected a record, got {type(record).__name__}")
        return AvroRecord(record, schema_id, body, same)

    def _writer(self, schema_id: int) -> _ParsedSchema:
        cached = self._writers.get(schema_id)
        if cached is not None:
            return cached
        if self._resolver is None:
            raise DecodeError(
                "unknown_schema_id", f"schema id {schema_id} is not local and no registry is set"
            )
        try:
            text = self._resolver.get_schema(schema_id)
        except LookupError as exc:
            raise DecodeError("unknown_schema_id", f"schema id {schema_id}: {exc}") from exc
        except SchemaRegistryUnavailableError:
            raise
        except Exception as exc:  # a resolver's own failure is transient until proven otherwise
            raise SchemaRegistryUnavailableError(f"schema id {schema_id}: {exc}") from exc
        try:
            parsed = _parse(json.loads(text), False)
        except Exception as exc:  # the registry holds a schema fastavro cannot use
            raise DecodeError(
                "unknown_schema_id", f"schema id {schema_id} is not a usable Avro schema: {exc}"
            ) from exc
        self._writers[schema_id] = parsed
        return parsed
