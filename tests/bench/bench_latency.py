"""Open-loop latency of the worker (a script, not a test).

    .venv/bin/python -m tests.bench.bench_latency [--rates 1000,3000,6000] [--seconds 10]

For each rate, a producer sends track events on a fixed schedule (open loop: a late send does not
delay the next one's scheduled time, so a stall shows up as latency rather than hiding it), and
latency is the enriched event's Kafka timestamp (set when the worker produced it) minus the
input's *scheduled* send time. The worker runs in-process on the same two cores as Kafka, Redis
and the load generator. Prints p50/p90/p99/max per rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer

from tests.e2e.harness import e2e_settings
from worker.app import build_worker
from worker.config import Settings


def measure(settings: Settings, rate: int, seconds: float) -> list[float]:
    total = int(rate * seconds)
    scheduled: dict[str, float] = {}
    consumer = Consumer(
        {
            **settings.kafka.common(),
            "group.id": f"{settings.kafka.group_id}-lat",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topics.enriched])
    producer = Producer({**settings.kafka.common(), "linger.ms": 1})
    start = time.time() + 0.5
    for i in range(total):
        due = start + i / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        event_uuid = str(uuid.uuid4())
        scheduled[event_uuid] = due
        user = f"u{i % 500}"
        body = {
            "type": "track",
            "tenant": "lat",
            "uuid": event_uuid,
            "event": "e",
            "distinct_id": user,
            "timestamp": int(due * 1000),
        }
        producer.produce(
            settings.topics.track, key=f"lat:{user}".encode(), value=json.dumps(body).encode()
        )
        producer.poll(0)
    producer.flush(30)
    latencies: list[float] = []
    deadline = time.monotonic() + 60
    while len(latencies) < total and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=1000, timeout=0.5):
            value = message.value()
            if message.error() is None and value is not None:
                event = json.loads(value)
                _kind, produced_ms = message.timestamp()
                latencies.append(produced_ms / 1000 - scheduled[event["uuid"]])
    consumer.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    parser.add_argument("--rates", default="1000,3000,6000")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print("| rate (events/s) | events | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for rate in (int(r) for r in args.rates.split(",")):
        name = f"lat-{uuid.uuid4().hex[:8]}"
        settings = e2e_settings(
            args.bootstrap,
            args.redis_url,
            name,
            buffer={"enabled": False},
            batch={"max_messages": 1000, "max_wait_seconds": 0.01},
        )
        worker = build_worker(settings)
        thread = threading.Thread(target=worker.runner.run, daemon=True)
        thread.start()
        time.sleep(4)  # join the group before the clock starts
        latencies = sorted(measure(settings, rate, args.seconds))
        worker.runner.request_shutdown()
        thread.join(30)
        worker.close()
        q = statistics.quantiles(latencies, n=100)
        print(
            f"| {rate} | {len(latencies)} | {q[49] * 1000:.1f} | {q[89] * 1000:.1f} | "
            f"{q[98] * 1000:.1f} | {latencies[-1] * 1000:.1f} |"
        )


if __name__ == "__main__":
    main()
