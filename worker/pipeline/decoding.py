"""Input messages (and buffered payloads handed back by the store) into ``Decoded`` items.

Decoding fixes the timestamp (clock skew, contract A2) and marks the events that may wait in
the buffer (docs/BUFFER.md) by attaching their payload. "Now" for an event is its message's
Kafka timestamp (the processing clock only for a message without one), so a replay or a lagging
worker fixes the same timestamps and stamps the same outputs as the first run. Each event names
its source (``IdentityEvent.source``): the message's position, which the store keys its replay
receipts by.

A message that cannot be decoded becomes a dead-letter ``Output`` (the decoder's reason); any
other exception while decoding it becomes one too (``internal_error``): it never stops the
partition. ``SchemaRegistryUnavailableError`` (a ``TransientError``) propagates: the batch is
retried, the message is not dead-lettered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from worker.codec.decode import DecodeOptions, decode_message, decode_messages
from worker.codec.encode import OutputEncoder
from worker.codec.envelope import InputEvent, to_identity_event
from worker.codec.errors import DecodeError
from worker.codec.json_formats import JsonOptions
from worker.config import BufferSettings
from worker.errors import TransientError
from worker.identity.model import EventKind
from worker.identity.timestamps import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, normalize_timestamp
from worker.kafka.records import RawMessage
from worker.pipeline.deadletter import INTERNAL_ERROR, dead_letter, failure_letter
from worker.pipeline.items import Decoded, Output, OutputKind
from worker.store.base import Released

log = logging.getLogger(__name__)

BUFFER_SOURCE = "identity-worker.buffer"
"""``iw.source.topic`` of a dead letter made from a released buffered event."""


def message_now(message: RawMessage, clock_ms: int) -> int:
    """ "Now" for the event of ``message``: its Kafka timestamp, or ``clock_ms`` when it has
    none (or one outside years 1970-9999, which no broker writes)."""
    stamp = message.timestamp_ms
    if stamp is not None and MIN_EVENT_TIME_MS < stamp <= MAX_EVENT_TIME_MS:
        return stamp
    return clock_ms


def payload_options(options: DecodeOptions) -> DecodeOptions:
    """How a buffered payload is read back: it is our native JSON, written by the worker
    (``OutputEncoder.input_event``), whose own ``tenant`` field names its tenant, whatever
    dialect and tenant fields the inputs are configured with."""
    return DecodeOptions(
        avro=options.avro,
        json=JsonOptions(dialect="native", native_tenant_fields=("tenant",)),
        tenant_from_key=False,
    )


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

    def decode_all(self, message: RawMessage, clock_ms: int) -> list[Decoded | Output]:
        """The events of ``message`` decoded, in order, each bad one as its own dead letter
        (an element of a batch names its index in ``iw.source.index``). ``clock_ms`` stands in
        for "now" only when the message has no Kafka timestamp. An event of a message that
        holds several has the source ``<topic/partition/offset>#<index>``."""
        now_ms = message_now(message, clock_ms)
        source_ref = message.source_ref
        try:
            items = decode_messages(
                message.value,
                message.key,
                message.headers,
                source_ref,
                self.options,
                received_at_ms=message.timestamp_ms,
                topic=message.topic,
            )
        except TransientError:
            raise
        except Exception as exc:  # one message never stops the partition
            return [self.failed(message, exc, INTERNAL_ERROR)]
        several = len(items) > 1
        out: list[Decoded | Output] = []
        for index, item in enumerate(items):
            if isinstance(item, DecodeError):
                out.append(self._dead(message, item))
                continue
            source = f"{source_ref}#{index}" if several else source_ref
            try:
                out.append(self._item(message, item, now_ms, source))
            except DecodeError as exc:
                out.append(self._dead(message, exc))
            except TransientError:
                raise
            except Exception as exc:  # one event never stops the partition
                out.append(self.failed(message, exc, INTERNAL_ERROR))
        return out

    def _item(self, message: RawMessage, event: InputEvent, now_ms: int, source: str) -> Decoded:
        timestamp_ms, warning = normalize_timestamp(
            event.timestamp_ms,
            event.sent_at_ms,
            now_ms,
            self.future_timestamp_margin_ms,
            ignored=event.ignored_timestamp,
        )
        payload = self.payloads.input_event(event) if self.bufferable(event) else None
        identity = to_identity_event(event, timestamp_ms, source=source, buffer_payload=payload)
        warnings = (*event.warnings, warning) if warning else event.warnings
        return Decoded(message, event, identity, warnings, now_ms)

    def released(self, entry: Released, clock_ms: int) -> Decoded | Output:
        """A buffered event the store handed back, decoded from the payload it kept (its
        timestamp was fixed when it first arrived), or a dead letter. Its outputs are stamped
        with its first release (``released_ms``; ``clock_ms`` for a store that has none)."""
        source = RawMessage(BUFFER_SOURCE, -1, -1, None, entry.payload, (), entry.ingested_ms)
        try:
            options = payload_options(self.options)
            event = decode_message(entry.payload, None, None, entry.event_uuid, options)
            identity = to_identity_event(event, event.timestamp_ms)
        except DecodeError as exc:  # only a foreign writer in our keys could cause this
            return self._dead(source, exc)
        except TransientError:
            raise
        except Exception as exc:
            return self.failed(source, exc, INTERNAL_ERROR)
        return Decoded(source, event, identity, (), entry.released_ms or clock_ms)

    def bufferable(self, event: InputEvent) -> bool:
        """A backend event that merges nothing and processes its person (docs/BUFFER.md)."""
        if not (self.buffer.enabled and event.is_backend and event.process_person):
            return False
        return event.kind is EventKind.TRACK or (
            event.kind is EventKind.IDENTIFY and event.other_id is None
        )

    def failed(self, message: RawMessage, exc: Exception, reason: str) -> Output:
        """The dead letter of ``message`` whose handling raised ``exc`` (``reason``:
        ``internal_error`` or ``store_rejected``)."""
        log.error(
            "event set aside as a dead letter (%s): %s at %s",
            reason,
            type(exc).__name__,
            message.source_ref,
        )
        log.debug("the exception", exc_info=exc)
        record = failure_letter(message, self.dead_letters, exc, reason)
        return Output(message, record, OutputKind.DEAD_LETTER, reason)

    def _dead(self, message: RawMessage, exc: DecodeError) -> Output:
        record = dead_letter(message, self.dead_letters, exc, index=exc.index)
        return Output(message, record, OutputKind.DEAD_LETTER, exc.reason)
