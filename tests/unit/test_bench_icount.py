"""The instruction-count harness's pure parts (``tests/bench/lua_icount.py``), without valgrind
or Redis: a callgrind dump's total, callgrind_annotate's function list, the table and its
ratios, the verdict on compared scripts, the calls written in an older ARGV format, and the cut
variants of ``--breakdown`` (made from this tree's joined script; that Redis loads them is
checked in tests/integration/test_lua_modules.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.bench.lua_icount import (
    MERGE,
    PLAIN_TRACK,
    PROPERTY_TRACK,
    Count,
    Cut,
    CutError,
    Variant,
    breakdown,
    compare_option,
    constant_entry,
    cut_script,
    cuts,
    downgrade,
    dump_part,
    dump_total,
    first_difference,
    focus_batches,
    op_kinds,
    stable_tokens,
    table,
    top_functions,
    top_table,
    verdict,
)
from worker.identity.model import EventKind
from worker.store import protocol
from worker.store.lua_loader import load_script

DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 25037
cmd:  /tmp/redis-7.0.15/src/redis-server --port 36432 --save  --appendonly no --dir /tmp/icx
part: 1


desc: I1 cache:
desc: D1 cache:
desc: LL cache:

desc: Timerange: Basic block 0 - 1617547
desc: Trigger: dump

positions: line
events: Ir
summary: 101043


ob=(6) /tmp/redis-7.0.15/src/redis-server
fl=(269) /tmp/redis-7.0.15/src/evict.c
fn=(1526) LRU_CLOCK
83 9
+5 9

fn=(604) main
cfi=(310)
cfn=(2356)
calls=0 493
7171 101043

totals: 124142
"""
"""A callgrind dump of ``callgrind_control -d`` (``--dump-instr=no``), most cost lines cut:
its ``totals:`` counts the calls in flight when the counters were zeroed again, ``summary:``
the instructions executed since."""

ANNOTATED = """\
--------------------------------------------------------------------------------
Profile data file 'callgrind.out.29472.1' (creator: callgrind-3.19.0)
--------------------------------------------------------------------------------
Events recorded:  Ir
Events shown:     Ir
Thresholds:       100
Auto-annotation:  off

--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
1,841,636,540 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                      file:function
--------------------------------------------------------------------------------
1,841,636,540 (100.0%)  ./csu/../csu/libc-start.c:__libc_start_main [/usr/lib/libc.so.6]
1,841,636,540 (100.0%)  /tmp/redis-7.0.15/src/server.c:main [/tmp/redis-7.0.15/src/redis-server]
  414,344,673 (22.50%)  ???:luaV_execute [/tmp/redis-7.0.15/src/redis-server]
  145,262,707 ( 7.89%)  ???:luaS_newlstr [/tmp/redis-7.0.15/src/redis-server]
   84,645,280 ( 4.60%)  ???:luaH_get [/tmp/redis-7.0.15/src/redis-server]
   80,439,962 ( 4.37%)  ./malloc/./malloc/malloc.c:_int_malloc [/usr/lib/libc.so.6]

--------------------------------------------------------------------------------
-- Auto-annotated source: /tmp/redis-7.0.15/src/server.c
--------------------------------------------------------------------------------
  999,999,999 (54.30%)  int main(int argc, char **argv) {
"""
"""The head of ``callgrind_annotate --threshold=100`` on a dump of part 1 (a build with symbols),
and a line of annotated source after the list (the libraries' paths shortened)."""


def _count(label: str, per_op: int, *, replies: tuple[bytes, ...] = (b"a", b"b", b"c")) -> Count:
    return Count(label, 160, 10_000, per_op * 10_000, replies, "digest")


def test_a_dumps_instructions_are_its_summary_line() -> None:
    assert dump_total(DUMP) == 101_043
    assert dump_part(DUMP) == 1


def test_a_dump_without_a_summary_gives_its_totals_line() -> None:
    without = "\n".join(line for line in DUMP.splitlines() if not line.startswith("summary:"))
    assert dump_total(without) == 124_142


def test_a_text_that_is_no_dump_is_refused() -> None:
    with pytest.raises(ValueError, match="not a callgrind dump"):
        dump_total("events: Ir\n")
    assert dump_part("events: Ir\n") is None


