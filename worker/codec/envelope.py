"""The decoded, validated input event, whatever format it came in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from worker.codec.errors import DecodeError
from worker.fast_init import fast_init
from worker.identity.model import (
    EventKind,
    GroupInput,
    IdentityEvent,
    IdentityWarning,
    JsonValue,
    PropertyUpdates,
)

RawFormat = Literal["avro", "json"]


@dataclass(frozen=True, slots=True)
class InputEvent:
    """One input event, decoded and validated (contract A1).

    ``properties`` are the event's own properties exactly as received: ``$set``, ``$set_once``,
    ``$unset`` and ``$process_person_profile`` stay in them (PostHog's top-level ``$set`` /
    ``$set_once`` are folded into ``properties`` first, as PostHog does). ``updates`` are the
    person property operations read from the format's carriers, so nothing downstream needs to
    look inside ``properties``.

    ``avro_body`` is the exact Avro body of the input when it was written with our ``Event``
    schema; the encoder then reuses it for the enriched event. It is not part of equality.
    Anyone who derives a changed copy with ``dataclasses.replace`` must set it to ``None``.
    """

    tenant: str
    kind: EventKind
    uuid: str
    distinct_id: str
    event: str | None
    timestamp_ms: int
    sent_at_ms: int | None
    other_id: str | None
    merge_dangerously: bool
    process_person: bool
    is_backend: bool
    properties: Mapping[str, JsonValue]
    updates: PropertyUpdates
    raw_format: RawFormat
    avro_body: bytes | None = field(default=None, compare=False, repr=False)
    ignored_timestamp: str | None = None
    """Why the event's own time (timestamp, PostHog offset) was ignored as malformed or out of
    range; ``timestamp_ms`` is then the receive time (warning ``ignored_invalid_timestamp``)."""
    warnings: tuple[IdentityWarning, ...] = ()
    """Warnings the dialect raised while reading the event (e.g.
    ``invalid_process_person_profile``), written before the rules' warnings."""
    derived: bool = False
    """An event the dialect derived from another one of the same payload (e.g. a Schematic key
    merged into the call's first key): it is resolved, warns and overrides like any event, but
    writes no enriched event of its own (the payload's own event does)."""
    groups: tuple[GroupInput, ...] = ()
    """The groups the event names (``worker.codec.groups``; contract A9)."""

    def __init__(
        self,
        tenant: str,
        kind: EventKind,
        uuid: str,
        distinct_id: str,
        event: str | None,
        timestamp_ms: int,
        sent_at_ms: int | None,
        other_id: str | None,
        merge_dangerously: bool,
        process_person: bool,
        is_backend: bool,
        properties: Mapping[str, JsonValue],
        updates: PropertyUpdates,
        raw_format: RawFormat,
        avro_body: bytes | None = None,
        ignored_timestamp: str | None = None,
        warnings: tuple[IdentityWarning, ...] = (),
        derived: bool = False,
        groups: tuple[GroupInput, ...] = (),
    ) -> None:  # compiled: native code (``worker.fast_init``)
        self.tenant = tenant  # type: ignore[misc]
        self.kind = kind  # type: ignore[misc]
        self.uuid = uuid  # type: ignore[misc]
        self.distinct_id = distinct_id  # type: ignore[misc]
        self.event = event  # type: ignore[misc]
        self.timestamp_ms = timestamp_ms  # type: ignore[misc]
        self.sent_at_ms = sent_at_ms  # type: ignore[misc]
        self.other_id = other_id  # type: ignore[misc]
        self.merge_dangerously = merge_dangerously  # type: ignore[misc]
        self.process_person = process_person  # type: ignore[misc]
        self.is_backend = is_backend  # type: ignore[misc]
        self.properties = properties  # type: ignore[misc]
        self.updates = updates  # type: ignore[misc]
        self.raw_format = raw_format  # type: ignore[misc]
        self.avro_body = avro_body  # type: ignore[misc]
        self.ignored_timestamp = ignored_timestamp  # type: ignore[misc]
        self.warnings = warnings  # type: ignore[misc]
        self.derived = derived  # type: ignore[misc]
        self.groups = groups  # type: ignore[misc]


fast_init(InputEvent)


def check_kind_fields(kind: EventKind, event: str | None, other_id: str | None) -> None:
    """The fields a kind cannot do without: a track's event name, an alias's alias."""
    if not event and kind is EventKind.TRACK:
        raise DecodeError("missing_field", "a track event needs an event name", field="event")
    if other_id is None and kind is EventKind.ALIAS:
        raise DecodeError("missing_field", "an alias event needs the alias id", field="other_id")


def to_identity_event(
    e: InputEvent,
    timestamp_ms: int,
    *,
    source: str | None = None,
    buffer_payload: bytes | None = None,
) -> IdentityEvent:
    """The identity layer's view of ``e``; ``timestamp_ms`` is the skew-corrected timestamp,
    ``source`` and ``buffer_payload`` as ``IdentityEvent`` says.

    A track's ``other_id`` is dropped: only identify and alias merge.
    """
    other_id = e.other_id
    if other_id is not None and e.kind is EventKind.TRACK:
        other_id = None
    return IdentityEvent(
        tenant=e.tenant,
        kind=e.kind,
        distinct_id=e.distinct_id,
        uuid=e.uuid,
        timestamp_ms=timestamp_ms,
        other_id=other_id,
        merge_dangerously=e.merge_dangerously,
        process_person=e.process_person,
        updates=e.updates,
        buffer_payload=buffer_payload,
        source=source,
        groups=e.groups,
    )
