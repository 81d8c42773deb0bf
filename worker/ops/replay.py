"""``identity-worker dead-letters replay``: send dead letters back to the topic they came from.

Reads the dead-letter topic from the beginning (or from ``ReplayRange``'s start: an offset, or
the first letter at or after a time) up to its current end (a snapshot: letters that arrive
meanwhile wait for the next run), keeps those matching the filter, and produces each original
key, value and headers (without the worker's ``iw.*`` headers) to its source topic, or to
``--to``. With ``dry_run`` nothing is produced: the report says what would be. ``limit`` stops
after that many matching letters. Progress (done/total, rate, ETA) goes to stderr.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from worker.errors import KafkaUnavailableError
from worker.ops.offsets import watermarks
from worker.ops.progress import Progress
from worker.pipeline.deadletter import HEADER_REASON, HEADER_TOPIC


class TopicNotFoundError(LookupError):
    """The topic the command reads does not exist (exit code 1)."""


IDLE_SECONDS = 10.0
"""Stop when nothing arrived for this long: the snapshot's end cannot be reached."""


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    reasons: frozenset[str] = frozenset()
    """Replay only these reasons (empty: every reason)."""
    source_topics: frozenset[str] = frozenset()
    """Replay only letters from these topics (empty: every topic)."""

    def accepts(self, reason: str, source_topic: str) -> bool:
        return (not self.reasons or reason in self.reasons) and (
            not self.source_topics or source_topic in self.source_topics
        )


@dataclass(frozen=True, slots=True)
class ReplayRange:
    limit: int | None = None
    """Stop after this many matching letters (replayed, or would be)."""
    since_ms: int | None = None
    """Start at the first letter written at or after this time (ms since the epoch)."""
    until_ms: int | None = None
    """Skip letters written after this time."""
    start_offset: int | None = None
    """Start at this offset in every partition read (or the partition's start, if later)."""
    end_offset: int | None = None
    """Stop before this offset in every partition read."""
    partitions: frozenset[int] = frozenset()
    """Read only these partitions (empty: all)."""


