"""Frozen value types of the identity layer.

Everything here is pure data: no I/O, no clock. Times are integer milliseconds since the Unix
epoch, passed in by the caller. Property values are JSON values (``JsonValue``); the Redis store
carries them as canonical JSON text and converts back at its boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

from worker.fast_init import fast_init

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None


class EventKind(StrEnum):
    """The three kinds of input event (contract A1)."""

    TRACK = "track"
    IDENTIFY = "identify"
    ALIAS = "alias"


class PersonMode(StrEnum):
    """How the emitted event relates to a person (contract A6, A7)."""

    FULL = "full"
    PROPERTYLESS = "propertyless"
    FORCE_UPGRADE = "force_upgrade"


class OrderingMode(StrEnum):
    """How property updates are ordered (contract A4)."""

    TIMESTAMP = "timestamp"
    ARRIVAL = "arrival"


class PropertyOp(StrEnum):
    """The operation that produced a property's current state."""

    SET = "set"
    SET_ONCE = "set_once"
    UNSET = "unset"


class Outcome(StrEnum):
    """What the pipeline does with an event after resolution."""

    EMIT = "emit"
    """Emit the enriched event (possibly personless)."""
    REJECT = "reject"
    """Do not emit the event; its warnings say why (e.g. an over-long distinct id)."""
    BUFFER = "buffer"
    """The event waits in the buffer (A8); it comes back, resolved, when released."""


class WarningKind(StrEnum):
    """Ingestion warning types. The values are the names written to the warnings topic."""

    CANNOT_MERGE_WITH_ILLEGAL_DISTINCT_ID = "cannot_merge_with_illegal_distinct_id"
    CANNOT_MERGE_ALREADY_IDENTIFIED = "cannot_merge_already_identified"
    MERGE_LIMIT_EXCEEDED = "merge_limit_exceeded"
    PERSON_PROPERTIES_SIZE_VIOLATION = "person_properties_size_violation"
    SKIPPING_EVENT_INVALID_DISTINCT_ID = "skipping_event_invalid_distinct_id"
    ILLEGAL_DISTINCT_ID = "illegal_distinct_id"
    INVALID_EVENT_WHEN_PROCESS_PERSON_PROFILE_IS_FALSE = (
        "invalid_event_when_process_person_profile_is_false"
    )
    EVENT_TIMESTAMP_IN_FUTURE = "event_timestamp_in_future"
    BUFFER_OVERFLOW = "buffer_overflow"
    IGNORED_INVALID_TIMESTAMP = "ignored_invalid_timestamp"
    INVALID_PROCESS_PERSON_PROFILE = "invalid_process_person_profile"
    GROUP_TYPE_LIMIT = "group_type_limit"
    GROUP_PROPERTIES_SIZE_VIOLATION = "group_properties_size_violation"
    DISTINCT_ID_CASE_COLLISION = "distinct_id_case_collision"
    """Informational: the event made a distinct id known that differs only by ASCII case from
    another known id of its tenant; it got its own person all the same (ids are case-sensitive).
    """


@dataclass(frozen=True, slots=True)
class IdentityWarning:
    """A typed ingestion warning; ``details`` holds short, non-personal context."""

    kind: WarningKind
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PropertyUpdates:
    """The ``$set`` / ``$set_once`` / ``$unset`` operations carried by one event.

    Pairs keep the order they had in the event. A key may appear in several groups; the
    ordering mode decides the outcome (contract A4).
    """

    set: tuple[tuple[str, JsonValue], ...] = ()
    set_once: tuple[tuple[str, JsonValue], ...] = ()
    unset: tuple[str, ...] = ()

    def __init__(
        self,
        set: tuple[tuple[str, JsonValue], ...] = (),
        set_once: tuple[tuple[str, JsonValue], ...] = (),
        unset: tuple[str, ...] = (),
    ) -> None:  # compiled: native code (``fast_init``)
        self.set = set  # type: ignore[misc]
        self.set_once = set_once  # type: ignore[misc]
        self.unset = unset  # type: ignore[misc]

    @property
    def is_empty(self) -> bool:
        return not (self.set or self.set_once or self.unset)


fast_init(PropertyUpdates)


NO_UPDATES = PropertyUpdates()


