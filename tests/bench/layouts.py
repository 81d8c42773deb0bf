"""Bytes per distinct id and Redis CPU of alternative layouts of the ids hash (a script, not a
test).

    redis-server --port 36410 --save '' --appendonly no --daemonize yes --dir /tmp/layouts-redis
    .venv/bin/python -m tests.bench.layouts --redis-url redis://127.0.0.1:36410/0
    redis-cli -p 36410 shutdown nosave

Needs an empty Redis of its own (it refuses a server holding keys): it changes the server's
``hash-max-listpack-*`` settings (and restores them) and reads ``used_memory`` deltas, which
other clients would blur. It measures, without changing the store:

1. ``bench_store``'s memory population of ``--population`` distinct ids (``populate``), read back
   from the tenant's ids hash (``HSCAN``): the union-find (``"P"`` .. parent at a non-root) and
   the person records (at each root);
2. the same fields and values rewritten in alternative layouts, each measured by its
   ``used_memory`` delta and its keys' summed ``MEMORY USAGE``, in bytes per distinct id:
   (a) one hash, as stored today; (b) every entry in ``B`` small hashes (bucket = a hash of the
   id mod ``B``, ``B`` = ids / N for N fields per bucket), with ``hash-max-listpack-entries``
   and ``-value`` raised so that every bucket stays a listpack, and the same under Redis's
   defaults (128 entries, 64 bytes); (c) the parent entries alone in ``B`` = non-roots / N
   buckets, the root records in one plain hash; with the settings each layout needs and the
   share of its buckets that Redis's defaults would turn into hash tables;
3. per layout, the server time (SLOWLOG of this run's connections) of a Lua script that reads
   ``--ids-per-call`` random ids (one ``HMGET`` on the one hash; in the bucketed layouts the
   script computes each id's bucket and sends one ``HMGET`` per touched bucket, then, for (c),
   one ``HMGET`` of the ids it did not find on the records hash) and writes their values back
   (``HSET``, the same grouping): read only, read and write back the same values, and read and
   write each value one byte shorter then back (a length change, which moves a listpack's
   tail). µs per id: the median call's, best of ``--repeats`` repeats of ``--calls`` calls
   (the same ids in every layout; the layouts, all kept until the end, take turns in each
   repeat).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import redis
from redis.commands.core import Script

from tests.bench.bench_store import TENANT, populate
from tests.bench.common import ServerTime, delete_prefix, named_url, run_header
from worker.store.keys import TenantKeys
from worker.store.redis_store import DEFAULT_MAX_OPS_PER_CALL

CLIENT_NAME = f"bench-layouts-{uuid.uuid4().hex[:6]}"
"""The name of this run's Redis connections: SLOWLOG keeps only their entries."""
DEFAULT_ENTRIES, DEFAULT_VALUE = 128, 64
"""Redis's defaults of ``hash-max-listpack-entries`` and ``hash-max-listpack-value``."""
SETTINGS = ("hash-max-listpack-entries", "hash-max-listpack-value")
HASH_MODULUS, HASH_BASE = 2_147_483_647, 1_000_003
"""The bucket hash: the id's bytes as a polynomial in ``HASH_BASE`` modulo the prime
``HASH_MODULUS``, times ``HASH_BASE`` once more (so ids that differ in their last byte spread
too), then modulo the bucket count; exact in Lua's doubles (every product stays below 2^51)."""
MODES = ("read", "write", "resize")

