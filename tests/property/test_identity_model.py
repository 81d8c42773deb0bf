"""Hypothesis: union-find invariants, order independence and idempotence of timestamp mode."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from worker.identity import properties as props
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    EventKind,
    IdentityEvent,
    OrderingMode,
    Person,
    PropertyOp,
    PropertyState,
    PropertyUpdates,
)
from worker.identity.reference import ReferenceStore

T = "t"
IDS = st.sampled_from([f"d{i}" for i in range(8)])
KEYS = st.sampled_from(["a", "b", "c"])
VALUES = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y"]), st.none(), st.booleans())
UPDATES = st.builds(
    PropertyUpdates,
    set=st.lists(st.tuples(KEYS, VALUES), max_size=2).map(tuple),
    set_once=st.lists(st.tuples(KEYS, VALUES), max_size=2).map(tuple),
    unset=st.lists(KEYS, max_size=1).map(tuple),
)


@st.composite
def events(draw: st.DrawFn, *, dangerous_only: bool) -> IdentityEvent:
    n = draw(st.integers(0, 10**6))
    kind = draw(st.sampled_from(list(EventKind)))
    other = draw(IDS) if kind is not EventKind.TRACK or draw(st.booleans()) else None
    if kind is EventKind.IDENTIFY and draw(st.booleans()):
        other = None
    return IdentityEvent(
        tenant=T,
        kind=kind,
        distinct_id=draw(IDS),
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        timestamp_ms=draw(st.integers(1, 50)) * 1000,
        other_id=other if kind is not EventKind.TRACK else None,
        merge_dangerously=True if dangerous_only else draw(st.booleans()),
        updates=draw(UPDATES),
    )


def unique_uuids(items: list[IdentityEvent]) -> list[IdentityEvent]:
    seen: dict[str, IdentityEvent] = {}
    for e in items:
        seen.setdefault(e.uuid, e)
    return list(seen.values())


def partition(store: ReferenceStore) -> frozenset[frozenset[str]]:
    return frozenset(p.distinct_ids for p in store.persons(T))


def states_by_members(store: ReferenceStore) -> dict[frozenset[str], dict[str, PropertyState]]:
    return {p.distinct_ids: dict(p.properties) for p in store.persons(T)}


def run(config: IdentityConfig, sequence: Sequence[IdentityEvent]) -> ReferenceStore:
    store = ReferenceStore(config)
    for event in sequence:
        store.resolve_batch(T, [event], 0)
    return store


# -- the property registers --------------------------------------------------------------------

STATES = st.builds(
    PropertyState,
    op=st.sampled_from(list(PropertyOp)),
    value=VALUES,
    ts_ms=st.integers(0, 3),
    uuid=st.sampled_from(["u1", "u2"]),
).map(lambda s: PropertyState(s.op, None, s.ts_ms, s.uuid) if s.op is PropertyOp.UNSET else s)
MAPS = st.dictionaries(KEYS, STATES, max_size=3)


@given(MAPS, MAPS, MAPS)
def test_join_is_a_semilattice(
    a: props.Properties, b: props.Properties, c: props.Properties
) -> None:
    join = props.join_timestamp
    assert join(a, b) == join(b, a)
    assert join(join(a, b), c) == join(a, join(b, c))
    assert join(a, a) == dict(a)


# -- order independence and idempotence ---------------------------------------------------------


@settings(max_examples=300)
@given(st.lists(events(dangerous_only=True), min_size=1, max_size=12).map(unique_uuids), st.data())
def test_timestamp_mode_final_state_ignores_arrival_order_and_replays(
    sequence: list[IdentityEvent], data: st.DataObject
) -> None:
    config = IdentityConfig(ordering=OrderingMode.TIMESTAMP)
    reference = run(config, sequence)
    shuffled = data.draw(st.permutations(sequence))
    replays = data.draw(st.lists(st.sampled_from(sequence), max_size=6))
    other = run(config, [*shuffled, *replays])
    assert partition(other) == partition(reference)
    assert states_by_members(other) == states_by_members(reference)
    by_members = {p.distinct_ids: p for p in other.persons(T)}
    for person in reference.persons(T):
        twin = by_members[person.distinct_ids]
        assert twin.visible_properties == person.visible_properties
        assert (twin.created_at_ms, twin.last_seen_ms) == (
            person.created_at_ms,
            person.last_seen_ms,
        )


@settings(max_examples=300)
@given(st.lists(events(dangerous_only=False), min_size=1, max_size=15).map(unique_uuids), st.data())
def test_replaying_applied_events_changes_nothing(
    sequence: list[IdentityEvent], data: st.DataObject
) -> None:
    store = run(IdentityConfig(), sequence)
    before: list[Person] = store.persons(T)
    replay = data.draw(st.lists(st.sampled_from(sequence), min_size=1, max_size=8))
    for event in replay:
        store.resolve_batch(T, [event], 0)
    assert store.persons(T) == before


# -- union-find invariants, step by step --------------------------------------------------------


class IdentityMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = ReferenceStore(IdentityConfig(max_distinct_ids_per_person=5))
        self.known: set[str] = set()
        self.n = 0

    @rule(event=events(dangerous_only=False))
    def apply(self, event: IdentityEvent) -> None:
        self.n += 1
        event = IdentityEvent(
            event.tenant,
            event.kind,
            event.distinct_id,
            f"{self.n}",
            event.timestamp_ms,
            event.other_id,
            event.merge_dangerously,
            event.process_person,
            event.updates,
        )
        (resolution,) = self.store.resolve_batch(T, [event], 0)
        self.known.add(event.distinct_id)
        if resolution.merged and event.other_id:
            self.known.add(event.other_id)
        if resolution.person_id is not None and self.store.person_for(T, event.distinct_id):
            assert self.store.person_for(T, event.distinct_id).person_id == resolution.person_id  # type: ignore[union-attr]

    @invariant()
    def persons_partition_the_ids(self) -> None:
        persons = self.store.persons(T)
        seen: set[str] = set()
        for person in persons:
            assert not (seen & person.distinct_ids), "an id in two persons"
            seen |= person.distinct_ids
            assert 1 <= len(person.distinct_ids) <= 5
            for distinct_id in person.distinct_ids:
                assert self.store.person_for(T, distinct_id) == person
        assert len({p.person_id for p in persons}) == len(persons)
        assert seen <= self.known


TestIdentityMachine = IdentityMachine.TestCase
TestIdentityMachine.settings = settings(max_examples=60, stateful_step_count=30)