def test_the_top_functions_leave_out_the_frames_of_the_whole_part() -> None:
    total, rows = top_functions(ANNOTATED, 3)
    assert total == 1_841_636_540
    assert rows == [
        (414_344_673, "???:luaV_execute [/tmp/redis-7.0.15/src/redis-server]"),
        (145_262_707, "???:luaS_newlstr [/tmp/redis-7.0.15/src/redis-server]"),
        (84_645_280, "???:luaH_get [/tmp/redis-7.0.15/src/redis-server]"),
    ]
    _, every = top_functions(ANNOTATED, 100)
    assert len(every) == 4  # the annotated source after the list is not read


def test_the_top_table_gives_instructions_per_op_and_share() -> None:
    total, rows = top_functions(ANNOTATED, 1)
    assert top_table(total, rows, 10_000)[2:] == [
        "| `???:luaV_execute [/tmp/redis-7.0.15/src/redis-server]` | 41,434 | 22.5% |"
    ]


def test_a_text_that_is_no_annotation_is_refused() -> None:
    with pytest.raises(ValueError, match="PROGRAM TOTALS"):
        top_functions("nothing here\n", 5)


def test_the_table_gives_instructions_per_op_and_the_ratio_to_the_first() -> None:
    lines = table([_count("this tree", 178_180), _count("base", 181_404)])
    assert lines == [
        "| variant | timed calls | ops | instructions per op | ratio to the first |",
        "|---|---:|---:|---:|---:|",
        "| this tree | 160 | 10,000 | 178,180 | 1.000 |",
        "| base | 160 | 10,000 | 181,404 | 1.018 |",
    ]


def test_the_first_differing_reply_is_named_by_its_call() -> None:
    first = _count("this tree", 1)
    assert first_difference(first, _count("same", 2), warmup_calls=2) is None
    other = _count("other", 1, replies=(b"a", b"b", b"x"))
    assert first_difference(first, other, warmup_calls=2) == "timed call 1: its reply differs"
    assert first_difference(first, other, warmup_calls=3) == "warm-up call 3: its reply differs"
    short = _count("short", 1, replies=(b"a",))
    assert first_difference(first, short, 1) == "timed call 1: one of the two has no reply"


def test_a_different_state_counts_only_between_calls_of_one_format() -> None:
    first = _count("this tree", 1)
    moved = Count("moved", 160, 10_000, 1, first.replies, "other digest")
    older = Count("older", 160, 10_000, 1, first.replies, "other digest", "1")
    assert first_difference(first, moved, 0) == (
        "the final state (the keys after the last call) differs"
    )
    assert first_difference(first, older, 0) is None
    lines, same = verdict([first, moved, older], 0)
    assert not same
    assert lines[0].startswith("- **moved differs from this tree**: the final state")
    assert "the final state not compared" in lines[1]
    assert verdict([first, _count("again", 1)], 0) == (
        ["- again: replies and final state identical to this tree's."],
        True,
    )


def test_calls_are_written_in_an_older_format_or_refused() -> None:
    header = [protocol.FORMAT_VERSION.encode(), *(b"h%d" % k for k in range(2, 17))]
    calls = [([b"k"], [*header, b"op"])]
    assert downgrade(calls, protocol.FORMAT_VERSION) == calls
    assert protocol.FORMAT_VERSION == "9"  # a new format adds its step to DOWNGRADES, and here
    assert downgrade(calls, "8") == [([b"k"], [b"8", *header[1:], b"op"])]
    assert downgrade(calls, "7") == [([b"k"], [b"7", *header[1:15], b"op"])]
    with pytest.raises(ValueError, match="no way to write calls"):
        downgrade(calls, "0")


def test_reply_tokens_become_one_counter_over_all_calls() -> None:
    def call(token: str) -> tuple[list[bytes], list[bytes]]:
        key = f"lp-old:{{t}}:reply:{token}".encode()
        return [b"lp-old:{t}:ids", key, key], [b"arg"]

    tokens = ["9f" * 16, "0a" * 16, "9f" * 16]
    out = stable_tokens([call(t) for t in tokens])
    assert [keys[1] for keys, _ in out] == [b"lp-old:{t}:reply:" + b"%032x" % n for n in (0, 1, 0)]
    assert all(keys[1] == keys[2] and keys[0] == b"lp-old:{t}:ids" for keys, _ in out)