@dataclass(frozen=True, slots=True)
class IdentityEvent:
    """One event as the identity layer sees it.

    ``other_id`` is the anonymous id of an identify or the alias of an alias; ``None`` for a
    track or an identify without an anonymous id. ``timestamp_ms`` is already skew-corrected
    and clamped (see ``timestamps.normalize_timestamp``).
    """

    tenant: str
    kind: EventKind
    distinct_id: str
    uuid: str
    timestamp_ms: int
    other_id: str | None = None
    merge_dangerously: bool = False
    process_person: bool = True
    updates: PropertyUpdates = NO_UPDATES
    buffer_payload: bytes | None = None
    """Set on a bufferable event (a backend event that merges nothing, contract A8): it may
    wait in the buffer, which keeps this payload and hands it back on release. The identity
    rules ignore it; a store without a buffer applies the event at once."""
    source: str | None = None
    """Where the event came from: its input message's position (``topic/partition/offset``,
    ``#i`` appended for element ``i`` of a message holding several events), or ``None``. A
    store keeps a receipt of what it answered for a source until the pipeline says the input
    is committed (``BufferingStore.forget``), and answers a replay of that source from the
    receipt, without applying it again (contract A12)."""
    groups: tuple[GroupInput, ...] = ()
    """The groups the event names (contract A9, docs/IDENTITY.md "Groups"): to attach it to,
    to remember on its person, or whose properties it updates."""

    def __init__(
        self,
        tenant: str,
        kind: EventKind,
        distinct_id: str,
        uuid: str,
        timestamp_ms: int,
        other_id: str | None = None,
        merge_dangerously: bool = False,
        process_person: bool = True,
        updates: PropertyUpdates = NO_UPDATES,
        buffer_payload: bytes | None = None,
        source: str | None = None,
        groups: tuple[GroupInput, ...] = (),
    ) -> None:  # compiled: native code (``fast_init``)
        self.tenant = tenant  # type: ignore[misc]
        self.kind = kind  # type: ignore[misc]
        self.distinct_id = distinct_id  # type: ignore[misc]
        self.uuid = uuid  # type: ignore[misc]
        self.timestamp_ms = timestamp_ms  # type: ignore[misc]
        self.other_id = other_id  # type: ignore[misc]
        self.merge_dangerously = merge_dangerously  # type: ignore[misc]
        self.process_person = process_person  # type: ignore[misc]
        self.updates = updates  # type: ignore[misc]
        self.buffer_payload = buffer_payload  # type: ignore[misc]
        self.source = source  # type: ignore[misc]
        self.groups = groups  # type: ignore[misc]


fast_init(IdentityEvent)


@dataclass(frozen=True, slots=True)
class PropertyState:
    """Per-key state of a person property.

    In ``timestamp`` mode the state is a last-writer-wins register ordered by
    ``(ts_ms, uuid)`` of the event that wrote it; an ``UNSET`` state is a tombstone whose
    ``value`` is ``None`` and which is not visible. In ``arrival`` mode only ``SET`` states
    exist and the order fields record the last writer.
    """

    op: PropertyOp
    value: JsonValue
    ts_ms: int
    uuid: str


@dataclass(frozen=True, slots=True)
class Person:
    """A person: the record held at the root of a union-find tree."""

    person_id: str
    created_at_ms: int
    """The earliest event timestamp applied to the person (its first-seen time)."""
    last_seen_ms: int
    is_identified: bool
    version: int
    distinct_ids: frozenset[str]
    properties: Mapping[str, PropertyState]

    @property
    def visible_properties(self) -> dict[str, JsonValue]:
        return {k: s.value for k, s in self.properties.items() if s.op is not PropertyOp.UNSET}


