"""The identity rules in the worker (``worker/store/engine/``) beside the resolve script in
Redis, on the same calls (a script, not a test).

    .venv/bin/python -m tests.bench.engine_cost --redis-url redis://127.0.0.1:36400/0 \\
        [--batches 20] [--warmup 10] [--chunk 64]

For the compiled build: ``PYTHONPATH=.local/compiled:. .venv/bin/python -P -m
tests.bench.engine_cost ...`` (``-P`` keeps the working directory's ``worker`` from shadowing
the build's).

Captures the store's calls for the drain mix (``lua_profile.capture``: batches of 500, chunks of
``--chunk`` ops, a source per event as the worker's events have) and replays each, in order,
three ways, each timed: the resolve script under one throwaway prefix (Redis's time inside
``FCALL``, ``INFO commandstats``); under a second one, the reads of ``worker/store/prefetch.py``
(Redis's time in its ``HMGET``, ``EXISTS``, ``GET`` and ``SMEMBERS``), the engine on them, its
reads recorded (CPU of this process, ``time.process_time``, the ARGV parsed included), and
``lua/commit_batch.lua`` with its writes (Redis's time inside ``EVALSHA``). The engine's and the
commit's replies must equal the script's (as JSON values) for every call, or the run reports no
speed and exits 1. Prints µs per op of each, the reads and the commit together, their ratios to
the script, and how many reads the prefetch did not answer. Both prefixes are deleted after.
The process's garbage collector is tuned as the worker's (``worker/runtime.py``).

What the engine's figure leaves out: a cache that would keep records decoded between calls;
and it shares the process with the reads and commits, as a worker's would.
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
from tests.bench.lua_profile import Call, drain_calls
from tests.bench.store_primitives import Usec
from worker import build
from worker.runtime import DEFAULT_GC_THRESHOLD, tune_gc
from worker.store import engine
from worker.store.engine.commit import commit_args
from worker.store.engine.reads import Recording
from worker.store.keys import TenantKeys, glob_escape
from worker.store.lua_loader import load_library, load_script
from worker.store.prefetch import prefetch
from worker.store.script_call import ScriptCall

READ_COMMANDS = ("hmget", "exists", "get", "smembers")
"""The commands of a prefetch (``worker/store/prefetch.py``); INFO commandstats sums them."""


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
    script_us = engine_us = commit_us = read_us = 0.0
    ops_timed = misses = 0
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
            # the engine, on what a prefetch reads under its prefix (worker/store/prefetch.py)
            before = usec.read(*READ_COMMANDS)
            state = prefetch(client, engine_keys, parsed)
            read_us += (usec.read(*READ_COMMANDS) - before) if timed else 0
            started = time.process_time()
            recording = Recording(state)  # (the reads the commit checks: recorded as they come)
            outcome = engine.run(recording, engine.parse_call(args))
            engine_us += (time.process_time() - started) * 1e6 if timed else 0
            if [json.loads(e) for e in outcome.entries] != want:
                raise RuntimeError(f"call {index}: the engine answered otherwise than the script")
            # its writes, committed under its prefix
            keys = [n.encode() for n in engine_keys.script_keys(uuid.uuid4().hex, None)]
            before = usec.read("evalsha")
            # as the store sends it: the worker keeps the entries, the commit answers the due time
            sent = commit_args(recording.reads, outcome, (0, 3_600_000), echo=False)
            done = commit(keys=keys, args=sent)
            commit_us += (usec.read("evalsha") - before) if timed else 0
            if json.loads(cast(bytes, done)) != json.loads(cast(bytes, reply))[2]:
                raise RuntimeError(f"call {index}: the commit answered otherwise than the script")
            ops_timed += len(parsed.ops) if timed else 0
            misses += state.misses
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
        "read": read_us / n,
        "misses": float(misses),
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
    _, calls, warm_calls = drain_calls(client, args.batches, args.warmup, args.chunk)
    tune_gc(DEFAULT_GC_THRESHOLD)  # the worker's own settings (worker/runtime.py)
    try:
        result = measure(client, calls, warm_calls)
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
    rows = (
        ("Redis: the prefetch's reads (`HMGET`s and the tenant's flags)", result["read"]),
        ("Redis: `commit_batch.lua` of the engine's writes (`EVALSHA`)", result["commit"]),
        ("Redis: both, the rules in the worker", result["read"] + result["commit"]),
    )
    for label, value in rows:
        print(f"| {label} | {value:.2f} |")
    script = result["script"] or float("nan")
    print(
        f"\nThe engine's CPU per op is {result['engine'] / script:.2f} of the script's Redis "
        f"time; Redis's time with the rules in the worker "
        f"{(result['read'] + result['commit']) / script:.2f} of it. Reads the round trip did "
        f"not answer, over every call: {int(result['misses'])}."
    )
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