def test_a_compared_script_is_label_and_path(tmp_path: Path) -> None:
    script = tmp_path / "old.lua"
    script.write_text("local PROTOCOL = {\n  format_version = '7',\n}\n", encoding="utf-8")
    variant = compare_option(f"base={script}")
    assert (variant.label, variant.format_version) == ("base", "7")
    assert compare_option(str(script)).label == str(script)
    with pytest.raises(argparse.ArgumentTypeError, match="expected LABEL"):
        compare_option(f"={script}")
    with pytest.raises(argparse.ArgumentTypeError, match=r"missing\.lua"):
        compare_option(f"x={tmp_path / 'missing.lua'}")
    with pytest.raises(ValueError, match="no format_version"):
        _ = Variant("bad", "return 1").format_version


def _cut_line(script: str, cut: Cut) -> tuple[list[str], int]:
    lines = cut_script(script, cut).split("\n")
    at = [k for k, line in enumerate(lines) if line.strip() == cut.statement]
    assert len(at) == 1, cut.name
    return lines, at[0]


@pytest.mark.parametrize("cut", cuts(), ids=lambda c: c.name)
def test_each_cut_lands_once_next_to_its_marker_in_this_trees_script(cut: Cut) -> None:
    script = load_script("resolve_batch.lua")
    assert [line.strip() for line in script.split("\n")].count(cut.marker) == 1
    lines, at = _cut_line(script, cut)
    neighbour = lines[at - 1] if cut.after else lines[at + 1]
    assert neighbour.strip() == cut.marker
    assert "\n".join(lines[:at] + lines[at + 1 :]) == script  # nothing else changed
    assert lines[at].startswith(" " * (len(neighbour) - len(neighbour.lstrip())))


def test_the_cuts_return_where_their_description_says() -> None:
    script = load_script("resolve_batch.lua")
    by_name = {c.name: c for c in cuts()}
    assert [c.name for c in cuts()] == [
        "transport",
        "call",
        "argv",
        "prefetch",
        "floor",
        "plain",
        "property",
        "merge",
    ]
    lines, at = _cut_line(script, by_name["transport"])
    assert lines[0].startswith("#!lua")
    assert not any(line.startswith("local ") for line in lines[:at])  # before every module
    assert lines[at + 1] == "local PROTOCOL = {"
    lines, at = _cut_line(script, by_name["call"])
    assert "round.refusal(KEYS[10])" in "\n".join(lines[at - 5 : at])
    lines, at = _cut_line(script, by_name["prefetch"])
    assert lines[at - 2 : at] == [
        "ctx.ops = argv.parse_ops(ARGV, ctx.config)",
        "union_find.prefetch(ctx, ctx.ops)",
    ]
    for name in ("floor", "property", "merge"):
        lines, at = _cut_line(script, by_name[name])
        assert lines[at - 1] == "function rules.apply(ctx, op, warning)"
    lines, at = _cut_line(script, by_name["plain"])
    assert [line.strip() for line in lines[at - 2 : at]] == [
        "local root = union_find.find(ctx, op.into)",
        "if root then",
    ]
    assert {c.kind for c in cuts()} == {None, PLAIN_TRACK, PROPERTY_TRACK, MERGE}


def test_a_marker_not_found_once_is_named_in_the_error() -> None:
    cut = Cut("gone", "a marker the code no longer has", "local nothing = 1", False, "x()")
    with pytest.raises(CutError, match=r"cut gone: the marker line 'local nothing = 1' .* 0 times"):
        cut_script(load_script("resolve_batch.lua"), cut)
    with pytest.raises(CutError, match="2 times"):
        cut_script("local nothing = 1\n  local nothing = 1\n", cut)
    assert cut_script("a\n  local nothing = 1\n", cut) == "a\n  x()\n  local nothing = 1\n"


def test_the_constant_entry_has_every_reply_entry_field() -> None:
    entry = json.loads(constant_entry())
    assert len(entry) == len(protocol.REPLY_ENTRY_FIELDS)
    assert entry[protocol.REPLY_ENTRY_FIELDS.index("person_mode")] == "full"
    assert constant_entry() == '["x","full",1,true,{},false,false,[],[],"1",false,{},[]]'
    with pytest.raises(ValueError, match=r"no placeholder for reply entry field.* new_field"):
        constant_entry((*protocol.REPLY_ENTRY_FIELDS, "new_field"))


