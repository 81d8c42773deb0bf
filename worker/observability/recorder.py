"""Turns what the loop reports into Prometheus samples: once per batch, once per tick."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from worker.errors import Component, TransientError
from worker.kafka.records import Partition
from worker.observability.metrics import WorkerMetrics, observe_all
from worker.observability.status import BatchStats

log = logging.getLogger(__name__)


class Assigned(Protocol):
    """What a tick samples from the consumer (``worker.pipeline.ports.Source`` has it)."""

    @property
    def assignment(self) -> frozenset[Partition]: ...

    def lag(self) -> dict[Partition, int]: ...


class MetricsRecorder:
    """``counts``: cumulative counts by label of ``identity_worker_worker_rules_total`` (the
    store's ``RulesStats``), read at each tick."""

    def __init__(
        self, metrics: WorkerMetrics, counts: Callable[[], Mapping[str, int]] | None = None
    ) -> None:
        self._m = metrics
        self._counts = counts
        self._counted: dict[str, int] = {}

    def batch_done(self, size: int, seconds: float, stats: BatchStats) -> None:
        m = self._m
        if size:
            m.batch_size.observe(size)
            m.batch_duration.observe(seconds)
        if stats.buffer_events is not None:
            m.buffer_depth.set(stats.buffer_events)
        if stats.buffer_oldest_age_seconds is not None:
            m.buffer_oldest_age.set(stats.buffer_oldest_age_seconds)
        for topic, n in stats.consumed.items():
            m.events_consumed.labels(topic).inc(n)
        for (topic, kind), n in stats.emitted.items():
            m.events_emitted.labels(topic, kind).inc(n)
        for reason, n in stats.dead_letters.items():
            m.dead_letters.labels(reason).inc(n)
        for kind, n in stats.warnings.items():
            m.warnings.labels(kind).inc(n)
        for result, n in stats.merges.items():
            m.merges.labels(result).inc(n)
        for reason, n in stats.releases.items():
            m.buffer_releases.labels(reason).inc(n)
        if stats.persons_created:
            m.persons_created.inc(stats.persons_created)
        for seconds_ in stats.store_seconds:
            m.store_duration.observe(seconds_)
        observe_all(m.end_to_end_delay, stats.delays_seconds)

    def transient_error(self, component: Component, during_commit: bool) -> None:
        self._m.errors.labels(component.value).inc()
        if during_commit:
            self._m.commit_failures.inc()

    def tick(self, source: Assigned) -> None:
        self._m.assigned_partitions.set(len(source.assignment))
        if self._counts is not None:
            for event, total in self._counts().items():
                grown = total - self._counted.get(event, 0)
                if grown > 0:
                    self._m.worker_rules.labels(event).inc(grown)
                    self._counted[event] = total
        try:
            self._m.set_lag(source.lag())
        except TransientError as exc:  # lag is best effort: never stop the loop for it
            log.debug("lag sample failed: %s", exc)