# The same bucket hash as ``bucket_of``; ARGV: mode, key (the one hash) or bucket key prefix,
# bucket count (0: one hash), records hash ("" when the buckets hold the records), the ids.
# Returns how many ids were found nowhere (0, or the Python and Lua hashes disagree).
SCRIPT = """
local mode, prefix, nb, records = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local byte = string.byte
local keys, groups = {}, {}
if nb == 0 then
  keys[1] = prefix
  groups[prefix] = { unpack(ARGV, 5) }
else
  for i = 5, #ARGV do
    local id = ARGV[i]
    local h = 0
    for j = 1, #id do
      h = (h * 1000003 + byte(id, j)) % 2147483647
    end
    local key = prefix .. (h * 1000003 % 2147483647 % nb)
    local group = groups[key]
    if group == nil then
      group = {}
      groups[key] = group
      keys[#keys + 1] = key
    end
    group[#group + 1] = id
  end
end

local function touch(key, ids, missing)
  local values = redis.call('HMGET', key, unpack(ids))
  local same, shorter = {}, {}
  for j = 1, #ids do
    local value = values[j]
    if value then
      local n = #same
      same[n + 1], same[n + 2] = ids[j], value
      if mode == 'resize' then
        shorter[n + 1], shorter[n + 2] = ids[j], string.sub(value, 1, -2)
      end
    else
      missing[#missing + 1] = ids[j]
    end
  end
  if #same > 0 and mode ~= 'read' then
    if mode == 'resize' then
      redis.call('HSET', key, unpack(shorter))
    end
    redis.call('HSET', key, unpack(same))
  end
end

local missing = {}
for _, key in ipairs(keys) do
  touch(key, groups[key], missing)
end
if records ~= '' and #missing > 0 then
  local still = {}
  touch(records, missing, still)
  missing = still
end
return #missing
"""


def bucket_of(distinct_id: bytes, buckets: int) -> int:
    """The bucket of ``distinct_id`` among ``buckets`` (the script's hash)."""
    h = 0
    for b in distinct_id:
        h = (h * HASH_BASE + b) % HASH_MODULUS
    return h * HASH_BASE % HASH_MODULUS % buckets


Entry = tuple[bytes, bytes]


def _lp_entry(data: bytes) -> int:
    """Bytes of one listpack entry holding ``data`` as a string (Redis 7.0 ``listpack.c``:
    encoding header, data, back length; the ids here are not integers)."""
    size = len(data) + (1 if len(data) < 64 else 2 if len(data) < 4096 else 5)
    return size + (1 if size < 128 else 2 if size < 16_384 else 3 if size < 2_097_152 else 4)


def lp_bytes(entries: Sequence[Entry]) -> int:
    """Bytes of the listpack of a small hash holding ``entries``: 6 bytes of header, each field
    then its value, the end byte."""
    return 7 + sum(_lp_entry(f) + _lp_entry(v) for f, v in entries)


@dataclass(frozen=True)
class Population:
    entries: list[Entry]
    """every field of the ids hash and its value"""
    persons: int
    record_bytes: int
    """the total length of the person records (the roots' values)"""
    used_memory: int
    """``used_memory`` delta of the store's population"""
    store_key_bytes: int
    """``MEMORY USAGE`` of the store's own ids hash"""
    seconds: float

    @property
    def ids(self) -> int:
        return len(self.entries)


def is_record(value: bytes) -> bool:
    return value[:1] != b"P"


@dataclass
class Layout:
    """Where each entry of the ids hash goes: ``keys`` maps a key to its entries."""

    name: str
    keys: dict[str, list[Entry]]
    buckets: int = 0
    """0: one hash (``prefix`` is its key)"""
    prefix: str = ""
    records: str = ""
    """the records' hash, when the buckets hold the parent entries only"""
    bucket_keys: set[str] = field(default_factory=set)
    """the keys meant as listpacks (the buckets)"""
    raise_settings: bool = True
    """the settings set high enough for every bucket to stay a listpack (else the defaults)"""

    def needed(self) -> tuple[int, int]:
        """``hash-max-listpack-entries`` and ``-value`` that keep every bucket a listpack."""
        entries = max((len(self.keys[k]) for k in self.bucket_keys), default=0)
        value = max(
            (max(len(f), len(v)) for k in self.bucket_keys for f, v in self.keys[k]), default=0
        )
        return entries, value

    def payload(self) -> int:
        """The bytes of the buckets' listpacks (``lp_bytes``): what they hold before the
        allocator rounds each one up to a size class."""
        return sum(lp_bytes(self.keys[k]) for k in self.bucket_keys)

    def fallback(self, max_entries: int, max_value: int) -> tuple[int, int, int]:
        """Buckets that settings of ``max_entries`` and ``max_value`` would keep as hash
        tables: over ``max_entries`` entries, holding a field or value over ``max_value``
        bytes, either."""
        by_entries = by_value = either = 0
        for key in self.bucket_keys:
            entries = self.keys[key]
            over_entries = len(entries) > max_entries
            over_value = any(max(len(f), len(v)) > max_value for f, v in entries)
            by_entries += over_entries
            by_value += over_value
            either += over_entries or over_value
        return by_entries, by_value, either


