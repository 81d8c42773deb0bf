"""``observe_all``: a batch of observations in one update leaves a histogram as observing them
one by one does."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from worker.observability.metrics import WorkerMetrics, observe_all
from worker.observability.recorder import MetricsRecorder
from worker.observability.status import BatchStats
from worker.store.commit_plan import RulesStats

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 90.0, 120.0, 300.0)


def _samples(histogram: Histogram, prefix: str = "") -> dict[tuple[str, str], float]:
    """(name less ``prefix``, ``le``) → value, the ``_created`` timestamp aside."""
    return {
        (s.name.removeprefix(prefix), s.labels.get("le", "")): s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def _histograms() -> tuple[Histogram, Histogram]:
    return (
        Histogram("one_by_one", "d", buckets=BUCKETS, registry=CollectorRegistry()),
        Histogram("all_at_once", "d", buckets=BUCKETS, registry=CollectorRegistry()),
    )


delays = st.floats(min_value=0, max_value=1e6, allow_nan=False) | st.sampled_from(BUCKETS)


@given(batches=st.lists(st.lists(delays, max_size=30), max_size=4))
def test_it_counts_what_observing_one_by_one_counts(batches: list[list[float]]) -> None:
    one, many = _histograms()
    for values in batches:
        for value in values:
            one.observe(value)
        observe_all(many, values)
    by_one, by_many = _samples(one, "one_by_one"), _samples(many, "all_at_once")
    assert by_one.keys() == by_many.keys()
    assert len(by_one) == len(BUCKETS) + 3  # the buckets, +Inf, the count and the sum
    for (name, le), value in by_one.items():
        if name == "_sum":  # the same numbers, added up in another order
            assert math.isclose(by_many[(name, le)], value, rel_tol=1e-9, abs_tol=1e-9)
        else:
            assert by_many[(name, le)] == value, (name, le)


def test_a_value_on_a_bound_counts_in_that_bucket() -> None:
    _, histogram = _histograms()
    observe_all(histogram, [0.05, 0.05, 300.0, 301.0])
    samples = _samples(histogram)
    assert samples[("all_at_once_bucket", "0.01")] == 0
    assert samples[("all_at_once_bucket", "0.05")] == 2
    assert samples[("all_at_once_bucket", "120.0")] == 2
    assert samples[("all_at_once_bucket", "300.0")] == 3
    assert samples[("all_at_once_bucket", "+Inf")] == 4
    assert samples[("all_at_once_count", "")] == 4


def test_the_recorder_observes_a_batch_s_delays() -> None:
    metrics = WorkerMetrics.create()
    stats = BatchStats()
    stats.delays_seconds.extend([0.2, 0.3, 7.0])
    MetricsRecorder(metrics).batch_done(3, 0.1, stats)
    samples = _samples(metrics.end_to_end_delay)
    assert samples[("identity_worker_end_to_end_delay_seconds_count", "")] == 3
    assert samples[("identity_worker_end_to_end_delay_seconds_bucket", "0.25")] == 1
    assert samples[("identity_worker_end_to_end_delay_seconds_bucket", "10.0")] == 3
    assert math.isclose(samples[("identity_worker_end_to_end_delay_seconds_sum", "")], 7.5)


class _Unassigned:
    assignment: frozenset[tuple[str, int]] = frozenset()

    def lag(self) -> dict[tuple[str, int], int]:
        return {}


def test_each_tick_adds_what_the_stores_counts_grew_by() -> None:
    metrics = WorkerMetrics.create()
    stats = RulesStats()
    recorder = MetricsRecorder(metrics, stats.counts)

    def value(event: str) -> float | None:
        return metrics.registry.get_sample_value(
            "identity_worker_worker_rules_total", {"event": event}
        )

    assert value("commit") == 0.0  # every event's series exists before its first count
    stats.commits, stats.stale = 5, 1
    recorder.tick(_Unassigned())
    stats.commits = 8
    recorder.tick(_Unassigned())
    recorder.tick(_Unassigned())
    assert (value("commit"), value("stale"), value("script")) == (8.0, 1.0, 0.0)
