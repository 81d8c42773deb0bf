"""Benchmark of the Redis identity store (a script, not a test).

    .venv/bin/python -m tests.bench.bench_store --redis-url redis://127.0.0.1:16379/0 [--quick]

Measures, against a real Redis:
1. resolutions per second for batches of 500 mixed operations (80% track, a quarter of them
   with a few ``$set``; 15% identify with an anonymous id; 5% alias; Zipf-distributed distinct
   ids), with the batched store (one script call per ``max_ops_per_call`` operations) and a
   naive variant (the same script called once per operation), side by side;
2. server time per script call (SLOWLOG with ``slowlog-log-slower-than 0``, entries of this
   run's named connections only) for several chunk sizes, which is how the default
   ``max_ops_per_call`` was chosen;
3. Redis memory per distinct id and per person on a population of ``--population`` distinct
   ids (1,000,000 by default): ``INFO memory`` ``used_memory`` delta, plus ``MEMORY USAGE`` of
   the union-find, the person records and the members sets (``tests/bench/common.py``).

It changes the server's SLOWLOG settings while it runs (and restores them), and writes only
under its own key prefix, which it deletes at the end (unless ``--keep``).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import redis

from tests.bench.common import (
    ServerTime,
    delete_prefix,
    memory_breakdown,
    named_url,
    run_header,
)
from worker.identity import rules
from worker.identity.config import IdentityConfig
from worker.identity.model import EventKind, IdentityEvent, PreparedOp, PropertyUpdates
from worker.store import call_cost
from worker.store.commit_plan import RulesMode
from worker.store.redis_store import (
    DEFAULT_MAX_CALL_COST,
    DEFAULT_MAX_OPS_PER_CALL,
    DEFAULT_REPLY_TTL_MS,
    RedisIdentityStore,
)

TENANT = "bench"
CLIENT_NAME = f"bench-store-{uuid.uuid4().hex[:6]}"
"""The name of this run's Redis connections: SLOWLOG keeps only their entries."""
T0 = 1_700_000_000_000
PROPERTY_KEYS = ("plan", "country", "browser", "os", "utm_source", "referrer", "locale")


