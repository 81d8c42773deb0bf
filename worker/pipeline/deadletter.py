"""Dead letters: the original message, unchanged, plus headers saying what went wrong where.

Reasons besides the decoders' (``worker.codec.DECODE_REASONS``): ``encode_failed`` and
``output_too_large`` (an output of the event could not be written), ``store_rejected`` (the
store refused the event's operation for good: a ``PermanentStoreError`` narrowed to this event)
and ``internal_error`` (any other exception while handling this one event: a bug). For the last
two, ``iw.error.message`` starts with the exception's type.
"""

from __future__ import annotations

from worker.kafka.records import OutputRecord, RawMessage

HEADER_REASON = "iw.error.reason"
HEADER_MESSAGE = "iw.error.message"
HEADER_TOPIC = "iw.source.topic"
HEADER_PARTITION = "iw.source.partition"
HEADER_OFFSET = "iw.source.offset"
HEADER_TIMESTAMP = "iw.source.timestamp"
HEADER_INDEX = "iw.source.index"
"""The element of a batch (a JSON array) that alone was bad; absent for a whole message."""

INTERNAL_ERROR = "internal_error"
"""An unexpected exception while handling one event (a bug): the event is set aside."""
STORE_REJECTED = "store_rejected"
"""The store refused this event's operation permanently (e.g. a Lua error on its data)."""

_MAX_MESSAGE = 500


def dead_letter(
    message: RawMessage,
    topic: str,
    error: Exception,
    *,
    reason: str | None = None,
    index: int | None = None,
) -> OutputRecord:
    """The dead-letter record of ``message``: its key and bytes, its headers, and ours.

    ``reason`` defaults to the error's own ``reason`` attribute (``DecodeError`` has one).
    """
    why = reason or str(getattr(error, "reason", type(error).__name__))
    text = str(error)[:_MAX_MESSAGE]
    headers = (
        *message.headers,
        (HEADER_REASON, why.encode()),
        (HEADER_MESSAGE, text.encode("utf-8", errors="replace")),
        (HEADER_TOPIC, message.topic.encode()),
        (HEADER_PARTITION, str(message.partition).encode()),
        (HEADER_OFFSET, str(message.offset).encode()),
    )
    if message.timestamp_ms is not None:
        headers = (*headers, (HEADER_TIMESTAMP, str(message.timestamp_ms).encode()))
    if index is not None:
        headers = (*headers, (HEADER_INDEX, str(index).encode()))
    return OutputRecord(topic=topic, value=message.value, key=message.key, headers=headers)


def failure_letter(message: RawMessage, topic: str, error: Exception, reason: str) -> OutputRecord:
    """The dead letter of an event whose handling raised ``error`` unexpectedly: ``reason``
    (``internal_error`` or ``store_rejected``), the message naming the exception's type."""
    text = f"{type(error).__name__}: {error}"
    return dead_letter(message, topic, _Described(text), reason=reason)


class _Described(Exception):
    """Carries the text of a dead letter's ``iw.error.message`` header."""
