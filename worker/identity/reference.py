"""The reference model: an in-memory, obviously correct implementation of the whole contract.

It is the executable specification (docs/IDENTITY.md, docs/BUFFER.md) and the oracle of the
differential tests against the Redis store. Clarity over speed: each tenant maps distinct ids
straight to person records, which hold their members; no trees, no compression. The 60-second
buffer is ``worker.identity.buffer``; this module gives it the person rules it applies.

Names, shared with the Lua script: an event's own distinct id is ``into``, the id it asks to
merge with (``PreparedOp.merge_with``) is ``other``; their persons are ``into_person`` and
``other_person``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from worker.identity import properties as props
from worker.identity.buffer import (
    NO_BUFFER,
    BatchResult,
    BufferPolicy,
    BufferStats,
    Released,
    TenantBuffer,
)
from worker.identity.config import IdentityConfig
from worker.identity.deletion import Deletion
from worker.identity.groups import GroupOutcome, TenantGroups, join_memberships
from worker.identity.ids import case_fold, person_id_for
from worker.identity.model import (
    DistinctIdOverride,
    Group,
    IdentityEvent,
    IdentityWarning,
    OrderingMode,
    Outcome,
    Person,
    PersonMode,
    PreparedOp,
    PropertyState,
    Resolution,
    WarningKind,
)
from worker.identity.rules import personless, prepare
from worker.identity.timestamps import last_seen_at


@dataclass(slots=True)
class _Record:
    person_id: str
    created_at_ms: int
    last_seen_ms: int
    is_identified: bool
    version: int
    members: set[str]
    properties: dict[str, PropertyState] = field(default_factory=dict)
    memberships: dict[str, PropertyState] = field(default_factory=dict)
    """group type -> membership state (contract A9, ``worker.identity.groups``)"""

    def freeze(self) -> Person:
        return Person(
            person_id=self.person_id,
            created_at_ms=self.created_at_ms,
            last_seen_ms=self.last_seen_ms,
            is_identified=self.is_identified,
            version=self.version,
            distinct_ids=frozenset(self.members),
            properties=dict(self.properties),
        )


@dataclass(slots=True)
class _Partial:
    """An op applied without its property operations (``ReferenceStore._structure``)."""

    person: _Record
    warnings: list[IdentityWarning]
    overrides: list[DistinctIdOverride]
    created: bool
    merged: bool
    two_persons: bool
    changed: bool
    """merged or newly identified: the version moves (unless created or two_persons)"""
    settled: bool = False
    moved: bool = False


@dataclass(slots=True)
class _Tenant:
    owner: dict[str, _Record] = field(default_factory=dict)
    """distinct id -> the record of its person"""
    buffer: TenantBuffer = field(default_factory=TenantBuffer)
    groups: TenantGroups = field(default_factory=TenantGroups)
    folds: dict[str, int] = field(default_factory=dict)
    """case fold (``ids.case_fold``) -> how many known distinct ids have it"""
    deleted: dict[str, int] = field(default_factory=dict)
    """distinct id -> how many times it was deleted (contract A10: its person id's epoch)"""
    receipts: dict[str, tuple[Resolution, tuple[str, ...]]] = field(default_factory=dict)
    """source -> the resolution given for it and the entry ids it released (replay receipts:
    no TTL here, time is only ``now_ms``; ``forget`` drops them)"""


@dataclass(frozen=True, slots=True)
class _TenantRules:
    """The person rules of one tenant, as ``TenantBuffer`` applies them."""

    store: ReferenceStore
    state: _Tenant

    def apply(self, op: PreparedOp, warning: IdentityWarning | None) -> Resolution:
        return self.store._apply(self.state, op, warning)

    def has_person(self, distinct_id: str) -> bool:
        return distinct_id in self.state.owner

    def splits(self, op: PreparedOp) -> bool:
        return op.event.process_person and self.store.config.ordering is OrderingMode.ARRIVAL

    def structure(self, op: PreparedOp) -> object:
        return self.store._structure(self.state, op, None)

    def settle(self, part: object) -> None:
        self.store._settle(_partial(part))

    def finish(self, op: PreparedOp, part: object) -> Resolution:
        return self.store._finish(self.state, op, _partial(part))


def _partial(part: object) -> _Partial:
    if not isinstance(part, _Partial):  # pragma: no cover - only _structure makes them
        raise TypeError(f"not a partial application: {part!r}")
    return part


class ReferenceStore:
    """Implements ``worker.store.base.BufferingStore`` in memory.

    ``buffer`` is the policy ``resolve_buffered`` and ``release_due`` use, as the Redis store's.
    """

    def __init__(
        self, config: IdentityConfig | None = None, *, buffer: BufferPolicy = NO_BUFFER
    ) -> None:
        self._config = config or IdentityConfig()
        self._buffer = buffer
        self._tenants: dict[str, _Tenant] = {}
        self._buffered_tenants: set[str] = set()

    @property
    def config(self) -> IdentityConfig:
        return self._config

    def resolve_batch(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
    ) -> list[Resolution]:
        """Every event applied at once. Queues of its ids are not released (they wait for
        their due time), as the Redis store does (it calls its script without a buffer
        policy)."""
        return self._resolve(tenant, events, now_ms, NO_BUFFER).resolutions

    def resolve_buffered(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
    ) -> BatchResult:
        return self._resolve(tenant, events, now_ms, self._buffer)

    def release_due(self, tenant: str, now_ms: int, limit: int) -> list[Released]:
        state = self._state(tenant)
        return state.buffer.release_due(_TenantRules(self, state), self._buffer, now_ms, limit)

    def ack(self, tenant: str, entry_ids: Sequence[str]) -> None:
        self._state(tenant).buffer.ack(entry_ids)

    def forget(self, tenant: str, sources: Sequence[str]) -> None:
        """Drop the replay receipts of ``sources``: a later event with one of them is applied
        again."""
        receipts = self._state(tenant).receipts
        for source in sources:
            receipts.pop(source, None)

    def buffered_tenants(self) -> list[str]:
        """Tenants that were ever given a bufferable event while the buffer was on."""
        return sorted(self._buffered_tenants)

    def due_tenants(self, now_ms: int) -> list[str]:
        """Tenants whose buffer has a due time or a lease deadline at or before ``now_ms``."""
        return sorted(
            tenant
            for tenant, state in self._tenants.items()
            if (due := state.buffer.next_due()) is not None and due <= now_ms
        )

    def buffer_stats(self, tenant: str, now_ms: int) -> BufferStats:
        return self._state(tenant).buffer.stats(self._buffer, now_ms)

    def person_for(self, tenant: str, distinct_id: str) -> Person | None:
        record = self._tenants.get(tenant, _Tenant()).owner.get(distinct_id)
        return record.freeze() if record else None

    def persons(self, tenant: str) -> list[Person]:
        records = {id(r): r for r in self._tenants.get(tenant, _Tenant()).owner.values()}
        return sorted((r.freeze() for r in records.values()), key=lambda p: p.person_id)

    def group_types(self, tenant: str) -> list[str]:
        """The tenant's group types, sorted."""
        return sorted(self._tenants.get(tenant, _Tenant()).groups.types)

    def groups(self, tenant: str) -> list[Group]:
        """The tenant's group records, sorted by (type, key)."""
        records = self._tenants.get(tenant, _Tenant()).groups.records
        return [records[k] for k in sorted(records)]

    def memberships(self, tenant: str) -> dict[str, dict[str, PropertyState]]:
        """person id -> its remembered memberships (persons that have any)."""
        records = {id(r): r for r in self._tenants.get(tenant, _Tenant()).owner.values()}
        return {r.person_id: dict(r.memberships) for r in records.values() if r.memberships}

    def delete_person(
        self, tenant: str, *, distinct_id: str | None = None, person_id: str | None = None
    ) -> Deletion | None:
        """Contract A10: forget the person holding ``distinct_id`` (or the person
        ``person_id``): its ids, properties, memberships, case folds and buffered events; each
        of its ids' deletion epoch moves on. ``None`` when there is no such person."""
        if (distinct_id is None) == (person_id is None):
            raise ValueError("give exactly one of distinct_id and person_id")
        state = self._tenants.get(tenant)
        if state is None:
            return None
        if distinct_id is not None:
            record = state.owner.get(distinct_id)
        else:
            found = (r for r in state.owner.values() if r.person_id == person_id)
            record = next(found, None)
        if record is None:
            return None
        ids = frozenset(record.members)
        for member in ids:
            del state.owner[member]
            state.deleted[member] = state.deleted.get(member, 0) + 1
            fold = case_fold(member)
            state.folds[fold] -= 1
            if not state.folds[fold]:
                del state.folds[fold]
        buffered = state.buffer.drop(ids)
        return Deletion(tenant, record.person_id, tuple(sorted(ids)), buffered)

    def _state(self, tenant: str) -> _Tenant:
        return self._tenants.setdefault(tenant, _Tenant())

    def _resolve(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int, policy: BufferPolicy
    ) -> BatchResult:
        for event in events:
            if event.tenant != tenant:
                raise ValueError(f"event {event.uuid} is of tenant {event.tenant!r}")
        prepared = [prepare(event, self._config) for event in events]
        ops = [op for op in prepared if isinstance(op, PreparedOp)]
        if policy.delay_ms > 0 and any(op.event.buffer_payload is not None for op in ops):
            self._buffered_tenants.add(tenant)
        state = self._state(tenant)
        rules = _TenantRules(self, state)
        results: list[Resolution] = []
        released: list[Released] = []
        for op in prepared:
            if isinstance(op, Resolution):
                results.append(op)
                continue
            source = op.event.source
            receipt = state.receipts.get(source) if source else None
            if receipt is not None:
                for name in receipt[1]:
                    state.buffer.release_again(name, policy, now_ms, released)
                results.append(receipt[0])
                continue
            first = len(released)
            resolution = state.buffer.resolve(op, rules, policy, now_ms, released)
            if source:
                names = tuple(r.entry_id for r in released[first:])
                state.receipts[source] = (resolution, names)
            results.append(resolution)
        return BatchResult(results, released)

    # -- the stateful rules -------------------------------------------------------------------

    def _create(self, state: _Tenant, tenant: str, distinct_id: str, ts_ms: int) -> _Record:
        person_id = _person_id(state, tenant, distinct_id)
        last_seen = last_seen_at(ts_ms, self._config.last_seen_resolution_ms)
        record = _Record(person_id, ts_ms, last_seen, False, 0, {distinct_id})
        state.owner[distinct_id] = record
        return record

    def _apply(
        self, state: _Tenant, op: PreparedOp, warning: IdentityWarning | None = None
    ) -> Resolution:
        """The stateful rules (A3.3-A3.6, A4, A6) for one op. ``warning`` (the buffer's
        ``buffer_overflow``) comes after the stateless warnings, before the rules' own (a
        personless event has no others)."""
        if not op.event.process_person:
            extra = [warning] if warning else []
            grouped = state.groups.apply(op.event, op.groups, None, self._config)
            resolution = self._personless(state, op.event, [*op.warnings, *extra])
            return _with_groups(resolution, grouped)
        return self._finish(state, op, self._structure(state, op, warning))

    def _structure(
        self, state: _Tenant, op: PreparedOp, warning: IdentityWarning | None
    ) -> _Partial:
        """The op without its property operations (an op that processes its person): the
        person created, joined or merged, identified, created_at/last_seen; the version bump
        is left pending (``_settle`` or ``_finish``)."""
        event, config = op.event, self._config
        tenant, into, other = event.tenant, event.distinct_id, op.merge_with
        warnings = [*op.warnings, *([warning] if warning else [])]

        overrides: list[DistinctIdOverride] = []
        created = merged = two_persons = False
        identify = other is not None
        into_person = state.owner.get(into)
        other_person = state.owner.get(other) if other is not None else None
        known = (into in state.owner, other is None or other in state.owner)

        def refuse(kind: WarningKind) -> None:
            warnings.append(IdentityWarning(kind))

        if other is None:
            person = into_person
        elif into_person is None and other_person is None:
            # A3.3: one new person, created by into, holds both.
            person = self._create(state, tenant, into, event.timestamp_ms)
            created = True
            if len(person.members) + 1 > config.max_distinct_ids_per_person:
                refuse(WarningKind.MERGE_LIMIT_EXCEEDED)
            else:
                self._join(state, tenant, person, other, overrides)
                merged = True
        elif into_person is None or other_person is None:
            # A3.4: the id without a person joins the other id's person.
            target = into_person or other_person
            if target is None:  # pragma: no cover - excluded by the branch above
                raise AssertionError("one of the two persons exists")
            joining = other if into_person is not None else into
            if len(target.members) + 1 > config.max_distinct_ids_per_person:
                refuse(WarningKind.MERGE_LIMIT_EXCEEDED)
                person = into_person
            else:
                self._join(state, tenant, target, joining, overrides)
                person, merged = target, True
        elif into_person is other_person:
            # A3.5: already one person.
            person = into_person
        elif other_person.is_identified and not event.merge_dangerously:
            # A3.6, refused: the merge guard.
            refuse(WarningKind.CANNOT_MERGE_ALREADY_IDENTIFIED)
            person = into_person
        elif (
            len(into_person.members) + len(other_person.members)
            > config.max_distinct_ids_per_person
        ):
            refuse(WarningKind.MERGE_LIMIT_EXCEEDED)
            person = into_person
        else:
            # A3.6: other's person merges into into's person.
            self._merge(state, into_person, other_person, overrides)
            person, merged, two_persons = into_person, True, True

        if person is None:
            person = self._create(state, tenant, into, event.timestamp_ms)
            created = True

        changed = merged
        if identify and not person.is_identified:
            person.is_identified = True
            changed = True
        person.created_at_ms = min(person.created_at_ms, event.timestamp_ms)
        person.last_seen_ms = max(
            person.last_seen_ms,
            last_seen_at(event.timestamp_ms, self._config.last_seen_resolution_ms),
        )
        fresh = [
            distinct_id
            for distinct_id, was_known in zip((into, other), known, strict=True)
            if distinct_id is not None and not was_known and distinct_id in state.owner
        ]
        if _case_collision(state, fresh):  # informational, after the merge warnings
            warnings.append(IdentityWarning(WarningKind.DISTINCT_ID_CASE_COLLISION))
        return _Partial(person, warnings, overrides, created, merged, two_persons, changed)

    @staticmethod
    def _settle(part: _Partial) -> None:
        """The pending version bump of ``part``, now: entries are released between the op's
        structure and its property operations (arrival order, docs/BUFFER.md)."""
        if part.changed and not part.created and not part.two_persons:
            part.person.version += 1
        part.moved = part.created or part.changed
        part.settled = True

    def _finish(self, state: _Tenant, op: PreparedOp, part: _Partial) -> Resolution:
        """The op's property operations, on the person holding its id now, and its
        resolution. After ``_settle`` they bump the version on their own."""
        event, config, warnings = op.event, self._config, part.warnings
        person = state.owner[event.distinct_id] if part.settled else part.person
        created, two_persons = part.created, part.two_persons
        changed = False if part.settled else part.changed

        updated = self._updated_properties(person, op)
        size = props.properties_size(updated)
        if size > config.max_properties_bytes and size > props.properties_size(person.properties):
            warnings.append(
                IdentityWarning(
                    WarningKind.PERSON_PROPERTIES_SIZE_VIOLATION,
                    {"reason": "properties_too_large"},
                )
            )
        elif not props.same_registers(updated, person.properties):
            person.properties = updated
            changed = True

        if part.settled:
            if changed:
                person.version += 1
            moved = part.moved or changed
        else:
            if changed and not created and not two_persons:
                person.version += 1
            moved = created or changed
        grouped = state.groups.apply(event, op.groups, person.memberships, config)
        person.memberships = dict(grouped.memberships or {})
        warnings += grouped.warnings
        return Resolution(
            event_uuid=event.uuid,
            outcome=Outcome.EMIT,
            person_id=person.person_id,
            person_mode=PersonMode.FULL,
            properties=props.visible(person.properties),
            created_at_ms=person.created_at_ms,
            is_identified=person.is_identified,
            warnings=tuple(warnings),
            overrides=tuple(sorted(part.overrides, key=lambda o: o.distinct_id)),
            merged=part.merged,
            person_created=created,
            person_version=person.version,
            person_changed=moved,
            groups=grouped.groups,
            group_changes=grouped.changes,
        )

    def _updated_properties(self, person: _Record, op: PreparedOp) -> dict[str, PropertyState]:
        ts, uuid = op.event.timestamp_ms, op.event.uuid
        if self._config.ordering is OrderingMode.TIMESTAMP:
            return props.apply_timestamp(person.properties, op.updates, ts, uuid)
        return props.apply_arrival(person.properties, op.updates, ts, uuid)

    def _personless(
        self, state: _Tenant, event: IdentityEvent, warnings: list[IdentityWarning]
    ) -> Resolution:
        person = state.owner.get(event.distinct_id)
        if person is None:
            person_id = _person_id(state, event.tenant, event.distinct_id)
            return personless(event, tuple(warnings), person_id=person_id)
        upgrade = event.timestamp_ms > person.created_at_ms + self._config.force_upgrade_after_ms
        return personless(
            event,
            tuple(warnings),
            person_id=person.person_id,
            created_at_ms=person.created_at_ms,
            is_identified=person.is_identified,
            mode=PersonMode.FORCE_UPGRADE if upgrade else PersonMode.PROPERTYLESS,
        )

    @staticmethod
    def _join(
        state: _Tenant,
        tenant: str,
        person: _Record,
        distinct_id: str,
        overrides: list[DistinctIdOverride],
    ) -> None:
        """A distinct id without a person joins ``person`` (A3.3 for other, A3.4); its
        personless events carried ``person_id_for(tenant, distinct_id)``."""
        person.members.add(distinct_id)
        state.owner[distinct_id] = person
        old = _person_id(state, tenant, distinct_id)
        overrides.append(DistinctIdOverride(distinct_id, old, person.person_id))

    def _merge(
        self,
        state: _Tenant,
        into_person: _Record,
        other_person: _Record,
        overrides: list[DistinctIdOverride],
    ) -> None:
        """A3.6: ``other_person`` merges into ``into_person``, which keeps its id."""
        for distinct_id in other_person.members:
            overrides.append(
                DistinctIdOverride(distinct_id, other_person.person_id, into_person.person_id)
            )
            state.owner[distinct_id] = into_person
        into_person.members |= other_person.members
        into_person.created_at_ms = min(into_person.created_at_ms, other_person.created_at_ms)
        into_person.last_seen_ms = max(into_person.last_seen_ms, other_person.last_seen_ms)
        into_person.version = max(into_person.version, other_person.version) + 1
        into_person.is_identified = True
        into_person.memberships = dict(
            join_memberships(
                into_person.memberships, other_person.memberships, self._config.ordering
            )
        )
        if self._config.ordering is OrderingMode.TIMESTAMP:
            into_person.properties = props.join_timestamp(
                into_person.properties, other_person.properties
            )
        else:
            into_person.properties = props.merge_arrival(
                into_person.properties, other_person.properties
            )


def _person_id(state: _Tenant, tenant: str, distinct_id: str) -> str:
    """The id of the person ``distinct_id`` creates (A2, or A10 after its deletions)."""
    return person_id_for(tenant, distinct_id, state.deleted.get(distinct_id, 0))


def _case_collision(state: _Tenant, fresh: list[str]) -> bool:
    """Whether an id of ``fresh`` (ids the op made known, in order) has the case fold of an
    id known before it; each is counted as known then (docs/IDENTITY.md, "Case collisions")."""
    hit = False
    for distinct_id in fresh:
        fold = case_fold(distinct_id)
        count = state.folds.get(fold, 0)
        hit = hit or count > 0
        state.folds[fold] = count + 1
    return hit


def _with_groups(resolution: Resolution, grouped: GroupOutcome) -> Resolution:
    """``resolution`` with the group rules' outcome: their warnings last."""
    return replace(
        resolution,
        warnings=(*resolution.warnings, *grouped.warnings),
        groups=grouped.groups,
        group_changes=grouped.changes,
    )
