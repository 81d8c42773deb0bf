"""Runs one input message the way the worker does, short of Kafka and Redis: decode, event time,
the identity rules (the reference model), every output encoder. Any exception but a
``DecodeError`` escapes, which is what the hostile tests look for."""

from __future__ import annotations

from dataclasses import dataclass

from tests.hostile.corpus import HostileMessage
from worker.codec import AvroCodec, DecodeError, DecodeOptions, InputEvent, decode_message
from worker.codec.encode import OutputEncoder
from worker.codec.envelope import to_identity_event
from worker.identity.config import IdentityConfig
from worker.identity.model import IdentityEvent, IdentityWarning, Outcome, Resolution
from worker.identity.reference import ReferenceStore
from worker.identity.rules import prepare
from worker.identity.timestamps import normalize_timestamp

CODEC = AvroCodec()
OPTIONS = DecodeOptions(avro=CODEC)
CONFIG = IdentityConfig()
NOW_MS = 1_714_564_800_500
ENCODERS = (OutputEncoder("json", CODEC), OutputEncoder("avro", CODEC))


@dataclass(frozen=True, slots=True)
class Handled:
    """What became of an event that decoded."""

    event: InputEvent
    identity: IdentityEvent
    time_warning: IdentityWarning | None
    resolution: Resolution


def decode(message: HostileMessage) -> InputEvent | DecodeError:
    try:
        return decode_message(
            message.value,
            message.key,
            list(message.headers),
            "hostile/0/1",
            OPTIONS,
            received_at_ms=message.received_at_ms,
        )
    except DecodeError as exc:
        return exc


def handle(event: InputEvent) -> Handled:
    """The event through the event-time rules, the identity rules and every encoder."""
    timestamp_ms, warning = normalize_timestamp(
        event.timestamp_ms,
        event.sent_at_ms,
        NOW_MS,
        CONFIG.future_timestamp_margin_ms,
        ignored=event.ignored_timestamp,
    )
    identity = to_identity_event(event, timestamp_ms)
    prepare(identity, CONFIG)
    (resolution,) = ReferenceStore(CONFIG).resolve_batch(event.tenant, [identity], NOW_MS)
    warnings = [*([warning] if warning else []), *resolution.warnings]
    for encoder in ENCODERS:
        if resolution.outcome is Outcome.EMIT:
            encoder.enriched(event, resolution)
        encoder.overrides(event, resolution, timestamp_ms=NOW_MS)
        for w in warnings:
            encoder.warning(
                event.tenant,
                w,
                event_uuid=event.uuid,
                distinct_id=event.distinct_id,
                timestamp_ms=NOW_MS,
            )
        if resolution.person_version is not None:
            encoder.person_change(event, resolution, timestamp_ms=NOW_MS)
        # the buffer keeps an event as its input message and decodes it again when released
        payload = encoder.input_event(event)
        again = decode_message(payload, None, None, event.uuid, OPTIONS)
        assert again.ignored_timestamp is None
    return Handled(event, identity, warning, resolution)