def test_op_kinds_walk_the_op_layout() -> None:
    header = [protocol.FORMAT_VERSION.encode(), *(b"h%d" % k for k in range(2, 17))]
    header[14] = b"5"
    plain = [b"1", b"a", b"", b"", b"", b"1000", b"1", b"0", b"0", b"s", b"b"]
    props = [b"1", b"a", b"", b"", b"", b"1000", b"1", b"1", b"s", b"k", b"1", b"0", b"", b""]
    merge = [b"5", b"a", b"", b"b", b"", b"1000", b"1", b"0", b"0", b"", b""]
    self_merge = [b"13", b"a", b"", b"a", b"", b"1000", b"1", b"0"]
    self_merge += [b"1", b"9", b"org", b"o1", b'"o1"', b"1", b"1", b"s", b"k", b"1"]
    self_merge += [b"", b"", b"1000", b"payload", b"e1"]  # source, bucket; buffer fields
    args = [*header, *plain, *props, *merge, *self_merge, *plain]
    assert op_kinds(args) == [PLAIN_TRACK, PROPERTY_TRACK, MERGE, PLAIN_TRACK, PLAIN_TRACK]
    with pytest.raises(ValueError, match="values left over"):
        op_kinds([*args, b"extra"])


def test_the_breakdown_gives_the_stages_and_each_kinds_rule() -> None:
    def n(label: str, per_op: int) -> Count:
        return Count(label, 10, 100, per_op * 100, (), "")

    full = n("this tree", 1000)
    by_cut = {
        "transport": n("transport", 60),
        "call": n("call", 100),
        "argv": n("argv", 250),
        "prefetch": n("prefetch", 300),
        "floor": n("floor", 400),
        "plain": n("plain", 900),
        "property": n("property", 700),
        "merge": n("merge", 800),
    }
    kinds = {PLAIN_TRACK: 50, PROPERTY_TRACK: 30, MERGE: 20}
    lines = breakdown(full, by_cut, kinds)
    assert [line.split(" | ")[1:] for line in lines[2:8]] == [
        ["60", "6.0%", "60 |"],
        ["100", "10.0%", "40 |"],
        ["250", "25.0%", "150 |"],
        ["300", "30.0%", "50 |"],
        ["400", "40.0%", "100 |"],
        ["1,000", "100.0%", "600 |"],
    ]
    assert lines[2].startswith("| the call's transport")
    assert lines[11:] == [
        "| plain track | 50 | 200 | 10.0% |",
        "| property track | 30 | 1,000 | 30.0% |",
        "| merge | 20 | 1,000 | 20.0% |",
        "| every op (the full script less the floor cut) | 100 | 600 | 60.0% |",
    ]
    assert breakdown(full, by_cut, {})[11] == "| plain track | 0 | - | 10.0% |"


@pytest.mark.parametrize(
    ("mix", "kind"), [("identify", EventKind.IDENTIFY), ("settrack", EventKind.TRACK)]
)
def test_a_focused_mix_makes_its_pairs_then_times_one_kind(mix: str, kind: EventKind) -> None:
    batches = focus_batches(mix, warmup=2, batches=3)
    assert [len(b) for b in batches] == [500] * 5
    warm, timed = [e for b in batches[:2] for e in b], [e for b in batches[2:] for e in b]
    # the warm-up: per person a track of anon-N with $set of plan and n, then its identify
    assert [(e.kind, e.distinct_id, e.other_id) for e in warm[:2]] == [
        (EventKind.TRACK, "anon-0", None),
        (EventKind.IDENTIFY, "user-0", "anon-0"),
    ]
    assert {k for k, _ in warm[0].updates.set} == {"plan", "n"}
    assert warm[1].updates.set == (("email_domain", "example.com"),)
    # the timed events: one kind, of the persons made
    assert {e.kind for e in timed} == {kind}
    assert {e.distinct_id.split("-")[1] for e in timed} <= {str(n) for n in range(500)}
    if kind is EventKind.IDENTIFY:
        assert all(e.other_id == "anon-" + e.distinct_id.split("-")[1] for e in timed)
    times = [e.timestamp_ms for b in batches for e in b]
    assert times == sorted(set(times))


def test_a_focused_mix_of_another_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not a focused mix"):
        focus_batches("drain", warmup=1, batches=1)
