"""Person records and members strings as the store keeps them in Redis, read and written in
Python (pure: no I/O).

The layout is ``lua/resolve/record_codec.lua``'s, whose header documents it: format 9 is read and
written here byte for byte as the script writes it; formats 7 and 6 (earlier releases) are read.
The script remains the writer of the store; this module lets Python read what the script wrote
and make what the script would write, so that the two can be checked against each other
(``tests/integration/test_record_format.py``) and so that work can move out of the script
(docs/ARCHITECTURE.md, "Rules in the worker").

Everything is ``bytes`` here: distinct ids, property keys and the JSON texts of values, as the
script sees them (a Redis value is bytes; Python's ids are UTF-8, ``surrogatepass``).

A value of the ids hash is a parent reference (``b"P"`` then the parent's id: ``parent_of``) or
the record of a root (``is_record``, ``decode``). A record holds:

- ``person_id``: stored as its 16 bytes (a canonical, lowercase uuid) or as text, or not at all
  (``implicit``): the person id its root creates (``person_uuid``), derived on decode when the
  root and the tenant are given;
- ``created_at``, ``last_seen`` (ms), ``identified``, ``version``, ``id_count`` (the tree's ids);
- ``snapshot``: the visible properties as one JSON object text (the reply's ``properties``);
- ``props``: the property states (``decode_props``: per key its code and order key), empty when
  the person has none;
- ``others``: the tree's ids other than the root as a members string (``parse_members``), or,
  ``spilled``, empty (the ids are then in the members string of the root, a key of its own).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from worker.errors import RecordError as RecordError
from worker.fast_init import fast_init
from worker.identity.ids import PERSON_NAMESPACE, uuid5_of_bytes
from worker.store import msgpack_subset
from worker.store.protocol import SET, SET_ONCE, UNSET

PARENT: Final = b"P"
"""First byte of a parent reference: ``b"P"`` then the parent's distinct id."""

FORMAT_9, FORMAT_7, FORMAT_6 = 9, 7, 6

_BINARY_ID, _TEXT_ID = 3, 4  # format 9 markers
_BINARY_ID_7, _TEXT_ID_7, _LEGACY = 1, 2, ord("R")
_IDENTIFIED, _SPILLED, _WIDE, _IMPLICIT = 1, 2, 4, 8  # format 9 flags
_NARROW: Final = struct.Struct(">HIHIHHHH")  # I6 I6 as (high 2, low 4) pairs, then four I2
_WIDE_HEADER: Final = struct.Struct(">qqqqII")
_TIME_LIMIT: Final = 1 << 48
_COUNT_LIMIT: Final = 1 << 16
_ORDER: Final = struct.Struct(">IBI16s")  # order key halves: I4, then I5 as (high 1, low 4)
_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEADER_7: Final = re.compile(rb"(-?\d+)\|(-?\d+)\|([01])([01])\|(\d+)\|(\d+)\|(\d+)\|(\d+)\|")
_HEADER_6: Final = re.compile(
    rb"R([^|]*)\|(-?\d+)\|(-?\d+)\|([01])\|(\d+)\|(\d+)\|(\d+)\|(\d+)\|", re.DOTALL
)
_CODES: Final = (SET.encode(), SET_ONCE.encode(), UNSET.encode())
_CODE_NUMBER: Final = {code: number for number, code in enumerate(_CODES)}
_NAMESPACE: Final = PERSON_NAMESPACE.bytes


@dataclass(slots=True)
class Record:
    """The fields of a person record (``decode``; ``encode`` writes them in format 9)."""

    person_id: str | None
    """None only for an implicit record decoded without its root and tenant."""
    implicit: bool
    created_at: int
    last_seen: int
    identified: bool
    spilled: bool
    version: int
    id_count: int
    snapshot: bytes
    props: bytes
    others: bytes
    format: int = FORMAT_9
    legacy_meta: bytes = b""
    """Format 6 only: the cjson object of the property states (key -> code .. order key)."""
    legacy_vals: bytes = b""
    """Format 6 only: the cjson object of the value texts."""

    def __init__(  # compiled: native code (the generated one is interpreted)
        self,
        person_id: str | None,
        implicit: bool,
        created_at: int,
        last_seen: int,
        identified: bool,
        spilled: bool,
        version: int,
        id_count: int,
        snapshot: bytes,
        props: bytes,
        others: bytes,
        format: int = FORMAT_9,
        legacy_meta: bytes = b"",
        legacy_vals: bytes = b"",
    ) -> None:
        self.person_id = person_id
        self.implicit = implicit
        self.created_at = created_at
        self.last_seen = last_seen
        self.identified = identified
        self.spilled = spilled
        self.version = version
        self.id_count = id_count
        self.snapshot = snapshot
        self.props = props
        self.others = others
        self.format = format
        self.legacy_meta = legacy_meta
        self.legacy_vals = legacy_vals


