"""ARGV encoding and reply decoding for ``lua/resolve_batch.lua`` (pure: no I/O).

The values both sides must agree on (format version, flag bits, codes, warning names, reply
field order) come from ``protocol.py``, which also renders them into the script.

The script never decodes a property value: Python sends each value as its canonical JSON text
and the script stores, compares and concatenates those texts. Strings cross the wire as UTF-8
with ``surrogatepass``, so a lone surrogate from a broken client round-trips instead of failing.
The layouts are documented at the top of the script.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import orjson

from worker.codec.fields import may_hold_long_integer
from worker.errors import EngineError
from worker.identity import ids
from worker.identity.buffer import BufferPolicy as BufferPolicy
from worker.identity.buffer import entry_id
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    DistinctIdOverride,
    GroupChange,
    GroupInput,
    GroupView,
    IdentityEvent,
    IdentityWarning,
    JsonValue,
    OrderingMode,
    Outcome,
    PersonMode,
    PreparedOp,
    PropertyOp,
    PropertyUpdates,
    Resolution,
    WarningKind,
)
from worker.identity.properties import canonical_json, event_operations
from worker.store import protocol
from worker.store.engine.call import CODES as _CODES
from worker.store.engine.call import Call, Config, GroupOp, Op, parse_groups
from worker.store.keys import receipt_bucket
from worker.store.protocol import FORMAT_VERSION as FORMAT_VERSION  # re-exported
from worker.store.protocol import OpFlag

_TS_OFFSET: Final = 1 << 63
_TS_WIDTH: Final = 20
_ENCODING: Final = "utf-8"
_ERRORS: Final = "surrogatepass"

_OPS_BY_CODE: Final = {
    protocol.SET: PropertyOp.SET,
    protocol.SET_ONCE: PropertyOp.SET_ONCE,
    protocol.UNSET: PropertyOp.UNSET,
}
"""Codes of the stored property states (and of the operations of timestamp mode)."""
_CODES_BY_OP: Final = {op: code for code, op in _OPS_BY_CODE.items()}


@lru_cache(maxsize=65_536)
def person_id_for(tenant: str, distinct_id: str) -> str:
    """``worker.identity.ids.person_id_for``, cached: hot ids recur in every batch."""
    return ids.person_id_for(tenant, distinct_id)


def order_key(ts_ms: int, event_uuid: str) -> str:
    """A text whose bytewise order is the order of ``(ts_ms, event_uuid)``: the timestamp
    shifted by 2^63 and zero-padded to 20 digits, then the uuid."""
    shifted = ts_ms + _TS_OFFSET
    if not 0 <= shifted < 1 << 64:
        raise ValueError(f"timestamp {ts_ms} is out of range")
    return f"{shifted:0{_TS_WIDTH}d}{event_uuid}"


def parse_order_key(key: str) -> tuple[int, str]:
    """Inverse of ``order_key``."""
    return int(key[:_TS_WIDTH]) - _TS_OFFSET, key[_TS_WIDTH:]


def key_operations(
    updates: PropertyUpdates, ordering: OrderingMode
) -> list[tuple[str, str, JsonValue]]:
    """The event's property operations as (code, key, value), one per key, for the script.

    ``timestamp`` mode: ``worker.identity.properties.event_operations`` decides (in ``$unset``
    → ``u``; else in ``$set`` → ``s``, the last pair wins; else ``o``, set_once, the first pair
    wins); the sets come first, then the unsets in their order in the event.

    ``arrival`` mode (PostHog's order, as ``worker.identity.properties.apply_arrival``): the sets
    apply first and ``$unset`` then removes only keys present before the event, so a key in
    both ``$set``/``$set_once`` and ``$unset`` becomes ``x``: set if absent before the event,
    removed if present. Otherwise ``s``, ``o`` or ``u`` as above.
    """
    unset = dict.fromkeys(updates.unset)
    if ordering is OrderingMode.TIMESTAMP:
        decided = event_operations(updates)
        return [
            (_CODES_BY_OP[op], key, value)
            for key, (op, value) in decided.items()
            if op is not PropertyOp.UNSET
        ] + [(protocol.UNSET, key, None) for key in unset]
    sets: dict[str, tuple[str, JsonValue]] = {}
    for key, value in updates.set_once:
        sets.setdefault(key, (protocol.SET_ONCE, value))
    for key, value in updates.set:
        sets[key] = (protocol.SET, value)
    result: list[tuple[str, str, JsonValue]] = [
        (code, key, value) if key not in unset else (protocol.SET_THEN_UNSET, key, value)
        for key, (code, value) in sets.items()
    ]
    return result + [(protocol.UNSET, key, None) for key in unset if key not in sets]


@dataclass(frozen=True, slots=True)
class CallLimits:
    """The configuration values the script needs."""

    ordering: OrderingMode
    max_distinct_ids: int
    max_properties_bytes: int
    force_upgrade_after_ms: int
    reply_ttl_ms: int
    max_group_types: int = 5
    receipt_ttl_ms: int = 3_600_000
    last_seen_resolution_ms: int = 60_000

    @classmethod
    def of(
        cls, config: IdentityConfig, reply_ttl_ms: int, receipt_ttl_ms: int = 3_600_000
    ) -> CallLimits:
        return cls(
            ordering=config.ordering,
            max_distinct_ids=config.max_distinct_ids_per_person,
            max_properties_bytes=config.max_properties_bytes,
            force_upgrade_after_ms=config.force_upgrade_after_ms,
            reply_ttl_ms=reply_ttl_ms,
            max_group_types=config.max_group_types,
            receipt_ttl_ms=receipt_ttl_ms,
            last_seen_resolution_ms=config.last_seen_resolution_ms,
        )


NO_BUFFER: Final = BufferPolicy()


def encode_args(
    ops: Sequence[PreparedOp],
    limits: CallLimits,
    *,
    now_ms: int = 0,
    buffer: BufferPolicy = NO_BUFFER,
    command: str = protocol.COMMAND_RESOLVE,
    release_limit: int = 0,
) -> list[bytes]:
    """ARGV of one call of ``resolve_batch.lua`` (layout at the top of the script). An op whose
    event carries a ``buffer_payload`` is bufferable (when the buffer is on)."""
    header: list[str] = [
        FORMAT_VERSION,
        limits.ordering.value,
        str(limits.max_distinct_ids),
        str(limits.max_properties_bytes),
        str(limits.force_upgrade_after_ms),
        str(limits.reply_ttl_ms),
        str(now_ms),
        str(buffer.delay_ms),
        str(buffer.max_per_id),
        str(buffer.max_total),
        str(buffer.lease_ms),
        command,
        str(release_limit),
        str(limits.receipt_ttl_ms),
        str(len(ops)),
        str(limits.last_seen_resolution_ms),
    ]
    out = [arg.encode(_ENCODING, _ERRORS) for arg in header]
    ordering = limits.ordering
    buffer_on = buffer.delay_ms > 0
    now_bytes = str(now_ms).encode()
    for op in ops:
        event = op.event
        tenant = event.tenant
        bufferable = buffer_on and event.buffer_payload is not None
        other = op.merge_with
        flags = _flags(event, other is not None) | (_BUFFERABLE if bufferable else 0)
        ids = _tenant_ids(tenant)
        into_args = _id_args(ids, tenant, event.distinct_id)
        other_args = _NO_ID if other is None else _id_args(ids, tenant, other)
        props = _property_args(op.updates, ordering)
        out += (
            _FLAG_BYTES[flags],
            into_args[0],
            into_args[1],
            other_args[0],
            other_args[1],
            str(event.timestamp_ms).encode(),
            _order_key_bytes(event.timestamp_ms, event.uuid),
            _count_arg(len(props)),
        )
        for triple in props:
            out += triple
        out += _group_args(op.groups, limits)
        out += _source_args(event.source)
        if bufferable and event.buffer_payload is not None:
            out += (now_bytes, event.buffer_payload, entry_id(event).encode(_ENCODING, _ERRORS))
    return out


def _flags(event: IdentityEvent, merging: bool) -> int:
    """An op's flags in ARGV, but for the bufferable one."""
    return (
        (_PROCESS_PERSON if event.process_person else 0)
        | (_MERGE_DANGEROUSLY if event.merge_dangerously else 0)
        | (_MERGE_WITH_OTHER if merging else 0)
    )


def _property_args(
    updates: PropertyUpdates, ordering: OrderingMode
) -> list[tuple[bytes, bytes, bytes]]:
    """An op's property operations as ARGV values: (code, key, canonical JSON of the value)."""
    if updates.is_empty:
        return []
    return [
        (
            code.encode(),
            key.encode(_ENCODING, _ERRORS),
            b"" if code == protocol.UNSET else _canonical_text(value).encode(_ENCODING, _ERRORS),
        )
        for code, key, value in key_operations(updates, ordering)
    ]


def _count_arg(count: int) -> bytes:
    return _SMALL_BYTES[count] if count < _SMALL else str(count).encode()


def _group_args(groups: Sequence[GroupInput], limits: CallLimits) -> list[bytes]:
    """An op's group section as ARGV values (``group_section``)."""
    if not groups:
        return [b"0"]
    return [arg.encode(_ENCODING, _ERRORS) for arg in group_section(groups, limits)]


def _source_args(source: str | None) -> tuple[bytes, bytes]:
    """An op's source and its receipt bucket as ARGV values (empty: no source)."""
    if not source:
        return b"", b""
    return source.encode(_ENCODING, _ERRORS), receipt_bucket(source).encode(_ENCODING, _ERRORS)


def engine_call(
    ops: Sequence[PreparedOp],
    limits: CallLimits,
    *,
    now_ms: int = 0,
    buffer: BufferPolicy = NO_BUFFER,
    command: str = protocol.COMMAND_RESOLVE,
    release_limit: int = 0,
) -> Call:
    """The engine's call (``redis.rules=worker``) of the same arguments as ``encode_args``:
    what ``engine.parse_call`` reads from its ARGV, built without writing and parsing the
    ARGV (``tests/unit/test_codec_engine_call.py`` holds the two equal). Raises
    ``EngineError`` where ``parse_call`` would refuse the ARGV."""
    last_seen = limits.last_seen_resolution_ms
    config = Config(
        timestamp_mode=limits.ordering is OrderingMode.TIMESTAMP,
        max_ids=limits.max_distinct_ids,
        max_bytes=limits.max_properties_bytes,
        force_upgrade_ms=limits.force_upgrade_after_ms,
        last_seen_ms=max(1, last_seen),
        now=now_ms,
        now_text=b"%d" % now_ms,
        buffer_delay_ms=buffer.delay_ms,
        buffer_max_per_id=buffer.max_per_id,
        buffer_max_total=buffer.max_total,
        lease_ms=buffer.lease_ms,
        release=command == protocol.COMMAND_RELEASE,
        release_limit=release_limit,
    )
    ordering = limits.ordering
    buffer_on = buffer.delay_ms > 0
    out: list[Op] = []
    for index, op in enumerate(ops):
        event = op.event
        tenant = event.tenant
        ids = _tenant_ids(tenant)
        into, into_person = _id_args(ids, tenant, event.distinct_id)
        other_id = op.merge_with
        other, other_person = _NO_ID if other_id is None else _id_args(ids, tenant, other_id)
        props = _property_args(op.updates, ordering)
        for triple in props:
            if triple[0] not in _CODES:
                raise EngineError(f"bad ARGV: a property operation of op {index + 1}")
        group_args = _group_args(op.groups, limits)
        groups: list[GroupOp] = []
        max_types = 0
        if op.groups:
            groups, max_types, _ = parse_groups(group_args, 0, index + 1)
        ts_text = str(event.timestamp_ms).encode()
        order = _order_key_bytes(event.timestamp_ms, event.uuid)
        source, bucket = _source_args(event.source)
        engine_op = Op(
            process=event.process_person,
            dangerous=event.merge_dangerously,
            merge=other_id is not None and other != into,
            into=into,
            into_person_id=into_person.decode(),
            other=other,
            other_person_id=other_person.decode(),
            ts=event.timestamp_ms,
            ts_text=ts_text,
            ord=order,
            props=props,
            source=source,
            bucket=bucket,
            groups=groups,
            max_group_types=max_types,
        )
        if buffer_on and event.buffer_payload is not None:
            engine_op.buffer = True
            engine_op.fields = [  # its ARGV from its flags to the end of its group section
                _FLAG_BYTES[_flags(event, other_id is not None)],
                into,
                into_person,
                other,
                other_person,
                ts_text,
                order,
                _count_arg(len(props)),
                *[part for triple in props for part in triple],
                *group_args,
            ]
            engine_op.ingested = b"%d" % now_ms
            engine_op.payload = event.buffer_payload
            engine_op.entry_id = entry_id(event).encode(_ENCODING, _ERRORS)
        out.append(engine_op)
    return Call(config, out)


HEADER_LENGTH: Final = 16
"""Values of the ARGV header, before the first op (resolve_batch.lua)."""


_PROCESS_PERSON: Final = int(OpFlag.PROCESS_PERSON)
_MERGE_DANGEROUSLY: Final = int(OpFlag.MERGE_DANGEROUSLY)
_MERGE_WITH_OTHER: Final = int(OpFlag.MERGE_WITH_OTHER)
_BUFFERABLE: Final = int(OpFlag.BUFFERABLE)
_FLAG_BYTES: Final = [str(flags).encode() for flags in range(protocol.MAX_FLAGS + 1)]
_SMALL: Final = 64
_SMALL_BYTES: Final = [str(n).encode() for n in range(_SMALL)]
"""The ARGV text of the small counts (an op's property operations)."""
_NO_ID: Final = (b"", b"")
_canonical: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, sort_keys=True
).encode
"""``worker.identity.properties.canonical_json`` without building an encoder per call (what
``json.dumps`` does for non-default arguments): the same text."""


