"""PostHog capture events, as the PostHog SDKs send them.

``$identify`` → identify (other id: ``properties.$anon_distinct_id``); ``$create_alias`` → alias
(other id: ``properties.alias``); ``$merge_dangerously`` → alias with ``merge_dangerously``;
any other event → track. Top-level ``$set`` / ``$set_once`` are folded into ``properties`` the
way PostHog's ``normalizeEvent`` does (the top-level value wins per key), then the updates are
read from ``properties.$set`` / ``$set_once`` / ``$unset``. ``$process_person_profile`` is false
only when it is literally ``false`` (as in PostHog); any other non-boolean value warns
``invalid_process_person_profile`` and counts as true. With it false, ``$groupidentify`` is
read as a person event too, so the rules drop it (warning
``invalid_event_when_process_person_profile_is_false``) like ``$identify``, ``$create_alias``
and ``$merge_dangerously``; otherwise it is a personless track that updates its group
(``worker.codec.groups``). ``properties.$groups`` attach any other event to its groups. An
event is backend when ``properties.$lib`` names a server-side SDK.

PostHog's person-property normalisation: each property named in ``person_properties`` (PostHog's
``eventToPersonProperties``) also sets the person's current value (``$set``) and, as
``$initial_<name without $>`` (``initialEventToPersonProperties``), its first value
(``$set_once``); the event's own ``$set`` / ``$set_once`` keys win. ``NO_PERSON_UPDATE_EVENTS``
(``$exception``, ``$$heatmap``) never update person properties: their updates are dropped, their
properties carried unchanged.
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
from worker.codec.groups import posthog_groups
from worker.identity.model import EventKind, IdentityWarning, JsonValue, WarningKind

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
GROUP_IDENTIFY_EVENT: Final = "$groupidentify"
SPECIAL_EVENTS: Final = frozenset({IDENTIFY_EVENT, CREATE_ALIAS_EVENT, MERGE_DANGEROUSLY_EVENT})
NO_PERSON_UPDATE_EVENTS: Final = frozenset({"$exception", "$$heatmap"})
"""Events PostHog processes apart, so they never update person properties."""
PROCESS_PERSON_PROFILE: Final = "$process_person_profile"

CAMPAIGN_PROPERTIES: Final = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_name",
    "utm_term",
    "gclid",
    "gad_source",
    "gclsrc",
    "dclid",
    "gbraid",
    "wbraid",
    "fbclid",
    "msclkid",
    "twclid",
    "li_fat_id",
    "mc_cid",
    "igshid",
    "ttclid",
    "rdt_cid",
)
DEFAULT_PERSON_PROPERTIES: Final = (
    "$app_build",
    "$app_name",
    "$app_namespace",
    "$app_version",
    "$browser",
    "$browser_version",
    "$device_type",
    "$current_url",
    "$pathname",
    "$os",
    "$os_version",
    "$referring_domain",
    "$referrer",
    *CAMPAIGN_PROPERTIES,
)
"""PostHog's ``eventToPersonProperties``: event properties copied onto the person."""


def initial_name(name: str) -> str:
    """``$browser`` → ``$initial_browser``, ``utm_source`` → ``$initial_utm_source``."""
    return f"$initial_{name.removeprefix('$')}"


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


def _process_person(properties: Mapping[str, JsonValue]) -> tuple[bool, IdentityWarning | None]:
    """False only for a literal ``false``; another non-boolean value warns and counts as true."""
    value = properties.get(PROCESS_PERSON_PROFILE)
    if value is None or isinstance(value, bool):
        return value is not False, None
    kind = "object" if isinstance(value, dict | list) else type(value).__name__
    return True, IdentityWarning(WarningKind.INVALID_PROCESS_PERSON_PROFILE, {"value_type": kind})


def _person_updates(
    event: str, properties: Mapping[str, JsonValue], person_properties: tuple[str, ...]
) -> tuple[dict[str, JsonValue] | None, dict[str, JsonValue] | None, tuple[str, ...]]:
    """``($set, $set_once, $unset)`` of the event, normalised as PostHog does."""
    if event in NO_PERSON_UPDATE_EVENTS:
        return None, None, ()
    set_ = properties.get("$set")
    set_once = properties.get("$set_once")
    explicit_set = None if set_ is None else as_object(set_, "properties.$set")
    explicit_once = None if set_once is None else as_object(set_once, "properties.$set_once")
    derived_set: dict[str, JsonValue] = {}
    derived_once: dict[str, JsonValue] = {}
    for name in person_properties:
        if name in properties:
            derived_set[name] = properties[name]
            derived_once[initial_name(name)] = properties[name]
    if derived_set:
        explicit_set = {**derived_set, **(explicit_set or {})}
        explicit_once = {**derived_once, **(explicit_once or {})}
    return explicit_set, explicit_once, unset_keys(properties.get("$unset"), "properties.$unset")


def decode_posthog(
    obj: Mapping[str, Any],
    *,
    source_ref: str,
    tenant_fields: tuple[str, ...],
    tenant_fallback: str | None,
    backend_libs: frozenset[str],
    received_at_ms: int | None,
    person_properties: tuple[str, ...] = DEFAULT_PERSON_PROPERTIES,
) -> InputEvent:
    event = as_str(obj.get("event"), "event")
    properties = _properties(obj)
    process_person, warning = _process_person(properties)
    dropped = event == GROUP_IDENTIFY_EVENT and not process_person
    if dropped:
        kind = EventKind.IDENTIFY  # a person event: the rules drop it (module docstring)
        other_id = None
    elif event == IDENTIFY_EVENT:
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
    set_, set_once, unset = _person_updates(event, properties, person_properties)
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
        # a $groupidentify is personless: it updates its group only (docs/IDENTITY.md "Groups")
        process_person=process_person and event != GROUP_IDENTIFY_EVENT,
        is_backend=_is_backend(properties.get("$lib"), backend_libs),
        properties=properties,
        updates=property_updates(set_, set_once, unset),
        raw_format="json",
        ignored_timestamp=ignored,
        warnings=(warning,) if warning else (),
        groups=() if dropped else posthog_groups(event, properties),
    )
