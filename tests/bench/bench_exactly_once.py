"""What exactly-once costs: the worker drains the same backlog with ``delivery.exactly_once``
off and on, side by side in one run (a script, not a test).

    .venv/bin/python -m tests.bench.bench_exactly_once [--events 50000] [--rounds 1] [--quick]

The backlog, the drain and the correctness gate are ``tests.bench.bench_worker``'s
(``run_worker``: fresh topics, group and key prefix per variant, a worker process, the outputs
checked against the reference model; a variant whose gate fails reports no speed). Off, each
batch's outputs are flushed and its offsets committed by the consumer; on, a transactional
producer writes each batch's outputs and its offsets in one transaction (``begin``, produce,
``send_offsets_to_transaction``, ``commit``).
With ``--rounds`` above 1 the variants alternate which goes first. Prints events per second of
each and the ratio on / off; nothing is asserted (numbers go to docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import redis

from tests.bench.bench_worker import Expected, Messages, as_messages, backlog, expected, run_worker


def drain(
    args: argparse.Namespace,
    client: redis.Redis,
    messages: Messages,
    want: Expected,
    *,
    exactly_once: bool,
) -> float | None:
    """Events per second of one drain of ``messages`` by a fresh worker, or ``None`` when the
    correctness gate failed (``bench_worker.run_worker``)."""
    name = f"exactly-once {'on' if exactly_once else 'off'}"
    run = run_worker(
        args,
        client,
        name,
        messages,
        want,
        "json",
        sections={"delivery": {"exactly_once": exactly_once}},
    )
    return run.rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--logs", type=Path, default=Path(".local/bench/logs"))
    args = parser.parse_args()
    args.profile = args.py_spy = None
    args.logs.mkdir(parents=True, exist_ok=True)
    n = 10_000 if args.quick else args.events
    client = redis.Redis.from_url(args.redis_url)
    messages = as_messages(backlog(n, users=max(n // 5, 10), seed=1), "json")
    want = expected(messages, n)

    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for exactly_once in order:
            t0 = time.perf_counter()
            rate = drain(args, client, messages, want, exactly_once=exactly_once)
            label = "on" if exactly_once else "off"
            if rate is None:
                print(f"round {round_ + 1}, exactly-once {label}: no speed: gate failed")
                continue
            rates[exactly_once].append(rate)
            print(
                f"round {round_ + 1}, exactly-once {label}: {rate:,.0f} events/s "
                f"({time.perf_counter() - t0:.1f} s with the preload and the gate)"
            )
    if not (rates[False] and rates[True]):
        print("\nno ratio: a gate failed")
        return
    median = {mode: statistics.median(r) for mode, r in rates.items()}
    print()
    print("| exactly-once | events | events/s (median) |")
    print("|---|---:|---:|")
    for mode in (False, True):
        print(f"| {'on' if mode else 'off'} | {n:,} | {median[mode]:,.0f} |")
    print(f"\non / off: {median[True] / median[False]:.2f}x")


if __name__ == "__main__":
    main()
