"""Schematic payloads: ``identify``, ``upsert_user`` and ``track``.

A payload is either the event API's envelope (``{"event_type" or "type": ..., "body": {...}}``)
or a body alone (an identify / ``upsert_user`` call: ``keys``, ``traits``, ``name``,
``company``; a track: ``event``, ``user`` (the user's keys), ``company``, ``traits``,
``quantity``).

Keys: each named key of a user becomes the distinct id ``user:<name>:<value>`` (a company key
would be ``company:<name>:<value>``, so ``id=1`` of a user never meets ``id=1`` of a company).
The keys are taken in the order of their names (a stable order, whatever the producer's), and
every key of one call names the same person:

- identify / upsert_user: the event's distinct id is the first key, its other id the second
  (identify merges it), and each further key is merged by a derived identify (``derived``:
  resolved, warned and overridden like any event, but it writes no enriched event). ``traits``
  and ``name`` → ``$set``.
- track: the distinct id is the first key of ``user`` (or ``keys``); no merge. ``traits`` are
  the event's properties.

Companies are groups of type ``company`` (contract A9, docs/IDENTITY.md "Groups"), keyed by the
company's first key in the order of the key names, as ``company:<name>:<value>`` (so a group key
never reads like a user's distinct id ``user:<name>:<value>``):

- identify / upsert_user with ``company: {keys, name, traits}``: the company is attached to the
  event **and remembered** on the person (every later event of the person carries it);
  ``traits`` and ``name`` → the group's ``$set``. The derived identifies carry no group.
- track with ``company`` (Schematic sends the company's key map; ``{keys, name, traits}`` is read
  too): attached to this event only; a ``name`` / ``traits`` also update the group.
- ``upsert_company`` / ``company`` (the envelope's type; the body is ``{keys, name, traits}``):
  a group-only event, like PostHog's ``$groupidentify``: a personless track named after the
  call whose distinct id is the company's group key (it never meets a user's id, so it never
  gets a person), attached to the company, ``traits`` and ``name`` → its ``$set``.

``company`` (and a track's ``quantity``) are also carried unchanged in the event's properties.
The event time is ``timestamp``, else ``sent_at`` (without either, the Kafka timestamp, warned).
The uuid derives from ``idempotency_key`` when there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from worker.codec.envelope import InputEvent
from worker.codec.errors import DecodeError
from worker.codec.fields import (
    as_id,
    as_object,
    as_str,
    check_values,
    derive_uuid,
    event_time,
    first_tenant,
    opt_object,
    opt_str,
    opt_timestamp_ms,
    property_updates,
    require_tenant,
)
from worker.codec.groups import schematic_company
from worker.identity.model import EventKind, GroupInput, JsonValue, PropertyUpdates

DEFAULT_TENANT_FIELDS: Final = ("tenant", "api_key", "environment_id")
USER: Final = "user"
COMPANY: Final = "company"
_IDENTIFY_TYPES: Final = frozenset({"identify", "upsert_user"})
_COMPANY_TYPES: Final = frozenset({"company", "upsert_company"})
_CARRIED: Final = ("company", "quantity")


def key_id(entity: str, name: str, value: str) -> str:
    """The distinct id of one key: ``<entity>:<name>:<value>``."""
    return f"{entity}:{name}:{value}"


def user_ids(keys: Any, field: str) -> list[str]:
    """The distinct ids of a user's keys, in the order of the key names."""
    mapping = as_object(keys, field)
    ids = [
        key_id(USER, name, as_id(mapping[name], f"{field}.{name[:40]}")) for name in sorted(mapping)
    ]
    if not ids:
        raise DecodeError("missing_field", f"{field} must name at least one key", field=field)
    return ids


def company_key(keys: Any, field: str) -> str:
    """The group key of a company's keys: ``company:<name>:<value>`` of the first key name."""
    mapping = as_object(keys, field)
    ids = [
        key_id(COMPANY, name, as_id(mapping[name], f"{field}.{name[:40]}"))
        for name in sorted(mapping)
    ]
    if not ids:
        raise DecodeError("missing_field", f"{field} must name at least one key", field=field)
    return ids[0]


def company_group(company: Any, field: str, *, remember: bool) -> GroupInput:
    """The group of a company: ``{keys, name, traits}`` (``keys`` an object), else a bare key
    map (a track's); attached, remembered when ``remember``."""
    obj = as_object(company, field)
    if not isinstance(obj.get("keys"), dict):
        return GroupInput(COMPANY, company_key(obj, field), remember=remember)
    name = opt_str(obj.get("name"), f"{field}.name")
    traits = opt_object(obj.get("traits"), f"{field}.traits")
    check_values(traits, f"{field}.traits")
    group = schematic_company(COMPANY, company_key(obj["keys"], f"{field}.keys"), name, traits)
    return group if remember else replace(group, remember=False)