@dataclass(frozen=True, slots=True)
class State:
    """A property's state in a record: its code (``b"s"`` set, ``b"o"`` set once, ``b"u"``
    unset) and order key in stored form (``pack_order``)."""

    code: bytes
    order: bytes

    def __init__(self, code: bytes, order: bytes) -> None:  # compiled: native (``fast_init``)
        self.code = code  # type: ignore[misc]
        self.order = order  # type: ignore[misc]


fast_init(State)


def is_record(value: bytes) -> bool:
    """Whether a value of the ids hash is a person record (any format), not a parent."""
    return bool(value) and value[0] in (_BINARY_ID, _TEXT_ID, _BINARY_ID_7, _TEXT_ID_7, _LEGACY)


def parent_of(value: bytes) -> bytes | None:
    """The parent id of a parent reference; None for a record."""
    return value[1:] if value[:1] == PARENT else None


def person_uuid(tenant: bytes, root: bytes) -> str:
    """The person id ``root`` creates (uuid5 of ``tenant:root``: ``ids.person_id_for``), the
    person id of an implicit record at ``root``."""
    return uuid5_of_bytes(_NAMESPACE, tenant + b":" + root)


def decode(value: bytes, root: bytes | None = None, tenant: bytes | None = None) -> Record:
    """The record ``value`` (any format). An implicit record's person id is derived from
    ``root`` and ``tenant`` when both are given, else left None. ``RecordError`` when
    unreadable."""
    if not value:
        raise RecordError("an empty value")
    marker = value[0]
    if marker in (_BINARY_ID, _TEXT_ID):
        record = _decode_9(value, marker == _BINARY_ID)
    elif marker in (_BINARY_ID_7, _TEXT_ID_7):
        record = _decode_7(value, marker == _BINARY_ID_7)
    elif marker == _LEGACY:
        record = _decode_6(value)
    else:
        raise RecordError(f"not a person record (first byte 0x{marker:02x})")
    if record.implicit and root is not None and tenant is not None:
        record.person_id = person_uuid(tenant, root)
    return record


def _uuid_text(raw: bytes) -> str:
    """The canonical text of a uuid's 16 bytes."""
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _counted(value: bytes, pos: int, what: str) -> tuple[bytes, int]:
    """The text at ``pos`` written as its length, ``:``, the text (a person id stored as
    text, each id of a members string), and the position after it."""
    colon = value.find(b":", pos)
    digits = value[pos:colon] if colon >= 0 else b""
    if not digits.isdigit():
        raise RecordError(f"an unreadable {what}")
    end = colon + 1 + int(digits)
    if end > len(value):
        raise RecordError(f"{what} cut short")
    return value[colon + 1 : end], end


def _person_id_at(value: bytes, binary: bool, pos: int) -> tuple[str, int]:
    if binary:
        raw = value[pos : pos + 16]
        if len(raw) != 16:
            raise RecordError("a person id cut short")
        return _uuid_text(raw), pos + 16
    text, end = _counted(value, pos, "person id")
    return text.decode("utf-8", "surrogatepass"), end


def _parts(value: bytes, at: int, snapshot_length: int, props_length: int) -> tuple[bytes, ...]:
    props_at = at + snapshot_length
    others_at = props_at + props_length
    if others_at > len(value):
        raise RecordError("a record cut short")
    return value[at:props_at], value[props_at:others_at], value[others_at:]


def _decode_9(value: bytes, binary: bool) -> Record:
    if len(value) < 2:
        raise RecordError("a record cut short")
    flags = value[1]
    if flags >= 16:
        raise RecordError(f"unknown record flags {flags}")
    implicit = flags & _IMPLICIT != 0
    person_id: str | None = None
    pos = 2
    if not implicit:
        person_id, pos = _person_id_at(value, binary, pos)
    if flags & _WIDE:
        if len(value) < pos + _WIDE_HEADER.size:
            raise RecordError("a record header cut short")
        created_at, last_seen, version, id_count, snapshot_length, props_length = (
            _WIDE_HEADER.unpack_from(value, pos)
        )
        at = pos + _WIDE_HEADER.size
    else:
        if len(value) < pos + _NARROW.size:
            raise RecordError("a record header cut short")
        ch, cl, lh, ll, version, id_count, snapshot_length, props_length = _NARROW.unpack_from(
            value, pos
        )
        created_at, last_seen = ch << 32 | cl, lh << 32 | ll
        at = pos + _NARROW.size
    snapshot, props, others = _parts(value, at, snapshot_length, props_length)
    return Record(
        person_id,
        implicit,
        created_at,
        last_seen,
        flags & _IDENTIFIED != 0,
        flags & _SPILLED != 0,
        version,
        id_count,
        snapshot,
        props,
        others,
    )


