"""Output records: enriched events, distinct-id overrides and ingestion warnings.

Each is encoded as Avro in the wire format or as compact UTF-8 JSON, per ``OutputFormat``. The
JSON shapes have the Avro field names; JSON-text fields of the Avro records (``properties``,
``set``, ``set_once``, ``person_properties``) are plain JSON objects there. Keys: enriched events
``"{tenant}:{person_id}"``, overrides ``"{tenant}:{distinct_id}"``, warnings ``"{tenant}"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from worker.codec import native
from worker.codec.avro import AvroCodec, SchemaName
from worker.codec.envelope import InputEvent
from worker.codec.errors import EncodeError
from worker.codec.fields import dumps_json, dumps_json_bytes
from worker.fast_init import fast_init
from worker.identity.model import (
    DistinctIdOverride,
    GroupChange,
    IdentityWarning,
    JsonValue,
    Outcome,
    PersonMode,
    Resolution,
)

OutputFormat = Literal["avro", "json"]

_MODE_NAMES: Final = {mode: mode.value for mode in PersonMode}
"""Each mode's name (``.value`` of an enum member is a slow property on this Python)."""


@dataclass(frozen=True, slots=True)
class EncodedRecord:
    """An encoded output: the key and value of one Kafka message (the pipeline adds the topic)."""

    key: bytes
    value: bytes

    def __init__(self, key: bytes, value: bytes) -> None:  # compiled: native code (fast_init)
        self.key = key  # type: ignore[misc]
        self.value = value  # type: ignore[misc]


fast_init(EncodedRecord)


def _json_bytes(obj: Mapping[str, Any]) -> bytes:
    return dumps_json_bytes(obj)


def groups_object(r: Resolution) -> dict[str, JsonValue]:
    """The ``groups`` field of an enriched event: ``{type: {"key": ..., "properties": ...}}``."""
    if not r.groups:  # the common case
        return {}
    return {
        group_type: {"key": view.key, "properties": dict(view.properties)}
        for group_type, view in r.groups.items()
    }


