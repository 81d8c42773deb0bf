"""The values a batch is made of between decoding and delivery."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from worker.codec.envelope import InputEvent
from worker.identity.model import IdentityEvent, IdentityWarning
from worker.kafka.records import OutputRecord, RawMessage


class OutputKind(StrEnum):
    """What an output record is; the value is the ``kind`` label of the emitted-records metric."""

    ENRICHED = "enriched"
    OVERRIDE = "override"
    PERSON_CHANGE = "person_change"
    GROUP_CHANGE = "group_change"
    WARNING = "warning"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class Decoded:
    """An input message decoded, with its identity view (skew-corrected timestamp) and the
    warnings decoding raised."""

    message: RawMessage
    event: InputEvent
    identity: IdentityEvent
    pre_warnings: tuple[IdentityWarning, ...] = ()
    stamp_ms: int = 0
    """The time its output records carry (warnings, overrides, person changes): the input
    message's Kafka timestamp (the clock only for a message without one), or, for a released
    buffered event, when it was first released. Never the processing clock of a replay."""


@dataclass(frozen=True, slots=True)
class Output:
    """An output record with the input it came from and what it is, for accounting once it is
    acknowledged (and for dead-lettering that input if the record is too large)."""

    source: RawMessage
    record: OutputRecord
    kind: OutputKind
    label: str = ""
    """the warning type, or the dead letter's reason"""
