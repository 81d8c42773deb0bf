"""Every Prometheus metric the worker exports, built against an injected registry.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` durations). The pipeline
records them per batch, not per event, where that is cheaper. ``exported_names`` lists every
series; the deploy tests check the dashboard, the alerts and the docs against it.

Labelled counters start at zero for every label value the worker knows (decode reasons, warning
types, merge results, components), so ``increase()`` sees the first occurrence too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from worker import __version__, build
from worker.codec.errors import DECODE_REASONS
from worker.errors import Component
from worker.identity.model import WarningKind

PREFIX = "identity_worker"
MERGE_RESULTS = ("merged", "refused_identified", "refused_limit", "refused_illegal")
RELEASE_REASONS = ("merge", "timeout", "overflow", "redelivery")
RULES_EVENTS = ("commit", "stale", "deferred", "script", "read_missed")
"""What the rules in the worker count (``redis.rules = worker``; ``RulesStats``)."""

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 90.0, 120.0, 300.0)
_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    registry: CollectorRegistry
    events_consumed: Counter
    events_emitted: Counter
    dead_letters: Counter
    warnings: Counter
    merges: Counter
    persons_created: Counter
    batch_size: Histogram
    batch_duration: Histogram
    store_duration: Histogram
    end_to_end_delay: Histogram
    buffer_depth: Gauge
    buffer_oldest_age: Gauge
    buffer_releases: Counter
    consumer_lag: Gauge
    assigned_partitions: Gauge
    commit_failures: Counter
    errors: Counter
    build_info: Info
    worker_rules: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> WorkerMetrics:
        r = registry if registry is not None else CollectorRegistry()
        p = PREFIX
        metrics = cls(
            registry=r,
            events_consumed=Counter(
                f"{p}_events_consumed_total", "Input messages consumed", ["topic"], registry=r
            ),
            events_emitted=Counter(
                f"{p}_events_emitted_total",
                "Records produced and acknowledged, by output kind",
                ["topic", "kind"],
                registry=r,
            ),
            dead_letters=Counter(
                f"{p}_dead_letters_total", "Input messages dead-lettered", ["reason"], registry=r
            ),
            warnings=Counter(
                f"{p}_warnings_total", "Ingestion warnings emitted", ["type"], registry=r
            ),
            merges=Counter(
                f"{p}_merges_total",
                "Merges done and refused, by result",
                ["result"],
                registry=r,
            ),
            persons_created=Counter(f"{p}_persons_created_total", "Persons created", registry=r),
            batch_size=Histogram(
                f"{p}_batch_size", "Messages per batch", buckets=_BATCH_BUCKETS, registry=r
            ),
            batch_duration=Histogram(
                f"{p}_batch_duration_seconds",
                "Time to process and commit one batch",
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            store_duration=Histogram(
                f"{p}_store_roundtrip_seconds",
                "Time of one identity-store call (one tenant's share of a batch)",
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            end_to_end_delay=Histogram(
                f"{p}_end_to_end_delay_seconds",
                "From the input message's Kafka timestamp to its enriched event's acknowledgement",
                buckets=_DELAY_BUCKETS,
                registry=r,
            ),
            buffer_depth=Gauge(
                f"{p}_buffer_events", "Events waiting in the buffer (sampled)", registry=r
            ),
            buffer_oldest_age=Gauge(
                f"{p}_buffer_oldest_age_seconds",
                "Age of the oldest buffered event (sampled)",
                registry=r,
            ),
            buffer_releases=Counter(
                f"{p}_buffer_releases_total",
                "Buffered events released, by reason (merge, timeout, overflow, redelivery)",
                ["reason"],
                registry=r,
            ),
            consumer_lag=Gauge(
                f"{p}_consumer_lag_messages",
                "Messages behind the high watermark, per assigned partition",
                ["topic", "partition"],
                registry=r,
            ),
            assigned_partitions=Gauge(
                f"{p}_assigned_partitions", "Partitions assigned to this worker", registry=r
            ),
            commit_failures=Counter(
                f"{p}_commit_failures_total", "Offset commits that failed", registry=r
            ),
            errors=Counter(
                f"{p}_errors_total",
                "Transient errors by component (redis, kafka, schema_registry)",
                ["component"],
                registry=r,
            ),
            build_info=Info(f"{p}_build", "Version of the worker", registry=r),
            worker_rules=Counter(
                f"{p}_worker_rules_total",
                "The rules in the worker (redis.rules=worker): calls committed, commits refused "
                "as stale, calls deferred to a later wave, calls sent to the script, reads the "
                "prefetch missed",
                ["event"],
                registry=r,
            ),
        )
        metrics.build_info.info({"version": __version__, "build": build.kind()})
        metrics._zero_known_labels()
        return metrics

    def _zero_known_labels(self) -> None:
        for reason in (*DECODE_REASONS, "encode_failed", "output_too_large"):
            self.dead_letters.labels(reason)
        for kind in WarningKind:
            self.warnings.labels(kind.value)
        for result in MERGE_RESULTS:
            self.merges.labels(result)
        for component in Component:
            self.errors.labels(component.value)
        for reason in RELEASE_REASONS:
            self.buffer_releases.labels(reason)
        for event in RULES_EVENTS:
            self.worker_rules.labels(event)

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Replace the lag gauge's series with ``lags`` (revoked partitions disappear)."""
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)


_SUFFIXES: Mapping[str, tuple[str, ...]] = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
    "gauge": ("",),
}


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every series name the registry exports, with its type's suffixes, even before a
    labelled metric has its first child."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def observe_all(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(value)`` for each of ``values`` (not NaN), as one update: each
    bucket's count and the sum grow once, by what the observations add up to (the loop
    records a batch's end-to-end delays, one per enriched event, where ``observe`` took about
    1 µs each). A histogram without prometheus_client's own attributes is observed value by
    value."""
    try:
        bounds: Sequence[float] = histogram._upper_bounds  # ascending, the last one +Inf
        buckets = histogram._buckets
        total = histogram._sum
    except AttributeError:
        for value in values:
            histogram.observe(value)
        return
    if not values:
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1  # the first bound at or above the value
    total.inc(sum(values))
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
