"""The values a batch is made of between decoding and delivery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from worker.codec.envelope import InputEvent
from worker.fast_init import fast_init
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

    def __init__(
        self,
        message: RawMessage,
        event: InputEvent,
        identity: IdentityEvent,
        pre_warnings: tuple[IdentityWarning, ...] = (),
        stamp_ms: int = 0,
    ) -> None:  # compiled: native code (``worker.fast_init``)
        self.message = message  # type: ignore[misc]
        self.event = event  # type: ignore[misc]
        self.identity = identity  # type: ignore[misc]
        self.pre_warnings = pre_warnings  # type: ignore[misc]
        self.stamp_ms = stamp_ms  # type: ignore[misc]


fast_init(Decoded)


@dataclass(frozen=True, slots=True)
class Output:
    """An output record with the input it came from and what it is, for accounting once it is
    acknowledged (and for dead-lettering that input if the record is too large)."""

    source: RawMessage
    record: OutputRecord
    kind: OutputKind
    label: str = ""
    """the warning type, or the dead letter's reason"""
    version: int | None = None
    """for a person or group change: the version it announces (``in_version_order``)"""

    def __init__(
        self,
        source: RawMessage,
        record: OutputRecord,
        kind: OutputKind,
        label: str = "",
        version: int | None = None,
    ) -> None:  # compiled: native code (``worker.fast_init``)
        self.source = source  # type: ignore[misc]
        self.record = record  # type: ignore[misc]
        self.kind = kind  # type: ignore[misc]
        self.label = label  # type: ignore[misc]
        self.version = version  # type: ignore[misc]


fast_init(Output)


def in_version_order(outputs: Sequence[Output]) -> list[Output]:
    """``outputs`` with the person and group changes of each key in ascending version order.

    One batch can announce a person twice in the reverse of its version order: a buffered event
    released by an identify is applied (and versioned) before the identify's own changes, but
    delivered with the other released events after the batch's own outputs. A compacted topic
    keeps a key's last record, so records of one key must reach it oldest first. Only the
    change records move, each into a slot another change record of its key held; every other
    output keeps its place.
    """
    slots: dict[tuple[str, bytes | None], list[int]] = {}
    for index, out in enumerate(outputs):
        if out.version is not None:
            slots.setdefault((out.record.topic, out.record.key), []).append(index)
    ordered = list(outputs)
    for indexes in slots.values():
        if len(indexes) < 2:
            continue
        changes = sorted((outputs[i] for i in indexes), key=_version)
        for index, out in zip(indexes, changes, strict=True):
            ordered[index] = out
    return ordered


def _version(out: Output) -> int:
    return out.version if out.version is not None else -1
