"""Where the resolve script's Redis server time goes (a script, not a test).

    .venv/bin/python -m tests.bench.lua_profile --redis-url redis://127.0.0.1:36480/0 \\
        [--batches 20] [--repeat 3] [--compare OLD_JOINED_SCRIPT.lua] [--no-profile]

Use a Redis of your own: it sets ``slowlog-log-slower-than 0``, resets the server's statistics
(``CONFIG RESETSTAT``) and the SLOWLOG while it runs, and writes ``luaprof:*`` keys.

1. Captures the ``EVALSHA`` calls (KEYS and ARGV) that ``RedisIdentityStore`` makes for the
   ``bench_store`` mix (batches of 500, chunks of ``--chunk`` ops), once with a source per event
   (as the worker's events have: receipts kept) and once without.
2. Replays them, each variant on a fresh key prefix, one call at a time (the predecessor check,
   KEYS[10], dropped), and reads the server time of the calls from ``INFO commandstats`` (mean)
   and the SLOWLOG (p50, max): this script with and without sources and with reply TTL 0, and
   each ``--compare`` script (an older joined ``resolve_batch.lua``: ``python -m
   worker.store.lua_loader DIR`` run on that commit's tree), ``--repeat`` times interleaved;
   then the mix's tracks alone and its merges alone. A compared script must give the same
   replies and leave the same state (a digest of every key; see ``state_digest``).
3. The phase build: the time between marks at the script's main steps (PHASE_MARKS) and in a
   few module functions (PHASE_FUNCTIONS) is added up per phase with ``redis.call('TIME')``,
   a few marks per op, less each mark's measured cost.
4. The profiling build (unless ``--no-profile``): every module function, every ``redis.call``
   (by command) and the cjson/cmsgpack calls are timed, exclusive of the timed calls they make,
   less the timing's measured cost. Its many marks cost far more than the script itself: its
   shares are a rough guide; the phase build's are closer.

The warm-up batches are replayed untimed before the timed ones, so each variant starts from the
same state.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import re
import statistics
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis

from tests.bench.bench_store import T0, TENANT, Workload
from tests.bench.bench_worker import backlog
from worker.identity.config import IdentityConfig
from worker.identity.model import EventKind, IdentityEvent, PropertyUpdates
from worker.store import codec, pipelined, redis_store
from worker.store.lua_loader import load_script

Call = tuple[list[bytes], list[bytes]]
"""KEYS and ARGV of one ``EVALSHA``."""

HEADER = codec.HEADER_LENGTH
"""Header values before the ops in ARGV (resolve_batch.lua)."""

PROFILE_PRELUDE = r"""
local __prof_us, __prof_n, __prof_kids, __stack = {}, {}, {}, {}
local __last
local function __now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function __add(name, us, n)
  __prof_us[name] = (__prof_us[name] or 0) + us
  __prof_n[name] = (__prof_n[name] or 0) + n
