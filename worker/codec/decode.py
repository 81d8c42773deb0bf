"""The one entry point for input messages: bytes in, events (or why not) out.

The format is told by the first byte: ``0x00`` → Avro in the Confluent wire format (read as
our ``Event``), ``{`` or ``[`` (after white space) → JSON. Anything else is
``unknown_magic_byte``. One message may hold several events (a JSON array is a batch; a
Schematic call with several keys derives merges): ``decode_messages`` returns them all, each an
``InputEvent`` or the ``DecodeError`` of that event alone; ``decode_message`` is the one-event
form.

The JSON dialect of a message: the ``dialect_header`` header when present, else the topic's
entry in ``topic_dialects``, else ``json.dialect`` (``auto`` by default: detected).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from worker.codec import native
from worker.codec.avro import AvroCodec, SchemaName
from worker.codec.envelope import InputEvent
from worker.codec.errors import DecodeError
from worker.codec.groups import check_group_load
from worker.codec.json_formats import (
    JSON_DIALECTS,
    DecodedItem,
    JsonDialect,
    JsonOptions,
    decode_json,
)
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
    (``native``/``posthog``/``segment``/``altertable``/``seerstack``/``logrocket``/
    ``schematic``/``auto``), overriding ``topic_dialects`` and ``json.dialect``.
    ``topic_dialects``: the JSON dialect of each listed input topic, overriding ``json.dialect``.
    """

    avro: AvroCodec = field(default_factory=AvroCodec)
    json: JsonOptions = field(default_factory=JsonOptions)
    tenant_from_key: bool = True
    dialect_header: str = DEFAULT_DIALECT_HEADER
    topic_dialects: Mapping[str, JsonDialect] = field(default_factory=dict)


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


def decode_messages(
    value: bytes | None,
    key: bytes | None,
    headers: Headers | None,
    source_ref: str,
    options: DecodeOptions,
    *,
    received_at_ms: int | None = None,
    topic: str | None = None,
) -> list[DecodedItem]:
    """Decode one Kafka message into its events, in order.

    ``source_ref`` identifies the message's position (e.g. ``"events/3/1042"``); a JSON event
    without a uuid gets uuid5 of it (of ``<source_ref>#<index>`` for an element of a batch), so
    a replay keeps its uuid. ``received_at_ms`` (the Kafka timestamp) stands in for a JSON
    event's missing timestamp. ``topic`` picks the dialect of ``options.topic_dialects``.

    A message that cannot be decoded at all is one ``DecodeError`` (``index`` ``None``); a bad
    element of a batch is its own ``DecodeError`` (``index`` set) among the others' events.
    Raises ``SchemaRegistryUnavailableError`` when a writer schema cannot be fetched right now.
    """
    try:
        return _decode(value, key, headers, source_ref, options, received_at_ms, topic)
    except DecodeError as exc:
        return [exc]


def decode_message(
    value: bytes | None,
    key: bytes | None,
    headers: Headers | None,
    source_ref: str,
    options: DecodeOptions,
    *,
    received_at_ms: int | None = None,
) -> InputEvent:
    """Decode a message that holds one event into an ``InputEvent``.

    Raises ``DecodeError`` for input that can never be decoded (the first bad element of a
    batch), or that holds several events (use ``decode_messages``), and
    ``SchemaRegistryUnavailableError`` when a writer schema cannot be fetched right now.
    """
    items = _decode(value, key, headers, source_ref, options, received_at_ms, None)
    for item in items:
        if isinstance(item, DecodeError):
            raise item
    if len(items) != 1:
        raise DecodeError("invalid_field", f"the message holds {len(items)} events, not one")
    item = items[0]
    assert isinstance(item, InputEvent)  # noqa: S101 - the loop above raised every error
    return item


def _decode(
    value: bytes | None,
    key: bytes | None,
    headers: Headers | None,
    source_ref: str,
    options: DecodeOptions,
    received_at_ms: int | None,
    topic: str | None,
) -> list[DecodedItem]:
    if not value:
        raise DecodeError("empty_value", "the message has no value (a tombstone?)")
    first = value[0]
    if first == MAGIC_BYTE:
        decoded = options.avro.decode(SchemaName.EVENT, value)
        return [
            check_group_load(
                native.from_avro_record(
                    decoded.record, decoded.body if decoded.same_schema else None, received_at_ms
                )
            )
        ]
    if first in _WHITESPACE:
        stripped = value.lstrip(_WHITESPACE)
        first = stripped[0] if stripped else -1
    if first in _JSON_STARTS:
        dialect = _header_dialect(headers, options.dialect_header)
        if dialect is None and topic is not None:
            dialect = options.topic_dialects.get(topic)
        return decode_json(
            value,
            source_ref=source_ref,
            options=options.json,
            tenant_fallback=tenant_from_key(key) if options.tenant_from_key else None,
            received_at_ms=received_at_ms,
            dialect=dialect,
        )
    raise DecodeError(
        "unknown_magic_byte",
        f"first byte 0x{value[0]:02x} is neither the Avro magic byte 0x00 nor JSON",
    )
