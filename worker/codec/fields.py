"""Field validation shared by every input format: plain functions over decoded JSON values.

Each helper returns a clean value or raises ``DecodeError`` naming the field. Plain checks are
used instead of pydantic models: the shapes are small and vary by format, and the checks cost a
fraction of a model validation (see docs/FORMATS.md).
"""

from __future__ import annotations

import json
import math
import re
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn

import orjson

from worker.codec.errors import DecodeError, DecodeReason, EncodeError
from worker.identity.ids import uuid5_text
from worker.identity.model import (
    NO_UPDATES,
    IdentityWarning,
    JsonValue,
    PropertyUpdates,
    WarningKind,
)

EVENT_UUID_NAMESPACE: Final = uuid.UUID("6a3053f1-29a7-51d5-a234-8322e423c83d")
"""Namespace of the uuids derived for events that carry none (never random, A1)."""
_EVENT_UUID_NAMESPACE_BYTES: Final = EVENT_UUID_NAMESPACE.bytes

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)
MIN_TIMESTAMP_MS: Final = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_MS
MAX_TIMESTAMP_MS: Final = (
    datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH
) // _ONE_MS

MAX_SAFE_INTEGER: Final = (1 << 63) - 1
"""Largest magnitude of an integer property value: a signed 64-bit integer, what every JSON
consumer of the outputs (ClickHouse, Java, Go) can read back as a number."""
MAX_NESTING: Final = 64
"""Deepest nesting of objects and arrays inside one property map (the map itself is level 1)."""
MAX_OBJECT_KEYS: Final = 1_000
"""Most keys of one JSON object inside the properties and person property updates."""
MAX_PROPERTY_OPERATIONS: Final = 2_000
"""Most person property operations (``$set`` + ``$set_once`` keys + ``$unset`` keys) of one
event. The Redis script unpacks a buffered event's fields in one call (8 values + 3 per
operation) and Lua 5.1 unpacks at most about 8,000 values: 2,000 operations are 6,008 values."""

_MAX_FLOAT: Final = sys.float_info.max

_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def derive_uuid(name: str) -> str:
    """A deterministic event uuid: uuid5 of ``name`` in ``EVENT_UUID_NAMESPACE``."""
    return uuid5_text(_EVENT_UUID_NAMESPACE_BYTES, name)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)
"""One strict decoder: ``json.loads`` with keyword arguments builds a new one per call."""


_SURROGATE_ESCAPE_BYTES: Final = re.compile(rb"\\u[dD][89a-fA-F]")
_DIGITS_TO_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER: Final = b"0" * 19
_WALK: Final = not __file__.endswith(".py")
"""This module is an extension module (the compiled build): ``may_hold_long_integer`` walks
``orjson``'s value for a float before it searches the text."""


def loads_json(data: bytes | str, *, reason: DecodeReason, field: str | None = None) -> Any:
    """Parse UTF-8 JSON text strictly: no ``NaN``/``Infinity``, no lone surrogates (they could
    not be written back as UTF-8).

    ``orjson`` reads the common case. A text it refuses, or one it could read differently,
    goes through the standard library's strict decoder, which decides (and words the error)
    exactly as before: a surrogate escape (lone or paired: the standard path checks it) or a run
    of 19 digits or more (an integer beyond 64 bits, which ``orjson`` reads as a float where
    the checks at the door must see the integer; ``may_hold_long_integer``). Both paths give the
    same values or the same error.
    """
    try:
        raw = data if isinstance(data, bytes) else data.encode("utf-8")
    except UnicodeEncodeError:
        raw = None  # a lone surrogate in the text itself: the standard path words it
    if raw is not None and (b"\\" not in raw or _SURROGATE_ESCAPE_BYTES.search(raw) is None):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the standard path words the error (or reads 1e400 as infinity)
        else:
            if not may_hold_long_integer(raw, value):
                return value
    return _loads_standard(data, reason=reason, field=field)


def may_hold_long_integer(raw: bytes, value: object, *, walk: bool = _WALK) -> bool:
    """Whether the JSON text ``raw``, which ``orjson`` read as ``value``, may hold an integer
    beyond 64 bits (``orjson`` reads one as a float, the standard library as the integer): it
    has a run of 19 digits (in a string too). With ``walk``, the run is looked for only when
    ``value`` holds a float (without one, the text held no such integer).

    ``walk`` defaults to ``_WALK``, whether this module is compiled. Compiled, the walk is
    native code and costs less than the search it saves; interpreted, it is a Python call per
    value and costs more than the search, done in C (docs/BENCHMARKS.md, section 7). Either
    way, ``False`` means ``value`` is what the standard library reads
    (tests/unit/test_codec_json_paths.py holds both ways to it).
    """
    if walk and not may_hold_float(value):
        return False
    return _LONG_NUMBER in raw.translate(_DIGITS_TO_ZERO)


