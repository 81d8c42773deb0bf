"""Altertable payloads: ``identify``, ``track`` and ``alias``.

The call is ``type`` when present, else told by its fields: ``event`` → track; ``new_user_id`` or
``alias`` → alias; otherwise identify. identify: distinct id = ``distinct_id``, other id =
``anonymous_id`` (its anonymous history is merged, like PostHog's ``$anon_distinct_id``),
``traits`` → ``$set``. track: distinct id = ``distinct_id`` (else ``anonymous_id``), ``event``,
``properties``. alias: distinct id = ``distinct_id``, other id = ``new_user_id`` (else
``alias``). ``environment`` isolates identities: the tenant is ``<tenant>/<environment>``.
``timestamp`` is the event time (without one, the Kafka timestamp, warned). A JSON array of
payloads is a batch (``json_formats``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from worker.codec.envelope import InputEvent, check_kind_fields
from worker.codec.errors import DecodeError
from worker.codec.fields import (
    as_str,
    as_uuid,
    check_tenant,
    check_values,
    derive_uuid,
    event_time,
    first_tenant,
    opt_id,
    opt_object,
    opt_str,
    opt_timestamp_ms,
    property_updates,
    require_tenant,
)
from worker.identity.model import EventKind

DEFAULT_TENANT_FIELDS: Final = ("tenant", "api_key")
ENVIRONMENT_SEPARATOR: Final = "/"
_KINDS: Final = {kind.value: kind for kind in EventKind}


def _kind(obj: Mapping[str, Any]) -> EventKind:
    type_name = opt_str(obj.get("type"), "type")
    if type_name is not None:
        kind = _KINDS.get(type_name)
        if kind is None:
            raise DecodeError(
                "unknown_event_type",
                f"unsupported Altertable call {type_name[:40]!r}",
                field="type",
            )
        return kind
    if "event" in obj:
        return EventKind.TRACK
    if "new_user_id" in obj or "alias" in obj:
        return EventKind.ALIAS
    return EventKind.IDENTIFY


def _present(obj: Mapping[str, Any], name: str) -> str | None:
    return opt_id(obj.get(name), name) or None


def tenant_with_environment(tenant: str, environment: str | None) -> str:
    """``<tenant>/<environment>``, or ``tenant`` without an environment."""
    if not environment:
        return tenant
    return check_tenant(f"{tenant}{ENVIRONMENT_SEPARATOR}{environment}", "environment")


def decode_altertable(
    obj: Mapping[str, Any],
    *,
    source_ref: str,
    tenant_fields: tuple[str, ...],
    tenant_fallback: str | None,
    received_at_ms: int | None,
) -> InputEvent:
    kind = _kind(obj)
    distinct_id = _present(obj, "distinct_id")
    anonymous_id = _present(obj, "anonymous_id")
    other_id: str | None = None
    if kind is EventKind.ALIAS:
        other_id = _present(obj, "new_user_id") or _present(obj, "alias")
    elif kind is EventKind.IDENTIFY:
        other_id = anonymous_id
    elif distinct_id is None:
        distinct_id = anonymous_id
    if distinct_id is None:
        raise DecodeError("missing_field", "distinct_id is required", field="distinct_id")
    event = as_str(obj.get("event"), "event") if kind is EventKind.TRACK else None
    check_kind_fields(kind, event, other_id)
    traits = opt_object(obj.get("traits"), "traits") if kind is EventKind.IDENTIFY else None
    properties = opt_object(obj.get("properties"), "properties")
    check_values(traits, "traits")
    check_values(properties, "properties")
    timestamp_ms, ignored, warnings = event_time(obj.get("timestamp"), received_at_ms, "timestamp")
    tenant = require_tenant(first_tenant(obj, tenant_fields), tenant_fallback, tenant_fields)
    raw_uuid = obj.get("uuid")
    return InputEvent(
        tenant=tenant_with_environment(tenant, opt_str(obj.get("environment"), "environment")),
        kind=kind,
        uuid=derive_uuid(source_ref) if raw_uuid is None else as_uuid(raw_uuid, "uuid"),
        distinct_id=distinct_id,
        event=event,
        timestamp_ms=timestamp_ms,
        sent_at_ms=None if warnings else opt_timestamp_ms(obj.get("sent_at"), "sent_at"),
        other_id=other_id,
        merge_dangerously=False,
        process_person=True,
        is_backend=False,
        properties=properties if properties is not None else {},
        updates=property_updates(traits, None, ()),
        raw_format="json",
        ignored_timestamp=ignored,
        warnings=warnings,
    )
