"""The one entry point for input messages: bytes in, ``InputEvent`` or ``DecodeError`` out.

The format is told by the first byte: ``0x00`` → Avro in the Confluent wire format (read as
our ``Event``), ``{`` or ``[`` (after white space) → JSON. Anything else is
``unknown_magic_byte``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from worker.codec import native
from worker.codec.avro import AvroCodec, SchemaName
from worker.codec.envelope import InputEvent
from worker.codec.errors import DecodeError
from worker.codec.groups import check_group_load
from worker.codec.json_formats import JSON_DIALECTS, JsonDialect, JsonOptions, decode_json
from worker.codec.wire import MAGIC_BYTE

Headers = Sequence[tuple[str, bytes | str | None]]
"""Kafka headers as confluent-kafka returns them (``Message.headers()``)."""

DEFAULT_DIALECT_HEADER: Final = "event-format"
_JSON_STARTS: Final = frozenset(b"{[")
_WHITESPACE: Final = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """How input messages are read.

    ``tenant_from_key``: a JSON event without a tenant field takes the message key's prefix
    before the first ``:`` (PostHog keys messages ``"{token}:{distinct_id}"``).
    ``dialect_header``: a header that names the JSON dialect of one message
    (``native``/``posthog``/``segment``/``auto``), overriding ``json.dialect``.
    """

    avro: AvroCodec = field(default_factory=AvroCodec)
    json: JsonOptions = field(default_factory=JsonOptions)
    tenant_from_key: bool = True
    dialect_header: str = DEFAULT_DIALECT_HEADER


def tenant_from_key(key: bytes | None) -> str | None:
    """The key's prefix before the first ``:``, or ``None``."""
    if not key:
        return None
    prefix, sep, _ = key.partition(b":")
    if not sep or not prefix:
        return None
    try:
        return prefix.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _header_dialect(headers: Headers | None, name: str) -> JsonDialect | None:
    if not headers:
        return None
    for header, raw in headers:
        if header.lower() != name.lower() or raw is None:
            continue
        text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
        for dialect in JSON_DIALECTS:
            if text.strip().lower() == dialect:
                return dialect
        raise DecodeError(
            "invalid_field", f"header {name} names no JSON dialect: {text[:40]!r}", field=name
        )
    return None


def decode_message(
    value: bytes | None,
    key: bytes | None,
    headers: Headers | None,
    source_ref: str,
    options: DecodeOptions,
    *,
    received_at_ms: int | None = None,
) -> InputEvent:
    """Decode one Kafka message into an ``InputEvent``.

    ``source_ref`` identifies the message's position (e.g. ``"events/3/1042"``); a JSON event
    without a uuid gets uuid5 of it, so a replay keeps its uuid. ``received_at_ms`` (the Kafka
    timestamp) stands in for a JSON event's missing timestamp.

    Raises ``DecodeError`` for input that can never be decoded, and
    ``SchemaRegistryUnavailableError`` when a writer schema cannot be fetched right now.
    """
    if not value:
        raise DecodeError("empty_value", "the message has no value (a tombstone?)")
    first = value[0]
    if first == MAGIC_BYTE:
        decoded = options.avro.decode(SchemaName.EVENT, value)
        return check_group_load(
            native.from_avro_record(
                decoded.record, decoded.body if decoded.same_schema else None, received_at_ms
            )
        )
    if first in _WHITESPACE:
        stripped = value.lstrip(_WHITESPACE)
        first = stripped[0] if stripped else -1
    if first in _JSON_STARTS:
        return check_group_load(
            decode_json(
                value,
                source_ref=source_ref,
                options=options.json,
                tenant_fallback=tenant_from_key(key) if options.tenant_from_key else None,
                received_at_ms=received_at_ms,
                dialect=_header_dialect(headers, options.dialect_header),
            )
        )
    raise DecodeError(
        "unknown_magic_byte",
        f"first byte 0x{value[0]:02x} is neither the Avro magic byte 0x00 nor JSON",
    )