class Zipf:
    """Ranks 0..n-1 with P(k) ∝ 1/(k+1)^s (inverse CDF by bisection)."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        total = 0.0
        self._cdf: list[float] = []
        for k in range(n):
            total += 1.0 / (k + 1) ** s
            self._cdf.append(total)
        self._total = total
        self._rng = rng

    def __call__(self) -> int:
        return bisect.bisect_left(self._cdf, self._rng.random() * self._total)


@dataclass
class Workload:
    """The mixed stream: tracks, identifies with anonymous ids, aliases."""

    ids: int
    seed: int = 7

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._zipf = Zipf(self.ids, 1.05, self._rng)
        self._uuids = itertools.count()
        self._ts = T0

    def _event(self, kind: EventKind, distinct_id: str, other: str | None = None) -> IdentityEvent:
        rng = self._rng
        self._ts += 1
        updates = PropertyUpdates()
        if kind is EventKind.IDENTIFY:
            updates = PropertyUpdates(set=(("email", f"{distinct_id}@example.com"),))
        elif rng.random() < 0.25:
            keys = rng.sample(PROPERTY_KEYS, rng.randint(1, 3))
            updates = PropertyUpdates(
                set=tuple((k, f"{k}-{rng.randint(0, 20)}") for k in keys),
                set_once=(("first_seen_plan", "free"),) if rng.random() < 0.3 else (),
            )
        return IdentityEvent(
            tenant=TENANT,
            kind=kind,
            distinct_id=distinct_id,
            # canonical, as every decoded event's uuid is (codec.fields.as_uuid)
            uuid=str(uuid.UUID(int=(self.seed << 64) | next(self._uuids))),
            timestamp_ms=self._ts,
            other_id=other,
            updates=updates,
        )

    def batch(self, size: int) -> list[IdentityEvent]:
        out = []
        for _ in range(size):
            roll = self._rng.random()
            rank = self._zipf()
            if roll < 0.80:
                prefix = "user" if rank % 3 == 0 else "anon"
                out.append(self._event(EventKind.TRACK, f"{prefix}-{rank}"))
            elif roll < 0.95:
                anon = f"anon-{self._zipf()}"
                out.append(self._event(EventKind.IDENTIFY, f"user-{rank}", anon))
            else:
                out.append(self._event(EventKind.ALIAS, f"user-{rank}", f"user-{self._zipf()}"))
        return out


def _store(
    client: redis.Redis,
    prefix: str,
    max_ops: int,
    *,
    one_at_a_time: bool = False,
    max_cost: int = DEFAULT_MAX_CALL_COST,
    rules: RulesMode = RulesMode.SCRIPT,
) -> RedisIdentityStore:
    """The store; ``one_at_a_time``: without kept replies, calls go one by one, each waiting
    for its reply (no pipelined round); ``rules``: where the rules run (``redis.rules``)."""
    return RedisIdentityStore(
        client,
        IdentityConfig(),
        prefix=prefix,
        max_ops_per_call=max_ops,
        max_call_cost=max_cost,
        reply_ttl_ms=0 if one_at_a_time else DEFAULT_REPLY_TTL_MS,
        rules=rules,
    )


def _throughput(
    store: RedisIdentityStore, batches: Sequence[list[IdentityEvent]]
) -> tuple[float, list[float]]:
    latencies = []
    start = time.perf_counter()
    for batch in batches:
        t = time.perf_counter()
        store.resolve_batch(TENANT, batch, now_ms=T0)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - start
    return sum(len(b) for b in batches) / elapsed, latencies


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_throughput(client: redis.Redis, args: argparse.Namespace) -> list[str]:
    rows = []
    results = {}
    for name, max_ops, batches, naive, where in (
        ("batched (Lua, one call per chunk)", args.chunk, args.batches, False, RulesMode.SCRIPT),
        (
            "batched, rules in the worker (commit_batch.lua per chunk)",
            args.chunk,
            args.batches,
            False,
            RulesMode.WORKER,
        ),
        (
            "naive (same script, one call per op)",
            1,
            max(2, args.batches // 10),
            True,
            RulesMode.SCRIPT,
        ),
    ):
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        workload = Workload(ids=args.universe)
        store = _store(client, prefix, max_ops, one_at_a_time=naive, rules=where)
        warm = [workload.batch(500) for _ in range(args.warmup)]
        _throughput(store, warm)
        timed = [workload.batch(500) for _ in range(batches)]
        with ServerTime(client, CLIENT_NAME) as server:
            rate, latencies = _throughput(store, timed)
        scripts = server.scripts() or [0]
        results[name] = rate
        per_op = server.summary(batches * 500)["all_us_per_event"]
        rows.append(
            f"| {name} | {max_ops} | {batches * 500:,} | {rate:,.0f} | "
            f"{1000 * statistics.median(latencies):.1f} | {1000 * _pct(latencies, 0.99):.1f} | "
            f"{statistics.median(scripts):,.0f} | {max(scripts):,} | {per_op:.1f} |"
        )
        delete_prefix(client, prefix)
    ratio = (
        results["batched (Lua, one call per chunk)"]
        / results["naive (same script, one call per op)"]
    )
    return [
        "### Throughput, batches of 500 mixed operations",
        "",
        "| variant | ops per call | resolutions | resolutions/s | batch p50 ms | batch p99 ms "
        "| script p50 µs | script max µs | Redis µs per op (all commands) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Batched / naive: **{ratio:.1f}x**.",
        "",
    ]


def bench_chunk_sizes(client: redis.Redis, args: argparse.Namespace) -> list[str]:
    """Each chunk size alone (no cost bound), then the defaults (ops and cost bounds)."""
    rows = []
    unbounded = 1 << 30
    sizes = [(chunk, unbounded) for chunk in (16, 32, 64, 128, 256)]
    sizes.append((DEFAULT_MAX_OPS_PER_CALL, DEFAULT_MAX_CALL_COST))
    for chunk, cost in sizes:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        workload = Workload(ids=args.universe, seed=chunk)
        store = _store(client, prefix, chunk, max_cost=cost)
        _throughput(store, [workload.batch(500) for _ in range(args.warmup)])
        timed = [workload.batch(500) for _ in range(max(4, args.batches // 2))]
        with ServerTime(client, CLIENT_NAME) as server:
            rate, _ = _throughput(store, timed)
        scripts = server.scripts() or [0]
        ops = sum(len(batch) for batch in timed)
        label = f"{chunk}" if cost == unbounded else f"{chunk}, max_call_cost {cost} (defaults)"
        rows.append(
            f"| {label} | {rate:,.0f} | {len(scripts) / len(timed):.1f} | "
            f"{statistics.median(scripts):,.0f} | {_pct(scripts, 0.99):,.0f} | "
            f"{max(scripts):,} | {sum(scripts) / ops:.1f} |"
        )
        delete_prefix(client, prefix)
    return [
        "### Server time per script call, by chunk size (SLOWLOG, all calls)",
        "",
        "Each `max_ops_per_call` alone (no cost bound), then the defaults: calls cut at "
        f"{DEFAULT_MAX_OPS_PER_CALL} ops or {DEFAULT_MAX_CALL_COST} cost units "
        "(`worker/store/call_cost.py`), whichever comes first.",
        "",
        "| max_ops_per_call | resolutions/s | calls per batch of 500 | script p50 µs "
        "| script p99 µs | script max µs | µs per op |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]


KIND_CALL_OPS = 48
"""Ops per call of ``bench_kinds`` (every call one kind, never cut by cost)."""


class _KindEvents:
    """Events of one kind at a time on a population of ``persons`` identified persons (each
    ``u<i>`` with its anonymous ``a<i>`` and three properties); every event has a source."""

    def __init__(self, persons: int, seed: int = 5) -> None:
        self.persons = persons
        self._rng = random.Random(seed)
        self._n = itertools.count(1)
        self._ts = T0

    def event(
        self, kind: EventKind, distinct_id: str, other: str | None = None, keys: int = 0
    ) -> IdentityEvent:
        self._ts += 1
        n = next(self._n)
        updates = PropertyUpdates(set=tuple((f"k{i}", f"v{self._ts}") for i in range(keys)))
        return IdentityEvent(
            tenant=TENANT,
            kind=kind,
            distinct_id=distinct_id,
            uuid=str(uuid.UUID(int=(1 << 96) | n)),
            timestamp_ms=self._ts,
            other_id=other,
            updates=updates,
            source=f"kinds/0/{n}",
        )

    def anyone(self) -> int:
        return self._rng.randrange(self.persons)


def _kinds(gen: _KindEvents) -> list[tuple[str, Callable[[int], list[IdentityEvent]]]]:
    """Per kind, a maker of one call's events (``KIND_CALL_OPS``) for repetition ``r``."""
    n = KIND_CALL_OPS

    def tracks(keys: int) -> Callable[[int], list[IdentityEvent]]:
        return lambda r: [
            gen.event(EventKind.TRACK, f"a{gen.anyone()}", keys=keys) for _ in range(n)
        ]

    def same_person(r: int) -> list[IdentityEvent]:
        ids = [gen.anyone() for _ in range(n)]
        return [gen.event(EventKind.IDENTIFY, f"u{i}", f"a{i}", keys=1) for i in ids]

    def joins(r: int) -> list[IdentityEvent]:
        ids = [gen.anyone() for _ in range(n)]
        return [gen.event(EventKind.IDENTIFY, f"u{i}", f"x{r}-{k}-{i}") for k, i in enumerate(ids)]

    def new_pairs(r: int) -> list[IdentityEvent]:
        return [gen.event(EventKind.ALIAS, f"m{r}-{k}", f"n{r}-{k}") for k in range(n)]

    return [
        ("track of a known id, no property operation", tracks(0)),
        ("track with `$set` of 2 keys", tracks(2)),
        ("track with `$set` of 16 keys", tracks(16)),
        ("track with `$set` of 64 keys", tracks(64)),
        ("identify of an id with its own anonymous id (A3.5), `$set` of 1 key", same_person),
        ("identify joining a new anonymous id (A3.4)", joins),
        ("alias of two new ids (A3.3)", new_pairs),
    ]


