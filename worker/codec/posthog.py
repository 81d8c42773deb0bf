"""PostHog capture events, as the PostHog SDKs send them.

``$identify`` → identify (other id: ``properties.$anon_distinct_id``); ``$create_alias`` → alias
(other id: ``properties.alias``); ``$merge_dangerously`` → alias with ``merge_dangerously``;
any other event → track. Top-level ``$set`` / ``$set_once`` are folded into ``properties`` the
way PostHog's ``normalizeEvent`` does (the top-level value wins per key), then the updates are
read from ``properties.$set`` / ``$set_once`` / ``$unset``. ``$process_person_profile`` is false
only when it is literally ``false`` (as in PostHog). An event is backend when
``properties.$lib`` names a server-side SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from worker.codec.envelope import InputEvent, check_kind_fields
from worker.codec.errors import DecodeError
from worker.codec.fields import (
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    as_id,
    as_object,
    as_str,
    as_uuid,
    check_values,
    derive_uuid,
    first_tenant,
    opt_id,
    opt_object,
    opt_timestamp_ms,
    property_updates,
    require_tenant,
    timestamp_or_ignored,
    unset_keys,
)
from worker.codec.groups import GROUPIDENTIFY_EVENT, posthog_groups
from worker.identity.model import EventKind, JsonValue

DEFAULT_BACKEND_LIBS: Final = frozenset(
    {
        "posthog-python",
        "posthog-node",
        "posthog-ruby",
        "posthog-go",
        "posthog-php",
        "posthog-java",
        "posthog-rs",
        "posthog-dotnet",
        "posthog-elixir",
    }
)
DEFAULT_TENANT_FIELDS: Final = ("team_id", "token", "api_key", "properties.token")

IDENTIFY_EVENT: Final = "$identify"
CREATE_ALIAS_EVENT: Final = "$create_alias"
MERGE_DANGEROUSLY_EVENT: Final = "$merge_dangerously"
SPECIAL_EVENTS: Final = frozenset({IDENTIFY_EVENT, CREATE_ALIAS_EVENT, MERGE_DANGEROUSLY_EVENT})
_FOLDED_KEYS: Final = ("$set", "$set_once")


def _properties(obj: Mapping[str, Any]) -> dict[str, JsonValue]:
    raw = opt_object(obj.get("properties"), "properties")
    properties: dict[str, JsonValue] = dict(raw) if raw else {}
    for key in _FOLDED_KEYS:
        top = opt_object(obj.get(key), key)
        if top is not None:
            inner = opt_object(properties.get(key), f"properties.{key}") or {}
            properties[key] = {**inner, **top}
    return properties


def _distinct_id(obj: Mapping[str, Any], properties: Mapping[str, JsonValue]) -> str:
    for field, value in (
        ("distinct_id", obj.get("distinct_id")),
        ("$distinct_id", obj.get("$distinct_id")),
        ("properties.distinct_id", properties.get("distinct_id")),
    ):
        if value is not None:
            return as_id(value, field)
    raise DecodeError("missing_field", "distinct_id is required", field="distinct_id")


def _timestamp_ms(obj: Mapping[str, Any], received_at_ms: int | None) -> tuple[int, str | None]:
    """``timestamp``; without one, PostHog's ``now - offset`` with the message's receive time.

    A malformed or out-of-range timestamp or offset gives the receive time and the reason it
    was ignored (``fields.timestamp_or_ignored``)."""
    timestamp = obj.get("timestamp")
    if timestamp is not None or received_at_ms is None:
        return timestamp_or_ignored(timestamp, received_at_ms, "timestamp")
    offset = obj.get("offset")
    if offset is None:
        return received_at_ms, None
    if isinstance(offset, bool) or not isinstance(offset, int):
        return received_at_ms, "offset must be an integer of ms"
    if not MIN_TIMESTAMP_MS <= received_at_ms - offset <= MAX_TIMESTAMP_MS:
        return received_at_ms, f"offset is out of range: {str(offset)[:40]}"
    return received_at_ms - offset, None


def _is_backend(lib: JsonValue, backend_libs: frozenset[str]) -> bool:
    return isinstance(lib, str) and lib in backend_libs


def decode_posthog(
    obj: Mapping[str, Any],
    *,
    source_ref: str,
    tenant_fields: tuple[str, ...],
    tenant_fallback: str | None,
    backend_libs: frozenset[str],
    received_at_ms: int | None,
) -> InputEvent:
    event = as_str(obj.get("event"), "event")
    properties = _properties(obj)
    if event == IDENTIFY_EVENT:
        kind = EventKind.IDENTIFY
        other_id = opt_id(properties.get("$anon_distinct_id"), "properties.$anon_distinct_id")
    elif event in (CREATE_ALIAS_EVENT, MERGE_DANGEROUSLY_EVENT):
        kind = EventKind.ALIAS
        other_id = opt_id(properties.get("alias"), "properties.alias")
    else:
        kind = EventKind.TRACK
        other_id = None
    check_kind_fields(kind, event, other_id)
    check_values(properties, "properties")
    timestamp_ms, ignored = _timestamp_ms(obj, received_at_ms)
    set_ = properties.get("$set")
    set_once = properties.get("$set_once")
    raw_uuid = obj.get("uuid")
    return InputEvent(
        tenant=require_tenant(first_tenant(obj, tenant_fields), tenant_fallback, tenant_fields),
        kind=kind,
        uuid=derive_uuid(source_ref) if raw_uuid is None else as_uuid(raw_uuid, "uuid"),
        distinct_id=_distinct_id(obj, properties),
        event=event,
        timestamp_ms=timestamp_ms,
        sent_at_ms=opt_timestamp_ms(obj.get("sent_at"), "sent_at"),
        other_id=other_id,
        merge_dangerously=event == MERGE_DANGEROUSLY_EVENT,
        process_person=properties.get("$process_person_profile") is not False
        and event != GROUPIDENTIFY_EVENT,
        is_backend=_is_backend(properties.get("$lib"), backend_libs),
        properties=properties,
        updates=property_updates(
            None if set_ is None else as_object(set_, "properties.$set"),
            None if set_once is None else as_object(set_once, "properties.$set_once"),
            unset_keys(properties.get("$unset"), "properties.$unset"),
        ),
        raw_format="json",
        ignored_timestamp=ignored,
        groups=posthog_groups(event, properties),
    )
