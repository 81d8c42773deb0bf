"""The error tree: one root, a component on every transient error, and who uses it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import pytest

from worker import errors
from worker.clock import ManualClock
from worker.codec import errors as codec_errors
from worker.errors import (
    Component,
    KafkaUnavailableError,
    TransientError,
    TransientSchemaRegistryError,
    TransientStoreError,
    WorkerError,
)
from worker.kafka.records import Partition, RawMessage
from worker.observability.metrics import WorkerMetrics
from worker.observability.recorder import MetricsRecorder
from worker.observability.status import BatchStats, Health
from worker.pipeline.offsets import next_offsets
from worker.pipeline.runner import BatchOutcome, BatchProcessor, Runner


def _leaves(root: type[Exception]) -> set[type[Exception]]:
    found: set[type[Exception]] = set()
    for sub in root.__subclasses__():
        found |= _leaves(sub) or {sub}
    return found


def test_every_error_of_the_worker_and_its_codecs_is_a_worker_error() -> None:
    for module in (errors, codec_errors):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Exception):
                assert issubclass(value, WorkerError), value


def test_every_leaf_tells_the_operator_what_to_do() -> None:
    for leaf in _leaves(WorkerError):
        assert leaf.__doc__, leaf
        assert len(leaf.__doc__.split()) >= 8, leaf


def test_every_transient_error_names_a_component() -> None:
    for leaf in _leaves(TransientError):
        assert issubclass(leaf, TransientError)
        assert isinstance(leaf.component, Component), leaf
    assert TransientStoreError.component is Component.REDIS
    assert KafkaUnavailableError.component is Component.KAFKA
    registry = codec_errors.SchemaRegistryUnavailableError("down")
    assert isinstance(registry, TransientSchemaRegistryError)
    assert registry.component is Component.SCHEMA_REGISTRY


def test_the_errors_metric_starts_at_zero_for_every_component() -> None:
    metrics = WorkerMetrics.create()
    for component in Component:
        value = metrics.registry.get_sample_value(
            "identity_worker_errors_total", {"component": component.value}
        )
        assert value == 0.0


class ListSource:
    """A ``Source`` over a fixed list of messages; each poll lets ``timeout`` pass."""

    def __init__(self, clock: ManualClock, messages: Sequence[RawMessage]) -> None:
        self._clock = clock
        self._messages = list(messages)
        self._position = 0
        self.committed: dict[Partition, int] = {}
        self.rewinds: list[dict[Partition, int]] = []
        self.paused: set[Partition] = set()

    @property
    def assignment(self) -> frozenset[Partition]:
        return frozenset({("in", 0)})

    def poll_batch(self, max_messages: int, timeout: float) -> list[RawMessage]:
        batch = [] if self.paused else self._messages[self._position :][:max_messages]
        self._position += len(batch)
        if not batch:
            self._clock.advance(timeout)
        return batch

    def commit(self, next_offsets: Mapping[Partition, int]) -> None:
        self.committed.update(next_offsets)

    def commit_async(
        self, next_offsets: Mapping[Partition, int], done: Callable[[str | None], None]
    ) -> None:
        self.commit(next_offsets)
        done(None)

    def rewind(self, first_offsets: Mapping[Partition, int]) -> None:
        self.rewinds.append(dict(first_offsets))
        offsets = [m.offset for m in self._messages]
        self._position = offsets.index(first_offsets[("in", 0)])

    def pause(self, partitions: Iterable[Partition]) -> None:
        self.paused.update(partitions)

    def resume(self, partitions: Iterable[Partition]) -> None:
        self.paused.difference_update(partitions)

    def lag(self) -> dict[Partition, int]:
        return {("in", 0): len(self._messages) - self._position}


class FailingOnce(BatchProcessor):
    def __init__(self, error: TransientError, runner: list[Runner]) -> None:
        self.error: TransientError | None = error
        self.runner = runner
        self.down_during_retry: frozenset[Component] | None = None

    def process(self, batch: Sequence[RawMessage]) -> BatchOutcome:
        runner = self.runner[0]
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        self.down_during_retry = runner.health.down
        runner.request_shutdown()
        return BatchOutcome(next_offsets(batch), BatchStats())


@pytest.mark.parametrize(
    "error",
    [
        TransientStoreError("away"),
        KafkaUnavailableError("away"),
        codec_errors.SchemaRegistryUnavailableError("away"),
    ],
    ids=["redis", "kafka", "schema registry"],
)
def test_the_runner_routes_a_transient_error_by_its_component(error: TransientError) -> None:
    clock = ManualClock()
    messages = [RawMessage("in", 0, offset, None, b"x") for offset in (5, 6)]
    source = ListSource(clock, messages)
    metrics = WorkerMetrics.create()
    holder: list[Runner] = []
    processor = FailingOnce(error, holder)
    health = Health()
    runner = Runner(
        source,
        processor,
        clock,
        max_messages=10,
        max_wait_seconds=0.1,
        health=health,
        observer=MetricsRecorder(metrics),
    )
    holder.append(runner)
    runner.run()

    assert source.rewinds == [{("in", 0): 5}]
    assert source.committed == {("in", 0): 7}
    # the retry ran while the failed component was marked down (until a turn of the loop
    # succeeded; the poll brought Kafka back before the retry)
    expected = frozenset() if error.component is Component.KAFKA else {error.component}
    assert processor.down_during_retry == expected
    assert health.down == frozenset()
    counted = {
        c: metrics.registry.get_sample_value("identity_worker_errors_total", {"component": c.value})
        for c in Component
    }
    assert counted == {c: (1.0 if c is error.component else 0.0) for c in Component}
