"""Input messages (and buffered payloads handed back by the store) into ``Decoded`` items.

Decoding fixes the timestamp (clock skew, contract A2) and marks the events that may wait in
the buffer (docs/BUFFER.md) by attaching their payload. A message that cannot be decoded becomes
a dead-letter ``Output``; it never stops the partition. ``SchemaRegistryUnavailableError`` (a
``TransientError``) propagates: the batch is retried, the message is not dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from worker.codec.decode import DecodeOptions, decode_message, decode_messages
from worker.codec.encode import OutputEncoder
from worker.codec.envelope import InputEvent, to_identity_event
from worker.codec.errors import DecodeError
from worker.config import BufferSettings
from worker.identity.model import EventKind
from worker.identity.timestamps import normalize_timestamp
from worker.kafka.records import RawMessage
from worker.pipeline.deadletter import dead_letter
from worker.pipeline.items import Decoded, Output, OutputKind
from worker.store.base import Released

BUFFER_SOURCE = "identity-worker.buffer"
"""``iw.source.topic`` of a dead letter made from a released buffered event."""


@dataclass(frozen=True, slots=True)
class Decoder:
    """Decodes with ``options``; ``payloads`` encodes the events that may be buffered (the
    store keeps them as input messages, read back by ``released``)."""

    options: DecodeOptions
    payloads: OutputEncoder
    dead_letters: str
    """the dead-letter topic"""
    future_timestamp_margin_ms: int
    buffer: BufferSettings

    def decode(self, message: RawMessage, now_ms: int) -> Decoded | Output:
        """``message`` decoded, or its dead letter: its first event when it holds several
        (``decode_all`` gives them all)."""
        return self.decode_all(message, now_ms)[0]

    def decode_all(self, message: RawMessage, now_ms: int) -> list[Decoded | Output]:
        """The events of ``message`` decoded, in order, each bad one as its own dead letter
        (an element of a batch names its index in ``iw.source.index``)."""
        items = decode_messages(
            message.value,
            message.key,
            message.headers,
            message.source_ref,
            self.options,
            received_at_ms=message.timestamp_ms,
            topic=message.topic,
        )
        return [
            self._dead(message, item)
            if isinstance(item, DecodeError)
            else self._item(message, item, now_ms)
            for item in items
        ]

    def _item(self, message: RawMessage, event: InputEvent, now_ms: int) -> Decoded:
        timestamp_ms, warning = normalize_timestamp(
            event.timestamp_ms,
            event.sent_at_ms,
            now_ms,
            self.future_timestamp_margin_ms,
            ignored=event.ignored_timestamp,
        )
        identity = to_identity_event(event, timestamp_ms)
        if self.bufferable(event):
            identity = replace(identity, buffer_payload=self.payloads.input_event(event))
        warnings = (*event.warnings, warning) if warning else event.warnings
        return Decoded(message, event, identity, warnings)

    def released(self, entry: Released) -> Decoded | Output:
        """A buffered event the store handed back, decoded from the payload it kept (its
        timestamp was fixed when it first arrived), or a dead letter."""
        source = RawMessage(BUFFER_SOURCE, -1, -1, None, entry.payload, (), entry.ingested_ms)
        try:
            event = decode_message(entry.payload, None, None, entry.event_uuid, self.options)
        except DecodeError as exc:  # only a foreign writer in our keys could cause this
            return self._dead(source, exc)
        return Decoded(source, event, to_identity_event(event, event.timestamp_ms))

    def bufferable(self, event: InputEvent) -> bool:
        """A backend event that merges nothing and processes its person (docs/BUFFER.md)."""
        if not (self.buffer.enabled and event.is_backend and event.process_person):
            return False
        return event.kind is EventKind.TRACK or (
            event.kind is EventKind.IDENTIFY and event.other_id is None
        )

    def _dead(self, message: RawMessage, exc: DecodeError) -> Output:
        record = dead_letter(message, self.dead_letters, exc, index=exc.index)
        return Output(message, record, OutputKind.DEAD_LETTER, exc.reason)