@dataclass(frozen=True, slots=True)
class DistinctIdOverride:
    """A distinct id whose person changed: past events under ``old_person_id`` now belong to
    ``new_person_id`` (contract A7)."""

    distinct_id: str
    old_person_id: str
    new_person_id: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """What the identity layer decided for one event.

    For an emitted event, ``person_id`` and ``person_mode`` are set and ``properties`` is the
    person's visible properties after this event's own updates (empty for personless events).
    """

    event_uuid: str
    outcome: Outcome
    person_id: str | None
    person_mode: PersonMode | None
    properties: Mapping[str, JsonValue]
    created_at_ms: int | None
    is_identified: bool
    warnings: tuple[IdentityWarning, ...] = ()
    overrides: tuple[DistinctIdOverride, ...] = ()
    merged: bool = False
    """True when this event merged two persons or joined an id to a person."""
    person_created: bool = False
    """True when this event created a person."""
    person_version: int | None = None
    """The version of the person after this event (full mode only): it grows with every
    change, so consumers of person changes can ignore stale records."""
    person_changed: bool = False
    """The event created its person or moved its version (full mode only): the person's new
    state is announced on the person-changes topic. Part of the answer, so a replay (answered
    from the store's receipt) announces exactly what the first run did."""
    groups: Mapping[str, GroupView] = field(default_factory=dict)
    """The event's groups by group type (contract A9): the person's remembered ones (full
    mode), overlaid by the event's own, each with its properties after the event."""
    group_changes: tuple[GroupChange, ...] = ()
    """The groups whose properties this event changed, with their new state."""

    def __init__(
        self,
        event_uuid: str,
        outcome: Outcome,
        person_id: str | None,
        person_mode: PersonMode | None,
        properties: Mapping[str, JsonValue],
        created_at_ms: int | None,
        is_identified: bool,
        warnings: tuple[IdentityWarning, ...] = (),
        overrides: tuple[DistinctIdOverride, ...] = (),
        merged: bool = False,
        person_created: bool = False,
        person_version: int | None = None,
        person_changed: bool = False,
        groups: Mapping[str, GroupView] | None = None,
        group_changes: tuple[GroupChange, ...] = (),
    ) -> None:  # compiled: native code (``fast_init``); ``None`` groups: a new dict
        self.event_uuid = event_uuid  # type: ignore[misc]
        self.outcome = outcome  # type: ignore[misc]
        self.person_id = person_id  # type: ignore[misc]
        self.person_mode = person_mode  # type: ignore[misc]
        self.properties = properties  # type: ignore[misc]
        self.created_at_ms = created_at_ms  # type: ignore[misc]
        self.is_identified = is_identified  # type: ignore[misc]
        self.warnings = warnings  # type: ignore[misc]
        self.overrides = overrides  # type: ignore[misc]
        self.merged = merged  # type: ignore[misc]
        self.person_created = person_created  # type: ignore[misc]
        self.person_version = person_version  # type: ignore[misc]
        self.person_changed = person_changed  # type: ignore[misc]
        self.groups = {} if groups is None else groups  # type: ignore[misc]
        self.group_changes = group_changes  # type: ignore[misc]


fast_init(Resolution)


@dataclass(frozen=True, slots=True)
class PreparedOp:
    """An event that needs the store, after the stateless rules ran (``rules.prepare``).

    ``merge_with`` is the id to merge with (``None`` when no merge is to be attempted: a
    track, an identify without anonymous id, or a merge refused for an illegal id).
    ``updates`` are the property operations left after the length limits; ``warnings`` are the
    stateless warnings already decided, which come first in the final ``Resolution``.
    """

    event: IdentityEvent
    merge_with: str | None
    updates: PropertyUpdates
    warnings: tuple[IdentityWarning, ...] = ()
    groups: tuple[GroupInput, ...] = ()
    """The event's groups left after the stateless group rules (``groups.prepare_groups``)."""

    def __init__(
        self,
        event: IdentityEvent,
        merge_with: str | None,
        updates: PropertyUpdates,
        warnings: tuple[IdentityWarning, ...] = (),
        groups: tuple[GroupInput, ...] = (),
    ) -> None:  # compiled: native code (``fast_init``)
        self.event = event  # type: ignore[misc]
        self.merge_with = merge_with  # type: ignore[misc]
        self.updates = updates  # type: ignore[misc]
        self.warnings = warnings  # type: ignore[misc]
        self.groups = groups  # type: ignore[misc]


fast_init(PreparedOp)


@dataclass(frozen=True, slots=True)
class GroupInput:
    """One group an event names (contract A9): ``(tenant, group_type, key)`` is the group.

    ``attach``: the event belongs to the group (PostHog ``$groups``, a Segment ``group`` call);
    ``remember``: the person's membership of ``group_type`` becomes ``key`` (Segment ``group``);
    ``updates``: the group's own property operations (``$group_set``, traits).
    """

    group_type: str
    key: str
    attach: bool = True
    remember: bool = False
    updates: PropertyUpdates = NO_UPDATES


@dataclass(frozen=True, slots=True)
class GroupView:
    """A group as an enriched event carries it: its key and visible properties."""

    key: str
    properties: Mapping[str, JsonValue]


@dataclass(frozen=True, slots=True)
class GroupChange:
    """A group whose properties an event changed: its new state (the group-changes topic)."""

    group_type: str
    key: str
    version: int
    properties: Mapping[str, JsonValue]


@dataclass(frozen=True, slots=True)
class Group:
    """A group's stored state: ``version`` counts the changes of its properties (1 after the
    first); properties are per-key states as a person's."""

    group_type: str
    key: str
    version: int
    properties: Mapping[str, PropertyState]
