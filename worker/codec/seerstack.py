"""SeerStack payloads: ``users.identify`` and the events (logs) that carry a ``user_id``.

identify (no ``event``/``message``): distinct id = ``user_id`` (required); ``email`` or ``name``
is required (SeerStack's own rule: else a ``missing_field`` naming both); ``attributes``, then
``email`` and ``name``, become ``$set`` key by key, so each call merges into the earlier ones.
An event or log (``event`` or ``message`` present) is a track of ``user_id``, named ``event``
(``"log"`` for a log without one); its other fields are its properties, enriched with the
user's traits like any event. ``timestamp`` is the event time (without one, the Kafka
timestamp, warned).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from worker.codec.envelope import InputEvent
from worker.codec.errors import DecodeError
from worker.codec.fields import (
    as_id,
    check_values,
    derive_uuid,
    event_time,
    first_tenant,
    opt_object,
    opt_str,
    property_updates,
    require_tenant,
)
from worker.identity.model import EventKind, JsonValue

DEFAULT_TENANT_FIELDS: Final = ("tenant", "api_key")
LOG_EVENT: Final = "log"
_NOT_PROPERTIES: Final = frozenset({"user_id", "event", "timestamp", "tenant", "api_key"})


def is_event(obj: Mapping[str, Any]) -> bool:
    """An event or log rather than ``users.identify``."""
    return "event" in obj or "message" in obj


def _traits(obj: Mapping[str, Any]) -> dict[str, JsonValue]:
    email = opt_str(obj.get("email"), "email")
    name = opt_str(obj.get("name"), "name")
    if not email and not name:
        raise DecodeError(
            "missing_field",
            "SeerStack users.identify needs email or name; neither is set",
            field="email,name",
        )
    traits: dict[str, JsonValue] = dict(opt_object(obj.get("attributes"), "attributes") or {})
    if email:
        traits["email"] = email
    if name:
        traits["name"] = name
    return traits


def decode_seerstack(
    obj: Mapping[str, Any],
    *,
    source_ref: str,
    tenant_fields: tuple[str, ...],
    tenant_fallback: str | None,
    received_at_ms: int | None,
) -> InputEvent:
    user_id = as_id(obj.get("user_id"), "user_id")
    if is_event(obj):
        kind = EventKind.TRACK
        event: str | None = opt_str(obj.get("event"), "event") or LOG_EVENT
        properties: dict[str, JsonValue] = {
            key: value for key, value in obj.items() if key not in _NOT_PROPERTIES
        }
        traits = None
    else:
        kind, event, properties = EventKind.IDENTIFY, None, {}
        traits = _traits(obj)
    check_values(traits, "attributes")
    check_values(properties, "properties")
    timestamp_ms, ignored, warnings = event_time(obj.get("timestamp"), received_at_ms, "timestamp")
    return InputEvent(
        tenant=require_tenant(first_tenant(obj, tenant_fields), tenant_fallback, tenant_fields),
        kind=kind,
        uuid=derive_uuid(source_ref),
        distinct_id=user_id,
        event=event,
        timestamp_ms=timestamp_ms,
        sent_at_ms=None,
        other_id=None,
        merge_dangerously=False,
        process_person=True,
        is_backend=False,
        properties=properties,
        updates=property_updates(traits, None, ()),
        raw_format="json",
        ignored_timestamp=ignored,
        warnings=warnings,
    )
