"""The runner's commit rule against the real broker, with a processor that records its input."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from confluent_kafka import Producer

from worker.clock import SystemClock
from worker.errors import TransientStoreError
from worker.kafka.admin import TopicSpec, create_topics
from worker.kafka.records import RawMessage
from worker.kafka.source import KafkaSource
from worker.observability.status import BatchStats
from worker.pipeline.offsets import next_offsets
from worker.pipeline.runner import BatchOutcome, BatchProcessor, Runner

pytestmark = pytest.mark.integration


class Recording(BatchProcessor):
    """Records every offset it processes; its work can fail on demand."""

    def __init__(self, fail_process: int = 0, fail_housekeeping: int = 0) -> None:
        self.seen: list[int] = []
        self.fail_process = fail_process
        self.fail_housekeeping = fail_housekeeping
        self.uncommitted: list[list[int]] = []
        """batches processed and not yet told committed, oldest first"""
        self.committed_batches: list[list[int]] = []

    def process(self, batch: Sequence[RawMessage]) -> BatchOutcome:
        if self.fail_process:
            self.fail_process -= 1
            raise TransientStoreError("Redis is away")
        self.seen += [m.offset for m in batch]
        self.uncommitted.append([m.offset for m in batch])
        return BatchOutcome(next_offsets(batch), BatchStats())

    def committed(self) -> None:
        self.committed_batches.append(self.uncommitted.pop(0))

    def abandon(self, batches: int) -> None:
        del self.uncommitted[len(self.uncommitted) - batches :]

    def housekeeping(self) -> BatchStats | None:
        if self.seen and self.fail_housekeeping:
            self.fail_housekeeping -= 1
            raise TransientStoreError("Redis is away during the buffer sweep")
        return None


def _run(
    bootstrap: str, topic: str, processor: Recording, want: int, max_in_flight: int = 1
) -> None:
    source = KafkaSource({"bootstrap.servers": bootstrap, "group.id": topic}, [topic])
    runner = Runner(
        source,
        processor,
        SystemClock(),
        max_messages=100,
        max_wait_seconds=0.05,
        backoff_initial_seconds=0.05,
        max_in_flight=max_in_flight,
    )
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while len(processor.seen) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # room for a wrong replay to show up
    runner.request_shutdown()
    thread.join(10)
    source.close()


@pytest.fixture
def topic(kafka_bootstrap: str, unique_name: str) -> str:
    create_topics(kafka_bootstrap, [TopicSpec(unique_name, 1, 1)])
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):
        producer.produce(unique_name, value=str(i).encode())
    assert producer.flush(30) == 0
    return unique_name


@pytest.mark.parametrize("max_in_flight", [1, 3])
def test_a_failed_batch_is_processed_again_from_its_first_offset(
    kafka_bootstrap: str, topic: str, max_in_flight: int
) -> None:
    processor = Recording(fail_process=2)
    _run(kafka_bootstrap, topic, processor, 10, max_in_flight)
    assert processor.seen == list(range(10))  # nothing skipped, nothing twice
    # told once per committed batch, after its commit, never for a failed attempt
    assert [o for batch in processor.committed_batches for o in batch] == list(range(10))


@pytest.mark.parametrize("max_in_flight", [1, 3])
def test_a_failure_after_the_commit_does_not_replay_the_committed_batch(
    kafka_bootstrap: str, topic: str, max_in_flight: int
) -> None:
    processor = Recording(fail_housekeeping=1)
    _run(kafka_bootstrap, topic, processor, 10, max_in_flight)
    assert processor.seen == list(range(10))
