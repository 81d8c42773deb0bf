"""Dead letters: the original message, unchanged, plus headers saying what went wrong where."""

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