end
local function __enter(name)
  local t = __now()
  local top = __stack[#__stack]
  if top then
    __add(top, t - __last, 0)
    __prof_kids[top] = (__prof_kids[top] or 0) + 1
  end
  __stack[#__stack + 1] = name
  __last = t
end
local function __leave(...)
  local t = __now()
  local top = table.remove(__stack)
  __add(top, t - __last, 1)
  __last = t
  return ...
end
local function __wrap(name, fn)
  return function(...)
    __enter(name)
    return __leave(fn(...))
  end
end
local function __rcall(cmd, ...)
  __enter('redis.' .. cmd)
  return __leave(redis.call(cmd, ...))
end
local __cj_enc = __wrap('cjson.encode', cjson.encode)
local __cj_dec = __wrap('cjson.decode', cjson.decode)
local __mp_pack = __wrap('cmsgpack.pack', cmsgpack.pack)
local __mp_unpack = __wrap('cmsgpack.unpack', cmsgpack.unpack)
local __calibrate = __wrap('calibration: a timed call', function() end)
__enter('calibration: its caller')
for _ = 1, 200 do __calibrate() end
__leave()
local __start = __now()
__enter('main (the script body)')
local function __flush()
  __leave()
  __add('total (instrumented)', __now() - __start, 1)
  for name, us in pairs(__prof_us) do
    redis.call('HINCRBY', 'luaprof:us', name, us)
    redis.call('HINCRBY', 'luaprof:n', name, __prof_n[name])
    redis.call('HINCRBY', 'luaprof:kids', name, __prof_kids[name] or 0)
  end
end
"""


PHASE_PRELUDE = r"""
local __ph_us, __ph_n = {}, {}
local __ph_name, __ph_last = nil, 0
local function __ph_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function __phase(name)
  local t = __ph_now()
  if __ph_name then
    __ph_us[__ph_name] = (__ph_us[__ph_name] or 0) + t - __ph_last
    __ph_n[__ph_name] = (__ph_n[__ph_name] or 0) + 1
  end
  local previous = __ph_name
  __ph_name, __ph_last = name, t
  return previous
end
local function __within(name, fn)
  return function(...)
    local previous = __phase(name)
    local a, b, c = fn(...)
    __phase(previous)
    return a, b, c
  end
end
for _ = 1, 100 do __phase('calibration') end
__phase('start: GET reply, chain EXISTS')
local function __ph_flush()
  __phase(nil)
  for name, us in pairs(__ph_us) do
    redis.call('HINCRBY', 'luaprof:us', name, us)
    redis.call('HINCRBY', 'luaprof:n', name, __ph_n[name])
  end
end
"""

PHASE_MARKS: tuple[tuple[str, str], ...] = (
    ("ctx.config = argv.header(ARGV)", "argv: header and ops parsed"),
    ("union_find.prefetch(ctx, ctx.ops)", "prefetch: HMGETs of the ids, per tree level"),
    ("    local entry = receipts.answer(ctx, op)", "receipts: lookup (HMGET per bucket)"),
    ("      local first = #ctx.released_ids + 1", "rules (besides the parts below)"),
    ("      receipts.keep(ctx, op, entry, first)", "receipts: receipt text kept"),
    ("    entries[index] = entry", "main loop"),
    ("  write_union_find(ctx)", "write-back: records, members, HSET of the ids hash"),
    ("  write_buffer(ctx)", "write-back: buffer"),
    ("  groups.write(ctx)", "write-back: groups, case folds"),
    ("  write_receipts(ctx)", "write-back: receipts HSET + PEXPIRE"),
    ("  local due = false", "write-back: next due"),
    ("  local text = reply.whole(entries, ctx.released, due)", "reply: whole text joined"),
    ("  if ctx.config.reply_ttl_ms > 0 then", "reply: SET at KEYS[3]"),
)
"""Lines of the joined script a phase starts at (the phase build marks the time there)."""

PHASE_FUNCTIONS: tuple[tuple[str, str], ...] = (
    ("reply.entry", "reply: entry JSON built"),
    ("records.encode", "records: encoded (write-back)"),
    ("records.load", "records: decoded (record_codec.fill)"),
    ("record_codec.decode_props", "records: properties decoded (cmsgpack)"),
    ("records.snapshot", "records: snapshot JSON rebuilt"),
    ("properties.update", "rules: property operations"),
    ("records.create", "records: new person"),
    ("union_find.find", "union-find: find"),
    ("groups.apply", "groups: apply"),
)
"""Module functions whose time (inclusive) is a phase of its own in the phase build."""


def phase_build(joined: str) -> str:
    """``joined`` with the time between PHASE_MARKS, and in PHASE_FUNCTIONS, added up per
    phase: a few ``TIME`` calls per op, so its shares are close to the plain script's."""
    body = joined
    for line, name in PHASE_MARKS:
        if line in body:
            body = body.replace(
                line, f"{line[: len(line) - len(line.lstrip())]}__phase('{name}')\n{line}", 1
            )
    wrap = "".join(f"{fn} = __within('{name}', {fn})\n" for fn, name in PHASE_FUNCTIONS)
    body = body.replace("\nlocal ctx = {", "\n" + wrap + "local ctx = {", 1)
    body = body.replace(
        "return write_back.run(ctx, entries)",
        "local __reply = write_back.run(ctx, entries)\n__ph_flush()\nreturn __reply",
    )
    shebang, _, rest = body.partition("\n")
    return shebang + "\n" + PHASE_PRELUDE + rest


def phases(client: redis.Redis, script: str, warm: Sequence[Call], timed: Sequence[Call]) -> str:
    """The phase build's time per phase, less the cost of its TIME calls."""
    names = ("luaprof:us", "luaprof:n")
    build = phase_build(script)
    client.delete(*names)
    result = replay(client, build, warm, timed, "phases", between=lambda: client.delete(*names))
    us, n = (_counts(client, name) for name in names)
    client.delete(*names)
    mark = us.pop("calibration") / n.pop("calibration")
    corrected = {name: max(0.0, value - mark * n[name]) for name, value in us.items()}
    net = sum(corrected.values())
    ops = result.ops
    lines = [
        f"### Phases ({ops:,} ops in {result.calls:,} calls; {result.usec / ops:.1f} µs per op "
        f"by commandstats, {net / ops:.1f} in the phases once each mark's cost ({mark:.2f} µs) "
        "is taken off)",
        "",
        "| phase | µs per op | share | marks per op |",
        "|---|---:|---:|---:|",
    ]
    for name, value in sorted(corrected.items(), key=lambda kv: -kv[1]):
        lines.append(
            f"| {name} | {value / ops:.2f} | {100 * value / net:.1f}% | {n[name] / ops:.2f} |"
        )
    return "\n".join(lines)


def profiling_build(joined: str) -> str:
    """``joined`` with every module function, ``redis.call`` and cjson/cmsgpack call timed."""
    body = joined
    for old, new in (
        ("redis.call(", "__rcall("),
        ("cjson.encode", "__cj_enc"),
        ("cjson.decode", "__cj_dec"),
        ("cmsgpack.pack", "__mp_pack"),
        ("cmsgpack.unpack", "__mp_unpack"),
    ):
        body = body.replace(old, new)
    modules = re.findall(r"^local (\w+) = \(function\(\)$", body, re.MULTILINE)
    wrap = "".join(
        f"for __k, __v in pairs({m}) do if type(__v) == 'function' then "
        f"{m}[__k] = __wrap('{m}.' .. __k, __v) end end\n"
        for m in modules
    )
    body = body.replace("\nlocal ctx = {", "\n" + wrap + "local ctx = {", 1)
    tail = "return write_back.run(ctx, entries)"
    if tail not in body:
        raise ValueError("unexpected script: no final write_back.run")
    body = body.replace(
        tail, "local __reply = write_back.run(ctx, entries)\n__flush()\nreturn __reply"
    )
    shebang, _, rest = body.partition("\n")
    return shebang + "\n" + PROFILE_PRELUDE + rest


def capture(
    client: redis.Redis, events: Sequence[list[IdentityEvent]], chunk: int
) -> list[list[Call]]:
    """The calls the store makes for each batch of ``events`` (run for real on a throwaway
    prefix, which is deleted after)."""
    prefix = f"lp-cap-{uuid.uuid4().hex[:8]}"
    client.script_load(load_script("resolve_batch.lua"))  # else NOSCRIPT: a round recorded twice
    store = redis_store.RedisIdentityStore(
        client, IdentityConfig(), prefix=prefix, max_ops_per_call=chunk
    )
    calls: list[Call] = []
    real = pipelined.Round

    def recording(*args: Any, **kwargs: Any) -> Any:
        for _, keys, argv in args[2]:
            calls.append((list(keys), list(argv)))
        return real(*args, **kwargs)

    per_batch: list[list[Call]] = []
    vars(pipelined)["Round"] = recording
    try:
        for batch in events:
            before = len(calls)
            store.resolve_batch(TENANT, batch, now_ms=T0)
            per_batch.append(calls[before:])
    finally:
        vars(pipelined)["Round"] = real
    _delete(client, prefix)
    return [[(_reprefix(k, prefix.encode(), b"lp-old"), a) for k, a in b] for b in per_batch]


def _reprefix(keys: list[bytes], old: bytes, new: bytes) -> list[bytes]:
    # the predecessor check (KEYS[10]) is dropped: the replay runs one call at a time
    return [k.replace(old, new, 1) for k in keys[:9]]


def _delete(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
    for k in range(0, len(keys), 5000):
        client.unlink(*keys[k : k + 5000])


def op_kinds(args: list[bytes]) -> list[str]:
    """``track`` or ``merge`` per op of a call's ARGV (walks the op layout of argv.lua)."""
    at, kinds = HEADER, []
    for _ in range(int(args[14])):
        flags = int(args[at])
        kinds.append("merge" if flags & 4 else "track")
        at += 8 + 3 * int(args[at + 7])
        groups = int(args[at])
        at += 1
        if groups:
            at += 1
            for _ in range(groups):
                at += 5 + 3 * int(args[at + 4])
        at += 2  # source, bucket
        if flags & 8:
            at += 3
    if at != len(args):
        raise ValueError("unexpected ARGV layout")
    return kinds


@dataclasses.dataclass
class Result:
    name: str
    calls: int
    ops: int
    usec: int
    durations: list[int]
    replies: list[bytes]
    state: str
    cpu_usec: float | None = None
    """The Redis process's CPU time over the timed calls (``/proc``; None when Redis is not a
    process of this machine): unlike commandstats, not inflated while Redis waits for a core."""

    def row(self) -> str:
        d = self.durations or [0]
        cpu = "-" if self.cpu_usec is None else f"{self.cpu_usec / max(1, self.ops):.1f}"
        return (
            f"| {self.name} | {self.calls:,} | {self.ops:,} | {self.usec / max(1, self.ops):.1f} | "
            f"{cpu} | {statistics.median(d):,.0f} | {max(d):,} |"
        )


def _redis_cpu_usec(client: redis.Redis) -> float | None:
    """The CPU time (user + system) of the Redis server process so far, when it runs on this
    machine and ``/proc`` shows it; else None."""
    try:
        pid = int(client.info("server")["process_id"])
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, KeyError, ValueError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) * 1_000_000 / ticks


def replay(
    client: redis.Redis,
    script: str,
    warm: Sequence[Call],
    timed: Sequence[Call],
    name: str,
    edit: Callable[[list[bytes]], list[bytes]] = lambda a: a,
    between: Callable[[], object] = lambda: None,
) -> Result:
    """Runs ``warm`` then ``timed`` with ``script`` on a fresh prefix; the timed calls' server
    time. ``between`` is called after ``warm``, before ``timed``."""
    prefix = f"lp-{uuid.uuid4().hex[:8]}".encode()
    sha = client.script_load(script)

    def run(calls: Sequence[Call]) -> list[bytes]:
        out = []
        for keys, args in calls:
            keys = [k.replace(b"lp-old", prefix, 1) for k in keys]
            out.append(client.evalsha(sha, len(keys), *keys, *edit(args)))
        return out

    replies = run(warm)
    between()
    client.slowlog_reset()
    client.config_resetstat()
    cpu_before = _redis_cpu_usec(client)
    replies += run(timed)
    cpu_after = _redis_cpu_usec(client)
    stats = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    durations = [
        int(e["duration"])
        for e in client.slowlog_get(len(timed) + 100)
        if e["command"].split(b" ", 1)[0].upper() == b"EVALSHA"
    ]
    state = state_digest(client, prefix.decode())
    _delete(client, prefix.decode())
    ops = sum(int(a[14]) for _, a in timed)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Result(
        name, int(stats["calls"]), ops, int(stats["usec"]), durations, replies, state, cpu
    )


def state_digest(client: redis.Redis, prefix: str) -> str:
    """A digest of every key under ``prefix`` (name and value, TTLs aside), to check that two
    scripts leave the same state."""
    digest = hashlib.sha256()
    for key in sorted(cast(list[bytes], list(client.scan_iter(match=f"{prefix}:*", count=5000)))):
        kind = client.type(key)
        value: object
        if kind == b"hash":
            items = list(cast(dict[bytes, bytes], client.hgetall(key)).items())
            if b":rcpt:" in key:  # a receipt that released nothing: its entry, with or without
                items = [(f, v.removesuffix(b"\n")) for f, v in items]  # the older "\n"
            value = sorted(items)
        elif kind == b"string":
            value = client.get(key)
        elif kind == b"set":
            value = sorted(cast(set[bytes], client.smembers(key)))
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        else:
            value = kind
        digest.update(repr((key[len(prefix) :], value)).encode())
    return digest.hexdigest()


def _counts(client: redis.Redis, key: str) -> dict[str, int]:
    raw = cast(dict[bytes, bytes], client.hgetall(key))
    return {k.decode(): int(v) for k, v in raw.items()}


def profile(client: redis.Redis, script: str, warm: Sequence[Call], timed: Sequence[Call]) -> str:
    """The profiling build's time per part, less the timing's own cost: each timed call costs
    its caller ``outer`` µs and itself ``inner`` µs (measured on an empty function in every
    call, the "calibration" parts), taken off each part's exclusive time."""
    names = ("luaprof:us", "luaprof:n", "luaprof:kids")
    build = profiling_build(script)
    client.delete(*names)
    result = replay(client, build, warm, timed, "profiled", between=lambda: client.delete(*names))
    us, n, kids = (_counts(client, name) for name in names)
    client.delete(*names)
    ops = result.ops
    total = us.pop("total (instrumented)")
    n.pop("total (instrumented)")
    inner = us.pop("calibration: a timed call") / n.pop("calibration: a timed call")
    outer = us.pop("calibration: its caller") / kids.pop("calibration: its caller")
    n.pop("calibration: its caller")
    corrected = {
        name: max(0.0, value - outer * kids.get(name, 0) - inner * n.get(name, 0))
        for name, value in us.items()
    }
    net = sum(corrected.values())
    lines = [
        f"### Profile ({ops:,} ops in {result.calls:,} calls; instrumented total "
        f"{total / ops:.1f} µs per op, {net / ops:.1f} once the timing's cost "
        f"({inner:.2f} + {outer:.2f} µs per timed call) is taken off; exclusive time of each "
        "part)",
        "",
        "| part | µs per op | share | calls per op |",
        "|---|---:|---:|---:|",
    ]
    for name, value in sorted(corrected.items(), key=lambda kv: -kv[1]):
        if n.get(name, 0) == 0:
            continue
        lines.append(
            f"| {name} | {value / ops:.2f} | {100 * value / net:.1f}% | {n[name] / ops:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True, help="a Redis of your own")
    parser.add_argument("--batches", type=int, default=20, help="timed batches of 500")
    parser.add_argument("--warmup", type=int, default=10, help="untimed batches of 500 first")
    parser.add_argument(
        "--universe",
        type=int,
        default=None,
        help="distinct ids of the store mix (20,000), users of the drain mix (events / 5)",
    )
    parser.add_argument("--chunk", type=int, default=redis_store.DEFAULT_MAX_OPS_PER_CALL)
    parser.add_argument("--compare", action="append", default=[], help="joined script file")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--mix",
        choices=("store", "drain"),
        default="store",
        help="bench_store's mix (default), or bench_worker's backlog (--universe: its users)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each variant")
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis_url)
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)
    batches = mix_batches(args)
    sourced = with_sources(batches)
    out: dict[str, tuple[list[Call], list[Call]]] = {}
    for name, events in (("sources", sourced), ("no sources", batches)):
        per_batch = capture(client, events, args.chunk)
        warm = [c for b in per_batch[: args.warmup] for c in b]
        timed = [c for b in per_batch[args.warmup :] for c in b]
        out[name] = (warm, timed)
    script = load_script("resolve_batch.lua")
    warm, timed = out["sources"]

    def ttl0(a: list[bytes]) -> list[bytes]:
        return [*a[:5], b"0", *a[6:]]

    variants: list[tuple[str, str, list[Call], list[Call], Callable[[list[bytes]], list[bytes]]]]
    variants = []
    for path in args.compare:
        with open(path, encoding="utf-8") as f:
            variants.append((f"{path} (sources)", f.read(), warm, timed, _same))
    variants += [
        ("this script (sources)", script, warm, timed, _same),
        ("this script, no sources", script, *out["no sources"], _same),
        ("this script, reply TTL 0", script, warm, timed, ttl0),
    ]
    runs: dict[str, list[Result]] = {name: [] for name, *_ in variants}
    for _ in range(args.repeat):  # interleaved: the machine's load hits every variant alike
        for name, text, w, t, edit in variants:
            runs[name].append(replay(client, text, w, t, name, edit))
    results = [min(rs, key=lambda r: r.usec) for rs in runs.values()]
    same = all(
        r.replies == results[-3].replies and r.state == results[-3].state for r in results[:-2]
    )
    print(
        f"## Resolve script server time ({args.batches} batches of 500, chunk {args.chunk}, "
        f"{args.mix} mix, universe {args.universe or 'default'}; best of {args.repeat} "
        "interleaved runs, and the median "
        "µs per op of the runs)\n"
    )
    print(
        "| variant | calls | ops | µs per op (commandstats) | Redis CPU µs per op | call p50 µs "
        "| call max µs | median run µs per op | median run CPU µs per op |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        median = statistics.median(x.usec / max(1, x.ops) for x in runs[r.name])
        cpus = [x.cpu_usec / max(1, x.ops) for x in runs[r.name] if x.cpu_usec is not None]
        cpu = f"{statistics.median(cpus):.1f}" if cpus else "-"
        print(f"{r.row()} {median:.1f} | {cpu} |")
    print()
    if args.compare:
        print(
            f"Replies and final state of every compared script identical to this script's: {same}."
        )
        print()
    print("By kind (the mix's tracks alone, then its merges alone; one run):\n")
    print(
        "| variant | calls | ops | µs per op (commandstats) | Redis CPU µs per op | call p50 µs "
        "| call max µs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, (kind_warm, kind_timed) in zip(
        ("track", "merge"), _by_kind(client, args), strict=True
    ):
        print(replay(client, script, kind_warm, kind_timed, f"{kind}s only").row())
    print()
    print(phases(client, script, warm, timed))
    for path in args.compare:
        with open(path, encoding="utf-8") as f:
            print()
            print(f"{path}:")
            print(phases(client, f.read(), warm, timed))
    if not args.no_profile:
        print()
        print(profile(client, script, warm, timed))
    client.close()
    return 0


def _same(args: list[bytes]) -> list[bytes]:
    return args


def mix_batches(args: argparse.Namespace) -> list[list[IdentityEvent]]:
    """The warm-up and timed batches of 500 of the chosen mix."""
    count = args.warmup + args.batches
    if args.mix == "store":
        workload = Workload(ids=args.universe or 20_000)
        return [workload.batch(500) for _ in range(count)]
    users = args.universe or count * 500 // 5
    events = [_identity_event(body) for body in backlog(count * 500, users, seed=1)]
    return [events[k : k + 500] for k in range(0, len(events), 500)]


def drain_calls(
    client: redis.Redis, batches: int, warmup: int, chunk: int
) -> tuple[list[list[IdentityEvent]], list[Call], int]:
    """The drain mix's ``warmup`` + ``batches`` batches of 500 (a source per event), the calls
    the store makes for them (``capture``, chunks of ``chunk`` ops), and how many of those
    calls are the warm-up's."""
    mix = argparse.Namespace(mix="drain", batches=batches, warmup=warmup, universe=None, seed=1)
    events = with_sources(mix_batches(mix))
    per_batch = capture(client, events, chunk)
    warm_calls = sum(len(b) for b in per_batch[:warmup])
    return events, [c for b in per_batch for c in b], warm_calls


def with_sources(batches: Sequence[list[IdentityEvent]]) -> list[list[IdentityEvent]]:
    """``batches`` with a source per event, as the worker's events have (receipts kept)."""
    return [
        [dataclasses.replace(e, source=f"events/0/{b * 500 + i}") for i, e in enumerate(batch)]
        for b, batch in enumerate(batches)
    ]


def _identity_event(body: dict[str, Any]) -> IdentityEvent:
    """An event of ``bench_worker``'s backlog as decoding makes it (no source)."""
    kinds = {"track": EventKind.TRACK, "identify": EventKind.IDENTIFY, "alias": EventKind.ALIAS}
    return IdentityEvent(
        tenant=TENANT,
        kind=kinds[body["type"]],
        distinct_id=body["distinct_id"],
        uuid=body["uuid"],
        timestamp_ms=body["timestamp"],
        other_id=body.get("other_id"),
        updates=PropertyUpdates(set=tuple(body.get("set", {}).items())),
    )


def _by_kind(client: redis.Redis, args: argparse.Namespace) -> list[tuple[list[Call], list[Call]]]:
    """(warm-up, timed) calls of the mix's tracks alone, then of its merges (identify, alias)
    alone, each run as its own stream with a source per event."""
    batches = mix_batches(args)
    result = []
    for want in (False, True):
        events = [e for b in batches for e in b if (e.other_id is not None) == want]
        events = [dataclasses.replace(e, source=f"events/0/{i}") for i, e in enumerate(events)]
        chunks = [events[k : k + 500] for k in range(0, len(events), 500)]
        per_batch = capture(client, chunks, args.chunk)
        split = max(1, len(per_batch) * args.warmup // (args.warmup + args.batches))
        result.append(
            ([c for b in per_batch[:split] for c in b], [c for b in per_batch[split:] for c in b])
        )
    return result


if __name__ == "__main__":
    sys.exit(main())
