"""Operator commands against the real Kafka and Redis: inspect, dead-letters replay."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Producer

from worker.cli import main
from worker.codec.errors import DecodeError
from worker.identity.config import IdentityConfig
from worker.identity.model import EventKind, IdentityEvent, PropertyUpdates
from worker.kafka.admin import TopicSpec, create_topics
from worker.kafka.records import RawMessage
from worker.ops.replay import ReplayFilter, replay_dead_letters
from worker.pipeline.deadletter import dead_letter
from worker.store.redis_store import RedisIdentityStore

pytestmark = pytest.mark.integration


def test_inspect_shows_the_person(
    redis_url: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisIdentityStore(client, IdentityConfig(), prefix=unique_name)
    events = [
        IdentityEvent(
            "t",
            EventKind.TRACK,
            "anon",
            "00000000-0000-4000-8000-000000000001",
            1000,
            updates=PropertyUpdates(set=(("plan", "pro"),)),
        ),
        IdentityEvent(
            "t",
            EventKind.IDENTIFY,
            "user",
            "00000000-0000-4000-8000-000000000002",
            2000,
            other_id="anon",
        ),
    ]
    store.resolve_batch("t", events, 3000)
    client.close()
    monkeypatch.setenv("IDENTITY_WORKER_REDIS__URL", redis_url)
    monkeypatch.setenv("IDENTITY_WORKER_REDIS__KEY_PREFIX", unique_name)
    assert main(["inspect", "--tenant", "t", "--distinct-id", "user"]) == 0
    shown = json.loads(capsys.readouterr().out)["person"]
    assert shown["distinct_id_count"] == 2
    assert shown["distinct_ids"] == ["anon", "user"]
    assert shown["properties"] == {"plan": "pro"}
    assert shown["is_identified"] is True
    assert main(["inspect", "--tenant", "t", "--distinct-id", "nobody"]) == 1


def test_replay_dead_letters_dry_run_filter_and_execute(
    kafka_bootstrap: str, unique_name: str
) -> None:
    source, dlq = f"{unique_name}.in", f"{unique_name}.dlq"
    create_topics(kafka_bootstrap, [TopicSpec(source, 1, 1), TopicSpec(dlq, 2, 1)])
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i, reason in enumerate(["json_invalid", "json_invalid", "unknown_magic_byte"]):
        original = RawMessage(source, 0, i, f"k{i}".encode(), f"v{i}".encode(), (("trace", b"x"),))
        record = dead_letter(original, dlq, DecodeError(reason, "bad"))  # type: ignore[arg-type]
        producer.produce(
            record.topic, key=record.key, value=record.value, headers=list(record.headers)
        )
    assert producer.flush(30) == 0
    conf = {"bootstrap.servers": kafka_bootstrap}

    dry = replay_dead_letters(conf, dlq, ReplayFilter(), dry_run=True, progress=io.StringIO())
    assert dry.scanned == 3
    assert dry.replayed == {source: 3}

    out = io.StringIO()
    done = replay_dead_letters(
        conf, dlq, ReplayFilter(reasons=frozenset({"json_invalid"})), dry_run=False, progress=out
    )
    assert done.replayed == {source: 2}
    assert done.skipped == {"unknown_magic_byte": 1}
    assert "replayed 2" in out.getvalue()

    consumer = Consumer({**conf, "group.id": unique_name, "auto.offset.reset": "earliest"})
    consumer.subscribe([source])
    got: list[Any] = []
    deadline = time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        got.extend(m for m in consumer.consume(10, 0.5) if m.error() is None)
    consumer.close()
    assert sorted(m.value() for m in got) == [b"v0", b"v1"]
    assert all(m.headers() == [("trace", b"x")] for m in got)  # our iw.* headers are gone


def test_buffer_stats_lists_waiting_events(
    redis_url: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from worker.store.codec import BufferPolicy

    client = redis.Redis.from_url(redis_url)
    store = RedisIdentityStore(
        client, IdentityConfig(), prefix=unique_name, buffer=BufferPolicy(delay_ms=60_000)
    )
    now = int(time.time() * 1000)
    events = [
        IdentityEvent(
            "shop",
            EventKind.TRACK,
            f"srv-{i % 2}",
            f"00000000-0000-4000-8000-{i:012d}",
            now,
            buffer_payload=b"{}",
        )
        for i in range(3)
    ]
    store.resolve_buffered("shop", events, now - 5000)
    client.close()
    monkeypatch.setenv("IDENTITY_WORKER_REDIS__URL", redis_url)
    monkeypatch.setenv("IDENTITY_WORKER_REDIS__KEY_PREFIX", unique_name)
    assert main(["buffer", "stats", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["tenant"], row["events"], row["ids"], row["leased"]) == ("shop", 3, 2, 0)
    assert row["oldest_age_seconds"] >= 5
