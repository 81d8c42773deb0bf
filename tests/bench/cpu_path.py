"""The worker's own CPU per event on its path, in process (a script, not a test).

    .venv/bin/python -m tests.bench.cpu_path --redis-url redis://127.0.0.1:16379/0 \\
        [--build .local/compiled] [--events 20000] [--rounds 4] [--format avro] [--rules script]

Runs ``bench_worker``'s JSON backlog (``--format avro``: the same events as Avro input, written
out as Avro, as ``bench_worker``'s Avro pass does) through the batch pipeline of ``worker.app``
without Kafka: decode, plan (the rules, the store's ARGV), the Redis round (a real Redis, its
own key prefix, deleted after each round), the reply, the outputs, and a sink that only counts
what it is given (and hashes it in the first round, so two builds can be shown to write the
same bytes). It prints the process CPU time per event of each round (the first one warms up),
and the first round's outputs per input event by topic (records, bytes of keys and values).
Without the broker and the drain's overlap its figures are steadier than ``bench_worker``'s, and
under ``valgrind --tool=callgrind`` (``--events 3000 --rounds 1 --no-digest``) the instructions
of each step per event are exact: how the changes of docs/BENCHMARKS.md section 7 were chosen.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import redis


class CountingSink:
    """Takes records and acknowledges them at once; hashes them when ``hashing``."""

    transactional = False

    def __init__(self, hashing: bool) -> None:
        self.records = 0
        self.digest = hashlib.sha256()
        self.hashing = hashing
        self.topics: dict[str, list[int]] = {}
        """topic -> [records, bytes of their keys and values]"""

    def produce(
        self, record: Any, tag: int = 0, report: Callable[[Any], None] | None = None
    ) -> None:
        self.records += 1
        counted = self.topics.setdefault(record.topic, [0, 0])
        counted[0] += 1
        counted[1] += len(record.key or b"") + len(record.value or b"")
        if self.hashing:
            for part in (record.topic.encode(), record.key or b"", record.value or b""):
                self.digest.update(len(part).to_bytes(4, "big") + part)
        if report is not None:
            report(None)

    def flush(self, timeout: float) -> list[Any]:
        return []

    def poll(self, timeout: float = 0.0) -> None:
        pass

    def abort_transaction(self, timeout: float) -> None:
        pass

    def produce_alone(self, record: Any, timeout: float, tag: int = 0) -> None:
        self.produce(record, tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    parser.add_argument("--build", help="a compiled build's directory (make compiled)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--format", choices=["json", "avro"], default="json", help="input and output format"
    )
    parser.add_argument(
        "--rules",
        choices=["script", "worker"],
        help="redis.rules (default: the setting's default)",
    )
    parser.add_argument(
        "--redis",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another redis setting (repeatable), e.g. max_ops_per_call=128",
    )
    parser.add_argument(
        "--no-digest", action="store_true", help="the first round does not hash the outputs"
    )
    args = parser.parse_args()
    if args.build:  # before anything imports worker: the build's package shadows the repository's
        sys.path.insert(0, os.path.abspath(args.build))
    # imported once the path is set
    from tests.bench.bench_worker import TENANT, as_messages, backlog
    from worker import build
    from worker.app import build_avro, build_pipeline, build_store
    from worker.clock import SystemClock
    from worker.config import load_settings
    from worker.kafka.records import RawMessage

    print(f"worker: {os.path.dirname(build.__file__)} ({build.describe()})")
    events = backlog(args.events, 10_000, 7)
    values = (
        as_messages(events, "avro").values
        if args.format == "avro"
        else [json.dumps(body).encode() for body in events]
    )
    messages = [
        RawMessage(
            "in",
            i % 6,
            i,
            f"{TENANT}:{body['distinct_id']}".encode(),
            value,
            (),
            1_760_000_000_000 + i,
        )
        for i, (body, value) in enumerate(zip(events, values, strict=True))
    ]
    client = redis.Redis.from_url(args.redis_url)
    per_event: list[float] = []
    for number in range(args.rounds):
        prefix = f"cpu-path-{os.getpid()}-{number}"
        settings = load_settings(
            kafka={"bootstrap_servers": "127.0.0.1:1", "group_id": prefix},
            redis={
                "url": args.redis_url,
                "key_prefix": prefix,
                **({"rules": args.rules} if args.rules else {}),
                **dict(option.split("=", 1) for option in args.redis),
            },
            buffer={"enabled": False},
            formats={"output": args.format},
        )
        sink = CountingSink(hashing=number == 0 and not args.no_digest)
        pipeline = build_pipeline(
            settings, build_store(settings, client), sink, build_avro(settings), SystemClock()
        )
        gc.collect()
        gc.set_threshold(100_000, 10, 10)  # batch.gc_threshold's default
        started = time.process_time()
        for first in range(0, len(messages), 1000):
            planned = pipeline.plan(messages[first : first + 1000])
            pipeline.launch(planned)
            pipeline.receive(planned)
            pipeline.complete(planned)[1].finish()
        cpu_us = (time.process_time() - started) / len(messages) * 1e6
        if number == 0 and not args.no_digest:
            print(f"outputs: {sink.records} records, sha256 {sink.digest.hexdigest()[:16]}")
            for topic, (records, size) in sorted(sink.topics.items()):
                print(
                    f"  {topic}: {records / len(messages):.3f} records and "
                    f"{size / len(messages):,.0f} bytes (keys and values) per input event"
                )
        else:
            per_event.append(cpu_us)
        print(f"round {number + 1}: {cpu_us:.1f} µs of CPU per event")
        for key in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(key)
    if per_event:
        print(
            f"rounds after the first: median {statistics.median(per_event):.1f}, "
            f"best {min(per_event):.1f} µs per event"
        )


if __name__ == "__main__":
    main()
