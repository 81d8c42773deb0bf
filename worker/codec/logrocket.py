"""LogRocket user updates (``userID``, ``name``, ``email``, ``traits``, ``timestamp``).

distinct id = ``userID``. LogRocket's own rules, applied here:

- the traits present are set (``$set``), the traits absent are kept; a trait (or ``name`` /
  ``email``) set to a blank value (``null``, or a string of white space only) is removed
  (``$unset``);
- integer, float and boolean trait values are stored as strings, as LogRocket returns them
  (``43`` → ``"43"``, ``true`` → ``"true"``); a list or object value is refused;
- every string key and value is at most 1,024 characters: a longer one refuses the whole update
  (``value_out_of_range``) with LogRocket's own message, e.g.
  ``"user trait value too large (max 1024 characters)"``.

LogRocket has no server-side event payload: events of a LogRocket user arrive in another dialect
under the same distinct id. ``timestamp`` is the event time (without one, the Kafka timestamp,
warned).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from worker.codec.envelope import InputEvent
from worker.codec.errors import DecodeError
from worker.codec.fields import (
    as_id,
    derive_uuid,
    event_time,
    first_tenant,
    opt_object,
    property_updates,
    require_tenant,
)
from worker.identity.model import EventKind, JsonValue

DEFAULT_TENANT_FIELDS: Final = ("tenant", "appID", "app_id")
MAX_CHARS: Final = 1024
_TOP_LEVEL: Final = ("name", "email")


def _too_large(what: str, field: str) -> DecodeError:
    return DecodeError(
        "value_out_of_range", f"{what} too large (max {MAX_CHARS} characters)", field=field
    )


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_string(value: Any, field: str) -> str:
    """A trait value as LogRocket stores it: a string."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise DecodeError(
            "invalid_field", f"{field} must be a string, a number or a boolean", field=field
        )
    if len(text) > MAX_CHARS:
        raise _too_large("user trait value", field)
    return text


def _updates(obj: Mapping[str, Any]) -> tuple[dict[str, JsonValue], tuple[str, ...]]:
    to_set: dict[str, JsonValue] = {}
    unset: list[str] = []
    for name in _TOP_LEVEL:
        if name not in obj:
            continue
        value = obj[name]
        if _is_blank(value):
            unset.append(name)
        elif not isinstance(value, str):
            raise DecodeError("invalid_field", f"{name} must be a string", field=name)
        elif len(value) > MAX_CHARS:
            raise _too_large(name, name)
        else:
            to_set[name] = value
    for key, value in (opt_object(obj.get("traits"), "traits") or {}).items():
        if len(key) > MAX_CHARS:
            raise _too_large("user trait key", "traits")
        if _is_blank(value):
            unset.append(key)
        else:
            to_set[key] = _as_string(value, f"traits.{key[:40]}")
    return to_set, tuple(unset)


def decode_logrocket(
    obj: Mapping[str, Any],
    *,
    source_ref: str,
    tenant_fields: tuple[str, ...],
    tenant_fallback: str | None,
    received_at_ms: int | None,
) -> InputEvent:
    user_id = as_id(obj.get("userID"), "userID")
    if len(user_id) > MAX_CHARS:
        raise _too_large("userID", "userID")
    to_set, unset = _updates(obj)
    timestamp_ms, ignored, warnings = event_time(obj.get("timestamp"), received_at_ms, "timestamp")
    return InputEvent(
        tenant=require_tenant(first_tenant(obj, tenant_fields), tenant_fallback, tenant_fields),
        kind=EventKind.IDENTIFY,
        uuid=derive_uuid(source_ref),
        distinct_id=user_id,
        event=None,
        timestamp_ms=timestamp_ms,
        sent_at_ms=None,
        other_id=None,
        merge_dangerously=False,
        process_person=True,
        is_backend=False,
        properties={},
        updates=property_updates(to_set, None, unset),
        raw_format="json",
        ignored_timestamp=ignored,
        warnings=warnings,
    )
