"""The part of MessagePack that Redis's Lua ``cmsgpack`` writes for a person record's property
states (``lua/resolve/record_codec.lua``, ``props``), read and written byte for byte as it does
(pure: no I/O).

Values are ``bytes`` (MessagePack str: fixstr, str 8/16/32), ``int`` (the smallest of positive
and negative fixint, uint and int 8/16/32/64, as ``cmsgpack`` picks for an integral Lua number),
``list`` (fixarray, array 16/32: a Lua table with keys 1..n, the empty table included) and
``dict`` (fixmap, map 16/32: any other table; read only, in the order stored). ``cmsgpack``
writes a Lua number that is not integral as a double, and nil as nil; neither occurs in a record
and both are read (``float``, ``None``). Anything else is refused with ``ValueError``.
"""

from __future__ import annotations

import struct
from typing import Final, TypeAlias, cast

Value: TypeAlias = bytes | int | float | list["Value"] | dict["Value", "Value"] | None

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")
_DOUBLE: Final = struct.Struct(">d")


def pack(*values: Value) -> bytes:
    """The concatenated encodings of ``values`` (``cmsgpack.pack(a, b, ...)``)."""
    out = bytearray()
    for value in values:
        _pack_into(out, value)
    return bytes(out)


def unpack(data: bytes) -> list[Value]:
    """Every value encoded one after another in ``data`` (``cmsgpack.unpack``); ``ValueError``
    when ``data`` is not such a sequence."""
    values: list[Value] = []
    pos = 0
    while pos < len(data):
        value, pos = _read(data, pos)
        values.append(value)
    return values


def _pack_into(out: bytearray, value: Value) -> None:
    if type(value) is list:  # (a record's states: arrays of strings and integers)
        _pack_length(out, len(value), 0x90, 0xDC, 0xDD)
        for item in value:
            kind = type(item)
            if kind is int:
                _pack_int(out, cast(int, item))
            elif kind is bytes:
                _pack_bytes(out, cast(bytes, item))
            else:
                _pack_into(out, item)
    elif isinstance(value, bytes):
        _pack_bytes(out, value)
    elif isinstance(value, bool):
        raise ValueError("a boolean has no place in a record")
    elif isinstance(value, int):
        _pack_int(out, value)
    elif isinstance(value, list):
        _pack_length(out, len(value), 0x90, 0xDC, 0xDD)
        for item in value:
            _pack_into(out, item)
    elif isinstance(value, dict):
        _pack_length(out, len(value), 0x80, 0xDE, 0xDF)
        for key, item in value.items():
            _pack_into(out, key)
            _pack_into(out, item)
    elif isinstance(value, float):
        out.append(0xCB)
        out += _DOUBLE.pack(value)
    elif value is None:
        out.append(0xC0)
    else:
        raise ValueError(f"cannot pack {type(value).__name__}")


def _pack_length(out: bytearray, n: int, fix: int, head16: int, head32: int) -> None:
    if n < 16:
        out.append(fix | n)
    elif n <= 0xFFFF:
        out.append(head16)
        out += _U16.pack(n)
    else:
        out.append(head32)
        out += _U32.pack(n)


def _pack_bytes(out: bytearray, value: bytes) -> None:
    n = len(value)
    if n < 32:
        out.append(0xA0 | n)
    elif n <= 0xFF:
        out += bytes((0xD9, n))
    elif n <= 0xFFFF:
        out.append(0xDA)
        out += _U16.pack(n)
    else:
        out.append(0xDB)
        out += _U32.pack(n)
    out += value