def _decode_7(value: bytes, binary: bool) -> Record:
    person_id, pos = _person_id_at(value, binary, 1)
    match = _HEADER_7.match(value, pos)
    if match is None:
        raise RecordError("an unreadable format 7 header")
    created_at, last_seen, identified, spilled, version, id_count, n_snapshot, n_props = (
        match.groups()
    )
    snapshot, props, others = _parts(value, match.end(), int(n_snapshot), int(n_props))
    return Record(
        person_id,
        False,
        int(created_at),
        int(last_seen),
        identified == b"1",
        spilled == b"1",
        int(version),
        int(id_count),
        snapshot,
        props,
        others,
        FORMAT_7,
    )


def _decode_6(value: bytes) -> Record:
    match = _HEADER_6.match(value)
    if match is None:
        raise RecordError("an unreadable format 6 record")
    person_id, created_at, last_seen, identified, version, id_count, n_meta, n_vals = match.groups()
    tail = value[match.end() :]
    meta_end = int(n_meta)
    vals_end = meta_end + int(n_vals)
    return Record(
        person_id.decode("utf-8", "surrogatepass"),
        False,
        int(created_at),
        int(last_seen),
        identified == b"1",
        False,
        int(version),
        int(id_count),
        tail[vals_end:],
        b"",
        b"",
        FORMAT_6,
        tail[:meta_end],
        tail[meta_end:vals_end],
    )


def encode(record: Record) -> bytes:
    """The format 9 text of ``record`` (as ``record_codec.encode`` writes it): the person id
    left out when ``implicit``, else as its 16 bytes when it is a canonical uuid, else as
    text; ``others`` left out when ``spilled``."""
    flags = (_IDENTIFIED if record.identified else 0) | (_SPILLED if record.spilled else 0)
    created_at, last_seen = record.created_at, record.last_seen
    lengths = (record.version, record.id_count, len(record.snapshot), len(record.props))
    if (
        0 <= created_at < _TIME_LIMIT
        and 0 <= last_seen < _TIME_LIMIT
        and all(0 <= n < _COUNT_LIMIT for n in lengths)
    ):
        header = _NARROW.pack(
            created_at >> 32,
            created_at & 0xFFFFFFFF,
            last_seen >> 32,
            last_seen & 0xFFFFFFFF,
            *lengths,
        )
    else:
        flags |= _WIDE
        header = _WIDE_HEADER.pack(created_at, last_seen, *lengths)
    if record.implicit:
        head = bytes((_BINARY_ID, flags | _IMPLICIT))
    else:
        person_id = record.person_id
        if person_id is None:
            raise RecordError("an explicit record without a person id")
        if _CANONICAL_UUID.fullmatch(person_id):
            head = bytes((_BINARY_ID, flags)) + bytes.fromhex(person_id.replace("-", ""))
        else:
            text = person_id.encode("utf-8", "surrogatepass")
            head = bytes((_TEXT_ID, flags)) + b"%d:" % len(text) + text
    others = b"" if record.spilled else record.others
    return head + header + record.snapshot + record.props + others


# -- property states -------------------------------------------------------------------------


def pack_order(text: bytes) -> bytes:
    """The stored form of an order key (``ordering.lua``: 20 digits then the event's uuid): a
    zero byte, the two 10-digit halves as big-endian integers of 4 and 5 bytes and the uuid's
    16 bytes (26 bytes, which compare as the texts do); any other key is stored as its text.
    Remembered (``_PACKED``): a key is packed for its record and again for the decode cache,
    and an op's key for each property it sets."""
    return _remembered(_PACKED, text, _pack_order)


_PACKED: Final[dict[bytes, bytes]] = {}
_REMEMBERED: Final = 4096
"""Values a memo of this module (``_PACKED``, ``_QUOTED``) holds at most: emptied when full."""


