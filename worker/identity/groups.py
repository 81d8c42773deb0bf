"""Groups (companies), contract A9: pure rules beside the person rules (docs/IDENTITY.md,
"Groups"). No I/O, no clock.

- ``prepare_groups``: the stateless part (one entry per type, no empty or NUL type or key, the
  property length limits of A4).
- ``TenantGroups.apply``: the stateful part for one event, run after the person rules: the
  tenant's group-type cap, the groups' property updates (A4, same ordering mode and size limit),
  the person's remembered memberships, and the event's groups with their properties.
- ``join_memberships``: what a merge (A3.6) does with two persons' memberships.

A membership is kept as a ``PropertyState`` (op ``set``, value the group key) under its group
type, so it is ordered exactly as a person property: timestamp mode, the later ``(ts, uuid)``
wins; arrival mode, the latest applied wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from worker.identity import properties as props
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    Group,
    GroupChange,
    GroupInput,
    GroupView,
    IdentityEvent,
    IdentityWarning,
    JsonValue,
    OrderingMode,
    PropertyState,
    PropertyUpdates,
    WarningKind,
)

Memberships = Mapping[str, PropertyState]
"""group type -> the membership state (value: the group key)."""


def usable(name: str) -> bool:
    """A group type or key the store can hold: not empty, no NUL (the field separator)."""
    return bool(name) and "\0" not in name


def prepare_groups(
    groups: tuple[GroupInput, ...], length_violation: Callable[[PropertyUpdates], str | None]
) -> tuple[tuple[GroupInput, ...], tuple[IdentityWarning, ...]]:
    """The event's groups the stateful rules see, and the stateless warnings: an unusable type
    or key is dropped, a second entry for a type is dropped (the first wins), and an update
    breaking a length limit (``rules.length_violation``, A4's limits) is refused whole
    (``group_properties_size_violation``)."""
    kept: list[GroupInput] = []
    seen: set[str] = set()
    warnings: list[IdentityWarning] = []
    for group in groups:
        if not (usable(group.group_type) and usable(group.key)) or group.group_type in seen:
            continue
        seen.add(group.group_type)
        violation = length_violation(group.updates)
        if violation is not None:
            warnings.append(
                IdentityWarning(WarningKind.GROUP_PROPERTIES_SIZE_VIOLATION, {"reason": violation})
            )
            group = GroupInput(group.group_type, group.key, group.attach, group.remember)
        kept.append(group)
    return tuple(kept), tuple(warnings)


def join_memberships(into: Memberships, other: Memberships, ordering: OrderingMode) -> Memberships:
    """A merge: the survivor (``into``) keeps its membership per type and takes ``other``'s
    where it has none; timestamp mode, the newer per type."""
    if ordering is OrderingMode.TIMESTAMP:
        return props.join_timestamp(into, other)
    return props.merge_arrival(into, other)


def _apply(
    states: Mapping[str, PropertyState],
    updates: PropertyUpdates,
    event: IdentityEvent,
    ordering: OrderingMode,
) -> dict[str, PropertyState]:
    if ordering is OrderingMode.TIMESTAMP:
        return props.apply_timestamp(states, updates, event.timestamp_ms, event.uuid)
    return props.apply_arrival(states, updates, event.timestamp_ms, event.uuid)


@dataclass(frozen=True, slots=True)
class GroupOutcome:
    """What the group rules decided for one event."""

    groups: dict[str, GroupView]
    changes: tuple[GroupChange, ...]
    memberships: Memberships | None
    """The person's memberships after the event (``None``: no person)."""
    warnings: tuple[IdentityWarning, ...]


@dataclass(slots=True)
class TenantGroups:
    """One tenant's groups: its group types in the order they were first named, and its group
    records by ``(group_type, key)``."""

    types: list[str] = field(default_factory=list)
    records: dict[tuple[str, str], Group] = field(default_factory=dict)

    def apply(
        self,
        event: IdentityEvent,
        groups: tuple[GroupInput, ...],
        memberships: Memberships | None,
        config: IdentityConfig,
    ) -> GroupOutcome:
        """The group rules for one event (prepared ``groups``), after the person rules.
        ``memberships`` is the person's (full mode) or ``None`` (personless): a personless
        event carries its explicit groups only and changes no membership."""
        warnings: list[IdentityWarning] = []
        kept: list[GroupInput] = []
        for group in groups:
            if group.group_type not in self.types:
                if len(self.types) >= config.max_group_types:
                    warnings.append(IdentityWarning(WarningKind.GROUP_TYPE_LIMIT))
                    continue
                self.types.append(group.group_type)
            kept.append(group)

        changes: list[GroupChange] = []
        for group in kept:
            if group.updates.is_empty:
                continue
            ident = (group.group_type, group.key)
            record = self.records.get(ident)
            before = record.properties if record is not None else {}
            updated = _apply(before, group.updates, event, config.ordering)
            size = props.properties_size(updated)
            if size > config.max_properties_bytes and size > props.properties_size(before):
                warnings.append(
                    IdentityWarning(
                        WarningKind.GROUP_PROPERTIES_SIZE_VIOLATION,
                        {"reason": "properties_too_large"},
                    )
                )
            elif not props.same_registers(updated, before):
                version = (record.version if record is not None else 0) + 1
                self.records[ident] = Group(group.group_type, group.key, version, updated)
                changes.append(
                    GroupChange(group.group_type, group.key, version, props.visible(updated))
                )

        keys: dict[str, str] = {}
        if memberships is not None:
            remembered = PropertyUpdates(
                set=tuple((g.group_type, g.key) for g in kept if g.remember)
            )
            if not remembered.is_empty:
                memberships = _apply(memberships, remembered, event, config.ordering)
            keys = {t: str(s.value) for t, s in memberships.items()}
        for group in kept:
            if group.attach:
                keys[group.group_type] = group.key
        view = {t: GroupView(k, self.properties_of(t, k)) for t, k in sorted(keys.items())}
        return GroupOutcome(view, tuple(changes), memberships, tuple(warnings))

    def properties_of(self, group_type: str, key: str) -> dict[str, JsonValue]:
        record = self.records.get((group_type, key))
        return props.visible(record.properties) if record is not None else {}
