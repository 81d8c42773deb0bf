"""JSON input: our own shape, PostHog capture events and Segment spec calls.

The dialect is configured (``JsonDialect``) or, with ``"auto"``, detected per message:

1. ``userId``, ``anonymousId`` or ``previousId`` present → Segment;
2. ``type`` is ``track``/``identify``/``alias`` and either ``tenant`` is present or ``event`` is
   not one of PostHog's ``$identify``/``$create_alias``/``$merge_dangerously`` → ours (the
   PostHog SDKs send ``type: "capture"``, or ``type: "identify"`` with ``event: "$identify"``);
3. ``event`` present → PostHog;
4. otherwise ``unknown_format``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from worker.codec import native, posthog, segment
from worker.codec.envelope import InputEvent
from worker.codec.errors import DecodeError
from worker.codec.fields import loads_json
from worker.codec.groups import DEFAULT_SEGMENT_GROUP_TYPE

JsonDialect = Literal["auto", "native", "posthog", "segment"]
JSON_DIALECTS: Final[tuple[JsonDialect, ...]] = get_args(JsonDialect)

DEFAULT_NATIVE_TENANT_FIELDS: Final = ("tenant", "team_id")
_NATIVE_TYPES: Final = frozenset({"track", "identify", "alias"})


@dataclass(frozen=True, slots=True)
class JsonOptions:
    """How JSON messages are read.

    Tenant: the first non-empty field of the dialect's list (tried in order, ``a.b`` = nested),
    else the message key's prefix (``tenant_fallback`` of ``decode_json``), else
    ``default_tenant``, else ``missing_field``. ``tenant_fields``, when set, replaces the three
    per-dialect lists.
    """

    dialect: JsonDialect = "auto"
    native_tenant_fields: tuple[str, ...] = DEFAULT_NATIVE_TENANT_FIELDS
    posthog_tenant_fields: tuple[str, ...] = posthog.DEFAULT_TENANT_FIELDS
    segment_tenant_fields: tuple[str, ...] = segment.DEFAULT_TENANT_FIELDS
    tenant_fields: tuple[str, ...] | None = None
    default_tenant: str | None = None
    posthog_backend_libs: frozenset[str] = field(default=posthog.DEFAULT_BACKEND_LIBS)
    segment_backend_libs: frozenset[str] = field(default=segment.DEFAULT_BACKEND_LIBS)
    segment_group_type: str = DEFAULT_SEGMENT_GROUP_TYPE
    """The group type of a Segment ``group`` call (``formats.segment_group_type``)."""


def detect_dialect(obj: Mapping[str, Any]) -> JsonDialect:
    """The dialect of one JSON object (rules in the module docstring)."""
    if any(key in obj for key in segment.ID_FIELDS):
        return "segment"
    type_name = obj.get("type")
    if isinstance(type_name, str) and type_name in _NATIVE_TYPES:
        event = obj.get("event")
        if "tenant" in obj or not (isinstance(event, str) and event in posthog.SPECIAL_EVENTS):
            return "native"
    if "event" in obj:
        return "posthog"
    raise DecodeError(
        "unknown_format", "JSON object is neither our event, a PostHog event nor a Segment call"
    )


def decode_json(
    data: bytes,
    *,
    source_ref: str,
    options: JsonOptions,
    tenant_fallback: str | None = None,
    received_at_ms: int | None = None,
    dialect: JsonDialect | None = None,
) -> InputEvent:
    """Decode one JSON event. ``dialect`` overrides ``options.dialect`` (e.g. from a header);
    ``received_at_ms`` stands in for a missing timestamp."""
    obj = loads_json(data, reason="json_invalid")
    if not isinstance(obj, dict):
        raise DecodeError("json_invalid", f"expected a JSON object, got {type(obj).__name__}")
    chosen = dialect or options.dialect
    if chosen == "auto":
        chosen = detect_dialect(obj)
    fallback = tenant_fallback or options.default_tenant
    shared = options.tenant_fields
    if chosen == "native":
        return native.from_json_object(
            obj,
            source_ref=source_ref,
            tenant_fields=shared or options.native_tenant_fields,
            tenant_fallback=fallback,
            received_at_ms=received_at_ms,
        )
    if chosen == "posthog":
        return posthog.decode_posthog(
            obj,
            source_ref=source_ref,
            tenant_fields=shared or options.posthog_tenant_fields,
            tenant_fallback=fallback,
            backend_libs=options.posthog_backend_libs,
            received_at_ms=received_at_ms,
        )
    return segment.decode_segment(
        obj,
        source_ref=source_ref,
        tenant_fields=shared or options.segment_tenant_fields,
        tenant_fallback=fallback,
        backend_libs=options.segment_backend_libs,
        received_at_ms=received_at_ms,
        group_type=options.segment_group_type,
    )
