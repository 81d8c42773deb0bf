"""How property states rank and change (``ordering.lua``, ``properties.lua``): for persons, groups
and memberships alike."""

from __future__ import annotations

from collections.abc import Sequence

from worker.store import record_format
from worker.store.engine.call import SET, SET_ONCE, SET_THEN_UNSET, UNSET, Op
from worker.store.engine.context import Ctx, Person


def _orders(new_meta: bytes, current_meta: bytes) -> tuple[bytes, bytes]:
    """The order keys of two metas, in forms that compare as their texts do: both stored
    (``record_format.pack_order``: 26 bytes that compare as the text) when both pack, else
    both texts."""
    a, b = new_meta[1:], current_meta[1:]
    a_stored, b_stored = a[:1] == b"\0", b[:1] == b"\0"
    if a_stored == b_stored:
        return a, b
    if a_stored:
        b = record_format.pack_order(b)
        return (a, b) if b[:1] == b"\0" else (record_format.order_text(a), b)
    a = record_format.pack_order(a)
    return (a, b) if a[:1] == b"\0" else (a, record_format.order_text(b))


def outranks(
    new_meta: bytes, new_text: bytes, current_meta: bytes | None, current_text: bytes
) -> bool:
    """``ordering.outranks``: strong ops (set, unset) outrank set_once; among strong ops the later
    order key wins, among weak ones the earlier; on an equal key the larger value text."""
    if current_meta is None:
        return True
    new_strong = new_meta[:1] != SET_ONCE
    if new_strong != (current_meta[:1] != SET_ONCE):
        return new_strong
    new_order, current_order = _orders(new_meta, current_meta)
    if new_order == current_order:
        return new_text > current_text
    return (new_order > current_order) == new_strong


def update(ctx: Ctx, person: Person, op: Op) -> tuple[bool, bool]:
    """``properties.update`` of a person record: (changed, refused for size)."""
    return update_props(ctx, person, op.props, op.ord, ctx.config.max_bytes)


def update_props(
    ctx: Ctx,
    person: Person,
    props: Sequence[tuple[bytes, bytes, bytes]],
    order: bytes,
    max_bytes: float,
) -> tuple[bool, bool]:
    """``properties.update`` of ``person`` (a person, a group or memberships: ``pseudo``) with
    ``props`` at the order key ``order``: (changed, refused for size)."""
    meta, vals = ctx.properties_of(person)
    changes: list[tuple[bytes, bytes | None, bytes | None]] = []
    size = person.properties_size
    timestamp_mode = ctx.config.timestamp_mode
    ord_ = order
    for code, key, text in props:
        current_meta, current_text = meta.get(key), vals.get(key)
        new_meta: bytes | None = None
        new_text: bytes | None = None
        if timestamp_mode:
            new_meta = code + ord_
            if code != UNSET:
                new_text = text
            replace = current_meta is None or outranks(
                new_meta, text, current_meta, current_text or b""
            )
        elif code == SET:
            new_meta, new_text = SET + ord_, text
            replace = text != current_text
        elif code == SET_ONCE:
            new_meta, new_text = SET + ord_, text
            replace = current_text is None
        elif code == SET_THEN_UNSET:
            if current_text is None:
                new_meta, new_text = SET + ord_, text
            replace = True
        else:
            replace = current_text is not None
        if replace:
            changes.append((key, new_meta, new_text))
            if current_text is not None:
                size -= len(key) + len(current_text)
            if new_text is not None:
                size += len(key) + len(new_text)
    if not changes:
        return False, False
    if size > max_bytes and size > person.properties_size:
        return False, True
    for key, new_meta, new_text in changes:
        if new_meta is None:
            meta.pop(key, None)
        else:
            meta[key] = new_meta
        if new_text is None:
            vals.pop(key, None)
        else:
            vals[key] = new_text
    person.properties_size = size
    person.snapshot = None
    person.properties_changed = True
    return True, False


def join_properties(
    ctx: Ctx, into: Person, other: Person
) -> tuple[dict[bytes, bytes], dict[bytes, bytes], int]:
    """``properties.join``: timestamp mode, the outranking state of each key; arrival mode,
    {...other, ...into}."""
    into_meta, into_vals = ctx.properties_of(into)
    other_meta, other_vals = ctx.properties_of(other)
    meta: dict[bytes, bytes] = {}
    vals: dict[bytes, bytes] = {}
    if ctx.config.timestamp_mode:
        for key, m in into_meta.items():
            meta[key] = m
            if key in into_vals:
                vals[key] = into_vals[key]
        for key, m in other_meta.items():
            text = other_vals.get(key)
            if outranks(m, text or b"", meta.get(key), vals.get(key, b"")):
                meta[key] = m
                if text is None:
                    vals.pop(key, None)
                else:
                    vals[key] = text
    else:
        for source_meta, source_vals in ((other_meta, other_vals), (into_meta, into_vals)):
            for key, m in source_meta.items():
                meta[key] = m
                if key in source_vals:
                    vals[key] = source_vals[key]
                else:
                    vals.pop(key, None)
    return meta, vals, sum(len(k) + len(t) for k, t in vals.items())
