"""Our own event format, both ways: the Avro ``Event`` record and its JSON twin.

The JSON shape has the Avro field names; ``properties``, ``set`` and ``set_once`` are JSON
objects there instead of JSON text, ``timestamp``/``sent_at`` may also be ISO 8601 strings, and
``uuid`` and ``tenant`` may be missing (derived uuid; tenant from a configured field or the
message key). Person property updates come from ``set``/``set_once``/``unset`` only; the
``properties`` of our format are carried, never interpreted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from worker.codec.envelope import InputEvent, check_kind_fields
from worker.codec.errors import DecodeError
from worker.codec.fields import (
    as_bool,
    as_id,
    as_object,
    as_str,
    as_uuid,
    check_tenant,
    check_timestamp_ms,
    check_values,
    derive_uuid,
    dumps_json,
    first_tenant,
    loads_json,
    opt_id,
    opt_str,
    opt_timestamp_ms,
    property_updates,
    require_tenant,
    timestamp_or_ignored,
    unset_keys,
)
from worker.codec.groups import native_groups, native_groups_out
from worker.identity.model import EventKind, JsonValue

SOURCE_CLIENT: Final = "client"
SOURCE_BACKEND: Final = "backend"
_SOURCES: Final = frozenset({SOURCE_CLIENT, SOURCE_BACKEND})
_KINDS: Final = {kind.value: kind for kind in EventKind}
_KIND_NAMES: Final = {kind: kind.value for kind in EventKind}
"""Each kind's name (``.value`` of an enum member is a slow property on this Python)."""


def _kind(value: Any) -> EventKind:
    name = as_str(value, "type")
    kind = _KINDS.get(name)
    if kind is None:
        raise DecodeError(
            "unknown_event_type", f"unsupported event type {name[:40]!r}", field="type"
        )
    return kind


def _json_text_object(text: str | None, field: str) -> dict[str, JsonValue] | None:
    if text is None:
        return None
    if text == "{}":  # the common case: what the encoder writes for no properties
        return {}
    value = as_object(loads_json(text, reason="invalid_field", field=field), field)
    check_values(value, field)
    return value


def _checked_object(value: Any, field: str) -> dict[str, JsonValue] | None:
    if value is None:
        return None
    obj = as_object(value, field)
    check_values(obj, field)
    return obj


def from_avro_record(
    record: Mapping[str, Any], body: bytes | None, received_at_ms: int | None = None
) -> InputEvent:
    """An ``InputEvent`` from a decoded ``Event`` record (fastavro already checked the types).

    ``body`` is the record's exact encoding with our schema, or ``None``. A timestamp out of
    range is replaced by ``received_at_ms`` when there is one (``ignored_timestamp``).
    """
    kind = _kind(record["type"])
    tenant = check_tenant(record["tenant"])
    event: str | None = record["event"]
    other_id: str | None = record["other_id"]
    check_kind_fields(kind, event, other_id)
    sent_at: int | None = record["sent_at"]
    properties = _json_text_object(record["properties"], "properties")
    timestamp_ms, ignored = timestamp_or_ignored(record["timestamp"], received_at_ms, "timestamp")
    return InputEvent(
        tenant=tenant,
        kind=kind,
        uuid=as_uuid(record["uuid"], "uuid"),
        distinct_id=record["distinct_id"],
        event=event,
        timestamp_ms=timestamp_ms,
        sent_at_ms=None if sent_at is None else check_timestamp_ms(sent_at, "sent_at"),
        other_id=other_id,
        merge_dangerously=record["merge_dangerously"],
        process_person=record["process_person"],
        is_backend=record["source"] == SOURCE_BACKEND,
        properties=properties if properties is not None else {},
        updates=property_updates(
            _json_text_object(record["set"], "set"),
            _json_text_object(record["set_once"], "set_once"),
            tuple(record["unset"]),
        ),
        raw_format="avro",
        avro_body=body if ignored is None else None,
        ignored_timestamp=ignored,
        groups=native_groups(record.get("event_groups"), text_objects=True),
    )