def _remembered(memo: dict[bytes, bytes], key: bytes, compute: Callable[[bytes], bytes]) -> bytes:
    """``compute(key)``, from ``memo`` when it holds it (``compute`` is a pure function)."""
    found = memo.get(key)
    if found is None:
        if len(memo) >= _REMEMBERED:
            memo.clear()
        found = memo[key] = compute(key)
    return found


def _pack_order(text: bytes) -> bytes:
    # 20 ASCII digits, then a lowercase uuid: 8-4-4-4-12 hex digits
    if (
        len(text) != 56
        or text[28] != _DASH
        or text[33] != _DASH
        or text[38] != _DASH
        or text[43] != _DASH
        or not text[:20].isdigit()
    ):
        return text
    digits = text[20:28] + text[29:33] + text[34:38] + text[39:43] + text[44:]
    if not _HEX_DIGITS.issuperset(digits):
        return text
    high, low = int(text[:10]), int(text[10:20])
    if high >= 1 << 32:  # (the script's keys start with 09223: never)
        return text
    raw = bytes.fromhex(digits.decode())
    return b"\0" + _ORDER.pack(high, low >> 32, low & 0xFFFFFFFF, raw)


_DASH: Final = ord("-")
_HEX_DIGITS: Final = frozenset(b"0123456789abcdef")


def order_text(stored: bytes) -> bytes:
    """The text of an order key in stored form (``pack_order``'s inverse)."""
    if stored[:1] != b"\0":
        return stored
    if len(stored) != 1 + _ORDER.size:
        raise RecordError("an order key of the wrong size")
    high, low_high, low_low, raw = _ORDER.unpack_from(stored, 1)
    return b"%010d%010d" % (high, low_high << 32 | low_low) + _uuid_text(raw).encode()


_ESCAPES: Final = {
    **{c: b"\\u%04x" % c for c in range(32)},
    8: b"\\b",
    9: b"\\t",
    10: b"\\n",
    12: b"\\f",
    13: b"\\r",
    ord('"'): b'\\"',
    ord("/"): b"\\/",
    ord("\\"): b"\\\\",
    0x7F: b"\\u007f",
}


_NEEDS_ESCAPE: Final = re.compile(rb'[\x00-\x1f"/\\\x7f]')


def quote(text: bytes) -> bytes:
    """The JSON string of ``text`` as Redis's ``cjson.encode`` writes it: byte by byte, control
    bytes, ``"``, ``/``, ``\\`` and DEL escaped, every other byte as it is."""
    if _NEEDS_ESCAPE.search(text) is None:
        return b'"' + text + b'"'
    return b'"' + b"".join(_ESCAPES.get(byte, bytes((byte,))) for byte in text) + b'"'


def _unquote(quoted: bytes) -> bytes:
    try:
        decoded = json.loads(quoted.decode("utf-8", "surrogatepass"))
    except ValueError as exc:
        raise RecordError(f"an unreadable property key {quoted!r}") from exc
    if not isinstance(decoded, str):
        raise RecordError(f"a property key that is not a string: {quoted!r}")
    return decoded.encode("utf-8", "surrogatepass")


def decode_props(record: Record) -> tuple[dict[bytes, State], dict[bytes, bytes]]:
    """The property states (key -> ``State``) and the visible value texts (key -> JSON text) of
    ``record``: the visible keys first, in the snapshot's order, then the hidden ones (the
    tombstones of timestamp-mode unsets), in stored order."""
    if record.format == FORMAT_6:
        return _legacy_props(record)
    return decode_states(record.snapshot, record.props)


def decode_states(snapshot: bytes, props: bytes) -> tuple[dict[bytes, State], dict[bytes, bytes]]:
    """``decode_props`` of a record of format 9 or 7 by its snapshot and stored states."""
    meta: dict[bytes, State] = {}
    vals: dict[bytes, bytes] = {}
    if not props:
        return meta, vals
    try:
        ords, visible, hidden = msgpack_subset.unpack(props)
    except ValueError as exc:
        raise RecordError(f"unreadable property states: {exc}") from exc
    if not (isinstance(ords, list) and isinstance(visible, list) and isinstance(hidden, list)):
        raise RecordError("property states that are not three arrays")
    pos = 1  # after "{"
    for k in range(0, len(visible) - 2, 3):
        key_length, text_length, state = visible[k], visible[k + 1], visible[k + 2]
        if not (isinstance(key_length, int) and isinstance(text_length, int)):
            raise RecordError("a visible key's lengths are not integers")
        quoted = snapshot[pos : pos + key_length]
        key = quoted[1:-1]
        if b"\\" in key:
            key = _unquote(quoted)
        pos += key_length + 1
        vals[key] = snapshot[pos : pos + text_length]
        pos += text_length + 1
        meta[key] = _state(ords, state)
    for k in range(0, len(hidden) - 1, 2):
        hidden_key = hidden[k]
        if not isinstance(hidden_key, bytes):
            raise RecordError("a hidden key that is not a string")
        meta[hidden_key] = _state(ords, hidden[k + 1])
    return meta, vals


