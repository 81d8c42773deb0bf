"""The reference model: an in-memory, obviously correct implementation of the whole contract.

It is the executable specification (docs/IDENTITY.md) and the oracle of the differential tests
against the Redis store. Clarity over speed: each tenant maps distinct ids straight to person
records, which hold their members; no trees, no compression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.identity import properties as props
from worker.identity.config import IdentityConfig
from worker.identity.ids import person_id_for
from worker.identity.model import (
    DistinctIdOverride,
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


@dataclass(slots=True)
class _Record:
    person_id: str
    created_at_ms: int
    last_seen_ms: int
    is_identified: bool
    version: int
    members: set[str]
    properties: dict[str, PropertyState] = field(default_factory=dict)

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
class _Tenant:
    owner: dict[str, _Record] = field(default_factory=dict)
    """distinct id -> the record of its person"""


class ReferenceStore:
    """Implements ``worker.store.base.IdentityStore`` in memory."""

    def __init__(self, config: IdentityConfig | None = None) -> None:
        self._config = config or IdentityConfig()
        self._tenants: dict[str, _Tenant] = {}

    @property
    def config(self) -> IdentityConfig:
        return self._config

    def resolve_batch(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
    ) -> list[Resolution]:
        results = []
        for event in events:
            if event.tenant != tenant:
                raise ValueError(f"event {event.uuid} is of tenant {event.tenant!r}")
            prepared = prepare(event, self._config)
            if isinstance(prepared, Resolution):
                results.append(prepared)
            else:
                results.append(self._apply(self._tenants.setdefault(tenant, _Tenant()), prepared))
        return results

    def person_for(self, tenant: str, distinct_id: str) -> Person | None:
        record = self._tenants.get(tenant, _Tenant()).owner.get(distinct_id)
        return record.freeze() if record else None

    def persons(self, tenant: str) -> list[Person]:
        records = {id(r): r for r in self._tenants.get(tenant, _Tenant()).owner.values()}
        return sorted((r.freeze() for r in records.values()), key=lambda p: p.person_id)

    # -- the stateful rules -------------------------------------------------------------------

    def _create(self, state: _Tenant, tenant: str, distinct_id: str, ts_ms: int) -> _Record:
        record = _Record(person_id_for(tenant, distinct_id), ts_ms, ts_ms, False, 0, {distinct_id})
        state.owner[distinct_id] = record
        return record

    def _apply(self, state: _Tenant, op: PreparedOp) -> Resolution:
        event, config = op.event, self._config
        tenant, into, other = event.tenant, event.distinct_id, op.merge_with
        warnings = list(op.warnings)

        if not event.process_person:
            return self._personless(state, event, warnings)

        overrides: list[DistinctIdOverride] = []
        created = merged = two_persons = False
        identify = other is not None
        mine, theirs = state.owner.get(into), (state.owner.get(other) if other else None)

        def refuse(kind: WarningKind) -> None:
            warnings.append(IdentityWarning(kind))

        if other is None:
            person = mine
        elif mine is None and theirs is None:
            person = self._create(state, tenant, into, event.timestamp_ms)
            created = True
            if len(person.members) + 1 > config.max_distinct_ids_per_person:
                refuse(WarningKind.MERGE_LIMIT_EXCEEDED)
            else:
                self._join(state, tenant, person, other, overrides)
                merged = True
        elif mine is None or theirs is None:
            target = mine or theirs
            if target is None:  # pragma: no cover - excluded by the branch above
                raise AssertionError("one of the two persons exists")
            joining = other if mine is not None else into
            if len(target.members) + 1 > config.max_distinct_ids_per_person:
                refuse(WarningKind.MERGE_LIMIT_EXCEEDED)
                person = mine
            else:
                self._join(state, tenant, target, joining, overrides)
                person, merged = target, True
        elif mine is theirs:
            person = mine
        elif theirs.is_identified and not event.merge_dangerously:
            refuse(WarningKind.CANNOT_MERGE_ALREADY_IDENTIFIED)
            person = mine
        elif len(mine.members) + len(theirs.members) > config.max_distinct_ids_per_person:
            refuse(WarningKind.MERGE_LIMIT_EXCEEDED)
            person = mine
        else:
            self._merge(state, mine, theirs, overrides)
            person, merged, two_persons = mine, True, True

        if person is None:
            person = self._create(state, tenant, into, event.timestamp_ms)
            created = True

        changed = merged
        if identify and not person.is_identified:
            person.is_identified = True
            changed = True
        person.created_at_ms = min(person.created_at_ms, event.timestamp_ms)
        person.last_seen_ms = max(person.last_seen_ms, event.timestamp_ms)

        updated = self._updated_properties(person, op)
        if props.properties_size(updated) > config.max_properties_bytes and props.properties_size(
            updated
        ) > props.properties_size(person.properties):
            warnings.append(
                IdentityWarning(
                    WarningKind.PERSON_PROPERTIES_SIZE_VIOLATION,
                    {"reason": "properties_too_large"},
                )
            )
        elif updated != person.properties:
            person.properties = updated
            changed = True

        if changed and not created and not two_persons:
            person.version += 1
        return Resolution(
            event_uuid=event.uuid,
            outcome=Outcome.EMIT,
            person_id=person.person_id,
            person_mode=PersonMode.FULL,
            properties=props.visible(person.properties),
            created_at_ms=person.created_at_ms,
            is_identified=person.is_identified,
            warnings=tuple(warnings),
            overrides=tuple(sorted(overrides, key=lambda o: o.distinct_id)),
            merged=merged,
            person_created=created,
            person_version=person.version,
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
            return personless(event, tuple(warnings))
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
        old = person_id_for(tenant, distinct_id)
        overrides.append(DistinctIdOverride(distinct_id, old, person.person_id))

    def _merge(
        self,
        state: _Tenant,
        into: _Record,
        other: _Record,
        overrides: list[DistinctIdOverride],
    ) -> None:
        """A3.6: ``other``'s person merges into ``into``'s, which keeps its id."""
        for distinct_id in other.members:
            overrides.append(DistinctIdOverride(distinct_id, other.person_id, into.person_id))
            state.owner[distinct_id] = into
        into.members |= other.members
        into.created_at_ms = min(into.created_at_ms, other.created_at_ms)
        into.last_seen_ms = max(into.last_seen_ms, other.last_seen_ms)
        into.version = max(into.version, other.version) + 1
        into.is_identified = True
        if self._config.ordering is OrderingMode.TIMESTAMP:
            into.properties = props.join_timestamp(into.properties, other.properties)
        else:
            into.properties = props.merge_arrival(into.properties, other.properties)
