"""Where the worker's loop spends its time, from a py-spy sample file (a script, not a test).

    .venv/bin/python -m tests.bench.profile .local/bench/worker.pyspy

``bench_worker --py-spy FILE`` attaches ``py-spy record --idle --format raw`` to the JSON run's
worker while it drains; this reads the samples of the worker's loop (stacks through
``pipeline/runner.py``) and sorts each into the first matching part below, waits included
(``--idle``): a sample in ``recv_into`` under the store is time spent waiting for Redis.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Redis: waiting for a reply (socket read: a script's, a commit's, the reads')",
        ("read_response (",),
    ),
    ("Redis: sending the call", ("send_packed_command (", "send_command (")),
    # redis.rules=worker (the default): the engine, the reads it needs, its commit's ARGV
    (
        "the rules in the worker (engine, reads, commit plan)",
        ("store/engine/", "commit_plan.py", "prefetch.py"),
    ),
    ("store: encoding the call's arguments", ("encode_args",)),
    ("store: decoding the reply", ("decode_reply", "store/codec.py")),
    ("identity rules before the call (prepare, checks)", ("identity/rules.py",)),
    ("Kafka: producer flush (waiting for acks)", ("flush (worker/kafka/",)),
    ("Kafka: synchronous offset commit", ("commit (worker/kafka/",)),
    ("Kafka: consuming the batch", ("poll_batch", "consume (")),
    ("JSON text: decoding the input (loads_json)", ("loads_json",)),
    ("JSON text: encoding the outputs (dumps_json)", ("dumps_json",)),
    ("decoding: field checks and the event envelope", ("decode_all", "decoding.py")),
    ("Kafka: produce calls", ("produce (",)),
    ("output records (besides their JSON text)", ("event_outputs", "outputs.py", "encode.py")),
    ("store: other (chunking, retries, redis-py)", ("redis_store.py",)),
    ("emit: accounting and delivery bookkeeping", ("emit.py", "delivery.py")),
    ("waiting for the next batch (source)", ("source.py",)),
)


def read_samples(path: Path) -> Counter[str]:
    """The worker-loop samples of a raw py-spy file, by part."""
    parts: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if "runner.py" not in stack or not count.isdigit():
            continue
        name = "other"
        for part, markers in PARTS:
            if any(marker in stack for marker in markers):
                name = part
                break
        parts[name] += int(count)
    return parts


def report(path: Path) -> list[str]:
    parts = read_samples(path)
    total = sum(parts.values())
    if not total:
        return [f"no samples of the worker's loop in {path}"]
    lines = [
        f"Samples of the worker's loop: {total:,} (py-spy, waits included)",
        "",
        "| where | share |",
        "|---|---:|",
    ]
    order = [name for name, _ in PARTS] + ["other"]
    for name in sorted(parts, key=lambda n: (-parts[n], order.index(n))):
        lines.append(f"| {name} | {100 * parts[name] / total:.1f}% |")
    return [*lines, ""]


def main() -> int:
    for arg in sys.argv[1:]:
        print("\n".join(report(Path(arg))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