_ID_CACHE_SIZE: Final = 65_536
_id_cache: Final[dict[str, dict[str, tuple[bytes, bytes]]]] = {}
"""Per tenant, per distinct id: its ARGV values (``_new_id_args``); hot ids recur in every batch.
Emptied when it holds ``_ID_CACHE_SIZE`` ids (a lookup needs no key tuple, unlike
``lru_cache``)."""
_id_count = 0


def _tenant_ids(tenant: str) -> dict[str, tuple[bytes, bytes]]:
    ids = _id_cache.get(tenant)
    if ids is None:
        ids = _id_cache[tenant] = {}
    return ids


def _id_args(
    ids: dict[str, tuple[bytes, bytes]], tenant: str, distinct_id: str
) -> tuple[bytes, bytes]:
    """The ARGV values of ``distinct_id`` (``ids``: its tenant's cache)."""
    found = ids.get(distinct_id)
    return found if found is not None else _new_id_args(ids, tenant, distinct_id)


def _new_id_args(
    ids: dict[str, tuple[bytes, bytes]], tenant: str, distinct_id: str
) -> tuple[bytes, bytes]:
    """A distinct id and its uuid5 person id, as ARGV values, kept in ``ids`` (its tenant's)."""
    global _id_count
    if _id_count >= _ID_CACHE_SIZE:
        _id_cache.clear()  # at once (the caller's ``ids`` is then dropped with its last op)
        _id_count = 0
    args = distinct_id.encode(_ENCODING, _ERRORS), person_id_for(tenant, distinct_id).encode()
    ids[distinct_id] = args
    _id_count += 1
    return args


