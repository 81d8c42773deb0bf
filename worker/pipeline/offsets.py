"""Where a batch starts and ends, per partition: what to rewind to, what to commit."""

from __future__ import annotations

from collections.abc import Sequence

from worker.kafka.records import Partition, RawMessage


def next_offsets(batch: Sequence[RawMessage]) -> dict[Partition, int]:
    """Per partition, one past the highest offset in ``batch``: what to commit."""
    offsets: dict[Partition, int] = {}
    for message in batch:
        key = (message.topic, message.partition)
        offsets[key] = max(offsets.get(key, 0), message.offset + 1)
    return offsets


def first_offsets(batch: Sequence[RawMessage]) -> dict[Partition, int]:
    """Per partition, the lowest offset in ``batch``: where to re-read it from."""
    firsts: dict[Partition, int] = {}
    for message in batch:
        key = (message.topic, message.partition)
        if key not in firsts or message.offset < firsts[key]:
            firsts[key] = message.offset
    return firsts
