"""How a tenant's prepared ops are cut into script calls (pure: no I/O).

A call's server time grows with what its ops do, not only with how many there are. Measured
per op in calls of one kind (``tests/bench/bench_store.py``, "Server time per op by kind",
docs/BENCHMARKS.md section 5), against a track of an id a person holds without property
operations (the cheapest op the resolve script runs): an op that changes properties loads,
decodes, re-encodes and writes its person's record, about twice a plain track on persons of
a few properties and more on persons of many (their whole record is rewritten), so it counts
3; a merge 1.4 times, an identify that merges and sets a property about twice (counted 2 and
4: the worker cannot see the persons' sizes, so the model leans high); each property
operation about a tenth of a plain track more. So each op has a cost in *plain-track units*
(``op_cost``): 1, plus 2 for property or group operations, plus 1 for a merge, plus 1 per 8
property operations (person and group); and a call holds at most ``max_ops`` ops and at most
``max_cost`` units (``split``), except that one op alone is always a call of its own whatever
it costs.

``split`` makes as few calls as those two bounds allow and spreads the cost evenly over
them, so a batch of heavy ops becomes several calls of similar length rather than full calls
followed by a short one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from worker.identity.model import PreparedOp, PropertyUpdates

PLAIN: Final = 1
"""A track (or any op) with no merge, no property operation and no group operation."""
PROPERTIES: Final = 2
"""Added for property or group operations (the person's or a group's record rewritten)."""
MERGE: Final = 1
"""Added for a merge (identify with an anonymous id, alias)."""
PROPERTY_OPERATIONS_PER_UNIT: Final = 8
"""Property operations (person and group) that add one more unit."""


def _operations(updates: PropertyUpdates) -> int:
    return len(updates.set) + len(updates.set_once) + len(updates.unset)


def op_cost(op: PreparedOp) -> int:
    """The op's cost in plain-track units (see the module docstring)."""
    operations = _operations(op.updates)
    for group in op.groups:
        operations += 1 + _operations(group.updates)
    cost = PLAIN
    if operations:
        cost += PROPERTIES + operations // PROPERTY_OPERATIONS_PER_UNIT
    if op.merge_with is not None:
        cost += MERGE
    return cost


def split(ops: Sequence[PreparedOp], max_ops: int, max_cost: int) -> list[Sequence[PreparedOp]]:
    """``ops`` cut, in order, into the fewest calls of at most ``max_ops`` ops and ``max_cost``
    units each (an op costing more than ``max_cost`` alone), the cost spread evenly."""
    if max_ops < 1 or max_cost < 1:
        raise ValueError("max_ops and max_cost must be at least 1")
    if not ops:
        return []
    costs = [op_cost(op) for op in ops]
    total = sum(costs)
    if len(ops) <= max_ops and total <= max_cost:
        return [ops]
    # greedy cuts at the bounds give the fewest calls; then each call aims at an even share
    calls = len(_cuts(costs, max_ops, max_cost, max_cost))
    target = max(1, -(-total // calls))
    cuts = _cuts(costs, max_ops, max_cost, target)
    if len(cuts) > calls:  # the even share packed worse than the greedy cut: keep that
        cuts = _cuts(costs, max_ops, max_cost, max_cost)
    out: list[Sequence[PreparedOp]] = []
    start = 0
    for end in cuts:
        out.append(ops[start:end])
        start = end
    return out


def _cuts(costs: Sequence[int], max_ops: int, max_cost: int, target: int) -> list[int]:
    """The end index of each call: an op joins the current call while the call stays within
    ``max_ops`` and ``max_cost`` and has not reached ``target`` units yet."""
    cuts: list[int] = []
    count = cost = 0
    for index, c in enumerate(costs):
        if count and (count >= max_ops or cost + c > max_cost or cost >= target):
            cuts.append(index)
            count = cost = 0
        count += 1
        cost += c
    cuts.append(len(costs))
    return cuts
