"""The identity rules in the worker (``worker/store/engine/``) beside the resolve script in
Redis, on the same calls (a script, not a test).

    .venv/bin/python -m tests.bench.engine_cost --redis-url redis://127.0.0.1:36400/0 \\
        [--batches 20] [--warmup 10] [--chunk 64]

For the compiled build: ``PYTHONPATH=.local/compiled:. .venv/bin/python -P -m
tests.bench.engine_cost ...`` (``-P`` keeps the working directory's ``worker`` from shadowing
the build's).

Captures the store's calls for the drain mix (``lua_profile.capture``: batches of 500, chunks of
``--chunk`` ops, a source per event as the worker's events have) and replays them on a
throwaway prefix (deleted after): before each call the tenant's data is copied into memory (the
ids hash, members strings, case folds, groups, the receipt hashes the call names), then the
script runs the call in Redis (timed: ``INFO commandstats``, Redis's time inside ``FCALL``).
Then the engine runs every call, one after the other, each on the copy taken before it (CPU of
this process, ``time.process_time``, the ARGV parsed included; the copies are made first, so
that their reading does not share the engine's time). The engine's reply entries must equal the
script's (as JSON values) for every call, or the run reports no speed and exits 1. Prints µs per
op of each, and their ratio. The process's garbage collector is tuned as the worker's
(``worker/runtime.py``), and the copies are frozen out of its reach while the engine runs.

What the engine's figure leaves out: reading the data it needs from Redis and the write of what
it changed (``store_primitives``: about 2 µs of Redis per op, and the worker's side of those
round trips), and a cache that would keep records decoded between calls.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from typing import cast

import redis

from tests.bench.bench_store import TENANT
from tests.bench.common import run_header
from tests.bench.lua_profile import Call, capture, mix_batches, with_sources
from tests.bench.store_primitives import Usec
from worker import build
from worker.runtime import DEFAULT_GC_THRESHOLD, tune_gc
from worker.store import engine
from worker.store.engine.commit import commit_args
from worker.store.engine.reads import Recording
from worker.store.keys import TenantKeys, glob_escape
from worker.store.lua_loader import load_library, load_script
from worker.store.script_call import ScriptCall


class MemoryState:
    """``engine.TenantState`` over a copy of the tenant's data read before a call."""

    def __init__(self, client: redis.Redis, keys: TenantKeys, buckets: set[bytes]) -> None:
        self.tenant = keys.tenant.encode("utf-8", "surrogatepass")
        self._types = cast(set[bytes], client.smembers(keys.groups_prefix + "types"))
        self._group_records = cast(
            dict[bytes, bytes], client.hgetall(keys.groups_prefix + "records")
        )
        self._group_members = cast(
            dict[bytes, bytes], client.hgetall(keys.groups_prefix + "members")
        )
        self._ids = cast(dict[bytes, bytes], client.hgetall(keys.ids))
        prefix = keys.members_prefix.encode()
        self._members = {
            cast(bytes, k)[len(prefix) :]: cast(bytes, client.get(k))
            for k in client.scan_iter(match=keys.members_pattern(), count=1000)
        }
        self._folds = set(cast(dict[bytes, bytes], client.hgetall(keys.case_folds)))
        self._deleted = cast(dict[bytes, bytes], client.hgetall(keys.deleted))
        receipts = keys.receipts_prefix.encode()
        self._receipts = {
            bucket: cast(dict[bytes, bytes], client.hgetall(receipts + bucket))
            for bucket in buckets
        }

    # The drain mix runs without the buffer: its calls read none of it (no queue, no lease).

    def has_queues(self) -> bool:
        return False

    def queue(self, distinct_id: bytes) -> list[bytes]:
        return []

    def waiting_count(self) -> int:
        return 0

    def buffered_entry(self, entry_id: bytes) -> bytes | None:
        return None

    def first_release(self, entry_id: bytes) -> bytes | None:
        return None

    def leased(self, entry_id: bytes) -> bool:
        return False

    def expired_leases(self, now: int, limit: int) -> list[bytes]:
        return []

    def due_ids(self, now: int, limit: int) -> list[bytes]:
        return []

    def group_types(self) -> set[bytes]:
        return set(self._types)

    def group_record(self, field: bytes) -> bytes | None:
        return self._group_records.get(field)

    def group_members(self, person_id: bytes) -> bytes | None:
        return self._group_members.get(person_id)

    def value(self, distinct_id: bytes) -> bytes | None:
        return self._ids.get(distinct_id)

    def members(self, root: bytes) -> bytes | None:
        return self._members.get(root)

    def in_fold(self, folded: bytes) -> bool:
        return folded in self._folds

    def deleted_person_id(self, distinct_id: bytes) -> str | None:
        value = self._deleted.get(distinct_id)
        return value.split(b"|", 1)[1].decode() if value else None

    def receipt(self, bucket: bytes, source: bytes) -> bytes | None:
        return self._receipts.get(bucket, {}).get(source)