def one_hash(entries: list[Entry], prefix: str) -> Layout:
    key = TenantKeys(prefix, TENANT).ids
    return Layout("(a) one hash, as stored today (a copy)", {key: entries}, prefix=key)


def bucketed(
    entries: list[Entry], prefix: str, per_bucket: int, *, records_apart: bool, raise_settings: bool
) -> Layout:
    tag = TenantKeys(prefix, TENANT).ids
    in_buckets = [e for e in entries if not (records_apart and is_record(e[1]))]
    buckets = max(1, round(len(in_buckets) / per_bucket))
    kind = ("u" if records_apart else "") + ("" if raise_settings else "d")
    bucket_prefix = f"{tag}:b{per_bucket}{kind}:"
    keys: dict[str, list[Entry]] = {}
    for entry in in_buckets:
        keys.setdefault(f"{bucket_prefix}{bucket_of(entry[0], buckets)}", []).append(entry)
    bucket_keys = set(keys)
    records = ""
    if records_apart:
        records = f"{tag}:records{per_bucket}{kind}"
        keys[records] = [e for e in entries if is_record(e[1])]
    if records_apart:
        name = f"(c) union-find in buckets of ~{per_bucket}, records in one hash"
    else:
        name = f"(b) buckets of ~{per_bucket}" + ("" if raise_settings else ", Redis defaults")
    return Layout(
        name,
        keys,
        buckets=buckets,
        prefix=bucket_prefix,
        records=records,
        bucket_keys=bucket_keys,
        raise_settings=raise_settings,
    )