def from_json_object(
    obj: Mapping[str, Any],
    *,
    source_ref: str,
    tenant_fields: tuple[str, ...],
    tenant_fallback: str | None,
    received_at_ms: int | None,
) -> InputEvent:
    """An ``InputEvent`` from our JSON shape."""
    kind = _kind(obj.get("type"))
    event = opt_str(obj.get("event"), "event")
    other_id = opt_id(obj.get("other_id"), "other_id")
    check_kind_fields(kind, event, other_id)
    raw_uuid = obj.get("uuid")
    timestamp = obj.get("timestamp")
    source = obj.get("source")
    if source is None:
        source = SOURCE_CLIENT
    elif not isinstance(source, str) or source not in _SOURCES:
        raise DecodeError("invalid_field", "source must be client or backend", field="source")
    properties = _checked_object(obj.get("properties"), "properties")
    timestamp_ms, ignored = timestamp_or_ignored(timestamp, received_at_ms, "timestamp")
    return InputEvent(
        tenant=require_tenant(first_tenant(obj, tenant_fields), tenant_fallback, tenant_fields),
        kind=kind,
        uuid=derive_uuid(source_ref) if raw_uuid is None else as_uuid(raw_uuid, "uuid"),
        distinct_id=as_id(obj.get("distinct_id"), "distinct_id"),
        event=event,
        timestamp_ms=timestamp_ms,
        sent_at_ms=opt_timestamp_ms(obj.get("sent_at"), "sent_at"),
        other_id=other_id,
        merge_dangerously=as_bool(obj.get("merge_dangerously"), "merge_dangerously", False),
        process_person=as_bool(obj.get("process_person"), "process_person", True),
        is_backend=source == SOURCE_BACKEND,
        properties=properties if properties is not None else {},
        updates=property_updates(
            _checked_object(obj.get("set"), "set"),
            _checked_object(obj.get("set_once"), "set_once"),
            _unset_list(obj.get("unset")),
        ),
        raw_format="json",
        ignored_timestamp=ignored,
        groups=native_groups(obj.get("event_groups")),
    )


def _unset_list(value: Any) -> tuple[str, ...]:
    if value is not None and not isinstance(value, list):
        raise DecodeError("invalid_field", "unset must be a list of strings", field="unset")
    return unset_keys(value, "unset")


def _updates_object(pairs: tuple[tuple[str, JsonValue], ...]) -> dict[str, JsonValue] | None:
    return dict(pairs) if pairs else None


def _shared_fields(e: InputEvent) -> dict[str, Any]:
    """The fields whose form is the same in our Avro record and our JSON object."""
    return {
        "uuid": e.uuid,
        "type": _KIND_NAMES[e.kind],
        "tenant": e.tenant,
        "distinct_id": e.distinct_id,
        "event": e.event,
        "timestamp": e.timestamp_ms,
        "sent_at": e.sent_at_ms,
        "other_id": e.other_id,
        "merge_dangerously": e.merge_dangerously,
        "process_person": e.process_person,
        "source": SOURCE_BACKEND if e.is_backend else SOURCE_CLIENT,
    }


def to_avro_record(e: InputEvent) -> dict[str, Any]:
    """The ``Event`` record of ``e`` (also the leading fields of an ``EnrichedEvent``); the
    JSON-valued fields are JSON text there. The field order is the schema's."""
    set_ = _updates_object(e.updates.set)
    set_once = _updates_object(e.updates.set_once)
    record = _shared_fields(e)  # filled in place, in the schema's order: no second dict
    record["properties"] = dumps_json(e.properties)
    record["set"] = None if set_ is None else dumps_json(set_)
    record["set_once"] = None if set_once is None else dumps_json(set_once)
    record["unset"] = list(e.updates.unset)
    record["event_groups"] = native_groups_out(e.groups, text_objects=True)
    return record


def to_json_object(e: InputEvent) -> dict[str, Any]:
    """Our JSON shape of ``e`` (also the leading fields of a JSON enriched event)."""
    obj = _shared_fields(e)  # filled in place, in the Avro field order: no second dict
    updates = e.updates
    obj["properties"] = e.properties
    obj["set"] = _updates_object(updates.set)
    obj["set_once"] = _updates_object(updates.set_once)
    obj["unset"] = list(updates.unset)
    obj["event_groups"] = native_groups_out(e.groups, text_objects=False) if e.groups else []
    return obj


def to_enriched_json_object(
    e: InputEvent,
    person_id: str,
    person_properties: Mapping[str, JsonValue],
    person_created_at: int | None,
    is_identified: bool,
    person_mode: str,
    buffered_ms: int,
    groups: dict[str, JsonValue],
) -> dict[str, Any]:
    """``to_json_object(e)`` followed by the person fields of a JSON enriched event, in the
    ``EnrichedEvent`` field order: built in one go, a dict of its final size (filling
    ``to_json_object``'s in place resized it twice)."""
    updates = e.updates
    return {
        "uuid": e.uuid,
        "type": _KIND_NAMES[e.kind],
        "tenant": e.tenant,
        "distinct_id": e.distinct_id,
        "event": e.event,
        "timestamp": e.timestamp_ms,
        "sent_at": e.sent_at_ms,
        "other_id": e.other_id,
        "merge_dangerously": e.merge_dangerously,
        "process_person": e.process_person,
        "source": SOURCE_BACKEND if e.is_backend else SOURCE_CLIENT,
        "properties": e.properties,
        "set": _updates_object(updates.set),
        "set_once": _updates_object(updates.set_once),
        "unset": list(updates.unset),
        "event_groups": native_groups_out(e.groups, text_objects=False) if e.groups else [],
        "person_id": person_id,
        "person_properties": person_properties,
        "person_created_at": person_created_at,
        "is_identified": is_identified,
        "person_mode": person_mode,
        "buffered_ms": buffered_ms,
        "groups": groups,
    }
