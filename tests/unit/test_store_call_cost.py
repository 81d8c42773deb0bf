"""How prepared ops are cut into script calls: op costs and the split (no Redis needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.identity.model import (
    EventKind,
    GroupInput,
    IdentityEvent,
    PreparedOp,
    PropertyUpdates,
)
from worker.store.call_cost import MERGE, PLAIN, PROPERTIES, op_cost, split


def _op(merge: bool = False, keys: int = 0, groups: int = 0, group_keys: int = 0) -> PreparedOp:
    event = IdentityEvent(
        tenant="t",
        kind=EventKind.IDENTIFY if merge else EventKind.TRACK,
        distinct_id="u",
        uuid="00000000-0000-0000-0000-000000000001",
        timestamp_ms=0,
        other_id="a" if merge else None,
    )
    updates = PropertyUpdates(set=tuple((f"k{i}", i) for i in range(keys)))
    group_updates = PropertyUpdates(set=tuple((f"g{i}", i) for i in range(group_keys)))
    return PreparedOp(
        event,
        "a" if merge else None,
        updates,
        groups=tuple(
            GroupInput(group_type="company", key=f"c{i}", updates=group_updates)
            for i in range(groups)
        ),
    )


def test_costs_of_plain_and_heavy_ops() -> None:
    assert op_cost(_op()) == PLAIN == 1
    assert op_cost(_op(merge=True)) == PLAIN + MERGE == 2
    assert op_cost(_op(keys=1)) == op_cost(_op(keys=7)) == PLAIN + PROPERTIES == 3
    assert op_cost(_op(keys=8)) == 4
    assert op_cost(_op(keys=64)) == 3 + 8
    assert op_cost(_op(merge=True, keys=2)) == 4  # an identify with $set
    assert op_cost(_op(groups=1)) == 3
    assert op_cost(_op(groups=2, group_keys=7)) == 3 + 2  # 2 groups + 14 group operations


def test_a_light_batch_is_one_call() -> None:
    ops = [_op() for _ in range(64)]
    (call,) = split(ops, 64, 96)
    assert list(call) == ops


def test_plain_ops_are_cut_by_count_and_spread_evenly() -> None:
    ops = [_op() for _ in range(65)]
    assert [len(c) for c in split(ops, 64, 1000)] == [33, 32]


def test_heavy_ops_are_cut_by_cost() -> None:
    ops = [_op(keys=2) for _ in range(64)]  # 192 units
    calls = split(ops, 64, 96)
    assert [len(c) for c in calls] == [32, 32]
    mixed = [_op(merge=i % 2 == 0, keys=1) for i in range(64)]  # 32 * 4 + 32 * 3 = 224 units
    assert [len(c) for c in split(mixed, 64, 96)] == [22, 22, 20]


def test_an_op_dearer_than_the_budget_is_a_call_of_its_own() -> None:
    big = _op(keys=800)  # 103 units
    ops = [_op(), big, _op()]
    calls = split(ops, 64, 96)
    assert [list(c) for c in calls] == [[ops[0]], [big], [ops[2]]]


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split([_op()], 0, 96)
    with pytest.raises(ValueError, match="at least 1"):
        split([_op()], 64, 0)
    assert split([], 64, 96) == []


_SHAPES = st.lists(
    st.tuples(st.booleans(), st.integers(0, 40), st.integers(0, 2)), min_size=0, max_size=150
)


@given(_SHAPES, st.integers(1, 70), st.integers(1, 200))
def test_split_keeps_order_bounds_and_the_fewest_calls(
    shapes: list[tuple[bool, int, int]], max_ops: int, max_cost: int
) -> None:
    ops = [_op(merge, keys, groups) for merge, keys, groups in shapes]
    calls = split(ops, max_ops, max_cost)
    assert [op for call in calls for op in call] == ops  # every op once, in order
    for call in calls:
        assert 1 <= len(call) <= max_ops
        assert len(call) == 1 or sum(op_cost(op) for op in call) <= max_cost
    # no more calls than cutting greedily at the bounds makes
    greedy, count, cost = 0, 0, 0
    for op in ops:
        c = op_cost(op)
        if count and (count >= max_ops or cost + c > max_cost):
            greedy, count, cost = greedy + 1, 0, 0
        count, cost = count + 1, cost + c
    assert len(calls) == greedy + (1 if ops else 0)
