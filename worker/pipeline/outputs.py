"""The output records of one resolved event: a pure function of (decoded event, resolution,
context). No Kafka, no Redis, no clock: records are stamped with the event's own time
(``Decoded.stamp_ms``: its message's Kafka timestamp), so a replay writes the same records.

Order per event: warnings, the enriched event, distinct-id overrides, then person changes
(merged-away persons first, then the person's new state if the store says it changed), then
group changes (each group the store says the event changed). A record that cannot be encoded
turns the event's input into one dead letter (``encode_failed``) instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from worker.codec.encode import OutputEncoder
from worker.codec.errors import EncodeError
from worker.config import TopicSettings
from worker.identity.model import IdentityWarning, Outcome, Resolution, WarningKind
from worker.kafka.records import OutputRecord
from worker.observability.status import BatchStats
from worker.pipeline.deadletter import dead_letter
from worker.pipeline.items import Decoded, Output, OutputKind
from worker.pipeline.person_changes import changed_person, merged_away

_REFUSALS: Final = {
    WarningKind.CANNOT_MERGE_ALREADY_IDENTIFIED: "refused_identified",
    WarningKind.MERGE_LIMIT_EXCEEDED: "refused_limit",
    WarningKind.CANNOT_MERGE_WITH_ILLEGAL_DISTINCT_ID: "refused_illegal",
}


@dataclass(frozen=True, slots=True)
class OutputContext:
    """What building outputs needs besides the event and its resolution: how to encode, and
    where to. No state: the outputs of an event depend on nothing else."""

    encoder: OutputEncoder
    topics: TopicSettings


def event_outputs(
    item: Decoded,
    resolution: Resolution,
    ctx: OutputContext,
    *,
    buffered_ms: int = 0,
) -> list[Output]:
    """Every output record ``resolution`` of ``item`` calls for, in order; warnings, overrides
    and person changes are stamped with ``item.stamp_ms``."""
    now_ms = item.stamp_ms
    try:
        return [
            *_warnings(item, resolution, ctx, now_ms),
            *_enriched(item, resolution, ctx, buffered_ms),
            *_overrides(item, resolution, ctx, now_ms),
            *_person_changes(item, resolution, ctx, now_ms),
            *_group_changes(item, resolution, ctx, now_ms),
        ]
    except EncodeError as exc:
        message = item.message
        dead = dead_letter(message, ctx.topics.dead_letters, exc, reason="encode_failed")
        return [Output(message, dead, OutputKind.DEAD_LETTER, "encode_failed")]


def tally(resolution: Resolution, stats: BatchStats) -> None:
    """Count what ``resolution`` did (merges and refusals, persons created, outcome)."""
    for warning in resolution.warnings:
        if warning.kind in _REFUSALS:
            stats.merges[_REFUSALS[warning.kind]] += 1
    if resolution.outcome is Outcome.BUFFER:
        stats.buffered += 1
    elif resolution.outcome is not Outcome.EMIT:
        stats.rejected += 1
    if resolution.merged:
        stats.merges["merged"] += 1
    if resolution.person_created:
        stats.persons_created += 1


def warnings_of(item: Decoded, resolution: Resolution) -> tuple[IdentityWarning, ...]:
    """Decoding's warnings, then the rules'."""
    return (*item.pre_warnings, *resolution.warnings)


def _warnings(
    item: Decoded, resolution: Resolution, ctx: OutputContext, now_ms: int
) -> list[Output]:
    if not (item.pre_warnings or resolution.warnings):  # the common case
        return []
    event, out = item.event, []
    for warning in warnings_of(item, resolution):
        rec = ctx.encoder.warning(
            event.tenant,
            warning,
            event_uuid=event.uuid,
            distinct_id=event.distinct_id,
            timestamp_ms=now_ms,
        )
        record = OutputRecord(ctx.topics.warnings, rec.value, rec.key)
        out.append(Output(item.message, record, OutputKind.WARNING, warning.kind.value))
    return out


def _enriched(
    item: Decoded, resolution: Resolution, ctx: OutputContext, buffered_ms: int
) -> list[Output]:
    if resolution.outcome is not Outcome.EMIT or item.event.derived:
        return []  # a derived event's payload already has its enriched event
    rec = ctx.encoder.enriched(item.event, resolution, buffered_ms=buffered_ms)
    record = OutputRecord(ctx.topics.enriched, rec.value, rec.key)
    return [Output(item.message, record, OutputKind.ENRICHED)]


def _overrides(
    item: Decoded, resolution: Resolution, ctx: OutputContext, now_ms: int
) -> list[Output]:
    if not resolution.overrides:  # the common case
        return []
    return [
        Output(
            item.message,
            OutputRecord(ctx.topics.overrides, rec.value, rec.key),
            OutputKind.OVERRIDE,
        )
        for rec in ctx.encoder.overrides(item.event, resolution, timestamp_ms=now_ms)
    ]


def _group_changes(
    item: Decoded, resolution: Resolution, ctx: OutputContext, now_ms: int
) -> list[Output]:
    """Each group whose properties the event changed, with its new state (contract A9)."""
    out = []
    for change in resolution.group_changes:
        rec = ctx.encoder.group_change(
            item.event.tenant, change, event_uuid=item.event.uuid, timestamp_ms=now_ms
        )
        record = OutputRecord(ctx.topics.group_changes, rec.value, rec.key)
        out.append(Output(item.message, record, OutputKind.GROUP_CHANGE, version=change.version))
    return out


def _person_changes(
    item: Decoded, resolution: Resolution, ctx: OutputContext, now_ms: int
) -> list[Output]:
    """Merged-away persons first, then the person's new state if the event changed it."""
    if resolution.person_id is None or resolution.person_version is None:
        return []
    topic, event, out = ctx.topics.person_changes, item.event, []
    version = resolution.person_version
    for old in merged_away(resolution):
        rec = ctx.encoder.person_merged(
            event.tenant,
            old,
            resolution.person_id,
            resolution.person_version,
            event_uuid=event.uuid,
            timestamp_ms=now_ms,
        )
        record = OutputRecord(topic, rec.value, rec.key)
        out.append(Output(item.message, record, OutputKind.PERSON_CHANGE, version=version))
    if changed_person(resolution):
        rec = ctx.encoder.person_change(event, resolution, timestamp_ms=now_ms)
        record = OutputRecord(topic, rec.value, rec.key)
        out.append(Output(item.message, record, OutputKind.PERSON_CHANGE, version=version))
    return out