class OutputEncoder:
    """Encodes output records in one format.

    With ``reuse_input_body`` (the default), an enriched event whose input was Avro written with
    our ``Event`` schema is encoded as the input body plus the person fields, without
    re-encoding the input fields (``EnrichedEvent`` starts with ``Event``'s fields).
    """

    def __init__(
        self,
        output_format: OutputFormat,
        avro: AvroCodec | None = None,
        *,
        reuse_input_body: bool = True,
    ) -> None:
        if output_format not in ("avro", "json"):
            raise ValueError(f"unknown output format {output_format!r}")
        self._format: OutputFormat = output_format
        self._avro = avro if avro is not None else AvroCodec()
        self._reuse_input_body = reuse_input_body

    @property
    def output_format(self) -> OutputFormat:
        return self._format

    def input_event(self, e: InputEvent) -> bytes:
        """``e`` as an input message of our format (for producers, the demo and tests)."""
        if self._format == "avro":
            return self._avro.encode(SchemaName.EVENT, native.to_avro_record(e))
        return _json_bytes(native.to_json_object(e))

    def enriched(self, e: InputEvent, r: Resolution, *, buffered_ms: int = 0) -> EncodedRecord:
        """The enriched event of an emitted ``e`` (``r.outcome`` must be ``emit``)."""
        if r.outcome is not Outcome.EMIT or r.person_id is None or r.person_mode is None:
            raise EncodeError(f"event {e.uuid} has no person to emit (outcome {r.outcome})")
        key = f"{e.tenant}:{r.person_id}".encode()
        properties = r.properties if type(r.properties) is dict else dict(r.properties)
        if self._format == "json":
            obj = native.to_enriched_json_object(
                e,
                r.person_id,
                properties,
                r.created_at_ms,
                r.is_identified,
                _MODE_NAMES[r.person_mode],
                buffered_ms,
                groups_object(r),
            )
            return EncodedRecord(key, _json_bytes(obj))
        tail = self._person_fields(r, buffered_ms, dumps_json(properties))
        tail["groups"] = dumps_json(groups_object(r))
        if self._reuse_input_body and e.avro_body is not None:
            value = self._avro.encode_appended(
                SchemaName.ENRICHED_EVENT, SchemaName.EVENT, e.avro_body, tail
            )
        else:
            record = native.to_avro_record(e)
            record.update(tail)
            value = self._avro.encode(SchemaName.ENRICHED_EVENT, record)
        return EncodedRecord(key, value)

    @staticmethod
    def _person_fields(r: Resolution, buffered_ms: int, properties: object) -> dict[str, Any]:
        return {
            "person_id": r.person_id,
            "person_properties": properties,
            "person_created_at": r.created_at_ms,
            "is_identified": r.is_identified,
            "person_mode": _MODE_NAMES[r.person_mode] if r.person_mode is not None else None,
            "buffered_ms": buffered_ms,
        }

    def override(
        self, tenant: str, o: DistinctIdOverride, *, event_uuid: str | None, timestamp_ms: int
    ) -> EncodedRecord:
        record = {
            "tenant": tenant,
            "distinct_id": o.distinct_id,
            "old_person_id": o.old_person_id,
            "new_person_id": o.new_person_id,
            "event_uuid": event_uuid,
            "timestamp": timestamp_ms,
        }
        return EncodedRecord(
            f"{tenant}:{o.distinct_id}".encode(),
            self._encode(SchemaName.DISTINCT_ID_OVERRIDE, record),
        )

    def overrides(
        self, e: InputEvent, r: Resolution, *, timestamp_ms: int | None = None
    ) -> list[EncodedRecord]:
        """One record per override of ``r``, stamped with ``timestamp_ms`` (default: the
        event's timestamp)."""
        ts = e.timestamp_ms if timestamp_ms is None else timestamp_ms
        return [self.override(e.tenant, o, event_uuid=e.uuid, timestamp_ms=ts) for o in r.overrides]

    def person_change(self, e: InputEvent, r: Resolution, *, timestamp_ms: int) -> EncodedRecord:
        """The state of ``r``'s person after ``e`` (``r`` must be full mode, with a version)."""
        if r.person_id is None or r.person_version is None:
            raise EncodeError(f"event {e.uuid} has no person version to announce")
        record = {
            "tenant": e.tenant,
            "person_id": r.person_id,
            "version": r.person_version,
            "properties": r.properties if type(r.properties) is dict else dict(r.properties),
            "created_at": r.created_at_ms,
            "is_identified": r.is_identified,
            "merged_into": None,
            "event_uuid": e.uuid,
            "timestamp": timestamp_ms,
        }
        return EncodedRecord(f"{e.tenant}:{r.person_id}".encode(), self._person(record))

    def person_merged(
        self,
        tenant: str,
        old_person_id: str,
        new_person_id: str,
        version: int,
        *,
        event_uuid: str | None,
        timestamp_ms: int,
    ) -> EncodedRecord:
        """``old_person_id`` was merged into ``new_person_id`` (keyed by the old id)."""
        record = {
            "tenant": tenant,
            "person_id": old_person_id,
            "version": version,
            "properties": {},
            "created_at": None,
            "is_identified": True,
            "merged_into": new_person_id,
            "event_uuid": event_uuid,
            "timestamp": timestamp_ms,
        }
        return EncodedRecord(f"{tenant}:{old_person_id}".encode(), self._person(record))

    def group_change(
        self, tenant: str, change: GroupChange, *, event_uuid: str | None, timestamp_ms: int
    ) -> EncodedRecord:
        """A group's new state (keyed ``tenant:group_type:group_key``)."""
        record = {
            "tenant": tenant,
            "group_type": change.group_type,
            "group_key": change.key,
            "version": change.version,
            "properties": dict(change.properties),
            "event_uuid": event_uuid,
            "timestamp": timestamp_ms,
        }
        key = f"{tenant}:{change.group_type}:{change.key}".encode()
        if self._format == "avro":
            avro_record = {**record, "properties": dumps_json(record["properties"])}
            return EncodedRecord(key, self._encode(SchemaName.GROUP_CHANGE, avro_record))
        return EncodedRecord(key, _json_bytes(record))

    def _person(self, record: dict[str, Any]) -> bytes:
        if self._format == "avro":
            return self._encode(
                SchemaName.PERSON_CHANGE, {**record, "properties": dumps_json(record["properties"])}
            )
        return _json_bytes(record)

    def warning(
        self,
        tenant: str,
        w: IdentityWarning,
        *,
        event_uuid: str | None,
        distinct_id: str | None,
        timestamp_ms: int,
    ) -> EncodedRecord:
        record = {
            "type": w.kind.value,
            "tenant": tenant,
            "event_uuid": event_uuid,
            "distinct_id": distinct_id,
            "details": dict(w.details),
            "timestamp": timestamp_ms,
        }
        return EncodedRecord(tenant.encode(), self._encode(SchemaName.INGESTION_WARNING, record))

    def warnings(self, e: InputEvent, r: Resolution, *, timestamp_ms: int) -> list[EncodedRecord]:
        """One record per warning of ``r``; ``timestamp_ms`` is when they were raised."""
        return [
            self.warning(
                e.tenant,
                w,
                event_uuid=e.uuid,
                distinct_id=e.distinct_id,
                timestamp_ms=timestamp_ms,
            )
            for w in r.warnings
        ]

    def _encode(self, name: SchemaName, record: Mapping[str, Any]) -> bytes:
        if self._format == "avro":
            return self._avro.encode(name, record)
        return _json_bytes(record)
