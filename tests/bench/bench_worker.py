"""Backlog-drain benchmark of the whole worker (a script, not a test).

    .venv/bin/python -m tests.bench.bench_worker [--events 50000] [--quick]

Preloads a backlog of JSON events (80% track, a quarter of them with ``$set``; 15% identify
with an anonymous id; 5% alias; Zipf-distributed users) into fresh topics of the local Kafka,
then measures, side by side on the same machine and the same kind of backlog:

1. **worker**: ``identity-worker`` (batches, one Lua call per tenant chunk, one flush per batch),
   timed from its first consumed message to the commit covering the last one;
2. **naive**: a per-event loop: ``poll()`` one message, one store round trip for it, produce
   its enriched event, wait for the acknowledgement, commit. This is the shape the batching
   replaces (one Redis and one Kafka round trip per event).

Prints events per second for both and their ratio. Nothing is asserted: numbers go to
docs/BENCHMARKS.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
import uuid
from typing import Any

import redis
from confluent_kafka import Consumer, Producer

from tests.bench.bench_store import Zipf
from tests.e2e.harness import e2e_settings
from worker.app import build_store, build_worker
from worker.codec.decode import DecodeOptions, decode_message
from worker.codec.encode import OutputEncoder
from worker.codec.envelope import to_identity_event
from worker.config import Settings

TENANT = "drain"


def backlog(n: int, users: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    zipf = Zipf(users, 1.1, rng)
    events = []
    for i in range(n):
        user = zipf()
        roll = rng.random()
        base = {
            "tenant": TENANT,
            "uuid": str(uuid.UUID(int=rng.getrandbits(128))),
            "timestamp": 1_760_000_000_000 + i,
        }
        if roll < 0.80:
            body = {**base, "type": "track", "event": "page", "distinct_id": f"anon-{user}"}
            if rng.random() < 0.25:
                body["set"] = {"plan": rng.choice(["free", "pro"]), "n": i}
        elif roll < 0.95:
            body = {
                **base,
                "type": "identify",
                "distinct_id": f"user-{user}",
                "other_id": f"anon-{user}",
                "set": {"email_domain": "example.com"},
            }
        else:
            body = {
                **base,
                "type": "alias",
                "distinct_id": f"user-{user}",
                "other_id": f"crm-{user}",
            }
        events.append(body)
    return events


def preload(settings: Settings, events: list[dict[str, Any]]) -> None:
    producer = Producer({**settings.kafka.common(), "linger.ms": 20, "compression.type": "lz4"})
    for body in events:
        user = body["distinct_id"].split("-", 1)[1]
        producer.produce(
            settings.topics.track, key=f"{TENANT}:{user}".encode(), value=json.dumps(body).encode()
        )
        producer.poll(0)
    producer.flush(60)


def run_worker(settings: Settings, n: int) -> float:
    worker = build_worker(settings)
    registry = worker.metrics.registry
    thread = threading.Thread(target=worker.runner.run, daemon=True)
    thread.start()

    def consumed() -> float:
        return (
            registry.get_sample_value(
                "identity_worker_events_consumed_total", {"topic": settings.topics.track}
            )
            or 0.0
        )

    while consumed() == 0:
        time.sleep(0.01)
    start = time.perf_counter()
    while consumed() < n:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    worker.runner.request_shutdown()
    thread.join(60)
    worker.close()
    return elapsed


def run_naive(settings: Settings, n: int) -> float:
    client = redis.Redis.from_url(settings.redis.url.get_secret_value())
    store = build_store(settings, client)
    encoder = OutputEncoder("json")
    options = DecodeOptions()
    consumer = Consumer(
        {
            **settings.kafka.common(),
            "group.id": settings.kafka.group_id + "-naive",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({**settings.kafka.common(), "enable.idempotence": True})
    consumer.subscribe([settings.topics.track])
    done = 0
    start = None
    while done < n:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        if start is None:
            start = time.perf_counter()
        event = decode_message(message.value(), message.key(), None, "x", options)
        (resolution,) = store.resolve_batch(
            TENANT, [to_identity_event(event, event.timestamp_ms)], 0
        )
        record = encoder.enriched(event, resolution)
        producer.produce(settings.topics.enriched, key=record.key, value=record.value)
        producer.flush(10)
        consumer.commit(message=message, asynchronous=False)
        done += 1
    elapsed = time.perf_counter() - (start or time.perf_counter())
    consumer.close()
    client.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--naive-events", type=int, default=5_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 10_000 if args.quick else args.events
    naive_n = 1_000 if args.quick else args.naive_events

    name = f"bench-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        args.bootstrap,
        args.redis_url,
        name,
        buffer={"enabled": False},
        batch={"max_messages": 1000, "max_wait_seconds": 0.05},
    )
    events = backlog(n, users=max(n // 5, 10), seed=1)
    t0 = time.perf_counter()
    preload(settings, events)
    print(f"preloaded {n} events in {time.perf_counter() - t0:.1f}s")
    worker_s = run_worker(settings, n)

    naive_settings = e2e_settings(
        args.bootstrap, args.redis_url, name + "-n", buffer={"enabled": False}
    )
    preload(naive_settings, events[:naive_n])
    naive_s = run_naive(naive_settings, naive_n)

    worker_rate, naive_rate = n / worker_s, naive_n / naive_s
    print()
    print("| variant | events | seconds | events/s |")
    print("|---|---:|---:|---:|")
    print(f"| worker (batched) | {n} | {worker_s:.2f} | {worker_rate:,.0f} |")
    print(f"| naive (per event) | {naive_n} | {naive_s:.2f} | {naive_rate:,.0f} |")
    print(f"\nworker / naive: {worker_rate / naive_rate:.1f}x")


if __name__ == "__main__":
    main()
