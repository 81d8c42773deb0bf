"""What the consume loop reports: ``BatchStats`` per batch, ``Health`` continuously.

Plain values, shared by the loop (``worker.pipeline``), which writes them, and by the metrics
recorder and the HTTP endpoints, which read them; nothing here imports the pipeline.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from worker.errors import Component
from worker.kafka.records import Partition


@dataclass(slots=True)
class Health:
    """What ``/healthz`` and ``/readyz`` report; written by the loop, read by the HTTP thread.

    ``down`` is replaced, never mutated, so the HTTP thread always reads a consistent set.
    Kafka counts as down until the loop's first successful poll.
    """

    last_loop_monotonic: float = 0.0
    assigned: frozenset[Partition] = frozenset()
    down: frozenset[Component] = frozenset({Component.KAFKA})
    """components whose last use failed"""
    last_error: str | None = None
    stopping: bool = False

    def is_ok(self, component: Component) -> bool:
        return component not in self.down

    def mark_down(self, component: Component) -> None:
        self.down = self.down | {component}

    def mark_ok(self, *components: Component) -> None:
        """``components`` answered (all of them when none is named)."""
        self.down = self.down - set(components or Component)

    @property
    def kafka_ok(self) -> bool:
        return self.is_ok(Component.KAFKA)

    @property
    def redis_ok(self) -> bool:
        return self.is_ok(Component.REDIS)


@dataclass(slots=True)
class BatchStats:
    """What one batch did, for metrics and logs (recorded once per batch)."""

    consumed: Counter[str] = field(default_factory=Counter)
    """input messages by topic"""
    emitted: Counter[tuple[str, str]] = field(default_factory=Counter)
    """acknowledged output records by (topic, kind)"""
    dead_letters: Counter[str] = field(default_factory=Counter)
    """by reason"""
    warnings: Counter[str] = field(default_factory=Counter)
    """by warning type"""
    merges: Counter[str] = field(default_factory=Counter)
    """by result: merged, refused_identified, refused_limit, refused_illegal"""
    persons_created: int = 0
    rejected: int = 0
    buffered: int = 0
    releases: Counter[str] = field(default_factory=Counter)
    """buffered events released, by reason"""
    buffer_events: int | None = None
    """events waiting in the buffer, sampled by housekeeping"""
    buffer_oldest_age_seconds: float | None = None
    store_seconds: list[float] = field(default_factory=list)
    delays_seconds: list[float] = field(default_factory=list)
    """per enriched event: Kafka timestamp of the input to acknowledgement of the output"""
