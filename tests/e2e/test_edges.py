"""Edges of the pipeline: Avro in and out, an output too large for its topic, a second signal."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.e2e.harness import (
    Collector,
    e2e_settings,
    limit_message_bytes,
    produce,
    running_worker,
    worker_process,
)
from worker.codec.avro import AvroCodec, SchemaName
from worker.identity.ids import person_id_for

pytestmark = pytest.mark.e2e

T0 = 1_760_000_000_000


def test_avro_in_avro_out(kafka_bootstrap: str, redis_url: str) -> None:
    name = f"avro-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap, redis_url, name, formats={"output": "avro"}, buffer={"enabled": False}
    )
    avro = AvroCodec()
    topics = settings.topics
    event = {
        "uuid": str(uuid.uuid4()),
        "type": "identify",
        "tenant": "av",
        "distinct_id": "user-1",
        "other_id": "anon-1",
        "timestamp": T0,
        "properties": json.dumps({"nested": {"x": [1, 2.5, None]}}),
        "set": json.dumps({"plan": "pro"}),
    }
    collector = Collector(settings, [topics.enriched, topics.overrides])
    try:
        with running_worker(settings):
            value = avro.encode(SchemaName.EVENT, event)
            produce(settings, [(topics.identify, b"av:user-1", value)])
            (message,) = collector.wait_for(topics.enriched, 1)
            (override,) = collector.wait_for(topics.overrides, 1)
        enriched = avro.decode(SchemaName.ENRICHED_EVENT, message.value()).record
        assert message.value()[0] == 0  # Confluent wire format
        assert enriched["uuid"] == event["uuid"]
        assert json.loads(enriched["properties"]) == {"nested": {"x": [1, 2.5, None]}}
        assert enriched["person_id"] == person_id_for("av", "user-1")
        assert json.loads(enriched["person_properties"]) == {"plan": "pro"}
        assert enriched["is_identified"] is True
        record = avro.decode(SchemaName.DISTINCT_ID_OVERRIDE, override.value()).record
        assert record["distinct_id"] == "anon-1"
    finally:
        collector.close()


def test_an_output_too_large_for_its_topic_becomes_a_dead_letter(
    kafka_bootstrap: str, redis_url: str
) -> None:
    name = f"big-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(kafka_bootstrap, redis_url, name, buffer={"enabled": False})
    topics = settings.topics
    limit_message_bytes(kafka_bootstrap, topics.enriched, 2048)

    def track(distinct_id: str, blob: str) -> tuple[str, bytes, bytes]:
        body = {
            "type": "track",
            "tenant": "big",
            "uuid": str(uuid.uuid4()),
            "event": "e",
            "distinct_id": distinct_id,
            "timestamp": T0,
            "properties": {"blob": blob},
        }
        return topics.track, f"big:{distinct_id}".encode(), json.dumps(body).encode()

    large = track("heavy", os.urandom(3000).hex())  # 6 KB of incompressible text
    small = [track(f"light-{i}", "x") for i in range(5)]
    collector = Collector(settings, [topics.enriched, topics.dead_letters])
    try:
        with running_worker(settings):
            produce(settings, [small[0], large, *small[1:]])
            collector.wait_for(topics.enriched, 5)
            (letter,) = collector.wait_for(topics.dead_letters, 1)
        assert letter.value() == large[2]
        headers = dict(letter.headers())
        assert headers["iw.error.reason"] == b"output_too_large"
        assert headers["iw.source.topic"] == topics.track.encode()
        collector.settle(1.0)
        assert len(collector.messages[topics.enriched]) == 5  # the small ones all went through
    finally:
        collector.close()


def _loop_age(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            age = json.loads(r.read())["loop_age_seconds"]
    except urllib.error.HTTPError as e:  # 503: unhealthy, the body says why
        age = json.loads(e.read())["loop_age_seconds"]
    except OSError:
        return 0.0  # not listening yet
    return 0.0 if age is None else float(age)  # null: the loop has not turned yet


def test_a_second_signal_exits_at_once(kafka_bootstrap: str, redis_url: str) -> None:
    """A worker stuck in its batch (Redis is not there) finishes nothing on the first SIGTERM;
    the second one ends it at once, with nothing committed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nothing listens here once the socket is closed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    name = f"sig-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        redis_url,
        name,
        redis={
            "url": f"redis://127.0.0.1:{dead_port}/0",
            "retry_attempts": 1000,
            "retry_backoff_seconds": 0.2,
            "retry_backoff_max_seconds": 0.2,
        },
        batch={"shutdown_timeout_seconds": 60},
        observability={"metrics_port": metrics_port},
    )
    body = {
        "type": "track",
        "tenant": "s",
        "uuid": str(uuid.uuid4()),
        "event": "e",
        "distinct_id": "d",
        "timestamp": T0,
    }
    with worker_process(settings) as proc:
        produce(settings, [(settings.topics.track, b"s:d", json.dumps(body).encode())])
        # wait until the loop is stuck in the batch (retrying Redis): /healthz reports the age
        # of the loop's last turn
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _loop_age(metrics_port) < 1.0:
            time.sleep(0.2)
        assert _loop_age(metrics_port) >= 1.0
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert proc.poll() is None  # still finishing the batch it cannot finish
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 130