def _pack_int(out: bytearray, n: int) -> None:
    if n >= 0:
        if n <= 0x7F:
            out.append(n)
        elif n <= 0xFF:
            out += bytes((0xCC, n))
        elif n <= 0xFFFF:
            out.append(0xCD)
            out += _U16.pack(n)
        elif n <= 0xFFFFFFFF:
            out.append(0xCE)
            out += _U32.pack(n)
        elif n < 1 << 64:
            out.append(0xCF)
            out += _U64.pack(n)
        else:
            raise ValueError(f"{n} does not fit 64 bits")
    elif n >= -32:
        out.append(n & 0xFF)
    elif n >= -128:
        out += bytes((0xD0, n & 0xFF))
    elif n >= -32768:
        out.append(0xD1)
        out += struct.pack(">h", n)
    elif n >= -(1 << 31):
        out.append(0xD2)
        out += struct.pack(">i", n)
    elif n >= -(1 << 63):
        out.append(0xD3)
        out += struct.pack(">q", n)
    else:
        raise ValueError(f"{n} does not fit 64 bits")


_INTS: Final = {
    0xCC: struct.Struct(">B"),
    0xCD: _U16,
    0xCE: _U32,
    0xCF: _U64,
    0xD0: struct.Struct(">b"),
    0xD1: struct.Struct(">h"),
    0xD2: struct.Struct(">i"),
    0xD3: struct.Struct(">q"),
}
_STR_LENGTHS: Final = {0xD9: struct.Struct(">B"), 0xDA: _U16, 0xDB: _U32}
_ARRAY_LENGTHS: Final = {0xDC: _U16, 0xDD: _U32}
_MAP_LENGTHS: Final = {0xDE: _U16, 0xDF: _U32}


def _read(data: bytes, pos: int) -> tuple[Value, int]:
    head = data[pos]
    pos += 1
    if head <= 0x7F:
        return head, pos
    if head >= 0xE0:
        return head - 0x100, pos
    if 0xA0 <= head <= 0xBF:
        return _take(data, pos, head & 0x1F)
    if 0x90 <= head <= 0x9F:
        return _read_array(data, pos, head & 0x0F)
    if 0x80 <= head <= 0x8F:
        return _read_map(data, pos, head & 0x0F)
    if head in _INTS:
        form = _INTS[head]
        _need(data, pos, form.size)
        return form.unpack_from(data, pos)[0], pos + form.size
    if head in _STR_LENGTHS:
        form = _STR_LENGTHS[head]
        _need(data, pos, form.size)
        return _take(data, pos + form.size, form.unpack_from(data, pos)[0])
    if head in _ARRAY_LENGTHS:
        form = _ARRAY_LENGTHS[head]
        _need(data, pos, form.size)
        return _read_array(data, pos + form.size, form.unpack_from(data, pos)[0])
    if head in _MAP_LENGTHS:
        form = _MAP_LENGTHS[head]
        _need(data, pos, form.size)
        return _read_map(data, pos + form.size, form.unpack_from(data, pos)[0])
    if head == 0xCB:
        _need(data, pos, 8)
        return _DOUBLE.unpack_from(data, pos)[0], pos + 8
    if head == 0xC0:
        return None, pos
    raise ValueError(f"MessagePack type 0x{head:02x} at byte {pos - 1} is not one cmsgpack writes")


def _need(data: bytes, pos: int, n: int) -> None:
    if pos + n > len(data):
        raise ValueError(f"MessagePack value cut short at byte {len(data)}")


def _take(data: bytes, pos: int, n: int) -> tuple[bytes, int]:
    _need(data, pos, n)
    return data[pos : pos + n], pos + n


def _read_array(data: bytes, pos: int, n: int) -> tuple[Value, int]:
    items: list[Value] = []
    for _ in range(n):
        _need(data, pos, 1)
        item, pos = _read(data, pos)
        items.append(item)
    return items, pos


def _read_map(data: bytes, pos: int, n: int) -> tuple[Value, int]:
    items: dict[Value, Value] = {}
    for _ in range(n):
        _need(data, pos, 1)
        key, pos = _read(data, pos)
        _need(data, pos, 1)
        item, pos = _read(data, pos)
        if isinstance(key, list | dict):
            raise ValueError("a MessagePack map key that is a container")
        items[key] = item
    return items, pos
