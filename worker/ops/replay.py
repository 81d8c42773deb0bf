"""``identity-worker dead-letters replay``: send dead letters back to the topic they came from.

Reads the dead-letter topic from the beginning up to its current end (a snapshot: letters that
arrive meanwhile wait for the next run), keeps those matching the filter, and produces each
original key, value and headers (without the worker's ``iw.*`` headers) to its source topic, or
to ``--to``. With ``dry_run`` nothing is produced: the report says what would be.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from worker.pipeline.deadletter import HEADER_REASON, HEADER_TOPIC

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


@dataclass(slots=True)
class ReplayReport:
    scanned: int = 0
    replayed: Counter[str] = field(default_factory=Counter)
    """by destination topic"""
    skipped: Counter[str] = field(default_factory=Counter)
    """by reason the filter rejected, or "no_source_topic" """


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
) -> ReplayReport:
    consumer = Consumer(
        {
            **kafka_conf,
            "group.id": f"identity-worker-replay-{int(clock() * 1000)}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    producer = None if dry_run else Producer({**kafka_conf, "enable.idempotence": True})
    report = ReplayReport()
    out = progress or sys.stderr
    try:
        metadata = consumer.list_topics(dead_letter_topic, timeout=10)
        topic_meta = metadata.topics.get(dead_letter_topic)
        if topic_meta is None or topic_meta.error is not None:
            raise ValueError(f"dead-letter topic {dead_letter_topic!r} does not exist")
        ends: dict[int, int] = {}
        assignment = []
        for partition in topic_meta.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(dead_letter_topic, partition), timeout=10
            )
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(dead_letter_topic, partition, low))
        total = sum(ends[p.partition] - p.offset for p in assignment)
        print(f"scanning {total} dead letters in {dead_letter_topic}", file=out)
        consumer.assign(assignment)
        idle_since = clock()
        while ends:
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
                _replay_one(message, letter_filter, to_topic, producer, report)
                if report.scanned % progress_every == 0:
                    print(f"  {report.scanned}/{total} scanned", file=out)
        if producer is not None and producer.flush(60) != 0:
            raise RuntimeError("replayed messages not acknowledged within 60 s")
    finally:
        consumer.close()
    verb = "would replay" if dry_run else "replayed"
    print(
        f"{report.scanned} scanned, {verb} {sum(report.replayed.values())}"
        f" ({dict(report.replayed)}), skipped {sum(report.skipped.values())}",
        file=out,
    )
    return report


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
