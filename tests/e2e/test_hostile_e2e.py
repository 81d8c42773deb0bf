"""The three messages that used to stop the worker (and, uncommitted, every worker of the group
after it), through the real worker process: it stays up and emits the good event that follows."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.harness import Collector, e2e_settings, produce, worker_process
from tests.hostile.corpus import corpus
from worker.pipeline.deadletter import HEADER_REASON

pytestmark = pytest.mark.e2e

CRASHERS = ("posthog offset 1e30", "backend $set 1e400", "backend 2,700 $unset keys")


def test_the_messages_that_crashed_the_worker_no_longer_stop_it(
    kafka_bootstrap: str, redis_url: str
) -> None:
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(kafka_bootstrap, redis_url, name)
    topics = settings.topics
    messages = {m.name: m for m in corpus()}
    crashers = [messages[n] for n in CRASHERS]
    good_uuid = str(uuid.uuid4())
    good = json.dumps(
        {"event": "pageview", "distinct_id": "good", "team_id": 2, "uuid": good_uuid}
    ).encode()
    collector = Collector(settings, [topics.enriched, topics.dead_letters, topics.warnings])
    try:
        with worker_process(settings) as proc:
            # one key: one partition, so the good event comes after the three
            records = [(topics.track, b"2:k", m.value) for m in crashers]
            produce(settings, [*records, (topics.track, b"2:k", good)])
            collector.wait_for(topics.dead_letters, 2)
            collector.wait_for(topics.enriched, 2)
            collector.wait_for(topics.warnings, 1)
            collector.settle(1.0)
            assert proc.poll() is None, "the worker is still running"
    finally:
        collector.close()

    enriched = collector.json(topics.enriched)
    assert good_uuid in {e["uuid"] for e in enriched}
    assert {e["distinct_id"] for e in enriched} == {"u", "good"}  # the 1e30 offset one too
    reasons = sorted(
        dict(m.headers())[HEADER_REASON] for m in collector.messages[topics.dead_letters]
    )
    assert reasons == [b"too_many_properties", b"value_out_of_range"]
    (warning,) = collector.json(topics.warnings)
    assert warning["type"] == "ignored_invalid_timestamp"