def _order_key_bytes(ts_ms: int, event_uuid: str) -> bytes:
    """``order_key`` as an ARGV value."""
    shifted = ts_ms + _TS_OFFSET
    if not 0 <= shifted < 1 << 64:
        raise ValueError(f"timestamp {ts_ms} is out of range")
    digits = str(shifted)
    if len(digits) < _TS_WIDTH:
        digits = digits.zfill(_TS_WIDTH)
    return (digits + event_uuid).encode(_ENCODING, _ERRORS)


def _canonical_text(value: JsonValue) -> str:
    """``_canonical(value)``; a common scalar written at once: an integer, a boolean,
    ``null``, a string of printable ASCII without quote or backslash (nothing to escape)."""
    if isinstance(value, str):
        if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
            return '"' + value + '"'
    elif isinstance(value, bool):
        return "true" if value else "false"
    elif type(value) is int:  # not a subclass: an IntEnum's str is its name
        return str(value)
    elif value is None:
        return "null"
    return _canonical(value)


def group_section(groups: Sequence[GroupInput], limits: CallLimits) -> list[str]:
    """The group section of an op (layout in ``lua/resolve/group_argv.lua``): the number of
    groups, then (when any) the group-type cap and per group its type, key, key's canonical
    JSON, flags (1 attach, 2 remember), its property operations' count and triples."""
    if not groups:
        return ["0"]
    out = [str(len(groups)), str(limits.max_group_types)]
    for group in groups:
        key_ops = key_operations(group.updates, limits.ordering)
        out += [
            group.group_type,
            group.key,
            canonical_json(group.key),
            str((1 if group.attach else 0) + (2 if group.remember else 0)),
            str(len(key_ops)),
        ]
        for code, key, value in key_ops:
            out += [code, key, "" if code == protocol.UNSET else canonical_json(value)]
    return out