def measure(client: redis.Redis, calls: Sequence[Call], warmup: int) -> dict[str, float]:
    """µs per op of the script (Redis), the engine (CPU) and the commit of its writes (Redis),
    over the timed calls. Raises ``RuntimeError`` when the engine or the commit answers a call
    otherwise than the script."""
    library = load_library("resolve_batch.lua")
    ScriptCall.fcall(library).load(client)
    commit = client.register_script(load_script("commit_batch.lua"))
    script_keys = TenantKeys(f"ec-{uuid.uuid4().hex[:8]}", TENANT)
    engine_keys = TenantKeys(f"ec-{uuid.uuid4().hex[:8]}", TENANT)
    usec = Usec(client)
    script_us = engine_us = commit_us = 0.0
    ops_timed = 0
    try:
        for index, (names, args) in enumerate(calls):
            parsed = engine.parse_call(args)
            if parsed.config.buffer_delay_ms > 0:
                raise RuntimeError("a call with the buffer on: not the drain mix")
            timed = index >= warmup
            # the script, in Redis, under its prefix
            names = [k.replace(b"lp-old", script_keys.prefix.encode(), 1) for k in names]
            before = usec.read("fcall")
            reply = client.fcall(library.function, len(names), *names, *args)
            script_us += (usec.read("fcall") - before) if timed else 0
            want = json.loads(cast(bytes, reply))[0]
            # the engine, on a copy of what the call starts from under the engine's prefix
            buckets = {op.bucket for op in parsed.ops if op.source}
            state = MemoryState(client, engine_keys, buckets)
            started = time.process_time()
            recording = Recording(state)  # (the reads the commit checks: recorded as they come)
            outcome = engine.run(recording, engine.parse_call(args))
            engine_us += (time.process_time() - started) * 1e6 if timed else 0
            if [json.loads(e) for e in outcome.entries] != want:
                raise RuntimeError(f"call {index}: the engine answered otherwise than the script")
            # its writes, committed under its prefix
            keys = [n.encode() for n in engine_keys.script_keys(uuid.uuid4().hex, None)]
            before = usec.read("evalsha")
            done = commit(keys=keys, args=commit_args(recording.reads, outcome, (0, 3_600_000)))
            commit_us += (usec.read("evalsha") - before) if timed else 0
            if json.loads(cast(bytes, done))[0] != want:
                raise RuntimeError(f"call {index}: the commit answered otherwise than the script")
            ops_timed += len(parsed.ops) if timed else 0
    finally:
        for keys_of in (script_keys, engine_keys):
            left = list(client.scan_iter(match=glob_escape(keys_of.prefix) + ":*", count=5000))
            for k in range(0, len(left), 5000):
                client.unlink(*left[k : k + 5000])
    n = max(1, ops_timed)
    return {
        "ops": float(ops_timed),
        "engine": engine_us / n,
        "script": script_us / n,
        "commit": commit_us / n,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--redis-url", required=True, help="a Redis 7+ (a throwaway prefix)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches of 500")
    parser.add_argument("--warmup", type=int, default=10, help="batches of 500 run first")
    parser.add_argument("--chunk", type=int, default=64, help="ops per call")
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis_url)
    mix = argparse.Namespace(
        mix="drain", batches=args.batches, warmup=args.warmup, universe=None, seed=1
    )
    per_batch = capture(client, with_sources(mix_batches(mix)), args.chunk)
    tune_gc(DEFAULT_GC_THRESHOLD)  # the worker's own settings (worker/runtime.py)
    warm_calls = sum(len(b) for b in per_batch[: args.warmup])
    try:
        result = measure(client, [c for b in per_batch for c in b], warm_calls)
    except (redis.RedisError, RuntimeError, engine.EngineError, engine.Unsupported) as exc:
        print(f"no speed: {exc}", file=sys.stderr)
        return 1
    print("\n".join(run_header(client)))
    print(
        f"\n## The drain mix's calls, the rules in the worker and in Redis "
        f"({int(result['ops']):,} timed ops, {args.batches} batches of 500 after {args.warmup}, "
        f"chunk {args.chunk}; the worker: {build.describe()}; every reply entry the same)\n"
    )
    print("| where the rules run | µs per op |\n|---|---:|")
    engine_row = "the worker: `engine.run`, reads recorded (CPU of this process)"
    print(f"| {engine_row} | {result['engine']:.2f} |")
    print(f"| Redis: the resolve script (`FCALL`, INFO commandstats) | {result['script']:.2f} |")
    print(
        f"| Redis: `commit_batch.lua` of the engine's writes (`EVALSHA`) | {result['commit']:.2f} |"
    )
    ratio = result["engine"] / result["script"] if result["script"] else float("nan")
    saved = result["commit"] / result["script"] if result["script"] else float("nan")
    print(f"\nThe engine's µs per op are {ratio:.2f} of the script's; the commit's {saved:.2f}.")
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
