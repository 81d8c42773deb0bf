"""The group rules (``groups.lua``): types and their cap, group properties, memberships."""

from __future__ import annotations

import json
import math

from worker.store import protocol, record_format
from worker.store.engine.call import SET, GroupOp, Op
from worker.store.engine.context import Ctx, Person, as_bytes, pseudo
from worker.store.engine.properties import join_properties, update_props
from worker.store.engine.state import EngineError, Writes


def encode_group(meta: dict[bytes, bytes], vals: dict[bytes, bytes], version: int | None) -> bytes:
    def text(raw: bytes) -> str:
        return raw.decode("utf-8", "surrogatepass")

    value: dict[str, object] = {
        "m": {text(k): text(v) for k, v in meta.items()},
        "v": {text(k): text(v) for k, v in vals.items()},
    }
    if version is not None:
        value["n"] = version
    return as_bytes(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def apply_groups(ctx: Ctx, op: Op, person: Person | None) -> tuple[bytes, bytes, list[str]]:
    """``groups.apply``: the entry's groups and group changes texts, and warnings."""
    g = ctx.groups
    types = g.types_of(ctx)
    if not op.groups and (person is None or not types):
        return b"{}", b"[]", []
    warnings: list[str] = []
    kept: list[GroupOp] = []
    for group in op.groups:
        if group.type not in types:
            if len(types) >= op.max_group_types:
                warnings.append(protocol.WARNING_GROUP_TYPE_LIMIT)
            else:
                types.add(group.type)
                g.new_types.append(group.type)
                kept.append(group)
        else:
            kept.append(group)
    changes: list[bytes] = []
    for group in kept:
        if group.props:
            field = group.type + b"\0" + group.key
            record, version = g.record_of(ctx, field)
            changed, refused = update_props(ctx, record, group.props, op.ord, ctx.config.max_bytes)
            if refused:
                warnings.append(protocol.WARNING_GROUP_PROPERTIES_SIZE)
            elif changed:
                version[0] += 1
                g.dirty.add(field)
                changes.append(
                    b"["
                    + record_format.quote(group.type)
                    + b","
                    + group.key_text
                    + b","
                    + b"%d" % version[0]
                    + b","
                    + ctx.snapshot(record)
                    + b"]"
                )
    keys: dict[bytes, bytes] = {}  # type -> key text
    if person is not None and types:
        person_id = as_bytes(person.person_id)
        m = g.members_of(ctx, person_id)
        remembered = [(SET, group.type, group.key_text) for group in kept if group.remember]
        if remembered and update_props(ctx, m, remembered, op.ord, math.inf)[0]:
            g.members_dirty.add(person_id)
        _, member_vals = ctx.properties_of(m)
        keys.update(member_vals)
    for group in kept:
        if group.attach:
            keys[group.type] = group.key_text
    parts: list[bytes] = []
    for group_type, text in keys.items():
        try:
            key = json.loads(text)
        except ValueError as exc:
            raise EngineError("an unreadable group key") from exc
        record, _ = g.record_of(ctx, group_type + b"\0" + as_bytes(str(key)))
        _, record_vals = ctx.properties_of(record)
        props = ctx.snapshot(record) if record_vals else b"{}"
        parts.append(record_format.quote(group_type) + b":[" + text + b"," + props + b"]")
    return b"{" + b",".join(parts) + b"}", b"[" + b",".join(changes) + b"]", warnings


def merge_groups(ctx: Ctx, into: Person, other: Person) -> None:
    """``groups.merge`` (A3.6): other's memberships joined into into's."""
    g = ctx.groups
    if not g.types_of(ctx):
        return
    into_id, other_id = as_bytes(into.person_id), as_bytes(other.person_id)
    into_m = g.members_of(ctx, into_id)
    other_m = g.members_of(ctx, other_id)
    other_meta, _ = ctx.properties_of(other_m)
    if not other_meta:
        return
    meta, vals, _ = join_properties(ctx, into_m, other_m)
    g.members[into_id] = pseudo(meta, vals)
    g.members_dirty.add(into_id)
    g.members[other_id] = pseudo({}, {})
    g.members_dirty.discard(other_id)
    g.members_dropped.add(other_id)


def group_writes(ctx: Ctx, writes: Writes) -> None:
    """``groups.write``."""
    g = ctx.groups
    writes.group_types = list(g.new_types)
    for name in g.dirty:
        record, version = g.records[name]
        meta, vals = ctx.properties_of(record)
        writes.group_records[name] = encode_group(meta, vals, version[0])
    writes.group_members_deleted = {p for p in g.members_dropped if p not in g.members_dirty}
    for person_id in g.members_dirty:
        meta, vals = ctx.properties_of(g.members[person_id])
        writes.group_members[person_id] = encode_group(meta, vals, None)