def as_text(raw: bytes | str) -> str:
    return raw.decode(_ENCODING, _ERRORS) if isinstance(raw, bytes) else raw


_SCRIPT_WARNINGS: dict[str, IdentityWarning] = {
    protocol.WARNING_MERGE_LIMIT: IdentityWarning(WarningKind.MERGE_LIMIT_EXCEEDED),
    protocol.WARNING_ALREADY_IDENTIFIED: IdentityWarning(
        WarningKind.CANNOT_MERGE_ALREADY_IDENTIFIED
    ),
    protocol.WARNING_PROPERTIES_SIZE: IdentityWarning(
        WarningKind.PERSON_PROPERTIES_SIZE_VIOLATION, {"reason": "properties_too_large"}
    ),
    protocol.WARNING_BUFFER_OVERFLOW: IdentityWarning(WarningKind.BUFFER_OVERFLOW),
    protocol.WARNING_GROUP_TYPE_LIMIT: IdentityWarning(WarningKind.GROUP_TYPE_LIMIT),
    protocol.WARNING_CASE_COLLISION: IdentityWarning(WarningKind.DISTINCT_ID_CASE_COLLISION),
    protocol.WARNING_GROUP_PROPERTIES_SIZE: IdentityWarning(
        WarningKind.GROUP_PROPERTIES_SIZE_VIOLATION, {"reason": "properties_too_large"}
    ),
}
"""The script's warning names (``protocol.WARNINGS``) and what each becomes."""


