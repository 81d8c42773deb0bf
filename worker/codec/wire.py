"""Confluent wire format: magic byte ``0``, 4-byte big-endian schema id, then the Avro body."""

from __future__ import annotations

import struct
from typing import Final

from worker.codec.errors import DecodeError

MAGIC_BYTE: Final = 0
HEADER_SIZE: Final = 5
MAX_SCHEMA_ID: Final = 2**31 - 1
"""Schema ids are signed 32-bit integers in the Confluent registry."""

_HEADER: Final = struct.Struct(">bI")


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro body with the wire-format header."""
    if not 0 <= schema_id <= MAX_SCHEMA_ID:
        raise ValueError(f"schema id out of range: {schema_id}")
    return _HEADER.pack(MAGIC_BYTE, schema_id) + body


def parse_frame(data: bytes) -> tuple[int, bytes]:
    """Split a wire-format message into ``(schema_id, body)``.

    Raises ``DecodeError`` with reason ``unknown_magic_byte`` or ``invalid_frame``.
    """
    if not data or data[0] != MAGIC_BYTE:
        first = f"0x{data[0]:02x}" if data else "nothing"
        raise DecodeError("unknown_magic_byte", f"expected magic byte 0x00, got {first}")
    if len(data) < HEADER_SIZE:
        raise DecodeError(
            "invalid_frame", f"wire-format header needs {HEADER_SIZE} bytes, got {len(data)}"
        )
    _, schema_id = _HEADER.unpack_from(data)
    if schema_id > MAX_SCHEMA_ID:
        raise DecodeError("invalid_frame", f"schema id out of range: {schema_id}")
    return schema_id, data[HEADER_SIZE:]