@dataclass
class Measured:
    layout: Layout
    used_memory: int
    memory_usage: int
    listpacks: int
    settings: tuple[int, int]
    """the ``hash-max-listpack-*`` values the layout was written with"""
    cpu: dict[str, float] = field(default_factory=dict)
    """µs of server time per id, by mode (best repeat)"""
    keys_per_call: float = 0.0


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _batched(items: Sequence[Entry], size: int) -> Iterable[Sequence[Entry]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def write(client: redis.Redis, layout: Layout) -> None:
    pipe = client.pipeline(transaction=False)
    queued = 0
    for key, entries in layout.keys.items():
        for chunk in _batched(entries, 256):
            pipe.hset(key, mapping=dict(chunk))
            queued += 1
            if queued >= 64:
                pipe.execute()
                queued = 0
    pipe.execute()


def _per_key(client: redis.Redis, keys: Sequence[str], call: Callable[..., object]) -> list[object]:
    out: list[object] = []
    for start in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            call(pipe, key)
        out += pipe.execute()
    return out


def _listpacks(client: redis.Redis, layout: Layout) -> int:
    keys = sorted(layout.keys)
    encodings = _per_key(client, keys, lambda pipe, key: pipe.object("encoding", key))
    return sum(1 for e in encodings if e in (b"listpack", "listpack"))


def settings_for(layout: Layout) -> tuple[int, int]:
    """The ``hash-max-listpack-*`` values to write and use ``layout`` with: the needed ones
    (never below the defaults), or the defaults."""
    if layout.raise_settings and layout.bucket_keys:
        needed = layout.needed()
        return max(needed[0], DEFAULT_ENTRIES), max(needed[1], DEFAULT_VALUE)
    return DEFAULT_ENTRIES, DEFAULT_VALUE


def measure_memory(client: redis.Redis, layout: Layout, settings: tuple[int, int]) -> Measured:
    before = _used_memory(client)
    write(client, layout)
    after = _used_memory(client)
    usages = _per_key(
        client, sorted(layout.keys), lambda pipe, key: pipe.memory_usage(key, samples=0)
    )
    usage = sum(int(u) for u in usages if isinstance(u, int))
    return Measured(layout, after - before, usage, _listpacks(client, layout), settings)


def median_per_id(
    client: redis.Redis, script: Script, layout: Layout, mode: str, calls: Sequence[Sequence[bytes]]
) -> float:
    """µs of server time per id of the median call of ``calls`` (a call descheduled on a shared
    machine does not count)."""
    head = [mode, layout.prefix, str(layout.buckets), layout.records]
    with ServerTime(client, CLIENT_NAME) as server:
        for ids in calls:
            missing = script(args=[*head, *ids])
            if missing != 0:
                raise RuntimeError(f"{layout.name}: {missing} ids not found")
    durations = server.scripts()
    if len(durations) != len(calls):
        raise RuntimeError(f"SLOWLOG kept {len(durations)} of {len(calls)} calls")
    client.slowlog_reset()
    return statistics.median(durations) / len(calls[0])


def measure_cpu(
    client: redis.Redis,
    script: Script,
    rows: Sequence[Measured],
    calls: Sequence[Sequence[bytes]],
    repeats: int,
) -> None:
    """The best of ``repeats`` for each layout and mode; the layouts take turns in each repeat,
    so a busy moment of the machine does not fall on one layout only."""
    for _ in range(repeats):
        for m in rows:
            for mode in MODES:
                per_id = median_per_id(client, script, m.layout, mode, calls)
                m.cpu[mode] = min(m.cpu.get(mode, float("inf")), per_id)
    for m in rows:
        buckets = m.layout.buckets
        touched = [len({bucket_of(i, buckets) for i in ids}) if buckets else 1 for ids in calls]
        m.keys_per_call = statistics.mean(touched)


def build_population(client: redis.Redis, prefix: str, args: argparse.Namespace) -> Population:
    before = _used_memory(client)
    persons, seconds = populate(client, prefix, args.population, args.chunk, verbose=args.verbose)
    after = _used_memory(client)
    key = TenantKeys(prefix, TENANT).ids
    entries: list[Entry] = [(bytes(f), bytes(v)) for f, v in client.hscan_iter(key, count=5000)]
    records = sum(len(v) for _, v in entries if is_record(v))
    return Population(
        entries,
        persons,
        records,
        after - before,
        int(client.memory_usage(key, samples=0) or 0),
        seconds,
    )


def _pct(values: Sequence[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def population_lines(pop: Population) -> list[str]:
    records = [len(v) for _, v in pop.entries if is_record(v)]
    parents = [len(v) for _, v in pop.entries if not is_record(v)]
    fields = [len(f) for f, _ in pop.entries]
    over = sum(1 for n in records if n > DEFAULT_VALUE)
    rest = pop.store_key_bytes - pop.record_bytes

    def spread(values: Sequence[int]) -> str:
        if not values:
            return "- | - | - | - | -"
        return (
            f"{min(values)} | {statistics.median(values):.0f} | {_pct(values, 0.9)} | "
            f"{_pct(values, 0.99)} | {max(values)}"
        )

    return [
        f"### Population: {pop.ids:,} distinct ids in {len(records):,} persons "
        f"({pop.ids - len(records):,} parent entries; `bench_store`'s population, resolved in "
        f"{pop.seconds:.0f} s)",
        "",
        f"The store's own ids hash: `MEMORY USAGE` {pop.store_key_bytes:,} bytes, "
        f"**{pop.store_key_bytes / pop.ids:,.1f} per distinct id** (records "
        f"{pop.record_bytes / pop.ids:,.1f}, the rest {rest / pop.ids:,.1f}); "
        f"`used_memory` delta of the population {pop.used_memory:,} bytes, "
        f"{pop.used_memory / pop.ids:,.1f} per id. {over:,} records "
        f"({over / max(1, len(records)):.1%}) are longer than 64 bytes.",
        "",
        "| lengths (bytes) | min | median | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
        f"| fields (distinct ids) | {spread(fields)} |",
        f"| parent entries' values (`P` .. parent) | {spread(parents)} |",
        f"| person records (roots' values) | {spread(records)} |",
        "",
    ]


def memory_lines(pop: Population, rows: Sequence[Measured]) -> list[str]:
    out = [
        "### Bytes per distinct id, by layout",
        "",
        "`used_memory` delta of writing the layout (what the allocator hands out: a hash "
        "table's 24-byte entries take 32), its keys' summed `MEMORY USAGE` (which counts those "
        "entries as 24), 'beyond records': the `used_memory` delta less the records' bytes "
        f"({pop.record_bytes / pop.ids:,.1f} per id in every layout), and the bytes of the "
        "buckets' listpacks before the allocator rounds each up to a size class (computed, "
        "listpack buckets only).",
        "",
        "| layout | keys | buckets as listpack | entries per bucket, mean / max | "
        "settings (entries, value) | `used_memory` per id | `MEMORY USAGE` per id "
        "| beyond records per id | listpacks' own bytes per id |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in rows:
        layout = m.layout
        buckets = [len(layout.keys[k]) for k in layout.bucket_keys]
        fill = f"{statistics.mean(buckets):,.0f} / {max(buckets):,}" if buckets else "-"
        listpacks = f"{m.listpacks:,} of {len(buckets):,}" if buckets else "-"
        settings = f"{m.settings[0]}, {m.settings[1]}" if buckets else "-"
        own = "-"
        if buckets and m.listpacks == len(buckets):
            own = f"{layout.payload() / pop.ids:,.1f}"
        out.append(
            f"| {layout.name} | {len(layout.keys):,} | {listpacks} | {fill} | {settings} | "
            f"**{m.used_memory / pop.ids:,.1f}** | {m.memory_usage / pop.ids:,.1f} | "
            f"{(m.used_memory - pop.record_bytes) / pop.ids:,.1f} | {own} |"
        )
    return [*out, ""]


def settings_lines(rows: Sequence[Measured], server: tuple[int, int]) -> list[str]:
    """``server``: the settings the server had (its built-in defaults when it was started
    without a configuration file)."""
    limits = [(DEFAULT_ENTRIES, DEFAULT_VALUE, "redis.conf's defaults")]
    if server != (DEFAULT_ENTRIES, DEFAULT_VALUE):
        limits.append((*server, "this server's settings"))
    heads = " | ".join(
        f"hash tables at {e}, {v} ({what}): by entries | by value | either" for e, v, what in limits
    )
    out = [
        "### Settings each bucketed layout needs",
        "",
        "The least `hash-max-listpack-entries` (the fullest bucket) and `hash-max-listpack-value` "
        "(the longest field or value in a bucket) that keep every bucket a listpack, and the "
        "share of buckets that lower settings would keep as hash tables (Redis's `redis.conf` "
        f"sets {DEFAULT_ENTRIES} and {DEFAULT_VALUE}; a server started without a configuration "
        "file has 512 and 64):",
        "",
        f"| layout | buckets | entries needed | value needed | {heads} |",
        "|---|---:|---:|---:|" + "---:|---:|---:|" * len(limits),
    ]
    for m in rows:
        layout = m.layout
        if not layout.bucket_keys or not layout.raise_settings:
            continue
        entries, value = layout.needed()
        n = len(layout.bucket_keys)
        cells = []
        for max_entries, max_value, _ in limits:
            by_entries, by_value, either = layout.fallback(max_entries, max_value)
            cells.append(f"{by_entries / n:.1%} | {by_value / n:.1%} | **{either / n:.1%}**")
        out.append(f"| {layout.name} | {n:,} | {entries:,} | {value:,} | {' | '.join(cells)} |")
    return [*out, ""]


def cpu_lines(rows: Sequence[Measured], args: argparse.Namespace) -> list[str]:
    out = [
        f"### Redis server time per id ({args.ids_per_call} random ids per script call)",
        "",
        f"SLOWLOG of this run's calls; µs per id of the median call, best of {args.repeats} "
        f"repeats of {args.calls} calls (the same ids in every layout): read only; read and "
        "write the same "
        "values back; read, write each value one byte shorter, then write it back.",
        "",
        "| layout | keys per call | read µs/id | read + write µs/id | read + 2 writes, resized "
        "µs/id | read + write µs per call | read + write vs (a) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = rows[0].cpu["write"]
    for m in rows:
        out.append(
            f"| {m.layout.name} | {m.keys_per_call:,.1f} | {m.cpu['read']:.2f} | "
            f"**{m.cpu['write']:.2f}** | {m.cpu['resize']:.2f} | "
            f"{m.cpu['write'] * args.ids_per_call:,.0f} | "
            f"{m.cpu['write'] / base:.2f}x |"
        )
    return [*out, ""]


def layouts_of(entries: list[Entry], prefix: str, sizes: Sequence[int]) -> list[Layout]:
    out = [one_hash(entries, prefix)]
    for raise_settings in (True, False):
        out += [
            bucketed(entries, prefix, n, records_apart=False, raise_settings=raise_settings)
            for n in sizes
        ]
    out += [bucketed(entries, prefix, n, records_apart=True, raise_settings=True) for n in sizes]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:36410/0")
    parser.add_argument("--population", type=int, default=300_000, help="distinct ids")
    parser.add_argument(
        "--per-bucket",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[64, 128, 256, 512],
        help="fields per bucket, comma-separated",
    )
    parser.add_argument("--ids-per-call", type=int, default=64)
    parser.add_argument("--calls", type=int, default=200, help="script calls per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=DEFAULT_MAX_OPS_PER_CALL)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(named_url(args.redis_url, CLIENT_NAME))
    if client.dbsize():
        print(
            f"{args.redis_url} holds keys: this benchmark needs a Redis of its own", file=sys.stderr
        )
        return 2
    saved = {name: str(client.config_get(name)[name]) for name in SETTINGS}
    out = [
        f"## Layouts of the ids hash: bytes per distinct id and server time "
        f"(redis-py {redis.__version__})",
        "",
        *run_header(client),
    ]
    prefix = f"bench-layouts-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    try:
        pop = build_population(client, prefix, args)
        out += population_lines(pop)
        rng = random.Random(args.seed)
        fields = [f for f, _ in pop.entries]
        calls = [rng.sample(fields, args.ids_per_call) for _ in range(args.calls)]
        script = client.register_script(SCRIPT)
        client.script_load(SCRIPT)  # no NOSCRIPT round in a timed call
        rows = []
        # under the same prefix (deleted at the end), apart from the store's own keys
        for layout in layouts_of(pop.entries, f"{prefix}:layout", args.per_bucket):
            if args.verbose:
                print(f"  writing {layout.name}", file=sys.stderr)
            settings = settings_for(layout)
            client.config_set(SETTINGS[0], settings[0])
            client.config_set(SETTINGS[1], settings[1])
            rows.append(measure_memory(client, layout, settings))
        # a write checks the settings again: the largest needed keep every listpack one
        client.config_set(SETTINGS[0], max(m.settings[0] for m in rows))
        client.config_set(SETTINGS[1], max(m.settings[1] for m in rows))
        if args.verbose:
            print("  timing the script", file=sys.stderr)
        measure_cpu(client, script, rows, calls, args.repeats)
        for m in rows:
            if _listpacks(client, m.layout) != m.listpacks:
                raise RuntimeError(f"{m.layout.name}: a bucket changed encoding")
        out += memory_lines(pop, rows)
        out += settings_lines(rows, (int(saved[SETTINGS[0]]), int(saved[SETTINGS[1]])))
        out += cpu_lines(rows, args)
        out.append(f"Run in {time.perf_counter() - start:.0f} s.")
    finally:
        for name in SETTINGS:
            client.config_set(name, saved[name])
        delete_prefix(client, prefix)
    print("\n".join(out))
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
