"""Segment spec calls: ``identify``, ``alias`` and ``track``.

identify: distinct id = ``userId`` (other id: ``anonymousId``), or ``anonymousId`` alone;
``traits`` → ``$set``. alias: distinct id = ``userId``, other id = ``previousId``. track:
distinct id = ``userId`` or ``anonymousId``, ``event`` and ``properties``. An empty ``userId``
or ``anonymousId`` counts as absent (as in Segment's libraries). The uuid is derived from
``messageId`` (uuid5), or from the message's position when there is none. The timestamp is
``originalTimestamp`` when present (Segment's ``timestamp`` is then already skew-corrected),
else ``timestamp``; ``sentAt`` is the send time. Backend: ``context.library.name`` names a
server-side library. ``context`` and ``integrations`` are transport metadata and are not carried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from worker.codec.envelope import InputEvent, check_kind_fields
from worker.codec.errors import DecodeError
from worker.codec.fields import (
    as_str,
    check_values,
    derive_uuid,
    event_time,
    first_tenant,
    get_path,
    opt_id,
    opt_object,
    opt_str,
    opt_timestamp_ms,
    property_updates,
    require_tenant,
)
from worker.codec.groups import DEFAULT_SEGMENT_GROUP_TYPE, SEGMENT_GROUP_CALL, segment_group
from worker.identity.model import EventKind

DEFAULT_BACKEND_LIBS: Final = frozenset(
    {
        "analytics-python",
        "analytics-node",
        "analytics-ruby",
        "analytics-go",
        "analytics-java",
        "analytics-php",
    }
)
DEFAULT_TENANT_FIELDS: Final = ("writeKey", "projectId")
ID_FIELDS: Final = ("userId", "anonymousId", "previousId")
"""A JSON object with one of these is a Segment call."""

_KINDS: Final = {kind.value: kind for kind in EventKind}


def _present_id(obj: Mapping[str, Any], field: str) -> str | None:
    value = opt_id(obj.get(field), field)
    return value or None


def _ids(kind: EventKind, obj: Mapping[str, Any]) -> tuple[str, str | None]:
    """``(distinct_id, other_id)`` of a call."""
    user_id = _present_id(obj, "userId")
    anonymous_id = _present_id(obj, "anonymousId")
    if kind is EventKind.ALIAS:
        if user_id is None:
            raise DecodeError("missing_field", "an alias call needs userId", field="userId")
        previous_id = _present_id(obj, "previousId")
        if previous_id is None:
            raise DecodeError("missing_field", "an alias call needs previousId", field="previousId")
        return user_id, previous_id
    if user_id is not None:
        return user_id, anonymous_id if kind is EventKind.IDENTIFY else None
    if anonymous_id is not None:
        return anonymous_id, None
    raise DecodeError("missing_field", "a Segment call needs userId or anonymousId", field="userId")


def decode_segment(
    obj: Mapping[str, Any],
    *,
    source_ref: str,
    tenant_fields: tuple[str, ...],
    tenant_fallback: str | None,
    backend_libs: frozenset[str],
    received_at_ms: int | None,
    group_type: str = DEFAULT_SEGMENT_GROUP_TYPE,
) -> InputEvent:
    type_name = as_str(obj.get("type"), "type")
    group_call = type_name == SEGMENT_GROUP_CALL  # a track named "group" (codec/groups.py)
    kind = EventKind.TRACK if group_call else _KINDS.get(type_name)
    if kind is None:
        raise DecodeError(
            "unknown_event_type", f"unsupported Segment call {type_name[:40]!r}", field="type"
        )
    distinct_id, other_id = _ids(kind, obj)
    event = opt_str(obj.get("event"), "event") if kind is EventKind.TRACK else None
    if group_call:
        event = SEGMENT_GROUP_CALL
    check_kind_fields(kind, event, other_id)
    message_id = opt_id(obj.get("messageId"), "messageId")
    timestamp = obj.get("originalTimestamp")
    if timestamp is None:
        timestamp = obj.get("timestamp")
    library = get_path(obj, "context.library.name")
    traits = opt_object(obj.get("traits"), "traits") if kind is EventKind.IDENTIFY else None
    properties = opt_object(obj.get("properties"), "properties")
    check_values(traits, "traits")
    check_values(properties, "properties")
    timestamp_ms, ignored, warnings = event_time(timestamp, received_at_ms, "timestamp")
    return InputEvent(
        tenant=require_tenant(first_tenant(obj, tenant_fields), tenant_fallback, tenant_fields),
        kind=kind,
        uuid=derive_uuid(f"segment:{message_id}" if message_id else source_ref),
        distinct_id=distinct_id,
        event=event,
        timestamp_ms=timestamp_ms,
        sent_at_ms=None if warnings else opt_timestamp_ms(obj.get("sentAt"), "sentAt"),
        other_id=other_id,
        merge_dangerously=False,
        process_person=True,
        is_backend=isinstance(library, str) and library in backend_libs,
        properties=properties if properties is not None else {},
        updates=property_updates(traits, None, ()),
        raw_format="json",
        ignored_timestamp=ignored,
        warnings=warnings,
        groups=(segment_group(obj, group_type),) if group_call else (),
    )
