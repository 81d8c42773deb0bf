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


def _letters(kafka_bootstrap: str, source: str, dlq: str, reasons: list[str]) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i, reason in enumerate(reasons):
        original = RawMessage(source, 0, i, f"k{i}".encode(), f"v{i}".encode(), ())
        record = dead_letter(original, dlq, DecodeError(reason, "bad"))  # type: ignore[arg-type]
        producer.produce(
            record.topic, key=record.key, value=record.value, headers=list(record.headers)
        )
    assert producer.flush(30) == 0


def test_replay_cli_limit_offsets_and_json_summary(
    kafka_bootstrap: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, dlq = f"{unique_name}.in", f"{unique_name}.dlq"
    create_topics(kafka_bootstrap, [TopicSpec(source, 1, 1), TopicSpec(dlq, 1, 1)])
    _letters(kafka_bootstrap, source, dlq, ["json_invalid"] * 6)
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("IDENTITY_WORKER_TOPICS__DEAD_LETTERS", dlq)

    assert main(["dead-letters", "replay", "--start-offset", "1", "--end-offset", "5"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["dry_run"], summary["scanned"], summary["replayed"]) == (True, 4, 4)
    assert "/s" in captured.err
    assert "ETA" in captured.err

    assert main(["dead-letters", "replay", "--limit", "2", "--execute"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["dry_run"], summary["replayed"], summary["limit_reached"]) == (False, 2, True)
    assert summary["replayed_by_topic"] == {source: 2}

    assert main(["dead-letters", "replay", "--since", "2h", "--until", "1000"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["scanned"], summary["replayed"]) == (6, 0)
    assert summary["skipped_by_reason"] == {"after_until": 6}


def test_missing_topics_exit_1(
    kafka_bootstrap: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("IDENTITY_WORKER_TOPICS__DEAD_LETTERS", f"{unique_name}.none")
    assert main(["dead-letters", "replay"]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["tail", f"{unique_name}.none", "-e"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_tail_decodes_avro_and_json_records(
    kafka_bootstrap: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from worker.codec.avro import AvroCodec, SchemaName

    topic = f"{unique_name}.overrides"
    create_topics(kafka_bootstrap, [TopicSpec(topic, 2, 1)])
    override = {
        "tenant": "t",
        "distinct_id": "anon",
        "old_person_id": "p-old",
        "new_person_id": "p-new",
        "event_uuid": None,
        "timestamp": 1_700_000_000_000,
    }
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(
        topic,
        key=b"t:anon",
        partition=0,
        value=AvroCodec().encode(SchemaName.DISTINCT_ID_OVERRIDE, override),
    )
    producer.produce(
        topic,
        key=b"t:user",
        partition=1,
        value=json.dumps({**override, "distinct_id": "user"}).encode(),
    )
    producer.produce(topic, key=b"t:gone", partition=1, value=None)
    assert producer.flush(30) == 0
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("IDENTITY_WORKER_TOPICS__OVERRIDES", topic)

    assert main(["tail", topic, "--from-beginning", "-e"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert any(
        line.startswith("0:0 t:anon override distinct_id=anon p-old -> p-new") for line in lines
    )
    assert any("override distinct_id=user p-old -> p-new" in line for line in lines)
    assert any(line.endswith("(tombstone)") for line in lines)

    assert main(["tail", topic, "-o", "beginning", "-p", "0", "--json", "-c", "1"]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["format"] == "avro"
    assert record["value"]["new_person_id"] == "p-new"
    assert (record["partition"], record["offset"], record["key"]) == (0, 0, "t:anon")

    assert main(["tail", topic, "-o", "-1", "-p", "1", "-e", "--json"]) == 0
    (last,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert last["format"] == "tombstone"