@dataclass(frozen=True, slots=True)
class ReleasedEntry:
    """A buffered event the script released and applied; its payload is read separately."""

    event_uuid: str
    reason: str
    """merge (its id got a person), timeout, overflow, or redelivery (an expired lease)"""
    ingested_ms: int
    resolution: Resolution
    released_ms: int = 0
    entry_id: str = ""


KEEP_DUE: Final = False
"""``Reply.next_due`` of a call that left the buffer's due times and leases as they were."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A decoded reply of ``resolve_batch.lua``."""

    resolutions: list[Resolution]
    released: list[ReleasedEntry]
    next_due: int | bool | None
    """``KEEP_DUE`` (False), or the tenant's earliest due time or lease deadline (``None``:
    nothing waits or is leased)."""


def decode_reply(raw: bytes | str, ops: Sequence[PreparedOp]) -> Reply:
    """The script's reply: one ``Resolution`` per op (stateless warnings first), the buffered
    entries it released, in order, and the tenant's next due time.

    Raises ``ValueError`` when the reply does not have the documented shape.
    """
    reply = loads_reply(raw)
    if not isinstance(reply, list) or len(reply) != 3:
        raise ValueError(f"malformed reply {str(reply)[:80]!r}")
    entries, released, next_due = reply
    if not (next_due is None or next_due is False or type(next_due) is int):
        raise ValueError(f"malformed next due time {next_due!r}")
    if not isinstance(entries, list) or len(entries) != len(ops):
        raise ValueError(f"reply has {_len(entries)} entries for {len(ops)} operations")
    resolutions = [
        _resolution(entry, op.event.uuid, op.warnings)
        for entry, op in zip(entries, ops, strict=True)
    ]
    if not isinstance(released, list):
        raise ValueError("malformed released entries")
    out = []
    for item in released:
        if not isinstance(item, list) or len(item) != len(protocol.RELEASED_ENTRY_FIELDS):
            raise ValueError(f"malformed released entry {item!r}")
        fields = dict(zip(protocol.RELEASED_ENTRY_FIELDS, item, strict=True))
        event_uuid, reason = fields["event_uuid"], fields["reason"]
        ingested, entry = fields["ingested_ms"], fields["entry"]
        out.append(
            ReleasedEntry(
                str(event_uuid),
                str(reason),
                int(ingested),
                _resolution(entry, str(event_uuid), ()),
                int(fields["released_ms"]),
                str(fields["entry_id"]),
            )
        )
    return Reply(resolutions, out, next_due)


_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


