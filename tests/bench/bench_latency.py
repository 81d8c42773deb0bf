"""Open-loop latency of the worker (a script, not a test).

    .venv/bin/python -m tests.bench.bench_latency [--seconds 10] \
        [--drain-json .local/bench/drain.json | --drain-rate 10000] [--fractions 0.25,0.5,0.8]
    .venv/bin/python -m tests.bench.bench_latency --rates 1000,3000,6000

The rates are fractions (25%, 50% and 80% by default) of the worker's drain rate, taken from
``--drain-rate`` or from the file ``bench_worker`` writes (``--drain-json``, its ``--out``; with
``--build``, the build's JSON drain when that run had the same ``--build``, else the interpreted
worker's); ``--rates`` gives absolute rates instead. For each rate, a producer sends track
events on a fixed schedule (open loop: a late send does not delay the next one's scheduled time,
so a stall shows up as latency rather than hiding it), and latency is the enriched event's Kafka
timestamp (set when the worker produced it) minus the input's *scheduled* send time. The worker
runs as ``identity-worker run`` in a process of its own (``--in-process``: in a thread of this
one, sharing its interpreter with the load generator), on the same two cores as Kafka, Redis and
the load generator; ``--build DIR``: from the compiled build of the ``worker`` package in
``DIR`` (``make compiled``: ``.local/compiled``; ``PYTHONPATH=DIR``), else from this repository.
The first ``--warmup`` seconds of each rate are sent on the same schedule but not counted
(connections and the first persons warm up). Prints p50/p90/p99/max per rate, with the CPU per
event of the worker's process (all its threads) and of the local broker (when it runs on this
machine; it counts every client's requests), and the worker's messages per batch.

Then the buffer (``--buffered-rate``, 0 to skip): backend track events for distinct ids no
person holds, so each waits in the buffer and is released when its wait is over (reason
``timeout``), with ``buffer.delay_seconds`` = ``--buffer-delay`` and the default release
interval. Lateness is the enriched event's Kafka timestamp minus the moment its wait was over
(the input's Kafka timestamp, taken when it was produced, plus the delay): how late past its due
time a buffered event comes out.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from tests.bench.bench_worker import (
    cpu_seconds,
    loaded_build,
    local_broker_pid,
    start_workers,
    stop_workers,
)
from tests.bench.common import (
    Build,
    group_members,
    interpreted,
    parse_build,
    run_header,
    wait_for,
)
from tests.e2e.harness import DEFAULT_RULES, e2e_settings
from worker.app import build_worker
from worker.config import Settings
from worker.runtime import tune_gc


def clients(settings: Settings, name: str) -> tuple[Consumer, Producer]:
    """A consumer of the enriched topic from its start (group ``<group>-<name>``) and a
    producer for the load."""
    consumer = Consumer(
        {
            **settings.kafka.common(),
            "group.id": f"{settings.kafka.group_id}-{name}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topics.enriched])
    return consumer, Producer({**settings.kafka.common(), "linger.ms": 1})


def measure(settings: Settings, rate: int, seconds: float, warmup: float) -> list[float]:
    skipped = int(rate * warmup)
    total = skipped + int(rate * seconds)
    scheduled: dict[str, float] = {}
    consumer, producer = clients(settings, "lat")
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
    seen = 0
    while seen < total and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=1000, timeout=0.5):
            value = message.value()
            if message.error() is None and value is not None:
                event = json.loads(value)
                _kind, produced_ms = message.timestamp()
                seen += 1
                due = scheduled[event["uuid"]]
                if due >= start + warmup:
                    latencies.append(produced_ms / 1000 - due)
    consumer.close()
    return latencies


def measure_buffered(settings: Settings, rate: int, seconds: float) -> list[float]:
    """Lateness past due (seconds) of buffered events released on timeout (module doc)."""
    delay = settings.buffer.delay_seconds
    total = int(rate * seconds)
    sent: dict[str, float] = {}
    consumer, producer = clients(settings, "buf")
    start = time.time() + 0.5
    for i in range(total):
        pause = start + i / rate - time.time()
        if pause > 0:
            time.sleep(pause)
        event_uuid, user = str(uuid.uuid4()), f"b{i}"
        body = {
            "type": "track",
            "tenant": "lat",
            "uuid": event_uuid,
            "event": "e",
            "distinct_id": user,
            "source": "backend",
        }
        sent[event_uuid] = time.time()  # the input's Kafka timestamp is taken now
        producer.produce(
            settings.topics.track, key=f"lat:{user}".encode(), value=json.dumps(body).encode()
        )
        producer.poll(0)
    producer.flush(30)
    lateness: list[float] = []
    deadline = time.monotonic() + delay + 60
    while len(lateness) < total and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=1000, timeout=0.5):
            value = message.value()
            if message.error() is None and value is not None:
                event = json.loads(value)
                _kind, produced_ms = message.timestamp()
                if event["uuid"] in sent and event.get("buffered_ms", 0) > 0:
                    lateness.append(produced_ms / 1000 - (sent[event["uuid"]] + delay))
    consumer.close()
    if len(lateness) < total:
        raise SystemExit(f"only {len(lateness)} of {total} buffered events came out")
    return lateness


class WorkerProcess:
    """``identity-worker run`` as a subprocess, once it joined its group; ``code``: a directory
    whose ``worker`` package it runs (a compiled build) instead of this repository's."""

    def __init__(self, settings: Settings, logs: Path, code: Path | None = None) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        (self.proc,) = start_workers(settings, 1, logs, code=code)
        try:
            _wait_until_joined(settings)
            loaded_build(self.proc.pid, code)
        except BaseException:
            stop_workers([self.proc])
            raise

    def stop(self) -> None:
        stop_workers([self.proc])

    def cpu_seconds(self) -> float | None:
        """User and system CPU time the worker process used so far."""
        return cpu_seconds(self.proc.pid)