def may_hold_float(value: object, depth: int = 0) -> bool:
    """Whether the JSON value ``value`` (as ``orjson`` returns one: dict, list, str, int,
    float, bool, None) is or holds a float; ``True`` too past ``_WALK_DEPTH`` levels, where it
    stops walking (no recursion limit reached: the caller then looks at the text)."""
    if isinstance(value, dict):
        if depth >= _WALK_DEPTH:
            return True
        return any(may_hold_float(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        if depth >= _WALK_DEPTH:
            return True
        return any(may_hold_float(item, depth + 1) for item in value)
    return type(value) is float


_WALK_DEPTH: Final = 100


def _loads_standard(data: bytes | str, *, reason: DecodeReason, field: str | None) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        where = f" in {field}" if field else ""
        raise DecodeError(reason, f"invalid JSON{where}: {exc}", field=field) from exc
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DecodeError(
                reason, "JSON text holds a lone UTF-16 surrogate", field=field
            ) from exc
    return value


_ORJSON_OPTIONS: Final = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _plain_json(value: object) -> bool:
    """Whether ``value`` is made of plain JSON types only (dict, list, tuple, str, int, bool,
    None) and finite floats: what ``orjson`` writes as the standard library would (it would
    write ``NaN`` as ``null``, and enums or uuids as values, where the standard path refuses)."""
    kind = type(value)
    items: Any
    if kind is dict:
        items = value.values()  # type: ignore[attr-defined]
    elif kind is list or kind is tuple:
        items = value
    else:
        items = (value,)
    for item in items:
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is float:
            if item - item != 0.0:  # NaN and the infinities
                return False
        elif kind is dict or kind is list or kind is tuple:
            if item and not _plain_json(item):  # an empty one is plain
                return False
        else:
            return False
    return True


def dumps_json_bytes(value: object) -> bytes:
    """Compact UTF-8 JSON, non-ASCII kept as is (``dumps_json`` as bytes).

    ``orjson`` writes plain JSON values; anything else, and what it refuses (integers beyond 64
    bits, lone surrogates, keys that are not strings), takes the standard path, which decides
    as before. The two paths differ only in how a float is spelled (``1e-05`` and ``0.00001``):
    the same number.

    The result is an exact-size copy of ``orjson``'s: ``orjson`` writes into a buffer of 1 KiB
    or more and then shrinks it in place, so every result a batch holds on to keeps the rest of
    its buffer from the next call and grows the heap (measured: about 5 µs a record, where the
    copy costs 0.1).
    """
    if _plain_json(value):
        try:
            return bytes(memoryview(orjson.dumps(value, option=_ORJSON_OPTIONS)))
        except orjson.JSONEncodeError:
            pass
    return _dumps_standard(value).encode("utf-8")


def dumps_json(value: object) -> str:
    """Compact JSON text, non-ASCII kept as is."""
    if _plain_json(value):
        try:
            return orjson.dumps(value, option=_ORJSON_OPTIONS).decode("utf-8")
        except orjson.JSONEncodeError:
            pass
    return _dumps_standard(value)


def _dumps_standard(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError) as exc:
        raise EncodeError(f"not JSON-serialisable: {exc}") from exc


def _check_container(value: Mapping[str, Any] | list[Any], field: str, depth: int) -> None:
    if depth > MAX_NESTING:
        raise DecodeError(
            "nesting_too_deep", f"{field} nests deeper than {MAX_NESTING} levels", field=field
        )
    items: Any = value
    if not isinstance(value, list):
        if len(value) > MAX_OBJECT_KEYS:
            raise DecodeError(
                "too_many_properties",
                f"{field} has an object of {len(value)} keys (at most {MAX_OBJECT_KEYS})",
                field=field,
            )
        items = value.values()
    for item in items:
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                raise DecodeError(
                    "value_out_of_range", f"{field} holds an integer beyond 64 bits", field=field
                )
        elif kind is float:
            if not -_MAX_FLOAT <= item <= _MAX_FLOAT:  # false for infinities and NaN
                raise DecodeError(
                    "value_out_of_range", f"{field} holds a number that is not finite", field=field
                )
        elif kind is dict or kind is list:
            _check_container(item, field, depth + 1)
        else:
            raise DecodeError("invalid_field", f"{field} holds a {kind.__name__}", field=field)


def check_values(value: Mapping[str, JsonValue] | None, field: str) -> None:
    """Refuse what JSON can carry but the outputs cannot, in one pass over ``value``:
    non-finite numbers (``1e400`` parses as infinity), integers beyond 64 bits, nesting deeper
    than ``MAX_NESTING``, objects of more than ``MAX_OBJECT_KEYS`` keys."""
    if value:
        _check_container(value, field, 1)


def check_operation_count(updates: PropertyUpdates) -> PropertyUpdates:
    """Refuse an event with more than ``MAX_PROPERTY_OPERATIONS`` person property operations."""
    count = len(updates.set) + len(updates.set_once) + len(updates.unset)
    if count > MAX_PROPERTY_OPERATIONS:
        raise DecodeError(
            "too_many_properties",
            f"{count} person property operations (at most {MAX_PROPERTY_OPERATIONS})",
            field="updates",
        )
    if len(updates.unset) > MAX_OBJECT_KEYS:
        raise DecodeError(
            "too_many_properties",
            f"{len(updates.unset)} keys to unset (at most {MAX_OBJECT_KEYS})",
            field="unset",
        )
    return updates


def get_path(obj: Mapping[str, Any], path: str) -> Any:
    """``obj[a][b]`` for ``path = "a.b"``; ``None`` when any step is missing or not an object."""
    if "." not in path:
        return obj.get(path) if isinstance(obj, dict) else None
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def as_object(value: Any, field: str) -> dict[str, JsonValue]:
    if not isinstance(value, dict):
        raise DecodeError("invalid_field", f"{field} must be a JSON object", field=field)
    return value


def opt_object(value: Any, field: str) -> dict[str, JsonValue] | None:
    return None if value is None else as_object(value, field)


def as_str(value: Any, field: str) -> str:
    if value is None:
        raise DecodeError("missing_field", f"{field} is required", field=field)
    if not isinstance(value, str):
        raise DecodeError("invalid_field", f"{field} must be a string", field=field)
    return value


def opt_str(value: Any, field: str) -> str | None:
    return None if value is None else as_str(value, field)


def as_bool(value: Any, field: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise DecodeError("invalid_field", f"{field} must be a boolean", field=field)
    return value


def opt_id(value: Any, field: str) -> str | None:
    """A distinct id: a string, or an integer (JSON SDKs send numeric ids) as its decimal text.

    Empty and illegal ids are kept: the identity layer decides what they mean (A5).
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DecodeError("invalid_field", f"{field} must be a string or an integer", field=field)


def as_id(value: Any, field: str) -> str:
    result = opt_id(value, field)
    if result is None:
        raise DecodeError("missing_field", f"{field} is required", field=field)
    return result


def as_uuid(value: Any, field: str) -> str:
    """A uuid in canonical text form (lower case, hyphenated)."""
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):  # the common case
        return value
    text = as_str(value, field)
    if _CANONICAL_UUID.fullmatch(text):
        return text
    try:
        return str(uuid.UUID(text))
    except ValueError as exc:
        raise DecodeError("invalid_field", f"{field} is not a UUID", field=field) from exc


def check_timestamp_ms(value: int, field: str) -> int:
    if not MIN_TIMESTAMP_MS <= value <= MAX_TIMESTAMP_MS:
        raise DecodeError("invalid_field", f"{field} is out of range: {value}", field=field)
    return value


def as_timestamp_ms(value: Any, field: str) -> int:
    """Milliseconds since the epoch from an integer/float of ms or an ISO 8601 string (a string
    without a zone is UTC)."""
    if value is None:
        raise DecodeError("missing_field", f"{field} is required", field=field)
    if isinstance(value, bool):
        raise DecodeError("invalid_field", f"{field} must be ms or ISO 8601", field=field)
    if isinstance(value, int):
        return check_timestamp_ms(value, field)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DecodeError("invalid_field", f"{field} must be finite", field=field)
        return check_timestamp_ms(math.floor(value), field)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise DecodeError(
                "invalid_field",
                f"{field} is not an ISO 8601 timestamp: {value[:40]!r}",
                field=field,
            ) from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return check_timestamp_ms((parsed - _EPOCH) // _ONE_MS, field)
        except OverflowError as exc:
            raise DecodeError("invalid_field", f"{field} is out of range", field=field) from exc
    raise DecodeError("invalid_field", f"{field} must be ms or ISO 8601", field=field)


def timestamp_or_ignored(
    value: Any, received_at_ms: int | None, field: str
) -> tuple[int, str | None]:
    """The event's timestamp and ``None``; or, when it has none, the receive time and ``None``;
    or, when it is malformed or out of range and the receive time is known, the receive time and
    why the timestamp was ignored (PostHog warns ``ignored_invalid_timestamp`` and does the
    same). Without a receive time a bad timestamp is a ``DecodeError``."""
    if type(value) is int and MIN_TIMESTAMP_MS <= value <= MAX_TIMESTAMP_MS:  # the common case
        return value, None
    if value is None and received_at_ms is not None:
        return received_at_ms, None
    try:
        return as_timestamp_ms(value, field), None
    except DecodeError as exc:
        if received_at_ms is None or value is None:
            raise
        return received_at_ms, exc.message


MISSING_TIMESTAMP: Final = "timestamp is missing: the Kafka message timestamp is used"
"""The reason of the ``ignored_invalid_timestamp`` warning for an event that has no time."""


def event_time(
    value: Any, received_at_ms: int | None, field: str
) -> tuple[int, str | None, tuple[IdentityWarning, ...]]:
    """``timestamp_or_ignored``, and the warning of a missing timestamp: the event then takes
    the receive time (the Kafka message timestamp) as its own, flagged with
    ``ignored_invalid_timestamp`` (reason ``MISSING_TIMESTAMP``)."""
    timestamp_ms, ignored = timestamp_or_ignored(value, received_at_ms, field)
    if value is not None or received_at_ms is None:
        return timestamp_ms, ignored, ()
    warning = IdentityWarning(
        WarningKind.IGNORED_INVALID_TIMESTAMP,
        {"reason": MISSING_TIMESTAMP, "now_ms": str(received_at_ms)},
    )
    return timestamp_ms, ignored, (warning,)


def opt_timestamp_ms(value: Any, field: str) -> int | None:
    return None if value is None else as_timestamp_ms(value, field)


def unset_keys(value: Any, field: str) -> tuple[str, ...]:
    """``$unset`` in list form (``["a", "b"]``) or object form (``{"a": null}``: the keys)."""
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple(value)
    if isinstance(value, list):
        if not all(isinstance(key, str) for key in value):
            raise DecodeError("invalid_field", f"{field} must list strings", field=field)
        return tuple(value)
    raise DecodeError("invalid_field", f"{field} must be a list or an object", field=field)


def property_updates(
    set_: Mapping[str, JsonValue] | None,
    set_once: Mapping[str, JsonValue] | None,
    unset: tuple[str, ...],
) -> PropertyUpdates:
    """The updates of an event, refused when they hold too many operations."""
    if not (set_ or set_once or unset):
        return NO_UPDATES  # the common case: one shared value, equal to a new empty one
    return check_operation_count(
        PropertyUpdates(
            set=tuple(set_.items()) if set_ else (),
            set_once=tuple(set_once.items()) if set_once else (),
            unset=unset,
        )
    )


def first_tenant(obj: Mapping[str, Any], paths: tuple[str, ...]) -> str | None:
    """The first non-empty tenant among the candidate field ``paths`` (a string, or an integer
    such as PostHog's ``team_id``)."""
    for path in paths:
        value = get_path(obj, path)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


TENANT_SEPARATOR: Final = ":"
"""Output keys are ``tenant:id`` and person ids uuid5 of ``tenant:distinct_id``: a tenant holding
this character would make them ambiguous across tenants (``a:b`` + ``c`` vs ``a`` + ``b:c``)."""


def check_tenant(tenant: str, field: str = "tenant") -> str:
    """A tenant that can be used in keys: not empty, no ``:``."""
    if not tenant:
        raise DecodeError("invalid_field", "tenant must not be empty", field=field)
    if TENANT_SEPARATOR in tenant:
        raise DecodeError(
            "invalid_field", f"tenant must not contain ':': {tenant[:40]!r}", field=field
        )
    return tenant


def require_tenant(tenant: str | None, fallback: str | None, fields: tuple[str, ...]) -> str:
    if tenant:
        return check_tenant(tenant)
    if fallback:
        return check_tenant(fallback)
    raise DecodeError(
        "missing_field",
        f"no tenant: none of {', '.join(fields)} is set and the message key has none",
        field="tenant",
    )
