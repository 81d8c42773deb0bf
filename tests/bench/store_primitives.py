"""What Redis would still do if the worker ran the identity rules, measured (a script, not a
test).

    .venv/bin/python -m tests.bench.store_primitives --redis-url redis://127.0.0.1:36400/0 \\
        [--batches 20] [--warmup 10] [--reference] [--records]

The resolve script runs the rules inside Redis: about 146,000 instructions, 15-21 µs of Redis's
one command thread, per op of the drain mix, and no script of its design gets under about 7 µs
(docs/BENCHMARKS.md, section 5). A design where the worker runs the rules on what it reads
(optimistic concurrency) would need of Redis only:

- reads: the ops' ids (one ``HMGET`` of the ids hash, then one per level of parents) and the
  receipts of their sources (one ``HMGET`` per receipt bucket);
- one conditional write per call: a small function that compares the records the worker read,
  for the roots its ops changed, with what Redis holds and, when they all match, writes the new
  records and every op's receipt (its reply entry).

For the drain mix's calls, captured from the store (``lua_profile.capture``) and replayed on a
throwaway prefix (deleted after): the warm-up calls run with the real script; then, for each
timed call, the reads are made, the real call runs (it moves the state on as the store would),
and the conditional write of what it changed is made (the records of the roots of its ops with
property operations or merges, written again as the call left them: the same bytes, and the
receipts it kept, each op's reply entry as a JSON text). Prints the ``INFO commandstats`` µs per
op of each beside the real call's: Redis's time inside the commands, not its parsing of them
(about 0.5 µs per op more for the script's ARGV). With ``--reference``, also the CPU per event,
in this process, of the pure-Python reference model (``worker/identity/reference.py``: the rules
as Python runs them, not written for speed) on the same events. With ``--records``, also the
worker's CPU for the records themselves (``worker/store/record_format.py``, in this process) on
the records the timed calls left: a record's header decoded, its property states decoded,
encoded again, the record encoded (best of 3 passes over every record; the states' rows over the
records that have some). For the compiled build: ``PYTHONPATH=.local/compiled:. .venv/bin/python
-P -m tests.bench.store_primitives ...`` (``-P`` keeps the working directory's ``worker`` from
shadowing the build's).

Not counted: the members strings of trees past 8 ids, the buffer, groups, case folds and
deletions (writes the drain mix makes rarely or never), new ids' parent pointers, and the
retries of a write another worker made stale. The conditional write's function is loaded as a
library of its own for the run and deleted after.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from tests.bench.bench_store import T0, TENANT
from tests.bench.common import run_header
from tests.bench.lua_profile import Call, drain_calls
from worker import build
from worker.identity.config import IdentityConfig
from worker.identity.reference import ReferenceStore
from worker.store import codec, record_format
from worker.store.lua_loader import load_library
from worker.store.script_call import ScriptCall

WRITE_LIBRARY = "identity_worker_bench_primitives"
WRITE_FUNCTION = "bench_conditional_write"
WRITE_CODE = f"""#!lua name={WRITE_LIBRARY}
-- KEYS: the ids hash, the receipt hash. ARGV: n, then n triples (root, the record read, the
-- record to write), then source and entry pairs. Writes nothing (returns 0) when a record
-- changed since it was read.
redis.register_function('{WRITE_FUNCTION}', function(keys, args)
  local n = tonumber(args[1])
  if n > 0 then
    local roots = {{}}
    for i = 0, n - 1 do
      roots[i + 1] = args[2 + i * 3]
    end
    local held = redis.call('HMGET', keys[1], unpack(roots))
    for i = 0, n - 1 do
      if (held[i + 1] or '') ~= args[3 + i * 3] then
        return 0
      end
    end
    local pairs = {{}}
    for i = 0, n - 1 do
      pairs[#pairs + 1] = args[2 + i * 3]
      pairs[#pairs + 1] = args[4 + i * 3]
    end
    redis.call('HSET', keys[1], unpack(pairs))
  end
  local at = 2 + n * 3
  if args[at] then
    redis.call('HSET', keys[2], unpack(args, at))
    redis.call('PEXPIRE', keys[2], 3600000)
  end
  return 1
end)
"""

MERGE_FLAG = 4
BUFFERABLE_FLAG = 8


@dataclass(frozen=True)
class Op:
    """What this script needs of one op of a call's ARGV (resolve_batch.lua's layout)."""

    into: bytes
    other: bytes
    changes: bool
    """property operations or a merge: its person's record is written"""
    source: bytes
    bucket: bytes


def ops_of(args: Sequence[bytes]) -> list[Op]:
    """The ops of one call's ARGV. Raises ``ValueError`` on an op with groups (the drain mix
    has none; their section is not read here)."""
    count = int(args[codec.HEADER_LENGTH - 2])
    at = codec.HEADER_LENGTH
    ops: list[Op] = []
    for _ in range(count):
        flags, into, other, props = int(args[at]), args[at + 1], args[at + 3], int(args[at + 7])
        at += 8 + 3 * props
        if args[at] != b"0":
            raise ValueError("an op with groups: not a mix this script reads")
        source, bucket = args[at + 1], args[at + 2]
        at += 3 + (3 if flags & BUFFERABLE_FLAG else 0)
        ops.append(Op(into, other, props > 0 or bool(flags & MERGE_FLAG), source, bucket))
    return ops


class Usec:
    """``INFO commandstats`` µs of some commands, read before and after a step."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def read(self, *commands: str) -> int:
        stats = self.client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in commands)


def _read(client: redis.Redis, ids_key: bytes, receipts: bytes, ops: Sequence[Op]) -> None:
    """The reads of a call: its ids, their parents level by level, its receipts."""
    ids = list(dict.fromkeys([o.into for o in ops] + [o.other for o in ops if o.other]))
    values = cast(list[bytes | None], client.hmget(ids_key, ids))
    while True:
        parents = [v[1:] for v in values if v is not None and v[:1] == b"P"]
        if not parents:
            break
        values = cast(list[bytes | None], client.hmget(ids_key, parents))
    buckets: dict[bytes, list[bytes]] = {}
    for op in ops:
        buckets.setdefault(op.bucket, []).append(op.source)
    for bucket, sources in buckets.items():
        client.hmget(receipts + bucket, sources)


def _write_args(
    client: redis.Redis, ids_key: bytes, ops: Sequence[Op], entries: Sequence[Any]
) -> list[bytes]:
    """The conditional write of what a call changed, as it left it."""
    changed = list(dict.fromkeys(o.into for o in ops if o.changes))
    held = cast(list[bytes | None], client.hmget(ids_key, changed)) if changed else []
    args = [str(len(changed)).encode()]
    for root, value in zip(changed, held, strict=True):
        args += [root, value or b"", value or b""]
    for op, entry in zip(ops, entries, strict=True):
        args += [op.source, json.dumps(entry, separators=(",", ":")).encode()]
    return args


def measure(
    client: redis.Redis,
    calls: Sequence[Call],
    warmup: int,
    records: dict[bytes, bytes] | None = None,
) -> dict[str, float]:
    """µs per op of the reads, the real call and the conditional write, over the timed calls.
    ``records``, if given, gets the values of the ids hash the calls left."""
    library = load_library("resolve_batch.lua")
    ScriptCall.fcall(library).load(client)
    client.function_load(WRITE_CODE, replace=True)
    prefix = f"sp-{uuid.uuid4().hex[:8]}".encode()
    usec = Usec(client)
    totals = {"reads": 0, "script": 0, "write": 0}
    ops_timed = 0
    try:
        for index, (keys, args) in enumerate(calls):
            keys = [k.replace(b"lp-old", prefix, 1) for k in keys]
            ops = ops_of(args)
            ids_key, receipts = keys[0], keys[5]
            before = usec.read("hmget")
            _read(client, ids_key, receipts, ops)
            reads = usec.read("hmget") - before
            before = usec.read("fcall")
            reply = client.fcall(library.function, len(keys), *keys, *args)
            script = usec.read("fcall") - before
            write = _write_args(client, ids_key, ops, json.loads(cast(bytes, reply))[0])
            bucket = receipts + ops[0].bucket
            before = usec.read("fcall")
            done = client.fcall(WRITE_FUNCTION, 2, ids_key, bucket, *write)
            written = usec.read("fcall") - before
            if done != 1:
                raise RuntimeError(f"call {index}: the conditional write found a changed record")
            if index >= warmup:
                ops_timed += len(ops)
                totals["reads"] += reads
                totals["script"] += script
                totals["write"] += written
        if records is not None and calls:
            ids_key = calls[0][0][0].replace(b"lp-old", prefix, 1)
            records.update(cast(dict[bytes, bytes], client.hgetall(ids_key)))
    finally:
        client.function_delete(WRITE_LIBRARY)
        keys_left = list(client.scan_iter(match=prefix + b":*", count=5000))
        for k in range(0, len(keys_left), 5000):
            client.unlink(*keys_left[k : k + 5000])
    return {name: total / max(1, ops_timed) for name, total in totals.items()} | {
        "ops": float(ops_timed)
    }


def record_us(values: dict[bytes, bytes], tenant: str, rounds: int = 3) -> dict[str, float]:
    """CPU µs per record of ``record_format``'s steps on the person records among ``values``
    (the ids hash), best of ``rounds``: ``decode`` (header), then, over the records with
    property states, ``decode_props``, ``encode_props``, and all four with ``encode``."""
    raw_tenant = tenant.encode()
    roots = [(k, v) for k, v in values.items() if record_format.is_record(v)]
    with_props = [(k, v) for k, v in roots if record_format.decode(v).props]
    decoded = [record_format.decode(v, k, raw_tenant) for k, v in with_props]
    states = [record_format.decode_props(r) for r in decoded]

    def whole(item: tuple[bytes, bytes]) -> None:
        record = record_format.decode(item[1], item[0], raw_tenant)
        record.snapshot, record.props = record_format.encode_props(
            *record_format.decode_props(record)
        )
        record_format.encode(record)

    def best(step: Callable[[Any], object], items: Sequence[Any]) -> float:
        fastest = float("inf")
        for _ in range(rounds):
            started = time.process_time()
            for item in items:
                step(item)
            fastest = min(fastest, (time.process_time() - started) / max(1, len(items)) * 1e6)
        return fastest

    return {
        "records": float(len(roots)),
        "with_props": float(len(with_props)),
        "decode": best(lambda kv: record_format.decode(kv[1], kv[0], raw_tenant), roots),
        "decode_props": best(record_format.decode_props, decoded),
        "encode_props": best(lambda mv: record_format.encode_props(*mv), states),
        "encode": best(record_format.encode, decoded),
        "whole": best(whole, with_props),
    }


def reference_us_per_event(batches: Sequence[Sequence[Any]], rounds: int = 3) -> float:
    """The reference model's CPU per event on ``batches`` (best of ``rounds``)."""
    best = float("inf")
    for _ in range(rounds):
        store = ReferenceStore(IdentityConfig())
        started, events = time.process_time(), 0
        for batch in batches:
            store.resolve_batch(TENANT, list(batch), T0)
            events += len(batch)
        best = min(best, (time.process_time() - started) / max(1, events) * 1e6)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--redis-url", required=True, help="a Redis 7+ (a throwaway prefix)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches of 500")
    parser.add_argument("--warmup", type=int, default=10, help="batches of 500 run first")
    parser.add_argument(
        "--reference", action="store_true", help="also time the reference model in process"
    )
    parser.add_argument(
        "--records",
        action="store_true",
        help="also time record_format on the records the calls left (the worker's side)",
    )
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis_url)
    batches, calls, warm_calls = drain_calls(client, args.batches, args.warmup, 64)
    values: dict[bytes, bytes] | None = {} if args.records else None
    try:
        result = measure(client, calls, warm_calls, values)
    except (redis.RedisError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(run_header(client)))
    print(
        f"\n## Redis per op of the drain mix ({int(result['ops']):,} timed ops, "
        f"{args.batches} batches of 500 after {args.warmup}; INFO commandstats)\n"
    )
    print("| what Redis runs | µs per op |\n|---|---:|")
    print(f"| the resolve script (`FCALL`), rules included | {result['script']:.2f} |")
    print(f"| reads: ids, parents, receipts (`HMGET`s) | {result['reads']:.2f} |")
    print(f"| conditional write: changed records and receipts | {result['write']:.2f} |")
    print(f"| reads and write together | {result['reads'] + result['write']:.2f} |")
    if values is not None:
        costs = record_us(values, TENANT)
        print(
            f"\n## The worker's side: record_format on the {int(costs['records']):,} records the "
            f"calls left ({int(costs['with_props']):,} with property states; "
            f"{build.describe()}; CPU, best of 3)\n"
        )
        print("| step | µs per record |\n|---|---:|")
        print(f"| decode a record (header, person id, parts) | {costs['decode']:.2f} |")
        print(f"| decode its property states | {costs['decode_props']:.2f} |")
        print(f"| encode them again | {costs['encode_props']:.2f} |")
        print(f"| encode the record | {costs['encode']:.2f} |")
        print(f"| all four (an event that changes a property) | {costs['whole']:.2f} |")
    if args.reference:
        print(
            f"\nThe reference model, in this process, on the same {len(batches)} batches: "
            f"{reference_us_per_event(batches):.1f} µs of CPU per event (best of 3)"
        )
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