@dataclass(slots=True)
class ReplayReport:
    scanned: int = 0
    replayed: Counter[str] = field(default_factory=Counter)
    """by destination topic"""
    skipped: Counter[str] = field(default_factory=Counter)
    """by reason the filter rejected, or "no_source_topic", or "after_until" """
    dry_run: bool = True
    limit_reached: bool = False
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The JSON summary ``dead-letters replay`` prints on stdout."""
        return {
            "dry_run": self.dry_run,
            "scanned": self.scanned,
            "replayed": sum(self.replayed.values()),
            "replayed_by_topic": dict(sorted(self.replayed.items())),
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(sorted(self.skipped.items())),
            "limit_reached": self.limit_reached,
            "seconds": round(self.seconds, 3),
        }


def replay_dead_letters(
    kafka_conf: Mapping[str, Any],
    dead_letter_topic: str,
    letter_filter: ReplayFilter,
    *,
    to_topic: str | None = None,
    dry_run: bool = True,
    progress: TextIO | None = None,
    progress_every: int = 1000,
    clock: Callable[[], float] = time.monotonic,
    producer_conf: Mapping[str, Any] | None = None,
    span: ReplayRange = ReplayRange(),
    metadata_timeout_seconds: float = 10.0,
) -> ReplayReport:
    """``kafka_conf``: the consumer's options; ``producer_conf`` (default ``kafka_conf``): the
    producer's; ``metadata_timeout_seconds``: how long to wait for the broker's metadata of the
    dead-letter topic. Raises ``TopicNotFoundError`` and ``KafkaUnavailableError``."""
    del progress_every  # kept for callers; the progress line is time-based
    started = clock()
    consumer = Consumer(
        {
            **kafka_conf,
            "group.id": f"identity-worker-replay-{int(clock() * 1000)}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    producer = (
        None if dry_run else Producer({**(producer_conf or kafka_conf), "enable.idempotence": True})
    )
    report = ReplayReport(dry_run=dry_run)
    out = progress or sys.stderr
    try:
        try:
            metadata = consumer.list_topics(dead_letter_topic, timeout=metadata_timeout_seconds)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"Kafka: no metadata: {exc.args[0]}") from None
        topic_meta = metadata.topics.get(dead_letter_topic)
        if topic_meta is None or topic_meta.error is not None:
            raise TopicNotFoundError(f"dead-letter topic {dead_letter_topic!r} does not exist")
        ends, assignment = _plan(consumer, dead_letter_topic, list(topic_meta.partitions), span)
        total = sum(ends[p.partition] - p.offset for p in assignment)
        print(f"scanning {total} dead letters in {dead_letter_topic}", file=out)
        bar = Progress(out, total, "replay" if not dry_run else "dry run", clock=clock)
        consumer.assign(assignment)
        idle_since = clock()
        while ends and not report.limit_reached:
            messages = consumer.consume(num_messages=500, timeout=1.0)
            if messages:
                idle_since = clock()
            elif clock() - idle_since > IDLE_SECONDS:
                # the end offsets can name a transaction marker or a compacted-away record
                break
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"reading {dead_letter_topic}: {error.str()}")
                partition, offset = message.partition(), message.offset()
                if partition is None or offset is None or partition not in ends:
                    continue
                if offset >= ends[partition]:
                    del ends[partition]
                    continue
                if offset + 1 >= ends[partition]:
                    del ends[partition]
                report.scanned += 1
                bar.advance()
                if span.until_ms is not None and _timestamp(message) > span.until_ms:
                    report.skipped["after_until"] += 1
                    continue
                _replay_one(message, letter_filter, to_topic, producer, report)
                if span.limit is not None and sum(report.replayed.values()) >= span.limit:
                    report.limit_reached = True
                    break
        bar.finish()
        if producer is not None and producer.flush(60) != 0:
            raise KafkaUnavailableError("Kafka: replayed messages not acknowledged within 60 s")
    finally:
        consumer.close()
    report.seconds = clock() - started
    verb = "would replay" if dry_run else "replayed"
    print(
        f"{report.scanned} scanned, {verb} {sum(report.replayed.values())}"
        f" ({dict(report.replayed)}), skipped {sum(report.skipped.values())}",
        file=out,
    )
    return report


def _timestamp(message: Any) -> int:
    _kind, ts = message.timestamp()
    return int(ts)


def _plan(
    consumer: Consumer, topic: str, partitions: list[int], span: ReplayRange
) -> tuple[dict[int, int], list[TopicPartition]]:
    """Per partition: the end offset (exclusive) and the start to assign; empty ranges left out."""
    wanted = [p for p in sorted(partitions) if not span.partitions or p in span.partitions]
    starts: dict[int, int] = {}
    if span.since_ms is not None:
        try:
            found = consumer.offsets_for_times(
                [TopicPartition(topic, p, span.since_ms) for p in wanted], timeout=10
            )
        except KafkaException as exc:
            raise KafkaUnavailableError(f"Kafka: offsets for a time: {exc.args[0]}") from None
        starts = {tp.partition: tp.offset for tp in found}
    ends: dict[int, int] = {}
    assignment = []
    for partition in wanted:
        low, high = watermarks(consumer, topic, partition)
        start = low
        if span.start_offset is not None:
            start = max(start, span.start_offset)
        if partition in starts:
            # -1: no letter at or after the time in this partition
            start = max(start, starts[partition] if starts[partition] >= 0 else high)
        end = high if span.end_offset is None else min(high, span.end_offset)
        if end > start:
            ends[partition] = end
            assignment.append(TopicPartition(topic, partition, start))
    return ends, assignment


def _replay_one(
    message: Any,
    letter_filter: ReplayFilter,
    to_topic: str | None,
    producer: Producer | None,
    report: ReplayReport,
) -> None:
    headers = [
        (k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in message.headers() or []
    ]
    ours = {k: v.decode("utf-8", errors="replace") for k, v in headers if k.startswith("iw.")}
    reason = ours.get(HEADER_REASON, "unknown")
    source = ours.get(HEADER_TOPIC, "")
    if not letter_filter.accepts(reason, source):
        report.skipped[reason] += 1
        return
    destination = to_topic or source
    if not destination:
        report.skipped["no_source_topic"] += 1
        return
    report.replayed[destination] += 1
    if producer is not None:
        original = [(k, v) for k, v in headers if not k.startswith("iw.")]
        while True:
            try:
                producer.produce(
                    destination, key=message.key(), value=message.value(), headers=original or None
                )
                break
            except BufferError:
                producer.poll(0.5)