def bench_kinds(client: redis.Redis, args: argparse.Namespace) -> list[str]:
    """Server time per op of calls of one kind each, beside the cost ``call_cost.op_cost``
    gives the kind (in plain-track units): how the cost model was set, checked in every run.
    Each kind runs on a population of its own (2,000 persons of 2 ids and 3 properties), so
    no kind meets persons an earlier one grew."""
    reps = 4 if args.quick else 12
    rows, plain = [], 0.0
    for index in range(len(_kinds(_KindEvents(persons=1)))):
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        store = _store(client, prefix, KIND_CALL_OPS, max_cost=1 << 30)
        gen = _KindEvents(persons=2_000)
        for start in range(0, gen.persons, 500):
            made = [
                gen.event(EventKind.IDENTIFY, f"u{i}", f"a{i}", keys=3)
                for i in range(start, start + 500)
            ]
            store.resolve_batch(TENANT, made, now_ms=T0)
        name, make = _kinds(gen)[index]
        calls = [make(r) for r in range(reps)]
        with ServerTime(client, CLIENT_NAME) as server:
            for events in calls:
                store.resolve_batch(TENANT, events, now_ms=T0)
        delete_prefix(client, prefix)
        scripts = server.scripts() or [0]
        per_op = statistics.median(scripts) / KIND_CALL_OPS
        plain = plain or per_op
        prepared = rules.prepare(calls[0][0], store.config)
        assert isinstance(prepared, PreparedOp), name
        units = call_cost.op_cost(prepared)
        rows.append(
            f"| {name} | {per_op:.1f} | {per_op / plain:.1f} | {units} | "
            f"{statistics.median(scripts) / 1000:.2f} |"
        )
    return [
        f"### Server time per op by kind (calls of {KIND_CALL_OPS} ops of one kind, "
        f"median of {reps} calls, each kind on a population of its own; SLOWLOG)",
        "",
        "| kind | µs per op | of a plain track | cost units (`call_cost.op_cost`) | call ms |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def _population(n_ids: int, seed: int = 11) -> Iterator[tuple[list[IdentityEvent], int]]:
    """Batches creating ``n_ids`` distinct ids (and how many persons each batch creates):
    persons of 1 id (70%) or of 2 ids (30%, an identify merging an anonymous id), each with two
    properties."""
    rng = random.Random(seed)
    made = 0
    counter = itertools.count()
    batch: list[IdentityEvent] = []
    for i in counter:
        if made >= n_ids:
            break
        props = PropertyUpdates(set=(("plan", "free"), ("country", rng.choice(["fr", "de", "us"]))))
        anon = f"anon-{i}"
        if rng.random() < 0.3 and made + 2 <= n_ids:
            kind, distinct_id, other = EventKind.IDENTIFY, f"user-{i}", anon
            made += 2
        else:
            kind, distinct_id, other = EventKind.TRACK, anon, None
            made += 1
        batch.append(
            # a canonical uuid, as decoding makes every event's (stored in 16 bytes)
            IdentityEvent(
                TENANT, kind, distinct_id, str(uuid.UUID(int=i)), T0 + i, other, updates=props
            )
        )
        if len(batch) == 500:
            yield batch, len(batch)
            batch = []
    if batch:
        yield batch, len(batch)


def populate(
    client: redis.Redis, prefix: str, n_ids: int, chunk: int, *, verbose: bool = False
) -> tuple[int, float]:
    """Resolves the memory section's population of ``n_ids`` distinct ids (``_population``)
    under ``prefix``, tenant ``TENANT``: the persons created and the seconds it took. The last
    call's kept reply is deleted, so only the identity state remains."""
    store = _store(client, prefix, chunk)
    start = time.perf_counter()
    persons = 0
    for n, (batch, created) in enumerate(_population(n_ids)):
        store.resolve_batch(TENANT, batch, now_ms=T0)
        persons += created
        if verbose and n % 200 == 0:
            print(f"  populated {n * 500:,} events", file=sys.stderr)
    elapsed = time.perf_counter() - start
    # the last reply is kept for the retry TTL: not part of the identity state
    client.unlink(*list(client.scan_iter(match=f"{prefix}:*reply:*")))
    return persons, elapsed


def bench_memory(client: redis.Redis, args: argparse.Namespace) -> list[str]:
    prefix = f"bench-mem-{uuid.uuid4().hex[:8]}"
    before = int(client.info("memory")["used_memory"])
    persons, elapsed = populate(client, prefix, args.population, args.chunk, verbose=args.verbose)
    after = int(client.info("memory")["used_memory"])
    breakdown = memory_breakdown(client, prefix, TENANT)
    ids = breakdown.ids
    delta = after - before
    lines = [
        f"### Memory, {ids:,} distinct ids in {persons:,} persons "
        f"({breakdown.members_sets:,} members keys; populated in {elapsed:.0f} s, "
        f"{ids / elapsed:,.0f} ids/s)",
        "",
        f"`INFO memory` `used_memory` delta: {delta:,} bytes, **{delta / ids:,.0f} per distinct "
        f"id**, {delta / persons:,.0f} per person. By part (`MEMORY USAGE` of the tenant's keys; "
        "the ids hash holds the union-find and, at each root, the person record):",
        "",
        *breakdown.rows(),
        "",
    ]
    if not args.keep:
        delete_prefix(client, prefix)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    parser.add_argument("--quick", action="store_true", help="small runs (about a minute)")
    parser.add_argument("--population", type=int, help="distinct ids for the memory measure")
    parser.add_argument("--batches", type=int, help="timed batches of 500 (batched variant)")
    parser.add_argument("--chunk", type=int, default=DEFAULT_MAX_OPS_PER_CALL)
    parser.add_argument(
        "--skip", action="append", default=[], choices=["memory", "chunks", "kinds"]
    )
    parser.add_argument("--keep", action="store_true", help="keep the memory population")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.population = args.population or (100_000 if args.quick else 1_000_000)
    args.batches = args.batches or (20 if args.quick else 100)
    args.universe = 20_000 if args.quick else 200_000
    args.warmup = 5 if args.quick else 20
    client = redis.Redis.from_url(named_url(args.redis_url, CLIENT_NAME))
    server = client.info("server")
    out = [
        f"## Redis identity store benchmark (Redis {server['redis_version']}, "
        f"redis-py {redis.__version__}, {'quick' if args.quick else 'full'} run)",
        "",
        *run_header(client),
    ]
    out += bench_throughput(client, args)
    if "chunks" not in args.skip:
        out += bench_chunk_sizes(client, args)
    if "kinds" not in args.skip:
        out += bench_kinds(client, args)
    if "memory" not in args.skip:
        out += bench_memory(client, args)
    print("\n".join(out))
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
