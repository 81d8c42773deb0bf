"""Reading the groups' state of a tenant from Redis (layout in ``lua/resolve/groups.lua``):
its group types, group records and the persons' memberships. For tests and operators; the
script is the only writer. Not atomic: read a quiet tenant."""

from __future__ import annotations

import json
from typing import Any

from worker.identity.model import Group, PropertyOp, PropertyState
from worker.store.codec import as_text, parse_order_key
from worker.store.keys import TenantKeys

_OPS = {"s": PropertyOp.SET, "o": PropertyOp.SET_ONCE, "u": PropertyOp.UNSET}


def _states(meta: Any, vals: Any) -> dict[str, PropertyState]:
    """Per-key states from a cjson ``meta`` and ``vals`` (an empty table may be ``[]``)."""
    vals = vals if isinstance(vals, dict) else {}
    out: dict[str, PropertyState] = {}
    for key, m in (meta if isinstance(meta, dict) else {}).items():
        op = _OPS[m[0]]
        ts_ms, uuid = parse_order_key(m[1:])
        value = None if op is PropertyOp.UNSET else json.loads(vals[key])
        out[key] = PropertyState(op, value, ts_ms, uuid)
    return out


def group_types(client: Any, keys: TenantKeys) -> list[str]:
    return sorted(as_text(t) for t in client.smembers(keys.groups_prefix + "types"))


def groups(client: Any, keys: TenantKeys) -> list[Group]:
    out = []
    for field, raw in client.hgetall(keys.groups_prefix + "records").items():
        group_type, key = as_text(field).split("\0", 1)
        record = json.loads(as_text(raw))
        out.append(Group(group_type, key, int(record["n"]), _states(record["m"], record["v"])))
    return sorted(out, key=lambda g: (g.group_type, g.key))


def memberships(client: Any, keys: TenantKeys) -> dict[str, dict[str, PropertyState]]:
    out = {}
    for field, raw in client.hgetall(keys.groups_prefix + "members").items():
        record = json.loads(as_text(raw))
        states = _states(record["m"], record["v"])
        if states:
            out[as_text(field)] = states
    return out