def _state(ords: list[msgpack_subset.Value], state: msgpack_subset.Value) -> State:
    if not isinstance(state, int) or state < 0 or state // 4 >= len(ords) or state % 4 > 2:
        raise RecordError(f"an unreadable property state {state!r}")
    order = ords[state // 4]
    if not isinstance(order, bytes):
        raise RecordError("an order key that is not a string")
    return State(_CODES[state % 4], order)


def _legacy_props(record: Record) -> tuple[dict[bytes, State], dict[bytes, bytes]]:
    try:
        meta_json, vals_json = json.loads(record.legacy_meta), json.loads(record.legacy_vals)
    except ValueError as exc:
        raise RecordError(f"unreadable format 6 properties: {exc}") from exc
    meta = {
        k.encode("utf-8", "surrogatepass"): State(
            v[:1].encode(), pack_order(v[1:].encode("utf-8", "surrogatepass"))
        )
        for k, v in (meta_json.items() if isinstance(meta_json, dict) else ())
    }
    vals = {
        k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass")
        for k, v in (vals_json.items() if isinstance(vals_json, dict) else ())
    }
    return meta, vals


def encode_props(meta: dict[bytes, State], vals: dict[bytes, bytes]) -> tuple[bytes, bytes]:
    """The snapshot and the stored property states of ``meta`` and ``vals`` (as
    ``record_codec.encode_props`` writes them): the snapshot's keys in ``vals``' order, then
    the hidden keys (in ``meta`` but not in ``vals``) in ``meta``'s order; each order key
    stored once, numbered in the order first met. Every key of ``vals`` must have a state."""
    parts: list[bytes] = []
    ords: list[msgpack_subset.Value] = []
    index: dict[bytes, int] = {}
    visible: list[msgpack_subset.Value] = []
    hidden: list[msgpack_subset.Value] = []
    for key, text in vals.items():
        quoted = _quoted(key)
        parts.append(quoted + b":" + text)
        visible += [len(quoted), len(text), _number(meta[key], index, ords)]
    for key, state in meta.items():
        if key not in vals:
            hidden += [key, _number(state, index, ords)]
    snapshot = b"{" + b",".join(parts) + b"}"
    if not ords:
        return snapshot, b""
    return snapshot, msgpack_subset.pack(ords, visible, hidden)


def _number(state: State, index: dict[bytes, int], ords: list[msgpack_subset.Value]) -> int:
    """A state's number in the stored states: its order key's index (``ords``, each stored
    once, numbered in the order first met; ``index`` finds them) times 4 plus its code's."""
    order = state.order if state.order[:1] == b"\0" else pack_order(state.order)
    i = index.get(order)
    if i is None:
        i = index[order] = len(ords)
        ords.append(order)
    return i * 4 + _CODE_NUMBER[state.code]


def _quoted(key: bytes) -> bytes:
    """``quote(key)``, remembered (a tenant's property keys recur in every record)."""
    return _remembered(_QUOTED, key, quote)


_QUOTED: Final[dict[bytes, bytes]] = {}


# -- members strings -------------------------------------------------------------------------


def members_text(ids: list[bytes]) -> bytes:
    """The members string of ``ids`` (each as its length, ``:``, the id)."""
    return b"".join(b"%d:%s" % (len(i), i) for i in ids)


def parse_members(text: bytes) -> list[bytes]:
    """The ids of a members string (``members_text``'s inverse); ``RecordError`` if
    unreadable."""
    ids: list[bytes] = []
    pos = 0
    while pos < len(text):
        distinct_id, pos = _counted(text, pos, "members string")
        ids.append(distinct_id)
    return ids


def tree_ids(root: bytes, record: Record, members: bytes | None) -> list[bytes]:
    """Every id of ``root``'s tree: the root then its record's others, or, spilled, the ids of
    the root's members string ``members`` (format 6 trees of several ids keep them in a set,
    which this module does not read: ``RecordError``)."""
    if record.format == FORMAT_6:
        if record.id_count != 1:
            raise RecordError("a format 6 tree keeps its ids in a set")
        return [root]
    if record.spilled:
        return parse_members(members or b"")
    return [root, *parse_members(record.others)]
