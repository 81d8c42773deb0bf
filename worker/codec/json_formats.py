"""JSON input: our own shape, PostHog, Segment, Altertable, SeerStack, LogRocket and Schematic.

The dialect is named (a message header, the topic's setting, ``JsonOptions.dialect``) or, with
``"auto"``, detected per JSON object, first match wins:

1. ``data`` is a string and there is no ``event`` → PostHog (capture's ``RawEventMessage``);
2. ``userId``, ``anonymousId`` or ``previousId`` present → Segment;
3. ``userID`` present → LogRocket;
4. ``keys`` is an object, ``body`` is an object, or ``event`` beside a ``user`` object →
   Schematic;
5. ``environment`` present → Altertable;
6. ``type`` is ``track``/``identify``/``alias`` and either ``tenant`` is present or ``event`` is
   not one of PostHog's ``$identify``/``$create_alias``/``$merge_dangerously`` → ours (the
   PostHog SDKs send ``type: "capture"``, or ``type: "identify"`` with ``event: "$identify"``);
7. ``user_id`` present, and neither ``event`` nor ``distinct_id`` → SeerStack;
8. ``event`` present → PostHog;
9. otherwise ``unknown_format``.

A JSON array is a batch (Altertable sends them): each element is an event of the message, in
order, decoded on its own (its own dialect when detected, its own dead letter when bad). An
element without a uuid derives one from ``<message position>#<index>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from worker.codec import (
    altertable,
    logrocket,
    native,
    posthog,
    posthog_capture,
    schematic,
    seerstack,
    segment,
)
from worker.codec.envelope import InputEvent
from worker.codec.errors import DecodeError
from worker.codec.fields import loads_json
from worker.codec.groups import DEFAULT_SEGMENT_GROUP_TYPE, check_group_load

JsonDialect = Literal[
    "auto", "native", "posthog", "segment", "altertable", "seerstack", "logrocket", "schematic"
]
JSON_DIALECTS: Final[tuple[JsonDialect, ...]] = get_args(JsonDialect)

DEFAULT_NATIVE_TENANT_FIELDS: Final = ("tenant", "team_id")
_NATIVE_TYPES: Final = frozenset({"track", "identify", "alias"})

DecodedItem = InputEvent | DecodeError
"""One event of a message, or why that event cannot be decoded."""


@dataclass(frozen=True, slots=True)
class JsonOptions:
    """How JSON messages are read.

    Tenant: the first non-empty field of the dialect's list (tried in order, ``a.b`` = nested),
    else the message key's prefix (``tenant_fallback`` of ``decode_json``), else
    ``default_tenant``, else ``missing_field``. ``tenant_fields``, when set, replaces the
    per-dialect lists. ``posthog_person_properties``: the event properties PostHog copies onto
    the person (``eventToPersonProperties``); empty turns the normalisation off.
    """

    dialect: JsonDialect = "auto"
    native_tenant_fields: tuple[str, ...] = DEFAULT_NATIVE_TENANT_FIELDS
    posthog_tenant_fields: tuple[str, ...] = posthog.DEFAULT_TENANT_FIELDS
    segment_tenant_fields: tuple[str, ...] = segment.DEFAULT_TENANT_FIELDS
    tenant_fields: tuple[str, ...] | None = None
    default_tenant: str | None = None
    posthog_backend_libs: frozenset[str] = field(default=posthog.DEFAULT_BACKEND_LIBS)
    segment_backend_libs: frozenset[str] = field(default=segment.DEFAULT_BACKEND_LIBS)
    posthog_person_properties: tuple[str, ...] = posthog.DEFAULT_PERSON_PROPERTIES
    segment_group_type: str = DEFAULT_SEGMENT_GROUP_TYPE
    """The group type of a Segment ``group`` call (``formats.segment_group_type``)."""


def detect_dialect(obj: Mapping[str, Any]) -> JsonDialect:
    """The dialect of one JSON object (rules in the module docstring)."""
    if posthog_capture.is_capture_envelope(obj):
        return "posthog"
    for key in segment.ID_FIELDS:
        if key in obj:
            return "segment"
    if "userID" in obj:
        return "logrocket"
    if schematic.is_schematic(obj):
        return "schematic"
    if "environment" in obj:
        return "altertable"
    type_name = obj.get("type")
    if isinstance(type_name, str) and type_name in _NATIVE_TYPES:
        event = obj.get("event")
        if "tenant" in obj or not (isinstance(event, str) and event in posthog.SPECIAL_EVENTS):
            return "native"
    if "user_id" in obj and "event" not in obj and "distinct_id" not in obj:
        return "seerstack"
    if "event" in obj:
        return "posthog"
    raise DecodeError(
        "unknown_format",
        "JSON object is none of our event, PostHog, Segment, Altertable, SeerStack, LogRocket "
        "or Schematic",
    )


def _decode_object(
    obj: Any,
    *,
    source_ref: str,
    options: JsonOptions,
    fallback: str | None,
    received_at_ms: int | None,
    dialect: JsonDialect,
) -> list[InputEvent]:
    """The events of one JSON object, each within the group load (``check_group_load``)."""
    events = _decode_events(
        obj,
        source_ref=source_ref,
        options=options,
        fallback=fallback,
        received_at_ms=received_at_ms,
        dialect=dialect,
    )
    return [check_group_load(e) for e in events]


def _decode_events(
    obj: Any,
    *,
    source_ref: str,
    options: JsonOptions,
    fallback: str | None,
    received_at_ms: int | None,
    dialect: JsonDialect,
) -> list[InputEvent]:
    if not isinstance(obj, dict):
        raise DecodeError("json_invalid", f"expected a JSON object, got {type(obj).__name__}")
    chosen = detect_dialect(obj) if dialect == "auto" else dialect
    shared = options.tenant_fields
    if chosen == "posthog":
        if posthog_capture.is_capture_envelope(obj):
            obj, received_at_ms = posthog_capture.unwrap(obj, received_at_ms)
        return [
            posthog.decode_posthog(
                obj,
                source_ref=source_ref,
                tenant_fields=shared or options.posthog_tenant_fields,
                tenant_fallback=fallback,
                backend_libs=options.posthog_backend_libs,
                received_at_ms=received_at_ms,
                person_properties=options.posthog_person_properties,
            )
        ]
    if chosen == "native":
        return [
            native.from_json_object(
                obj,
                source_ref=source_ref,
                tenant_fields=shared or options.native_tenant_fields,
                tenant_fallback=fallback,
                received_at_ms=received_at_ms,
            )
        ]
    if chosen == "segment":
        return [
            segment.decode_segment(
                obj,
                source_ref=source_ref,
                tenant_fields=shared or options.segment_tenant_fields,
                tenant_fallback=fallback,
                backend_libs=options.segment_backend_libs,
                received_at_ms=received_at_ms,
                group_type=options.segment_group_type,
            )
        ]
    if chosen == "schematic":
        return schematic.decode_schematic(
            obj,
            source_ref=source_ref,
            tenant_fields=shared or schematic.DEFAULT_TENANT_FIELDS,
            tenant_fallback=fallback,
            received_at_ms=received_at_ms,
        )
    decoder = {
        "altertable": (altertable.decode_altertable, altertable.DEFAULT_TENANT_FIELDS),
        "seerstack": (seerstack.decode_seerstack, seerstack.DEFAULT_TENANT_FIELDS),
        "logrocket": (logrocket.decode_logrocket, logrocket.DEFAULT_TENANT_FIELDS),
    }
    decode, fields = decoder[chosen]
    return [
        decode(
            obj,
            source_ref=source_ref,
            tenant_fields=shared or fields,
            tenant_fallback=fallback,
            received_at_ms=received_at_ms,
        )
    ]


def decode_json(
    data: bytes,
    *,
    source_ref: str,
    options: JsonOptions,
    tenant_fallback: str | None = None,
    received_at_ms: int | None = None,
    dialect: JsonDialect | None = None,
) -> list[DecodedItem]:
    """The events of one JSON message, in order: one for an object (raises ``DecodeError`` when
    it is bad); one item per element for an array (a bad element is its ``DecodeError``, with
    ``index`` set). ``dialect`` overrides ``options.dialect`` (e.g. from a header);
    ``received_at_ms`` stands in for a missing timestamp."""
    value = loads_json(data, reason="json_invalid")
    chosen = dialect or options.dialect
    fallback = tenant_fallback or options.default_tenant
    if not isinstance(value, list):
        return list(
            _decode_object(
                value,
                source_ref=source_ref,
                options=options,
                fallback=fallback,
                received_at_ms=received_at_ms,
                dialect=chosen,
            )
        )
    if not value:
        raise DecodeError("missing_field", "the JSON array (a batch) holds no event")
    items: list[DecodedItem] = []
    for index, element in enumerate(value):
        try:
            items.extend(
                _decode_object(
                    element,
                    source_ref=f"{source_ref}#{index}",
                    options=options,
                    fallback=fallback,
                    received_at_ms=received_at_ms,
                    dialect=chosen,
                )
            )
        except DecodeError as exc:
            exc.index = index
            items.append(exc)
    return items