class WorkerThread:
    """The worker's loop in a thread of this process, once it joined its group."""

    def __init__(self, settings: Settings) -> None:
        self.worker = build_worker(settings)
        tune_gc(settings.batch.gc_threshold)  # as ``identity-worker run`` does (the whole process)
        self.thread = threading.Thread(target=self.worker.runner.run, daemon=True)
        self.thread.start()
        _wait_until_joined(settings)

    def stop(self) -> None:
        self.worker.runner.request_shutdown()
        self.thread.join(30)
        self.worker.close()

    def cpu_seconds(self) -> float | None:
        """Not measured: the worker shares this process with the load generator."""
        return None


def _wait_until_joined(settings: Settings) -> None:
    wait_for(
        lambda: group_members(settings, settings.kafka.group_id) == 1,
        60,
        "the worker to join its group",
        period=0.2,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def batches_so_far(settings: Settings) -> tuple[float, float]:
    """The worker's batches and the messages in them so far (its ``/metrics``)."""
    url = f"http://127.0.0.1:{settings.observability.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith("identity_worker_batch_size_count "):
            count = float(line.split()[1])
        elif line.startswith("identity_worker_batch_size_sum "):
            total = float(line.split()[1])
    return count, total


def start_worker(settings: Settings, args: argparse.Namespace) -> WorkerProcess | WorkerThread:
    if args.in_process:
        return WorkerThread(settings)
    return WorkerProcess(settings, args.logs, args.build.path if args.build else None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    parser.add_argument("--rates", help="absolute rates, e.g. 1000,3000,6000")
    parser.add_argument("--drain-rate", type=float, help="the worker's drain rate (events/s)")
    parser.add_argument("--drain-json", type=Path, default=Path(".local/bench/drain.json"))
    parser.add_argument("--fractions", default="0.25,0.5,0.8")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--buffered-rate", type=int, default=500, help="buffered events/s (0: skip the buffer)"
    )
    parser.add_argument("--buffer-delay", type=float, default=2.0, help="buffer.delay_seconds")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the worker in a thread of this process (as before 2026-11-29), not its own",
    )
    parser.add_argument(
        "--build",
        type=parse_build,
        metavar="DIR",
        help="run the worker from the compiled build in DIR (make compiled: .local/compiled)",
    )
    parser.add_argument(
        "--consumer",
        type=json.loads,
        default={},
        help="librdkafka options of the worker's consumer (kafka.consumer), as JSON",
    )
    parser.add_argument("--logs", type=Path, default=Path(".local/bench/logs"))
    parser.add_argument(
        "--rules",
        choices=["script", "worker"],
        default=os.environ.get("IDENTITY_TEST_REDIS_RULES", DEFAULT_RULES),
        help="where the worker runs the identity rules (redis.rules); the drain rate is then "
        "that mode's row of --drain-json",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per rate, each with a fresh worker; above 1, a row per run and their median",
    )
    args = parser.parse_args()
    build: Build | None = args.build
    if build is not None and args.in_process:
        parser.error("--build runs the worker in a process of its own: not with --in-process")
    rates: list[tuple[int, str]]
    if args.rates:
        rates = [(int(r), "-") for r in args.rates.split(",")]
    else:
        drain, of = args.drain_rate, "--drain-rate"
        if drain is None:
            if not args.drain_json.exists():
                parser.error(f"no --rates, no --drain-rate and no {args.drain_json}")
            drain, of = drain_of(json.loads(args.drain_json.read_text()), build, args.rules)
            of += f" in {args.drain_json}"
            if not drain:
                parser.error(f"{args.drain_json} holds no drain rate (its gate failed?)")
        rates = [(int(drain * float(f)), f"{float(f):.0%}") for f in args.fractions.split(",")]
        print(f"fractions of the drain rate {drain:,.0f} events/s ({of})\n")
    print("\n".join(run_header()[:-1]))
    where = "in this process" if args.in_process else "in a process of its own"
    print(f"- the worker runs {where}: {build or interpreted()}")
    print(
        f"- the identity rules run in {'the worker' if args.rules == 'worker' else 'Redis'}"
        f" (redis.rules={args.rules})\n"
    )
    print(
        "| rate (events/s) | of drain | events | p50 ms | p90 ms | p99 ms | max ms "
        "| worker CPU µs/event | broker CPU µs/event | messages per batch |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    batch: dict[str, float] = {"max_messages": 1000, "max_wait_seconds": 0.01}
    medians: list[str] = []
    for rate, fraction in rates:
        p99s = []
        for run in range(args.repeat):
            name = f"lat-{uuid.uuid4().hex[:8]}"
            settings = e2e_settings(
                args.bootstrap,
                args.redis_url,
                name,
                buffer={"enabled": False},
                batch=batch,
                observability={"metrics_port": free_port()},
                kafka={"consumer": args.consumer},
                redis={"rules": args.rules},
            )
            worker = start_worker(settings, args)
            broker = local_broker_pid(args.bootstrap)
            broker_before = cpu_seconds(broker) if broker else 0.0
            cpu_before = worker.cpu_seconds()
            batches_before = batches_so_far(settings)
            latencies = sorted(measure(settings, rate, args.seconds, args.warmup))
            cpu_after = worker.cpu_seconds()
            broker_cpu = cpu_seconds(broker) - broker_before if broker else None
            batches_after = batches_so_far(settings)
            batches = batches_after[0] - batches_before[0]
            messages = batches_after[1] - batches_before[1]
            worker.stop()
            lead = f"{rate:,} | {fraction}" + (f" (run {run + 1})" if args.repeat > 1 else "")
            sent = int(rate * args.warmup) + int(rate * args.seconds)
            cpu = broker_us = "-"
            if cpu_before is not None and cpu_after is not None:
                cpu = f"{(cpu_after - cpu_before) / sent * 1e6:.1f}"
            if broker_cpu is not None:
                broker_us = f"{broker_cpu / sent * 1e6:.1f}"
            size = f"{messages / batches:.1f}" if batches else "-"
            print(f"{_row(lead, latencies)} {cpu} | {broker_us} | {size} |", flush=True)
            p99s.append(statistics.quantiles(latencies, n=100)[98] * 1000)
        if args.repeat > 1:
            each = ", ".join(f"{p:.1f}" for p in p99s)
            medians.append(
                f"- {rate:,} events/s ({fraction}): p99 median **{statistics.median(p99s):.1f} ms**"
                f" over {args.repeat} runs ({each})"
            )
    if medians:
        print("\n" + "\n".join(medians))
    if args.buffered_rate > 0:
        settings = e2e_settings(
            args.bootstrap,
            args.redis_url,
            f"lat-{uuid.uuid4().hex[:8]}",
            buffer={"enabled": True, "delay_seconds": args.buffer_delay},
            batch=batch,
            redis={"rules": args.rules},
        )
        interval = settings.buffer.release_interval_seconds
        print(
            f"\nBuffered events released on timeout (delay {args.buffer_delay:g} s, release "
            f"interval {interval:g} s): lateness past due\n"
        )
        print("| rate (events/s) | events | p50 ms | p90 ms | p99 ms | max ms |")
        print("|---:|---:|---:|---:|---:|---:|")
        worker = start_worker(settings, args)
        lateness = sorted(measure_buffered(settings, args.buffered_rate, args.seconds))
        worker.stop()
        print(_row(f"{args.buffered_rate:,}", lateness))


def drain_of(
    drain: dict[str, Any], build: Build | None, rules: str = DEFAULT_RULES
) -> tuple[float | None, str]:
    """The drain rate of ``bench_worker``'s output ``drain`` of the worker this run measures:
    the build's JSON drain when ``drain`` has one, else the interpreted worker's (with ``rules``
    other than the setting's default: that mode's row, ``--rules`` of ``bench_worker``); and
    its row."""
    suffix = f", rules in {rules}" if rules != DEFAULT_RULES else ""
    if build is not None:
        for label, path in drain.get("builds", {}).items():
            name = f"worker, JSON, {label}{suffix}"
            if Path(path) == build.path and drain["runs"].get(name):
                return drain["runs"][name], name
    if suffix:
        name = f"worker, JSON{suffix}"
        return drain["runs"].get(name), name
    return drain["drain_rate"], "worker, JSON"


def _row(lead: str, values: list[float]) -> str:
    q = statistics.quantiles(values, n=100)
    return (
        f"| {lead} | {len(values):,} | {q[49] * 1000:.1f} | {q[89] * 1000:.1f} | "
        f"{q[98] * 1000:.1f} | {values[-1] * 1000:.1f} |"
    )


if __name__ == "__main__":
    main()
