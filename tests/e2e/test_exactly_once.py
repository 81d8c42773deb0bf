"""Exactly-once outputs (``delivery.exactly_once``): a consumer reading the enriched topic with
``isolation.level=read_committed`` sees every input event once, across ``kill -9`` of the worker
at several moments of the stream (at-least-once delivery duplicates some events here: a kill
between a batch's writes and its offset commit replays the batch)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence

import pytest
from confluent_kafka import Consumer, Message, Producer

from tests.e2e.harness import (
    e2e_settings,
    limit_message_bytes,
    produce,
    running_worker,
    worker_process,
)
from worker.config import Settings

pytestmark = pytest.mark.e2e

T0 = 1_760_000_000_000
EVENTS = 20_000
KILLS = 4


def committed_reader(settings: Settings) -> Consumer:
    consumer = Consumer(
        {
            **settings.kafka.common(),
            "group.id": f"{settings.kafka.group_id}-reader-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([settings.topics.enriched])
    return consumer


def produce_paced(
    settings: Settings, records: Sequence[tuple[str, bytes, bytes]], seconds: float
) -> None:
    """Produce ``records`` evenly over about ``seconds`` (a stream, not a backlog)."""
    producer = Producer({**settings.kafka.common(), "enable.idempotence": True, "linger.ms": 1})
    slices = 20
    step = max(len(records) // slices, 1)
    for start in range(0, len(records), step):
        for topic, key, value in records[start : start + step]:
            producer.produce(topic, key=key, value=value)
        producer.poll(0)
        time.sleep(seconds / slices)
    assert producer.flush(30) == 0


def pageviews(
    settings: Settings, uuids: Sequence[str], users: int
) -> list[tuple[str, bytes, bytes]]:
    """A track event per uuid, for ``users`` distinct ids in turn (each under its own key)."""
    return [
        (
            settings.topics.track,
            f"t:u{i % users}".encode(),
            json.dumps(
                {
                    "type": "track",
                    "tenant": "t",
                    "uuid": event_uuid,
                    "distinct_id": f"u{i % users}",
                    "event": "pageview",
                    "timestamp": T0 + i,
                }
            ).encode(),
        )
        for i, event_uuid in enumerate(uuids)
    ]


def read(consumer: Consumer, seen: Counter[str], until: int, timeout: float) -> None:
    """Read until ``seen`` holds ``until`` distinct uuids, or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while len(seen) < until and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=1000, timeout=0.5):
            if message.error() is None:
                seen[json.loads(message.value() or b"")["uuid"]] += 1


def test_read_committed_consumers_see_every_event_once_across_kill_9(
    kafka_bootstrap: str, redis_url: str
) -> None:
    name = f"eos-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        redis_url,
        name,
        delivery={"exactly_once": True},
        kafka={"group_instance_id": f"{name}-worker"},  # the same transactional id after a kill
        batch={"max_messages": 500},
    )
    uuids = [str(uuid.uuid4()) for _ in range(EVENTS)]
    records = pageviews(settings, uuids, users=500)
    produce(settings, records)
    seen: Counter[str] = Counter()
    consumer = committed_reader(settings)
    at_kills = []
    try:
        for kill in range(KILLS):
            with worker_process(settings) as worker:
                # kill when the reader has seen some of the stream, a bit more each time
                read(consumer, seen, 1 + kill * EVENTS // (2 * KILLS), 60)
                worker.kill()  # SIGKILL: no shutdown, a transaction may be open
                worker.wait(10)
            at_kills.append(len(seen))
        with worker_process(settings):
            read(consumer, seen, EVENTS, 180)
            # whatever else comes now would be a duplicate
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                read(consumer, seen, EVENTS + 1, 0.5)
    finally:
        consumer.close()

    assert 0 < at_kills[-1] < EVENTS, at_kills  # the kills happened in the middle of the stream
    assert set(seen) == set(uuids)
    duplicated = {u: n for u, n in seen.items() if n > 1}
    assert duplicated == {}


def test_read_committed_consumers_see_every_event_once_across_rebalances(
    kafka_bootstrap: str, redis_url: str
) -> None:
    """A second worker joins while the first works through the stream, then leaves: each
    rebalance revokes partitions from a worker whose next batch's store round may be out (the
    revoke completes that batch and commits its transaction before the partitions go)."""
    name = f"eos-rebalance-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        redis_url,
        name,
        delivery={"exactly_once": True},
        batch={"max_messages": 200},
        buffer={"enabled": False},
    )
    events = 8_000
    uuids = [str(uuid.uuid4()) for _ in range(events)]
    records = pageviews(settings, uuids, users=400)
    thirds = [records[: events // 3], records[events // 3 : 2 * events // 3]]
    thirds.append(records[2 * events // 3 :])
    seen: Counter[str] = Counter()
    consumer = committed_reader(settings)
    first = {"IDENTITY_WORKER_DELIVERY__TRANSACTIONAL_ID": f"{name}-a"}
    second = {"IDENTITY_WORKER_DELIVERY__TRANSACTIONAL_ID": f"{name}-b"}
    try:
        produce(settings, thirds[0])
        with worker_process(settings, first):
            read(consumer, seen, events // 6, 60)
            with worker_process(settings, second) as joined:
                # the stream goes on while the second worker joins: batches are in flight
                # when the first one's partitions are revoked
                produce_paced(settings, thirds[1], seconds=3)
                read(consumer, seen, 2 * events // 3, 60)
                joined.terminate()  # SIGTERM: its batches finish, its partitions go back
                produce_paced(settings, thirds[2], seconds=3)
                assert joined.wait(60) == 0
            read(consumer, seen, events, 120)
            deadline = time.monotonic() + 3  # whatever else comes now is a duplicate
            while time.monotonic() < deadline:
                read(consumer, seen, events + 1, 0.5)
    finally:
        consumer.close()

    assert set(seen) == set(uuids)
    assert {u: n for u, n in seen.items() if n > 1} == {}


def test_an_output_too_large_in_a_transaction_becomes_a_dead_letter(
    kafka_bootstrap: str, redis_url: str
) -> None:
    """The broker refuses a record too large for its topic, which dooms the transaction: the
    batch's outputs are written again without it, its input is dead-lettered, and nothing is
    seen twice by a read_committed consumer."""
    name = f"eos-big-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        redis_url,
        name,
        delivery={"exactly_once": True},
        buffer={"enabled": False},
    )
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
        return topics.track, b"big:k", json.dumps(body).encode()

    large = track("heavy", os.urandom(3000).hex())  # 6 KB of incompressible text
    small = [track(f"light-{i}", "x") for i in range(5)]
    consumer = committed_reader(settings)
    consumer.subscribe([topics.enriched, topics.dead_letters])
    seen: Counter[str] = Counter()
    letters: list[Message] = []
    try:
        with running_worker(settings):
            produce(settings, [small[0], large, *small[1:]])
            deadline = time.monotonic() + 60
            while (len(seen) < 5 or not letters) and time.monotonic() < deadline:
                for message in consumer.consume(num_messages=100, timeout=0.5):
                    if message.error() is not None:
                        continue
                    if message.topic() == topics.dead_letters:
                        letters.append(message)
                    else:
                        seen[json.loads(message.value() or b"")["distinct_id"]] += 1
    finally:
        consumer.close()
    assert seen == Counter({f"light-{i}": 1 for i in range(5)})
    (letter,) = letters
    assert letter.value() == large[2]
    assert dict(letter.headers() or [])["iw.error.reason"] == b"output_too_large"
