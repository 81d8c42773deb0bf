"""/metrics, /healthz and /readyz of a running worker, after a known input."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import Collector, e2e_settings, produce, running_worker
from worker.app import build_ops_server

pytestmark = pytest.mark.e2e

T0 = 1_760_000_000_000


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _status, body = _get(port, "/metrics")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _sum(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_metrics_count_what_was_processed(kafka_bootstrap: str, redis_url: str) -> None:
    name = f"met-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(kafka_bootstrap, redis_url, name, buffer={"enabled": False})
    topics = settings.topics
    tenant = "metrics"

    def event(kind: str, distinct_id: str, n: int, **fields: object) -> tuple[str, bytes, bytes]:
        body = {
            "type": kind,
            "tenant": tenant,
            "uuid": str(uuid.uuid4()),
            "distinct_id": distinct_id,
            "timestamp": T0 + n,
            **fields,
        }
        if kind == "track":
            body["event"] = "e"
        return getattr(topics, kind), f"{tenant}:{distinct_id}".encode(), json.dumps(body).encode()

    tracks = [event("track", f"anon-{i}", i) for i in range(20)]
    identifies = [event("identify", f"user-{i}", 100 + i, other_id=f"anon-{i}") for i in range(5)]
    illegal = [event("track", "null", 200)]
    garbage = [(topics.track, b"k", b"\x01garbage"), (topics.alias, b"k", b"{not json")]

    collector = Collector(settings, [topics.enriched])
    with running_worker(settings) as worker:
        ops = build_ops_server(settings, worker)
        ops.start()
        try:
            deadline = time.monotonic() + 60
            while _get(ops.port, "/readyz")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            status, body = _get(ops.port, "/readyz")
            assert status == 200, body
            assert json.loads(body)["assigned_partitions"] == 9  # 3 input topics x 3 partitions
            assert _get(ops.port, "/healthz")[0] == 200

            produce(settings, tracks)
            collector.wait_for(topics.enriched, len(tracks))
            produce(settings, identifies + illegal + garbage)
            collector.wait_for(topics.enriched, len(tracks) + len(identifies) + 1)

            expected_consumed = len(tracks) + len(identifies) + len(illegal) + len(garbage)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                s = _samples(ops.port)
                lag = _sum(s, "identity_worker_consumer_lag_messages")
                if (
                    _sum(s, "identity_worker_events_consumed_total") == expected_consumed
                    and lag == 0
                ):
                    break
                time.sleep(0.5)
        finally:
            ops.close()

    assert _sum(s, "identity_worker_events_consumed_total") == expected_consumed
    assert (
        _sum(s, "identity_worker_events_consumed_total", topic=topics.track) == 22
    )  # 20 tracks, "null", garbage
    assert _sum(s, "identity_worker_events_emitted_total", kind="enriched") == 26
    assert _sum(s, "identity_worker_events_emitted_total", kind="override") == 5
    assert _sum(s, "identity_worker_dead_letters_total") == 2
    assert _sum(s, "identity_worker_dead_letters_total", reason="unknown_magic_byte") == 1
    assert _sum(s, "identity_worker_dead_letters_total", reason="json_invalid") == 1
    assert _sum(s, "identity_worker_warnings_total", type="illegal_distinct_id") == 1
    assert _sum(s, "identity_worker_merges_total", result="merged") == 5
    assert _sum(s, "identity_worker_persons_created_total") == 20
    assert _sum(s, "identity_worker_end_to_end_delay_seconds_count") == 26
    assert _sum(s, "identity_worker_store_roundtrip_seconds_count") >= 1
    assert _sum(s, "identity_worker_consumer_lag_messages") == 0
    assert _sum(s, "identity_worker_assigned_partitions") == 9
    collector.close()