def loads_reply(raw: bytes | str) -> Any:
    """The JSON value of a reply text, exactly as ``json.loads`` reads it.

    ``orjson`` reads the common case (several times faster). A text it could read differently
    goes to the standard library: a surrogate escape, a run of 19 digits or more (an integer
    beyond 64 bits, which ``orjson`` reads as a float: ``fields.may_hold_long_integer``), or a
    text it refuses (a lone surrogate kept as such, which is not UTF-8; ``NaN``; ``1e400``).
    ``worker.codec.fields.loads_json`` makes the same choice for the input.
    """
    data = raw if isinstance(raw, bytes) else raw.encode(_ENCODING, _ERRORS)
    if b"\\" not in data or _SURROGATE_ESCAPE.search(data) is None:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        else:
            if not may_hold_long_integer(data, value):
                return value
    return json.loads(as_text(raw))


def _len(value: object) -> int | str:
    return len(value) if isinstance(value, list) else type(value).__name__


_MODES: Final = {mode.value: mode for mode in PersonMode}
_ENTRY_FIELDS: Final = (
    "person_id",
    "person_mode",
    "created_at_ms",
    "is_identified",
    "properties",
    "merged",
    "person_created",
    "warnings",
    "overrides",
    "person_version",
    "person_changed",
    "groups",
    "group_changes",
)
"""The order ``_resolution`` unpacks a reply entry in: ``protocol.REPLY_ENTRY_FIELDS``."""
if tuple(protocol.REPLY_ENTRY_FIELDS) != _ENTRY_FIELDS:  # pragma: no cover (a wire change)
    raise ImportError("codec._resolution does not unpack protocol.REPLY_ENTRY_FIELDS")
_VERSION_TYPES: Final = (int, type(None))
_EMIT: Final = Outcome.EMIT


def _resolution(entry: Any, event_uuid: str, stateless: tuple[IdentityWarning, ...]) -> Resolution:
    if not isinstance(entry, list) or len(entry) != 13:
        raise ValueError(f"malformed reply entry {entry!r}")
    (
        pid,
        mode,
        created_at,
        identified,
        props,
        merged,
        created,
        warnings,
        overrides,
        version,
        changed,
        groups,
        group_changes,
    ) = entry
    if not isinstance(version, _VERSION_TYPES) or not isinstance(changed, bool):
        raise ValueError(f"malformed reply entry {entry!r}")
    if not isinstance(props, dict) or not isinstance(created_at, _VERSION_TYPES):
        raise ValueError(f"malformed reply entry {entry!r}")
    if mode == protocol.PERSON_MODE_BUFFERED:
        return Resolution(
            event_uuid=event_uuid,
            outcome=Outcome.BUFFER,
            person_id=None,
            person_mode=None,
            properties={},
            created_at_ms=None,
            is_identified=False,
            warnings=stateless,
        )
    return Resolution(
        event_uuid,
        _EMIT,
        str(pid),
        _MODES[mode],
        props,
        created_at,
        identified is True,
        stateless + tuple(_SCRIPT_WARNINGS[w] for w in warnings) if warnings else stateless,
        tuple(DistinctIdOverride(str(d), str(old), str(new)) for d, old, new in sorted(overrides))
        if overrides
        else (),
        merged is True,
        created is True,
        version,
        changed,
        {} if groups == {} else decode_groups(groups),
        () if group_changes == [] else decode_group_changes(group_changes),
    )


def decode_groups(raw: Any) -> dict[str, GroupView]:
    """The ``groups`` of a reply entry: ``{type: [key, properties]}``."""
    if not isinstance(raw, dict):
        raise ValueError(f"malformed groups {raw!r}")
    out: dict[str, GroupView] = {}
    for group_type, item in sorted(raw.items()):
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], dict):
            raise ValueError(f"malformed group {item!r}")
        out[group_type] = GroupView(str(item[0]), item[1])
    return out


def decode_group_changes(raw: Any) -> tuple[GroupChange, ...]:
    """The ``group_changes`` of a reply entry: ``[[type, key, version, properties], ...]``."""
    if not isinstance(raw, list):
        raise ValueError(f"malformed group changes {raw!r}")
    out = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 4 or not isinstance(item[3], dict):
            raise ValueError(f"malformed group change {item!r}")
        out.append(GroupChange(str(item[0]), str(item[1]), int(item[2]), item[3]))
    return tuple(out)
