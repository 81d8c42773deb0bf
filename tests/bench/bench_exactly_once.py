"""What exactly-once costs: the worker drains the same backlog with ``delivery.exactly_once``
off and on, side by side in one run (a script, not a test).

    .venv/bin/python -m tests.bench.bench_exactly_once [--events 50000] [--rounds 1] [--quick]

The backlog, its preloading and the timing are ``tests.bench.bench_worker``'s (same kind of
events, fresh topics and group per variant, the worker in-process, timed from its first consumed
message until it consumed the last). Off, each batch's outputs are flushed and its offsets
committed by the consumer; on, a transactional producer writes each batch's outputs and its
offsets in one transaction (``begin``, produce, ``send_offsets_to_transaction``, ``commit``).
With ``--rounds`` above 1 the variants alternate which goes first. Prints events per second of
each and the ratio on / off; nothing is asserted (numbers go to docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from tests.bench.bench_worker import backlog, preload, run_worker
from tests.e2e.harness import e2e_settings
from worker.config import Settings


def _settings(bootstrap: str, redis_url: str, name: str, *, exactly_once: bool) -> Settings:
    return e2e_settings(
        bootstrap,
        redis_url,
        name,
        buffer={"enabled": False},
        batch={"max_messages": 1000, "max_wait_seconds": 0.05},
        delivery={"exactly_once": exactly_once},
    )


def drain(bootstrap: str, redis_url: str, n: int, *, exactly_once: bool) -> float:
    """Seconds the worker took to drain a fresh backlog of ``n`` events."""
    name = f"bench-eos-{'on' if exactly_once else 'off'}-{uuid.uuid4().hex[:8]}"
    settings = _settings(bootstrap, redis_url, name, exactly_once=exactly_once)
    preload(settings, backlog(n, users=max(n // 5, 10), seed=1))
    return run_worker(settings, n)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 10_000 if args.quick else args.events

    seconds: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for exactly_once in order:
            t0 = time.perf_counter()
            took = drain(args.bootstrap, args.redis_url, n, exactly_once=exactly_once)
            seconds[exactly_once].append(took)
            label = "on" if exactly_once else "off"
            print(
                f"round {round_ + 1}, exactly-once {label}: {n / took:,.0f} events/s "
                f"({took:.2f} s; {time.perf_counter() - t0:.1f} s with the preload)"
            )

    rates = {mode: n / statistics.median(s) for mode, s in seconds.items()}
    print()
    print("| exactly-once | events | seconds (median) | events/s |")
    print("|---|---:|---:|---:|")
    for mode in (False, True):
        median = statistics.median(seconds[mode])
        print(f"| {'on' if mode else 'off'} | {n} | {median:.2f} | {rates[mode]:,.0f} |")
    print(f"\non / off: {rates[True] / rates[False]:.2f}x")


if __name__ == "__main__":
    main()
