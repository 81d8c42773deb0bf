"""What exactly-once costs: the worker drains the same backlog with ``delivery.exactly_once``
off and on, side by side in one run (a script, not a test).

    .venv/bin/python -m tests.bench.bench_exactly_once [--events 50000] [--rounds 1] [--quick]
        [--baseline REF] [--build LABEL=DIR]

The backlog, the drain and the correctness gate are ``tests.bench.bench_worker``'s
(``run_worker``: fresh topics, group and key prefix per variant, a worker process, the outputs
checked against the reference model; a variant whose gate fails reports no speed). Off, each
batch's outputs are flushed and its offsets committed by the consumer; on, a transactional
producer writes each batch's outputs and its offsets in one transaction (``begin``, produce,
``send_offsets_to_transaction``, ``commit``).
With ``--baseline REF`` exactly-once on is drained by the worker of git revision ``REF`` as
well (before/after). With ``--build LABEL=DIR`` (repeatable) exactly-once off and on are also
drained by the compiled build of the ``worker`` package in ``DIR`` (``make compiled``:
``.local/compiled``), side by side. With ``--rounds`` above 1 the variants alternate which goes
first. Prints the command, the date, the machine and which code each variant runs, then
events per second of each and the ratio on / off; nothing is asserted (numbers go to
docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.bench.bench_worker import (
    Expected,
    Messages,
    as_messages,
    backlog,
    baseline_tree,
    expected,
    run_worker,
)
from tests.bench.common import Build, add_build_option, run_header, worker_lines


def drain(
    args: argparse.Namespace,
    client: redis.Redis,
    messages: Messages,
    want: Expected,
    variant: Variant,
) -> float | None:
    """Events per second of one drain of ``messages`` by a fresh worker, or ``None`` when the
    correctness gate failed (``bench_worker.run_worker``)."""
    run = run_worker(
        args,
        client,
        variant.label,
        messages,
        want,
        "json",
        code=variant.code,
        sections={"delivery": {"exactly_once": variant.exactly_once}},
    )
    return run.rate


@dataclass(frozen=True)
class Variant:
    label: str
    exactly_once: bool
    code: Path | None = None
    """the ``worker`` package of another revision (``--baseline``) or a compiled build
    (``--build``); none: this repository's"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--logs", type=Path, default=Path(".local/bench/logs"))
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="REF",
        help="also drain with exactly-once on at this git revision (repeatable)",
    )
    add_build_option(parser, "also drain with exactly-once off and on")
    args = parser.parse_args()
    builds: list[Build] = args.build
    args.profile = args.py_spy = None
    args.logs.mkdir(parents=True, exist_ok=True)
    n = 10_000 if args.quick else args.events
    client = redis.Redis.from_url(args.redis_url)
    messages = as_messages(backlog(n, users=max(n // 5, 10), seed=1), "json")
    want = expected(messages, n)

    variants = [Variant("exactly-once off", False), Variant("exactly-once on", True)]
    others, before = [], []
    for ref in args.baseline:
        code = baseline_tree(ref, Path(".local/bench"))
        at = f"at {code.name.removeprefix('baseline-')}"
        before.append(Variant(f"exactly-once on, {at}", True, code))
        others.append((at, code))
    variants += before
    for build in builds:
        variants.append(Variant(f"exactly-once off, {build.label}", False, build.path))
        variants.append(Variant(f"exactly-once on, {build.label}", True, build.path))
    print(f"## Exactly-once off and on ({n:,} events, {args.rounds} rounds)\n")
    print("\n".join(run_header(client, worker_lines(builds, others))))
    rates: dict[Variant, list[float]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for variant in order:
            t0 = time.perf_counter()
            rate = drain(args, client, messages, want, variant)
            if rate is None:
                print(f"round {round_ + 1}, {variant.label}: no speed: gate failed")
                continue
            rates[variant].append(rate)
            print(
                f"round {round_ + 1}, {variant.label}: {rate:,.0f} events/s "
                f"({time.perf_counter() - t0:.1f} s with the preload and the gate)"
            )
    if not all(rates.values()):
        print("\nno ratio: a gate failed")
        return
    median = {v: statistics.median(r) for v, r in rates.items()}
    off, on = variants[0], variants[1]
    print()
    print("| variant | events | events/s (median) | rounds |")
    print("|---|---:|---:|---|")
    for v in variants:
        each = " / ".join(f"{r:,.0f}" for r in rates[v])
        print(f"| {v.label} | {n:,} | {median[v]:,.0f} | {each} |")
    print(f"\non / off: {median[on] / median[off]:.2f}x")
    for v in before:
        print(f"on / {v.label}: {median[on] / median[v]:.2f}x")
    for build in builds:
        built = {v.exactly_once: v for v in variants if v.code == build.path}
        print(
            f"{build.label}: on / off {median[built[True]] / median[built[False]]:.2f}x; "
            f"{build.label} / interpreted: off {median[built[False]] / median[off]:.2f}x, "
            f"on {median[built[True]] / median[on]:.2f}x"
        )


if __name__ == "__main__":
    main()
