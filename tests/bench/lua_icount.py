"""Instructions Redis executes per op of the resolve script, counted by callgrind (a script, not
a test).

    .venv/bin/python -m tests.bench.lua_icount --redis-url redis://127.0.0.1:36480/0 \\
        [--mix drain|store|identify|settrack] [--batches 20] [--warmup 10] [--chunk 64] \\
        [--no-sources] [--compare LABEL=OLD_JOINED_SCRIPT.lua ...] [--redis-server PATH] \\
        [--top N] [--breakdown] [--fcall] [--keep DIR]

On a shared machine the script's time moves by ±20% between runs of one script; the
instructions Redis executes for the same calls repeat to a fraction of a percent (below),
so a change of the store is chosen by them (``lua_profile`` tells where the time goes;
this tells which of two scripts costs less).

1. Captures the ``EVALSHA`` calls (KEYS and ARGV) that ``RedisIdentityStore`` makes for the
   mix (``lua_profile.capture``: batches of 500, chunks of ``--chunk`` ops; a source per event
   as the worker's events have, receipts kept, unless ``--no-sources``) on the Redis of
   ``--redis-url``, under a throwaway key prefix deleted after: any Redis will do. Each
   call's random reply token becomes a counter (``stable_tokens``): every run replays the
   same bytes.
2. For this tree's joined ``resolve_batch.lua``, then each ``--compare`` script (another
   commit's, joined with ``python -m worker.store.lua_loader DIR`` run in that commit's tree:
   it writes ``DIR/resolve_batch.lua``), starts a ``redis-server`` of its own under ``valgrind
   --tool=callgrind`` (a free port, a temporary directory), loads the script, replays the
   warm-up calls, zeroes the counters (``callgrind_control -z``), replays the timed calls one
   at a time, dumps the counters (``callgrind_control -d``) and reads that dump's total, then
   stops the server. The count is the whole server process's over the timed calls: the
   script, the commands it calls, the event loop and the networking. A compared script of an
   older ARGV format (its ``PROTOCOL.format_version``) gets the calls rewritten in its format
   (``DOWNGRADES``; refused when none is known).
3. Prints instructions per op for each variant and its ratio to the first (this tree's), and
   refuses (exit 1) when a compared script's replies or final state (``lua_profile
   .state_digest``; compared between scripts of one format only, another stores persons
   otherwise) differ from this tree's, naming the first differing call.

Counts of one ``redis-server`` binary only compare with each other: another build (its
compiler flags, its allocator) executes other instructions for the same calls. They repeat
closely, not exactly: on the drain mix, 18 runs of one script on Debian's binary (jemalloc;
turning off its decay or its cache-oblivious placement did not help) spread over 0.4%
(178,180 to 178,957 per op), five on a build with ``MALLOC=libc`` over 0.02%; for
differences under 1%, count on such a build (below).

``--top N``: the N functions of the most instructions of their own (exclusive, from
``callgrind_annotate --threshold=100``) for this tree's script. Debian's ``redis-server`` is
stripped: it names only the functions it exports (and the shared libraries'), the rest shows
as addresses or under ``main``. For names, build one with symbols and pass it with
``--redis-server``: ``apt-get source redis`` (needs a ``deb-src`` line in APT's sources) or the
upstream tarball (``https://download.redis.io/releases/redis-7.0.15.tar.gz``), then ``make
OPTIMIZATION=-O2 MALLOC=libc`` in it (``src/redis-server``, with symbols; without
``MALLOC=libc`` it links its own jemalloc).

``--mix identify`` and ``--mix settrack`` (``focus_batches``): one kind of the drain mix's
events alone, to count a rule by itself. The warm-up batches make ``--warmup`` x 250 persons
of two ids each as the drain mix makes them (a track of ``anon-N`` with ``$set`` of ``plan`` and
``n``, then the identify of ``user-N`` with ``anon-N`` with ``$set`` of ``email_domain``); the
timed batches are identifies of those known pairs with the same ``$set`` (contract A3.5, the
same person: the drain mix's common identify) or tracks of ``anon-N`` with ``$set`` of ``plan``
and ``n`` (its tracks with property operations). ``--universe`` does not apply.

``--breakdown``: where the instructions of an op go. Besides the variants above, counts cut
variants of this tree's joined script (``cuts``): copies with a ``return`` inserted next to a
marker line (``cut_script``; a marker not found exactly once stops the run, naming it, rather
than measure the wrong part after a change of the Lua), so that the difference between two is
the cost of the part between them. The stages, each cumulative: the call itself (a return
before ``argv.header``: RESP parsing, ARGV into Lua, the GET of the reply key, the reply; the
replayed calls have no predecessor key, so no EXISTS), + the ARGV header and the ops parsed
(a return before the prefetch), + the prefetch (after it), + the per-op loop, receipts, reply
and write-back with no rule run (a constant reply entry returned at the start of
``rules.apply``: the floor of the script's design), then the full script. Then each kind of
op's rule (``op_kinds``, counted in the timed calls): the full script less a variant where
only the ops of that kind return a constant entry (plain tracks, of an id a person holds, from
after the find; tracks with property operations; merges), per op of that kind and as a share
of the full script's. The cut variants answer and leave otherwise by design: they are not
compared with this tree's (``--compare`` scripts still are). Seven more variants: minutes
more.

Needs ``valgrind`` (``callgrind_control`` and ``callgrind_annotate`` come with it): ``apt-get
install -y valgrind``. Each variant of the default mix takes under a minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import cast

import redis

from tests.bench.bench_store import TENANT
from tests.bench.common import run_header
from tests.bench.lua_profile import Call, capture, mix_batches, state_digest, with_sources
from tests.faults.services import free_ports
from worker.identity.model import EventKind, IdentityEvent, JsonValue, PropertyUpdates
from worker.store import codec, protocol, redis_store
from worker.store.lua_loader import Library, load_library, load_script

OPS_AT = 14
"""The ARGV index of a call's op count (resolve_batch.lua's header)."""

PREFIX = b"ic"
"""The key prefix of the replayed calls (the captured calls' ``lp-old``)."""

TOOLS = ("valgrind", "callgrind_control")

START_TIMEOUT_S = 120.0
"""Redis under callgrind takes seconds to start on a busy machine."""

STOP_TIMEOUT_S = 60.0
"""SHUTDOWN writes callgrind's final dump first."""


class ToolError(RuntimeError):
    """A tool this script runs is missing or failed: its message says what to do."""


@dataclasses.dataclass(frozen=True)
class Variant:
    """A joined resolve script, named in the table by ``label``."""

    label: str
    script: str
    library: Library | None = None
    """called as this function library (``FUNCTION LOAD``, ``FCALL``) instead of ``EVALSHA``"""

    @property
    def format_version(self) -> str:
        """The ARGV format the script takes (its ``PROTOCOL.format_version``)."""
        found = re.search(r"^\s*format_version = '([^']*)',$", self.script, re.MULTILINE)
        if found is None:
            raise ValueError(f"{self.label}: not a joined resolve_batch.lua (no format_version)")
        return found.group(1)


@dataclasses.dataclass(frozen=True)
class Count:
    """A variant's instructions over the timed calls, and what it answered and left."""

    label: str
    calls: int
    ops: int
    instructions: int
    replies: tuple[bytes, ...]
    """every reply, the warm-up calls' then the timed calls'"""
    state: str
    """``lua_profile.state_digest`` of the keys after the last call"""
    format_version: str = protocol.FORMAT_VERSION
    """the ARGV format of the calls replayed (an older script's: ``downgrade``)"""

    @property
    def per_op(self) -> float:
        return self.instructions / max(1, self.ops)


def compare_option(value: str) -> Variant:
    """``LABEL=JOINED_SCRIPT.lua`` (or a path alone, labelled by it) as a ``Variant``; as
    ``type=`` of ``--compare``, argparse reports the error."""
    label, sep, path = value.partition("=")
    if not sep:
        label, path = value, value
    if not label or not path:
        raise argparse.ArgumentTypeError(f"{value!r}: expected LABEL=JOINED_SCRIPT.lua")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{path}: {exc.strerror}") from exc
    return Variant(label, text)


def dump_total(text: str) -> int:
    """The instructions of a callgrind dump: its ``summary:`` line (every event since the
    counters were last zeroed), else its ``totals:`` line."""
    for name in ("summary", "totals"):
        found = re.search(rf"^{name}:\s+(\d+)", text, re.MULTILINE)
        if found:
            return int(found.group(1))
    raise ValueError("not a callgrind dump: no summary: or totals: line")


def dump_part(text: str) -> int | None:
    """The ``part:`` of a callgrind dump (1 for the first ``callgrind_control -d``)."""
    found = re.search(r"^part:\s+(\d+)", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def top_functions(annotated: str, n: int) -> tuple[int, list[tuple[int, str]]]:
    """The program total and the ``n`` largest (instructions, function) rows of
    ``callgrind_annotate``'s function list. Rows of the whole total are left out: frames active
    from before the counters were zeroed (``main``, the event loop's callers), which
    callgrind_annotate charges with their calls in flight."""
    total_row = re.search(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+PROGRAM TOTALS", annotated, re.M)
    if total_row is None:
        raise ValueError("not callgrind_annotate's output: no PROGRAM TOTALS")
    total = int(total_row.group(1).replace(",", ""))
    header = re.search(r"^\S+\s+file:function\n-+\n", annotated[total_row.end() :], re.M)
    if header is None:
        raise ValueError("not callgrind_annotate's output: no file:function list")
    rows: list[tuple[int, str]] = []
    for line in annotated[total_row.end() + header.end() :].splitlines():
        row = re.match(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.+)$", line)
        if row is None:
            break
        count = int(row.group(1).replace(",", ""))
        if count < total:
            rows.append((count, row.group(2)))
    return total, sorted(rows, key=lambda r: -r[0])[:n]


def table(counts: Sequence[Count]) -> list[str]:
    """The Markdown table of ``counts``, each with its ratio to the first."""
    lines = [
        "| variant | timed calls | ops | instructions per op | ratio to the first |",
        "|---|---:|---:|---:|---:|",
    ]
    base = counts[0].per_op if counts else 0.0
    for c in counts:
        ratio = f"{c.per_op / base:.3f}" if base else "-"
        lines.append(f"| {c.label} | {c.calls:,} | {c.ops:,} | {c.per_op:,.0f} | {ratio} |")
    return lines


def top_table(total: int, rows: Sequence[tuple[int, str]], ops: int) -> list[str]:
    """``top_functions``'s rows as a Markdown table, per op and as a share of ``total``."""
    lines = [
        "| function | instructions per op | share |",
        "|---|---:|---:|",
    ]
    for count, name in rows:
        share = 100 * count / total if total else 0.0
        lines.append(f"| `{name}` | {count / max(1, ops):,.0f} | {share:.1f}% |")
    return lines


def first_difference(first: Count, other: Count, warmup_calls: int) -> str | None:
    """Where ``other`` first answered or left otherwise than ``first``, in words; None when
    it did not. The final states are compared when both ran calls of one format (another
    format stores persons otherwise)."""
    for index, (a, b) in enumerate(zip(first.replies, other.replies, strict=False)):
        if a != b:
            return f"{_call_name(index, warmup_calls)}: its reply differs"
    if len(first.replies) != len(other.replies):
        shorter = min(len(first.replies), len(other.replies))
        return f"{_call_name(shorter, warmup_calls)}: one of the two has no reply"
    if first.format_version == other.format_version and first.state != other.state:
        return "the final state (the keys after the last call) differs"
    return None


def verdict(counts: Sequence[Count], warmup_calls: int) -> tuple[list[str], bool]:
    """A line per compared variant (``counts[1:]``) saying whether it answered and left what
    the first did, and whether all did."""
    first, lines, same = counts[0], [], True
    for other in counts[1:]:
        difference = first_difference(first, other, warmup_calls)
        if difference is not None:
            same = False
            lines.append(f"- **{other.label} differs from {first.label}**: {difference}.")
        elif other.format_version == first.format_version:
            lines.append(f"- {other.label}: replies and final state identical to {first.label}'s.")
        else:
            lines.append(
                f"- {other.label}: replies identical to {first.label}'s (the calls rewritten in "
                f"its ARGV format {other.format_version}; the final state not compared: format "
                f"{other.format_version} stores persons otherwise)."
            )
    return lines, same


def _call_name(index: int, warmup_calls: int) -> str:
    if index < warmup_calls:
        return f"warm-up call {index + 1}"
    return f"timed call {index - warmup_calls + 1}"


class CutError(ValueError):
    """A cut's marker line is not in the joined script exactly once (the Lua moved): the cut
    would measure something else, so ``CUTS`` must follow the code."""


@dataclasses.dataclass(frozen=True)
class Cut:
    """A cut variant of this tree's joined script: ``statement`` inserted just before (or, with
    ``after``, just after) the one line that is ``marker`` (its indentation aside), so that the
    script returns there; the difference between two variants' counts is the cost of the part
    between their cuts. ``kind``: the kind of op (``op_kinds``) whose rule the cut skips, for a
    cut of one kind's rule; None for a stage of the call."""

    name: str
    description: str
    marker: str
    after: bool
    statement: str
    kind: str | None = None


PLAIN_TRACK, PROPERTY_TRACK, MERGE = "plain track", "property track", "merge"
"""The kinds of op as ``rules.apply`` tells them: a merge (flag merge_with_other, the other id
not the op's own), a track with property operations, a track without."""

ENTRY_PLACEHOLDERS: dict[str, object] = {
    "person_id": "x",
    "person_mode": protocol.PERSON_MODES["full"],
    "created_at_ms": 1,
    "is_identified": True,
    "properties": {},
    "merged": False,
    "person_created": False,
    "warnings": [],
    "overrides": [],
    "person_version": "1",
    "person_changed": False,
    "groups": {},
    "group_changes": [],
}
"""A value per reply entry field (``protocol.REPLY_ENTRY_FIELDS``) for the cuts' constant entry."""


def constant_entry(fields: Sequence[str] = protocol.REPLY_ENTRY_FIELDS) -> str:
    """A reply entry of ``fields``' shape (a JSON array) for a cut to return in place of a rule's
    entry; ValueError naming a field that has no placeholder (``ENTRY_PLACEHOLDERS``)."""
    missing = [name for name in fields if name not in ENTRY_PLACEHOLDERS]
    if missing:
        raise ValueError(f"no placeholder for reply entry field(s) {', '.join(missing)}")
    return json.dumps([ENTRY_PLACEHOLDERS[name] for name in fields], separators=(",", ":"))


@functools.cache
def cuts() -> tuple[Cut, ...]:
    """The cuts of ``--breakdown``: the stages of a call in order (each adds the part after the
    one before), then one per kind of op whose rule it skips."""
    entry = constant_entry()
    if "'" in entry or "\\" in entry:
        raise ValueError(f"the constant entry {entry} is no plain Lua string")
    skip = f"do return '{entry}' end"
    apply = "function rules.apply(ctx, op, warning)"
    return (
        Cut(
            "transport",
            "the call's transport: RESP parsing, ARGV into Lua, the reply (the script returns "
            "before its first module)",
            "local PROTOCOL = {",
            False,
            "do return 'x' end",
        ),
        Cut(
            "call",
            "+ the script's modules defined (on every call), the GET of the reply key",
            "ctx.config = argv.header(ARGV)",
            False,
            "do return 'x' end",
        ),
        Cut(
            "argv",
            "+ the ARGV header and the ops parsed",
            "union_find.prefetch(ctx, ctx.ops)",
            False,
            "do return 'x' end",
        ),
        Cut(
            "prefetch",
            "+ the prefetch (HMGETs of the ops' ids)",
            "union_find.prefetch(ctx, ctx.ops)",
            True,
            "do return 'x' end",
        ),
        Cut(
            "floor",
            "+ the per-op loop, receipts, reply and write-back, no rule run (a constant entry "
            "per op)",
            apply,
            True,
            skip,
        ),
        Cut(
            "plain",
            "plain tracks of an id a person holds return a constant entry (from after the find)",
            "-- The common event, a track of an id a person holds without property operations:",
            False,
            skip,
            PLAIN_TRACK,
        ),
        Cut(
            "property",
            "tracks with property operations return a constant entry",
            apply,
            True,
            f"if not op.merge and #op.props > 0 then return '{entry}' end",
            PROPERTY_TRACK,
        ),
        Cut(
            "merge",
            "merges (identify, alias) return a constant entry",
            apply,
            True,
            f"if op.merge then return '{entry}' end",
            MERGE,
        ),
    )


def cut_script(script: str, cut: Cut) -> str:
    """``script`` (a joined resolve_batch.lua) with ``cut.statement`` inserted as a line of its
    own before or after the marker line (indented as the marker, or after it as the next line
    when that is not blank); CutError, naming the marker, when the marker is not a line of the
    script exactly once."""
    lines = script.split("\n")
    marker = cut.marker.strip()
    found = [k for k, line in enumerate(lines) if line.strip() == marker]
    if len(found) != 1:
        raise CutError(
            f"cut {cut.name}: the marker line {marker!r} is in the joined script "
            f"{len(found)} times, not once: move the cut with the code (lua_icount.cuts)"
        )
    at = found[0] + 1 if cut.after else found[0]
    like = lines[found[0]]
    if cut.after and at < len(lines) and lines[at].strip():
        like = lines[at]
    indent = like[: len(like) - len(like.lstrip())]
    return "\n".join([*lines[:at], indent + cut.statement, *lines[at:]])


def op_kinds(args: Sequence[bytes]) -> list[str]:
    """The kind of each op of a call's ARGV (this tree's format; the op layout of argv.lua and
    group_argv.lua): ``MERGE``, ``PROPERTY_TRACK`` or ``PLAIN_TRACK``."""
    at, kinds = codec.HEADER_LENGTH, []
    for _ in range(int(args[OPS_AT])):
        flags, props = int(args[at]), int(args[at + 7])
        if flags & protocol.OpFlag.MERGE_WITH_OTHER and args[at + 3] != args[at + 1]:
            kinds.append(MERGE)
        else:
            kinds.append(PROPERTY_TRACK if props else PLAIN_TRACK)
        at += 8 + 3 * props
        groups = int(args[at])
        at += 2 if groups else 1  # the count, then the type cap when there are groups
        for _ in range(groups):
            at += 5 + 3 * int(args[at + 4])
        at += 2  # source, bucket
        if flags & protocol.OpFlag.BUFFERABLE:
            at += 3  # ingestion time, payload, entry id
    if at != len(args):
        raise ValueError(f"not a call of format {protocol.FORMAT_VERSION}: values left over")
    return kinds


def breakdown(full: Count, by_cut: Mapping[str, Count], kinds: Mapping[str, int]) -> list[str]:
    """The Markdown tables of ``--breakdown``: the cumulative stages of a call (``cuts``
    without a kind, then ``full``) per op and as a share of the full script's, then each
    kind's rule (``full`` less its cut) per op of that kind (``kinds``: ops per kind in the
    timed calls) and as a share of the full script's."""
    ops = max(1, full.ops)
    whole = max(1, full.instructions)
    lines = [
        "| stage (cumulative) | instructions per op | share of the full | the stage's own per op |",
        "|---|---:|---:|---:|",
    ]
    before = 0
    stages = [(c.description, by_cut[c.name]) for c in cuts() if c.kind is None]
    for description, c in [*stages, ("+ the rules: the full script", full)]:
        lines.append(
            f"| {description} | {c.instructions / ops:,.0f} | "
            f"{100 * c.instructions / whole:.1f}% | {(c.instructions - before) / ops:,.0f} |"
        )
        before = c.instructions
    lines += [
        "",
        "| rule of | ops of the kind | instructions per op of the kind | share of the full |",
        "|---|---:|---:|---:|",
    ]
    for cut in cuts():
        if cut.kind is None:
            continue
        saved = full.instructions - by_cut[cut.name].instructions
        n = kinds.get(cut.kind, 0)
        per = f"{saved / n:,.0f}" if n else "-"
        lines.append(f"| {cut.kind} | {n:,} | {per} | {100 * saved / whole:.1f}% |")
    floor = next(c for c in reversed(cuts()) if c.kind is None)
    rules = full.instructions - by_cut[floor.name].instructions
    lines.append(
        f"| every op (the full script less the {floor.name} cut) | {full.ops:,} | "
        f"{rules / ops:,.0f} | {100 * rules / whole:.1f}% |"
    )
    return lines


FOCUS_MIXES = ("identify", "settrack")
"""The mixes of one kind of the drain mix's events (``focus_batches``)."""

FOCUS_T0 = 1_760_000_000_000
"""The first event's time in the focused mixes (the drain mix's)."""


def focus_batches(mix: str, warmup: int, batches: int, seed: int = 1) -> list[list[IdentityEvent]]:
    """The ``warmup`` + ``batches`` batches of 500 of a focused mix (``FOCUS_MIXES``): the
    warm-up makes ``warmup`` x 250 persons of two ids, ``anon-N`` (a track with ``$set`` of
    ``plan`` and ``n``) then ``user-N`` (an identify with ``anon-N``, ``$set`` of
    ``email_domain``); each timed event picks a person at random: an identify of its pair with
    that ``$set`` again (``identify``: A3.5, same person) or a track of ``anon-N`` with
    ``$set`` of ``plan`` and ``n`` (``settrack``). Events carry canonical uuids and increasing
    times, as the drain mix's."""
    if mix not in FOCUS_MIXES:
        raise ValueError(f"not a focused mix: {mix!r}")
    rng = random.Random(seed)
    at = itertools.count()

    def event(kind: EventKind, user: int, updates: dict[str, JsonValue]) -> IdentityEvent:
        i = next(at)
        merge = kind is EventKind.IDENTIFY
        return IdentityEvent(
            tenant=TENANT,
            kind=kind,
            distinct_id=f"user-{user}" if merge else f"anon-{user}",
            uuid=str(uuid.UUID(int=rng.getrandbits(128))),
            timestamp_ms=FOCUS_T0 + i,
            other_id=f"anon-{user}" if merge else None,
            updates=PropertyUpdates(set=tuple(updates.items())),
        )

    def settrack(user: int) -> IdentityEvent:
        plan = rng.choice(["free", "pro"])
        return event(EventKind.TRACK, user, {"plan": plan, "n": next(at)})

    def identify(user: int) -> IdentityEvent:
        return event(EventKind.IDENTIFY, user, {"email_domain": "example.com"})

    users = warmup * 250
    events = [e for user in range(users) for e in (settrack(user), identify(user))]
    timed = identify if mix == "identify" else settrack
    events += [timed(rng.randrange(users)) for _ in range(batches * 500)]
    return [events[k : k + 500] for k in range(0, len(events), 500)]


def missing_tools(names: Sequence[str]) -> list[str]:
    return [name for name in names if shutil.which(name) is None]


class CallgrindRedis:
    """A ``redis-server`` under ``valgrind --tool=callgrind`` in ``directory``, on ``port``."""

    def __init__(self, binary: str, directory: Path, port: int) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port
        self.log = directory / "valgrind.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={directory}/callgrind.out.%p",
                    "--dump-instr=no",
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.client = redis.Redis(host="127.0.0.1", port=port)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise ToolError(f"{self.binary} under valgrind exited: {self._log_tail()}")
            try:
                if self.client.ping():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise ToolError(f"no PONG after {START_TIMEOUT_S:.0f} s: {self._log_tail()}")
            time.sleep(0.2)

    def control(self, option: str) -> None:
        """``callgrind_control OPTION PID`` (``-z`` zeroes the counters, ``-d`` dumps them)."""
        done = subprocess.run(
            ["callgrind_control", option, str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ToolError(f"callgrind_control {option} failed: {done.stdout}{done.stderr}")

    def dump(self, part: int) -> Path:
        """Dumps the counters; the dump file (part ``part``) once complete."""
        self.control("-d")
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for path in self.directory.glob("callgrind.out.*"):
                text = path.read_text(encoding="utf-8", errors="replace")
                if dump_part(text) == part and re.search(r"^totals:", text, re.MULTILINE):
                    return path
            if time.monotonic() > deadline:
                raise ToolError(f"no callgrind dump of part {part} in {self.directory}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SHUTDOWN NOSAVE; the process killed when that fails or takes too long."""
        try:
            with suppress(redis.RedisError):
                self.client.shutdown(nosave=True)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.client.close()

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-15:])


@contextmanager
def callgrind_redis(binary: str, keep: Path | None, label: str) -> Iterator[CallgrindRedis]:
    """A ``CallgrindRedis`` in a fresh directory (under ``keep``, and kept, when given),
    stopped on the way out whatever happens; its directory removed unless kept."""
    if keep is None:
        directory = Path(tempfile.mkdtemp(prefix="lua-icount-"))
    else:
        directory = keep / re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")
        directory.mkdir(parents=True, exist_ok=True)
    try:
        (port,) = free_ports(1)
        server = CallgrindRedis(binary, directory, port)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()
    finally:
        if keep is None:
            shutil.rmtree(directory, ignore_errors=True)


def _format_8_to_7(args: list[bytes]) -> list[bytes]:
    # format 8 added the last-seen resolution as the header's 16th value
    return [b"7", *args[1:15], *args[16:]]


def _format_9_to_8(args: list[bytes]) -> list[bytes]:
    # format 9 changed the stored person record only: the calls are format 8's
    return [b"8", *args[1:]]


DOWNGRADES: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "9": _format_9_to_8,
    "8": _format_8_to_7,
}
"""Per ARGV format, how a call of it is written in the format before (whose script then runs
the same events): a compared script of an older format gets this tree's calls rewritten, one
step at a time. A new format adds its step when the change allows it (the same events, the
same replies)."""


def downgrade(calls: Sequence[Call], to: str) -> list[Call]:
    """``calls`` (this tree's format) in format ``to``; ValueError when no chain of
    ``DOWNGRADES`` leads there."""
    steps = []
    at = protocol.FORMAT_VERSION
    while at != to:
        if at not in DOWNGRADES:
            raise ValueError(
                f"no way to write calls of format {protocol.FORMAT_VERSION} in format {to} "
                f"(DOWNGRADES stops at {at})"
            )
        steps.append(DOWNGRADES[at])
        at = str(int(at) - 1)
    out = []
    for keys, args in calls:
        for step in steps:
            args = step(args)
        out.append((keys, args))
    return out


def stable_tokens(calls: Sequence[Call]) -> list[Call]:
    """``calls`` with each reply token (random, ``uuid4().hex``) replaced by a counter of the
    same length, so that every run replays the same bytes: the instructions of a run repeat.
    One list of every call: a token stands for one call's reply key in all of them."""
    tokens: dict[bytes, bytes] = {}

    def token(found: re.Match[bytes]) -> bytes:
        new = tokens.setdefault(found.group(1), b"%032x" % len(tokens))
        return b":reply:" + new

    return [([REPLY_TOKEN.sub(token, k) for k in keys], args) for keys, args in calls]


REPLY_TOKEN = re.compile(rb":reply:([0-9a-f]{32})$")


def count(
    server: CallgrindRedis, variant: Variant, warm: list[Call], timed: list[Call]
) -> tuple[Count, Path]:
    """The variant's instructions over ``timed``, replayed after ``warm`` on ``server``, and
    the dump they were read from."""
    client = server.client
    if variant.library is not None:
        client.function_load(variant.library.code)
        command, target = "FCALL", variant.library.function
    else:
        command, target = "EVALSHA", client.script_load(variant.script)

    def run(calls: Sequence[Call]) -> list[bytes]:
        out = []
        for keys, args in calls:
            keys = [k.replace(b"lp-old", PREFIX, 1) for k in keys]
            reply = client.execute_command(  # type: ignore[no-untyped-call]
                command, target, len(keys), *keys, *args
            )
            out.append(cast(bytes, reply))
        return out

    if variant.format_version != protocol.FORMAT_VERSION:
        warm, timed = (
            downgrade(warm, variant.format_version),
            downgrade(timed, variant.format_version),
        )
    replies = run(warm)
    server.control("-z")
    replies += run(timed)
    dump = server.dump(part=1)
    instructions = dump_total(dump.read_text(encoding="utf-8", errors="replace"))
    state = state_digest(client, PREFIX.decode())
    ops = sum(int(args[OPS_AT]) for _, args in timed)
    fmt = variant.format_version
    result = Count(variant.label, len(timed), ops, instructions, tuple(replies), state, fmt)
    return result, dump


def annotate_top(dump: Path, n: int) -> tuple[int, list[tuple[int, str]]]:
    done = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no", str(dump)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ToolError(f"callgrind_annotate failed: {done.stderr.strip()}")
    return top_functions(done.stdout, n)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(__doc__ or "").split("\n\n", 2)[-1],
    )
    parser.add_argument(
        "--redis-url", required=True, help="a Redis to capture the calls on (a throwaway prefix)"
    )
    parser.add_argument(
        "--mix",
        choices=("store", "drain", *FOCUS_MIXES),
        default="drain",
        help="bench_worker's backlog (default), bench_store's mix, or one kind of the "
        "backlog's events (focus_batches)",
    )
    parser.add_argument("--batches", type=int, default=20, help="timed batches of 500")
    parser.add_argument("--warmup", type=int, default=10, help="batches of 500 replayed first")
    parser.add_argument(
        "--universe",
        type=int,
        default=None,
        help="users of the drain mix (events / 5), distinct ids of the store mix (20,000)",
    )
    parser.add_argument("--chunk", type=int, default=redis_store.DEFAULT_MAX_OPS_PER_CALL)
    parser.add_argument(
        "--no-sources", action="store_true", help="events without a source (no receipts)"
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        type=compare_option,
        metavar="LABEL=JOINED_SCRIPT.lua",
        help="another joined resolve_batch.lua (python -m worker.store.lua_loader DIR in its "
        "tree), labelled LABEL (repeatable)",
    )
    parser.add_argument(
        "--fcall",
        action="store_true",
        help="also count this tree's script called as a function library (FUNCTION LOAD, "
        "FCALL; Redis 7+), as the store calls it where it can",
    )
    parser.add_argument(
        "--redis-server",
        default="redis-server",
        metavar="PATH",
        help="the redis-server to run under callgrind (default: the one on PATH)",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=0,
        metavar="N",
        help="the N functions of the most instructions of their own, for this tree's script "
        "(names need a redis-server with symbols)",
    )
    parser.add_argument(
        "--keep", type=Path, default=None, metavar="DIR", help="keep each server's dumps in DIR"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also count cut variants of this tree's script: where an op's instructions go",
    )
    args = parser.parse_args(argv)
    missing = missing_tools([*TOOLS, *(["callgrind_annotate"] if args.top else [])])
    if missing:
        print(
            f"error: {', '.join(missing)} not found: install valgrind "
            "(apt-get install -y valgrind), which provides callgrind_control and "
            "callgrind_annotate",
            file=sys.stderr,
        )
        return 2
    if shutil.which(args.redis_server) is None:
        print(f"error: no redis-server at {args.redis_server}", file=sys.stderr)
        return 2

    for variant in args.compare:
        try:
            downgrade([], variant.format_version)
        except ValueError as exc:
            print(f"error: --compare {variant.label}: {exc}", file=sys.stderr)
            return 2

    client = redis.Redis.from_url(args.redis_url)
    if args.mix in FOCUS_MIXES:
        events = focus_batches(args.mix, args.warmup, args.batches)
    else:
        events = mix_batches(args)
    if not args.no_sources:
        events = with_sources(events)
    _say(f"capturing the store's calls for {len(events)} batches of 500 ({args.mix} mix)")
    per_batch = capture(client, events, args.chunk)
    client.close()
    calls = stable_tokens([c for b in per_batch for c in b])
    warm_calls = sum(len(b) for b in per_batch[: args.warmup])
    warm, timed = calls[:warm_calls], calls[warm_calls:]

    script = load_script("resolve_batch.lua")
    variants = [Variant("this tree", script), *args.compare]
    if args.fcall:
        library = load_library("resolve_batch.lua")
        variants.insert(1, Variant("this tree, FCALL", script, library))
    cut_variants: list[Variant] = []
    if args.breakdown:
        try:
            cut_variants = [Variant(f"cut {c.name}", cut_script(script, c)) for c in cuts()]
        except ValueError as exc:
            print(f"error: --breakdown: {exc}", file=sys.stderr)
            return 2
    counts: list[Count] = []
    cut_counts: list[Count] = []
    top: list[str] = []
    version = ""
    try:
        for variant in [*variants, *cut_variants]:
            _say(f"{variant.label}: {len(warm)} warm-up and {len(timed)} timed calls")
            with callgrind_redis(args.redis_server, args.keep, variant.label) as server:
                version = version or str(server.client.info("server")["redis_version"])
                result, dump = count(server, variant, warm, timed)
                # a cut variant answers and leaves otherwise by design: not compared
                (cut_counts if variant in cut_variants else counts).append(result)
                if args.top and not top:
                    total, rows = annotate_top(dump, args.top)
                    top = top_table(total, rows, counts[0].ops)
    except (ToolError, redis.RedisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    valgrind = subprocess.run(
        ["valgrind", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()

    print("\n".join(run_header()))
    print(
        f"- counted on: {shutil.which(args.redis_server)} (Redis {version}) under {valgrind} "
        "--tool=callgrind\n"
    )
    print(
        f"## Resolve script instructions per op (callgrind; {args.batches} timed batches of 500 "
        f"after {args.warmup} warm-up, chunk {args.chunk}, {args.mix} mix, universe "
        f"{args.universe or 'default'}, {'no sources' if args.no_sources else 'sources'})\n"
    )
    print("\n".join(table(counts)))
    lines, same = verdict(counts, len(warm))
    if lines:
        print()
        print("\n".join(lines))
    if top:
        print()
        print(f"### {counts[0].label}: the {args.top} functions of the most own instructions\n")
        print("\n".join(top))
    if cut_counts:
        kinds = Counter(kind for _, a in timed for kind in op_kinds(a))
        by_cut = {c.name: n for c, n in zip(cuts(), cut_counts, strict=True)}
        print()
        print(
            f"### Where {counts[0].label}'s instructions per op go (--breakdown: cut variants "
            "of its script, each returning at a marker; a stage's own instructions are its "
            "count less the one before)\n"
        )
        print("\n".join(breakdown(counts[0], by_cut, kinds)))
        print(
            "\nA rule's row: the full script's instructions less those of the variant where "
            "the ops of that kind return a constant entry instead, per op of the kind; the "
            "kinds' rows need not add up to every op's, since a skipped rule also changes the "
            "state the later ops meet (a skipped merge leaves two persons). The plain-track "
            "cut skips only the tracks of an id a person already holds."
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