def is_schematic(obj: Mapping[str, Any]) -> bool:
    """A body with ``keys`` (identify) or with ``event`` and a ``user`` object (track), or the
    event API's envelope with a ``body``."""
    if isinstance(obj.get("keys"), dict) or isinstance(obj.get("body"), dict):
        return True
    return "event" in obj and isinstance(obj.get("user"), dict)


def _call(obj: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """``(type, body)`` of a payload."""
    body = obj.get("body")
    if isinstance(body, dict):
        type_name = opt_str(obj.get("event_type"), "event_type") or as_str(obj.get("type"), "type")
        return type_name, body
    return ("track" if "event" in obj else "identify"), obj


def decode_schematic(
    obj: Mapping[str, Any],
    *,
    source_ref: str,
    tenant_fields: tuple[str, ...],
    tenant_fallback: str | None,
    received_at_ms: int | None,
) -> list[InputEvent]:
    """The call's event, then the derived identify events of its further keys."""
    type_name, body = _call(obj)
    carried: dict[str, JsonValue] = {key: body[key] for key in _CARRIED if key in body}
    company = body.get("company")
    groups: tuple[GroupInput, ...] = ()
    process_person = True
    if type_name in _IDENTIFY_TYPES:
        kind, event = EventKind.IDENTIFY, None
        ids = user_ids(body.get("keys"), "keys")
        traits = dict(opt_object(body.get("traits"), "traits") or {})
        name = opt_str(body.get("name"), "name")
        if name is not None:
            traits["name"] = name
        updates, properties = property_updates(traits, None, ()), carried
        if company is not None:
            groups = (company_group(company, "company", remember=True),)
    elif type_name == "track":
        kind, event = EventKind.TRACK, as_str(body.get("event"), "event")
        field = "user" if "user" in body else "keys"
        ids = user_ids(body.get(field), field)
        traits = {}
        properties = {**(opt_object(body.get("traits"), "traits") or {}), **carried}
        updates = PropertyUpdates()
        if company is not None:
            groups = (company_group(company, "company", remember=False),)
    elif type_name in _COMPANY_TYPES:
        kind, event, process_person = EventKind.TRACK, type_name, False
        if body.get("keys") is None:  # the body is the company: {keys, name, traits}
            raise DecodeError("missing_field", "body.keys is required", field="body.keys")
        as_object(body["keys"], "body.keys")
        group = company_group(body, "body", remember=False)
        ids, traits, properties, updates = [group.key], {}, {}, PropertyUpdates()
        groups = (group,)
    else:
        raise DecodeError(
            "unknown_event_type", f"unsupported Schematic call {type_name[:40]!r}", field="type"
        )
    check_values(traits, "traits")
    check_values(properties, "properties")
    timestamp = body.get("timestamp", obj.get("timestamp"))
    sent_at = opt_timestamp_ms(obj.get("sent_at"), "sent_at")
    if timestamp is None and sent_at is not None:
        timestamp, sent_at = sent_at, None  # the send time is the event time
    timestamp_ms, ignored, warnings = event_time(timestamp, received_at_ms, "timestamp")
    idempotency_key = opt_str(obj.get("idempotency_key"), "idempotency_key")
    uuid = derive_uuid(f"schematic:{idempotency_key}" if idempotency_key else source_ref)
    first = InputEvent(
        tenant=require_tenant(first_tenant(obj, tenant_fields), tenant_fallback, tenant_fields),
        kind=kind,
        uuid=uuid,
        distinct_id=ids[0],
        event=event,
        timestamp_ms=timestamp_ms,
        sent_at_ms=sent_at,
        other_id=ids[1] if kind is EventKind.IDENTIFY and len(ids) > 1 else None,
        merge_dangerously=False,
        process_person=process_person,
        is_backend=False,
        properties=properties,
        updates=updates,
        raw_format="json",
        ignored_timestamp=ignored,
        warnings=warnings,
        groups=groups,
    )
    if kind is not EventKind.IDENTIFY:
        return [first]
    return [
        first,
        *(
            replace(
                first,
                uuid=derive_uuid(f"{uuid}#{other}"),
                other_id=other,
                properties={},
                updates=PropertyUpdates(),
                ignored_timestamp=None,
                warnings=(),
                derived=True,
                groups=(),
            )
            for other in ids[2:]
        ),
    ]
