"""``codec.engine_call`` builds what ``engine.parse_call`` reads from ``codec.encode_args``'s
ARGV: the rules in the worker (``redis.rules=worker``) plan from it without the ARGV."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.identity.buffer import BufferPolicy
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    EventKind,
    GroupInput,
    IdentityEvent,
    OrderingMode,
    PreparedOp,
    PropertyUpdates,
)
from worker.store import codec, protocol
from worker.store.engine import parse_call

ids = st.sampled_from(["a", "b", "A", "user-1", "é", ""]) | st.text(
    st.characters(blacklist_categories=["Cs"]), max_size=6
)  # (a distinct id is valid UTF-8: its person id is the uuid5 of its bytes)
keys = st.sampled_from(["plan", "n", "$x", "k\udfff"]) | st.text(max_size=4)
values = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats(allow_nan=False)
)
pairs = st.lists(st.tuples(keys, values), max_size=3).map(tuple)
updates = st.builds(
    PropertyUpdates,
    set=pairs,
    set_once=pairs,
    unset=st.lists(keys, max_size=2).map(tuple),
)
groups = st.lists(
    st.builds(
        GroupInput,
        group_type=st.sampled_from(["company", "team"]),
        key=st.text(max_size=4),
        attach=st.booleans(),
        remember=st.booleans(),
        updates=updates,
    ),
    max_size=2,
).map(tuple)


@st.composite
def prepared(draw: st.DrawFn) -> PreparedOp:
    other = draw(st.none() | ids)
    event = IdentityEvent(
        tenant=draw(st.sampled_from(["t", "other"])),
        kind=EventKind.IDENTIFY if other is not None else EventKind.TRACK,
        distinct_id=draw(ids),
        uuid=draw(st.uuids().map(str) | st.text(max_size=3)),
        timestamp_ms=draw(st.integers(min_value=-(2**40), max_value=2**50)),
        other_id=other,
        merge_dangerously=draw(st.booleans()),
        process_person=draw(st.booleans()),
        updates=draw(updates),
        source=draw(st.none() | st.sampled_from(["in:0:1", "in:3:99"]) | st.text(max_size=4)),
        buffer_payload=draw(st.none() | st.binary(max_size=6)),
    )
    return PreparedOp(event=event, merge_with=other, updates=event.updates, groups=draw(groups))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(prepared(), max_size=5),
    st.sampled_from(list(OrderingMode)),
    st.integers(min_value=0, max_value=2**45),
    st.sampled_from([codec.NO_BUFFER, BufferPolicy(delay_ms=60_000, max_per_id=3, max_total=9)]),
    st.sampled_from([0, 1, 60_000]),
)
def test_the_engine_call_is_the_parsed_argv(
    ops: list[PreparedOp],
    ordering: OrderingMode,
    now_ms: int,
    buffer: BufferPolicy,
    last_seen_ms: int,
) -> None:
    config = IdentityConfig(ordering=ordering, last_seen_resolution_ms=last_seen_ms)
    limits = codec.CallLimits.of(config, 0)
    args = codec.encode_args(ops, limits, now_ms=now_ms, buffer=buffer)
    built = codec.engine_call(ops, limits, now_ms=now_ms, buffer=buffer)
    assert dataclasses.asdict(built) == dataclasses.asdict(parse_call(args))
    if buffer.delay_ms and any(op.event.buffer_payload is not None for op in ops):
        assert any(op.buffer for op in built.ops)  # (the buffer fields are compared too)


def test_the_release_call_is_the_parsed_argv() -> None:
    limits = codec.CallLimits.of(IdentityConfig(), 0)
    policy = BufferPolicy(delay_ms=5, lease_ms=7)
    options = {
        "now_ms": 42,
        "buffer": policy,
        "command": protocol.COMMAND_RELEASE,
        "release_limit": 500,
    }
    built = codec.engine_call([], limits, **options)  # type: ignore[arg-type]
    parsed = parse_call(codec.encode_args([], limits, **options))  # type: ignore[arg-type]
    assert built == parsed
    assert built.config.release
    assert built.config.release_limit == 500
