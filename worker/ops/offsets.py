"""Watermark offsets that tolerate a broker still electing leaders.

Right after a topic is created, or while a broker restarts, ``get_watermark_offsets`` fails with
``NOT_LEADER_FOR_PARTITION``, ``LEADER_NOT_AVAILABLE`` or a transport error for a moment: these
are retried with a short backoff until a deadline, then reported as ``KafkaUnavailableError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from worker.errors import KafkaUnavailableError

RETRIABLE = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._WAIT_COORD,
    }
)


def watermarks(
    consumer: Consumer,
    topic: str,
    partition: int,
    timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[int, int]:
    """``(low, high)`` of one partition, retrying the errors of a leader election."""
    deadline = clock() + timeout
    pause = 0.05
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=max(1.0, min(10.0, deadline - clock()))
            )
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            code = error.code() if isinstance(error, KafkaError) else None
            if code not in RETRIABLE:
                raise
            if clock() >= deadline:
                raise KafkaUnavailableError(
                    f"Kafka: no offsets for {topic}[{partition}] after {timeout:.0f} s: "
                    f"{error.str() if isinstance(error, KafkaError) else error}"
                ) from None
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
