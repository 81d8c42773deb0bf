"""The stateful identity rules, one op at a time (``rules.lua``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from worker.store import protocol
from worker.store.engine.call import Op
from worker.store.engine.context import Ctx, Person
from worker.store.engine.groups import apply_groups, merge_groups
from worker.store.engine.properties import join_properties, update
from worker.store.engine.reply import entry
from worker.store.engine.state import EngineError

_FULL = protocol.PERSON_MODES["full"]


_PROPERTYLESS = protocol.PERSON_MODES["propertyless"]


_FORCE_UPGRADE = protocol.PERSON_MODES["force_upgrade"]


def _widen(ctx: Ctx, root: bytes, person: Person, op: Op) -> None:
    ts = op.ts
    if ts < person.created_at:
        person.created_at, person.created_at_text = ts, op.ts_text
    if ctx.seen_at(ts) > person.last_seen:
        person.last_seen = ctx.seen_at(ts)
    ctx.dirty.add(root)


def _moves(ctx: Ctx, person: Person, op: Op) -> bool:
    return op.ts < person.created_at or ctx.seen_at(op.ts) > person.last_seen


def _full_entry(
    ctx: Ctx,
    op: Op,
    person: Person,
    merged: bool,
    created: bool,
    warnings: list[str],
    overrides: Sequence[tuple[bytes, str, str]],
    moved: bool,
) -> bytes:
    """The reply entry of an op on ``person`` (person mode full), its group operations applied
    last (``groups.apply``: their warnings after the op's)."""
    groups_text, changes_text, group_warnings = apply_groups(ctx, op, person)
    return entry(
        person.person_id,
        _FULL,
        person.created_at_text,
        person.identified,
        ctx.snapshot(person),
        merged,
        created,
        warnings + group_warnings,
        overrides,
        person.version,
        moved,
        groups_text,
        changes_text,
    )


def _apply_personless(ctx: Ctx, op: Op, warning: str | None) -> bytes:
    """A6: personless. Nothing is created or updated; a known id's person is named."""
    root = ctx.find(op.into)
    groups_text, changes_text, group_warnings = apply_groups(ctx, op, None)
    warnings = ([warning] if warning else []) + group_warnings
    person_id, mode, created_at, identified = op.into_person_id, _PROPERTYLESS, None, False
    if root is not None:
        person = ctx.load(root)
        person_id, created_at, identified = (
            person.person_id,
            person.created_at_text,
            person.identified,
        )
        if op.ts > person.created_at + ctx.config.force_upgrade_ms:
            mode = _FORCE_UPGRADE
    return entry(
        person_id,
        mode,
        created_at,
        identified,
        b"{}",
        False,
        False,
        warnings,
        (),
        None,
        False,
        groups_text,
        changes_text,
    )


def _merge(
    ctx: Ctx,
    into_root: bytes,
    into_person: Person,
    other_root: bytes,
    other_person: Person,
    overrides: list[tuple[bytes, str, str]],
) -> bytes:
    other_ids = ctx.members_of(other_root, other_person)
    overrides.extend((i, other_person.person_id, into_person.person_id) for i in other_ids)
    big, small, small_ids, big_person, small_person = (
        into_root,
        other_root,
        other_ids,
        into_person,
        other_person,
    )
    if other_person.id_count > into_person.id_count:
        big, small, big_person, small_person = other_root, into_root, other_person, into_person
        small_ids = ctx.members_of(into_root, into_person)
    ctx.union(big, small, small_ids, small_person, big_person)
    merge_groups(ctx, into_person, other_person)
    meta, vals, size = join_properties(ctx, into_person, other_person)
    first = other_person if other_person.created_at < into_person.created_at else into_person
    merged = Person(
        person_id=into_person.person_id,
        created_at=first.created_at,
        created_at_text=first.created_at_text,
        last_seen=max(into_person.last_seen, other_person.last_seen),
        identified=True,
        version=max(into_person.version, other_person.version) + 1,
        id_count=into_person.id_count + other_person.id_count,
        spilled=big_person.spilled,
        others=big_person.others,
        stored_members=big_person.stored_members,
        meta=meta,
        vals=vals,
        properties_size=size,
        properties_changed=True,
    )
    ctx.persons.pop(small, None)
    ctx.dirty.discard(small)
    ctx.persons[big] = merged
    ctx.dirty.add(big)
    return big


@dataclass(slots=True)
class Part:
    """``rules.structure``'s part: the op without its property operations."""

    root: bytes
    warnings: list[str]
    overrides: list[tuple[bytes, str, str]]
    merged: bool
    created: bool
    remade: bool
    bump: bool
    moved: bool
    settled: bool = False

    def __init__(  # compiled: native code (the generated one is interpreted)
        self,
        root: bytes,
        warnings: list[str],
        overrides: list[tuple[bytes, str, str]],
        merged: bool,
        created: bool,
        remade: bool,
        bump: bool,
        moved: bool,
        settled: bool = False,
    ) -> None:
        self.root = root
        self.warnings = warnings
        self.overrides = overrides
        self.merged = merged
        self.created = created
        self.remade = remade
        self.bump = bump
        self.moved = moved
        self.settled = settled


def apply(ctx: Ctx, op: Op, warning: str | None = None) -> bytes:
    """``rules.apply``: the op's reply entry; ``warning`` (or None) first in its warnings."""
    ctx.rederive(op)
    if not op.process:
        return _apply_personless(ctx, op, warning)
    if not op.merge and not op.props:
        known = ctx.find(op.into)
        if known is not None:  # the common event: a plain track of a known id
            person = ctx.load(known)
            if _moves(ctx, person, op):
                _widen(ctx, known, person, op)
            warnings = [warning] if warning else []
            return _full_entry(ctx, op, person, False, False, warnings, (), False)
    return finish(ctx, op, structure(ctx, op, warning))


def structure(ctx: Ctx, op: Op, warning: str | None) -> Part:
    """``rules.structure``: the op without its property operations, its version bump still
    pending."""
    ctx.rederive(op)
    warnings: list[str] = [warning] if warning else []
    overrides: list[tuple[bytes, str, str]] = []
    merged = created = remade = bump = False
    limit = protocol.WARNING_MERGE_LIMIT
    root: bytes
    into_root = ctx.find(op.into)
    other_new = op.merge and not ctx.get(op.other)
    if not op.merge:
        if into_root is not None:
            root = into_root
        else:
            root, created = op.into, True
            ctx.create(op.into, op.into_person_id, op.ts, op.ts_text)
    else:
        other_root = ctx.find(op.other)
        if into_root is None and other_root is None:  # A3.3
            root, created = op.into, True
            person = ctx.create(op.into, op.into_person_id, op.ts, op.ts_text)
            if ctx.config.max_ids < 2:
                warnings.append(limit)
            else:
                ctx.join(op.other, root, person)
                overrides = [(op.other, op.other_person_id, op.into_person_id)]
                merged = True
        elif into_root is not None and other_root is None:  # A3.4: other joins into's person
            root = into_root
            into_person = ctx.load(into_root)
            if into_person.id_count >= ctx.config.max_ids:
                warnings.append(limit)
            else:
                ctx.join(op.other, into_root, into_person)
                overrides = [(op.other, op.other_person_id, into_person.person_id)]
                merged = bump = True
        elif into_root is None and other_root is not None:  # A3.4: into joins other's person
            other_person = ctx.load(other_root)
            if other_person.id_count >= ctx.config.max_ids:
                warnings.append(limit)
                root, created = op.into, True
                ctx.create(op.into, op.into_person_id, op.ts, op.ts_text)
            else:
                root = other_root
                ctx.join(op.into, other_root, other_person)
                overrides = [(op.into, op.into_person_id, other_person.person_id)]
                merged = bump = True
        elif into_root is not None and other_root is not None and into_root == other_root:  # A3.5
            root = into_root
        elif into_root is not None and other_root is not None:  # A3.6
            into_person = ctx.load(into_root)
            other_person = ctx.load(other_root)
            root = into_root
            if other_person.identified and not op.dangerous:
                warnings.append(protocol.WARNING_ALREADY_IDENTIFIED)
            elif into_person.id_count + other_person.id_count > ctx.config.max_ids:
                warnings.append(limit)
            else:
                overrides = []
                root = _merge(ctx, into_root, into_person, other_root, other_person, overrides)
                merged = remade = True
    person = ctx.load(root)
    if _moves(ctx, person, op):
        _widen(ctx, root, person, op)
    if op.merge and not person.identified:
        person.identified = True
        bump = True
    fresh: list[bytes] = []
    if into_root is None:
        fresh.append(op.into)
    if other_new and ctx.get(op.other):
        fresh.append(op.other)
    if fresh and ctx.collides(fresh):
        warnings.append(protocol.WARNING_CASE_COLLISION)
    return Part(root, warnings, overrides, merged, created, remade, bump, created or remade)


def settle(ctx: Ctx, part: Part) -> None:
    """``rules.settle``: the pending bump applied now (a release comes between the op's
    structure and its property operations: docs/BUFFER.md, "arrival order")."""
    if part.bump and not part.created and not part.remade:
        ctx.load(part.root).version += 1
        part.moved = True
    part.settled = True


def finish(ctx: Ctx, op: Op, part: Part) -> bytes:
    """``rules.finish``: the op's property and group operations, on the person that holds
    ``op.into`` now; its reply entry."""
    root = part.root
    if part.settled:
        found = ctx.find(op.into)
        if found is None:
            raise EngineError(f"no person holds {op.into!r} after its structure")
        root = found
    person = ctx.load(root)
    warnings = part.warnings
    changed = False
    if op.props:
        changed, refused = update(ctx, person, op)
        if refused:
            warnings.append(protocol.WARNING_PROPERTIES_SIZE)
    moved = part.moved
    if part.settled:
        if changed:
            person.version += 1
            moved = True
    elif (part.bump or changed) and not part.created and not part.remade:
        person.version += 1
        moved = True
    if changed or part.settled or part.merged or part.created or part.bump or part.remade:
        ctx.dirty.add(root)
    return _full_entry(ctx, op, person, part.merged, part.created, warnings, part.overrides, moved)
