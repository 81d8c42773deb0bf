"""Person property operations (contract A4), in both ordering modes. Pure functions that
return new mappings; the caller decides what to do with a refused update.

- ``timestamp`` mode: every key is a last-writer-wins register (``PropertyState``); an incoming
  state replaces the current one when it ``outranks`` it. Joining two maps key by key with the
  same rule is commutative, associative and idempotent, so the result does not depend on the
  order events arrive in, and replays change nothing.
- ``arrival`` mode: PostHog's rules, in ingestion order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from worker.identity.model import JsonValue, PropertyOp, PropertyState, PropertyUpdates

Properties = Mapping[str, PropertyState]


def canonical_json(value: JsonValue) -> str:
    """The one text form of a value: sizes, tie-breaks and the Redis store use it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def visible(properties: Properties) -> dict[str, JsonValue]:
    return {k: s.value for k, s in properties.items() if s.op is not PropertyOp.UNSET}


def properties_size(properties: Properties) -> int:
    """UTF-8 bytes of every visible key plus its value's canonical JSON."""
    return sum(
        len(k.encode()) + len(canonical_json(s.value).encode())
        for k, s in properties.items()
        if s.op is not PropertyOp.UNSET
    )


def event_operations(updates: PropertyUpdates) -> dict[str, tuple[PropertyOp, JsonValue]]:
    """One operation per key: ``$unset`` beats ``$set`` beats ``$set_once``; the last ``$set``
    pair of a repeated key wins, the first ``$set_once`` pair wins."""
    ops: dict[str, tuple[PropertyOp, JsonValue]] = {}
    for key, value in updates.set_once:
        ops.setdefault(key, (PropertyOp.SET_ONCE, value))
    for key, value in updates.set:
        ops[key] = (PropertyOp.SET, value)
    for key in updates.unset:
        ops[key] = (PropertyOp.UNSET, None)
    return ops


def same_registers(a: Properties, b: Properties) -> bool:
    """Whether two persons' (or groups') registers hold the same states, values compared by
    their canonical text: Python's ``==`` takes ``False`` for ``0`` and ``True`` for ``1.0``,
    JSON does not (a change from ``0`` to ``false`` is a change)."""
    if a.keys() != b.keys():
        return False
    for key, state in a.items():
        other = b[key]
        if (state.op, state.ts_ms, state.uuid) != (other.op, other.ts_ms, other.uuid):
            return False
        if canonical_json(state.value) != canonical_json(other.value):
            return False
    return True


def _text(state: PropertyState) -> str:
    return "" if state.op is PropertyOp.UNSET else canonical_json(state.value)


def outranks(new: PropertyState, current: PropertyState) -> bool:
    """Whether ``new`` replaces ``current`` in timestamp mode (docs/IDENTITY.md)."""
    new_strong = new.op is not PropertyOp.SET_ONCE
    current_strong = current.op is not PropertyOp.SET_ONCE
    if new_strong != current_strong:
        return new_strong
    new_order, current_order = (new.ts_ms, new.uuid), (current.ts_ms, current.uuid)
    if new_order != current_order:
        return new_order > current_order if new_strong else new_order < current_order
    return _text(new) > _text(current)


def apply_timestamp(
    properties: Properties, updates: PropertyUpdates, ts_ms: int, uuid: str
) -> dict[str, PropertyState]:
    """The registers after one event's operations."""
    result = dict(properties)
    for key, (op, value) in event_operations(updates).items():
        incoming = PropertyState(op, value, ts_ms, uuid)
        current = result.get(key)
        if current is None or outranks(incoming, current):
            result[key] = incoming
    return result


def join_timestamp(a: Properties, b: Properties) -> dict[str, PropertyState]:
    """Two persons' registers merged key by key: the higher-ranked state wins."""
    result = dict(a)
    for key, state in b.items():
        current = result.get(key)
        if current is None or outranks(state, current):
            result[key] = state
    return result


def apply_arrival(
    properties: Properties, updates: PropertyUpdates, ts_ms: int, uuid: str
) -> dict[str, PropertyState]:
    """PostHog's rules: ``$set_once`` only for keys absent before the event, ``$set`` always,
    then ``$unset`` of keys that were present before the event. A state is rewritten only when
    its value changes (it records the event that last changed it)."""
    before = visible(properties)
    to_set: dict[str, JsonValue] = {}
    for key, value in updates.set_once:
        if key not in before and key not in to_set:
            to_set[key] = value
    for key, value in updates.set:
        to_set[key] = value
    result = dict(properties)
    for key, value in to_set.items():
        current = result.get(key)
        if current is None or canonical_json(current.value) != canonical_json(value):
            result[key] = PropertyState(PropertyOp.SET, value, ts_ms, uuid)
    for key in updates.unset:
        if key in before:
            result.pop(key, None)
    return result


def merge_arrival(into: Properties, other: Properties) -> dict[str, PropertyState]:
    """``{...other, ...into}``: the surviving person's keys win."""
    return {**other, **into}
