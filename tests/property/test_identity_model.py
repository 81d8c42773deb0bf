"""Hypothesis: the reference model against independent oracles written here from the contract.

Each oracle is a few lines of plain dicts, written from docs/IDENTITY.md and never calling the
code under test:

- ``UnionFindOracle`` predicts which distinct ids end on one person, the person's id (the id
  that created it), whether it is identified, and whether an event merged, under the merge
  guard, merge_dangerously, illegal and over-long ids, personless events and the cap;
- ``timestamp_oracle`` predicts each key's final value in timestamp mode: the value of the
  highest-ranked operation ever applied to the person's ids;
- ``ArrivalOracle`` replays PostHog's sequential rules on plain dicts in arrival mode.

Metamorphic properties (order independence and idempotence of timestamp mode, the join being a
semilattice) complete them.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from worker.identity import properties as props
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    EventKind,
    IdentityEvent,
    JsonValue,
    OrderingMode,
    Outcome,
    PropertyOp,
    PropertyState,
    PropertyUpdates,
)
from worker.identity.reference import ReferenceStore

T = "t"
NAMESPACE = uuid.UUID("6f1f2b8e-3c0f-5a8e-9d54-1d1b0c6a7e21")  # docs/IDENTITY.md, "Persons"
LEGAL = [f"d{i}" for i in range(6)]
ILLEGAL = ["null", "'Guest'", " ", "x" * 401]  # A5: listed, quoted, blank, over-long
KEYS = st.sampled_from(["a", "b", "c"])
VALUES = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y"]), st.none(), st.booleans())
UPDATES = st.builds(
    PropertyUpdates,
    set=st.lists(st.tuples(KEYS, VALUES), max_size=2).map(tuple),
    set_once=st.lists(st.tuples(KEYS, VALUES), max_size=2).map(tuple),
    unset=st.lists(KEYS, max_size=1).map(tuple),
)
MODES = st.sampled_from(list(OrderingMode))


def pid(distinct_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{T}:{distinct_id}"))


def illegal(distinct_id: str) -> bool:
    return distinct_id in ILLEGAL


@st.composite
def events(
    draw: st.DrawFn,
    *,
    ids: Sequence[str] = LEGAL,
    merges: bool = True,
    dangerous: bool | None = None,
    personless: bool = False,
) -> IdentityEvent:
    """One event with a unique uuid; ``dangerous=None`` draws the flag."""
    kinds = list(EventKind) if merges else [EventKind.TRACK]
    kind = draw(st.sampled_from(kinds))
    other = None
    if kind is not EventKind.TRACK and draw(st.integers(0, 4)) > 0:
        other = draw(st.sampled_from(ids))
    return IdentityEvent(
        tenant=T,
        kind=kind,
        distinct_id=draw(st.sampled_from(ids)),
        uuid=str(draw(st.uuids(version=4))),
        timestamp_ms=draw(st.integers(1, 50)) * 1000,
        other_id=other,
        merge_dangerously=draw(st.booleans()) if dangerous is None else dangerous,
        process_person=not (personless and draw(st.integers(0, 5)) == 0),
        updates=draw(UPDATES),
    )


def unique_uuids(items: list[IdentityEvent]) -> list[IdentityEvent]:
    return list({e.uuid: e for e in items}.values())


def run(config: IdentityConfig, sequence: Sequence[IdentityEvent]) -> ReferenceStore:
    store = ReferenceStore(config)
    for event in sequence:
        store.resolve_batch(T, [event], 0)
    return store


# -- oracle 1: which ids share a person (A3, A5, A6, the cap) ------------------------------------


@dataclass
class Group:
    creator: str
    members: set[str]
    identified: bool


@dataclass
class UnionFindOracle:
    cap: int
    owner: dict[str, Group] = field(default_factory=dict)

    def _create(self, distinct_id: str, *, identified: bool) -> Group:
        group = Group(distinct_id, {distinct_id}, identified)
        self.owner[distinct_id] = group
        return group

    def apply(self, e: IdentityEvent) -> tuple[Group | None, bool]:
        """The group ``e`` lands on (None: no person) and whether ``e`` merged."""
        into, other = e.distinct_id, e.other_id
        merging = e.kind is not EventKind.TRACK
        if illegal(into) or (merging and not e.process_person):
            return None, False  # personless or rejected: nothing changes
        if not e.process_person:
            return self.owner.get(into), False
        if not merging or other is None or other == into or illegal(other):
            return self.owner.get(into) or self._create(into, identified=False), False
        mine, theirs = self.owner.get(into), self.owner.get(other)
        if mine is None and theirs is None:
            group = self._create(into, identified=True)
            if self.cap < 2:
                return group, False
            group.members.add(other)
            self.owner[other] = group
            return group, True
        if mine is None or theirs is None:
            existing = mine or theirs
            assert existing is not None
            joining = into if mine is None else other
            if len(existing.members) >= self.cap:
                group = mine or self._create(into, identified=True)
                group.identified = True
                return group, False
            existing.members.add(joining)
            self.owner[joining] = existing
            existing.identified = True
            return existing, True
        mine.identified = True
        if mine is theirs:
            return mine, False
        if theirs.identified and not e.merge_dangerously:
            return mine, False
        if len(mine.members) + len(theirs.members) > self.cap:
            return mine, False
        for distinct_id in theirs.members:
            self.owner[distinct_id] = mine
        mine.members |= theirs.members
        return mine, True

    def groups(self) -> dict[str, tuple[frozenset[str], bool]]:
        """person id -> (its distinct ids, identified)"""
        return {
            pid(g.creator): (frozenset(g.members), g.identified)
            for g in {id(g): g for g in self.owner.values()}.values()
        }


class IdentityMachine(RuleBasedStateMachine):
    """Every step: the model's persons are exactly the oracle's groups."""

    def __init__(self) -> None:
        super().__init__()
        self.store = ReferenceStore()
        self.oracle = UnionFindOracle(cap=10_000)

    @initialize(cap=st.sampled_from([1, 2, 3, 10_000]), mode=MODES)
    def configure(self, cap: int, mode: OrderingMode) -> None:
        config = IdentityConfig(ordering=mode, max_distinct_ids_per_person=cap)
        self.store = ReferenceStore(config)
        self.oracle = UnionFindOracle(cap=cap)

    @rule(event=events(ids=[*LEGAL, *ILLEGAL], personless=True))
    def apply(self, event: IdentityEvent) -> None:
        (resolution,) = self.store.resolve_batch(T, [event], 0)
        group, merged = self.oracle.apply(event)
        assert resolution.merged == merged
        if group is not None and event.process_person:
            assert resolution.person_id == pid(group.creator)
            assert resolution.is_identified == group.identified
        merging = event.kind is not EventKind.TRACK
        if len(event.distinct_id) > 400 or (merging and not event.process_person):
            assert (resolution.outcome, resolution.person_id) == (Outcome.REJECT, None)
        elif illegal(event.distinct_id):
            assert (resolution.outcome, resolution.person_id) == (
                Outcome.EMIT,
                pid(event.distinct_id),
            )
            assert (resolution.properties, resolution.merged) == ({}, False)

    @invariant()
    def persons_are_the_oracle_s_groups(self) -> None:
        persons = self.store.persons(T)
        got = {p.person_id: (p.distinct_ids, p.is_identified) for p in persons}
        assert got == self.oracle.groups()
        for person in persons:
            assert len(person.distinct_ids) <= self.oracle.cap
            assert not any(illegal(d) for d in person.distinct_ids), "an illegal id has a person"
            for distinct_id in person.distinct_ids:
                assert self.store.person_for(T, distinct_id) == person


TestIdentityMachine = IdentityMachine.TestCase
TestIdentityMachine.settings = settings(max_examples=150, stateful_step_count=30)


@settings(max_examples=200)
@given(st.lists(events(ids=[*LEGAL[:3], *ILLEGAL], dangerous=True), max_size=20), MODES)
def test_illegal_ids_never_merge_even_dangerously(
    sequence: list[IdentityEvent], mode: OrderingMode
) -> None:
    store = run(IdentityConfig(ordering=mode), sequence)
    for person in store.persons(T):
        assert not any(illegal(d) for d in person.distinct_ids)
    for distinct_id in ILLEGAL:
        assert store.person_for(T, distinct_id) is None


# -- oracle 2: final values in timestamp mode ------------------------------------------------------


def timestamp_oracle(sequence: Sequence[IdentityEvent]) -> dict[str, JsonValue]:
    """Final visible properties of one person that every event of ``sequence`` landed on.

    Per event one operation per key ($unset, else the last $set pair, else the first $set_once
    pair); over all events the winner is the latest $set/$unset by (ts, uuid) if the key has
    any, else the earliest $set_once; a winning $unset hides the key."""
    strong: dict[str, tuple[tuple[int, str], str, JsonValue]] = {}
    weak: dict[str, tuple[tuple[int, str], JsonValue]] = {}
    for e in sequence:
        order = (e.timestamp_ms, e.uuid)
        u = e.updates
        for key in {k for k, _ in (*u.set, *u.set_once)} | set(u.unset):
            if key in u.unset:
                candidate: tuple[tuple[int, str], str, JsonValue] = (order, "unset", None)
            elif key in dict(u.set):
                candidate = (order, "set", dict(u.set)[key])  # dict(): the last pair wins
            else:
                first = next(v for k, v in u.set_once if k == key)
                if key not in weak or order < weak[key][0]:
                    weak[key] = (order, first)
                continue
            if key not in strong or order > strong[key][0]:
                strong[key] = candidate
    final = {k: v for k, (_, v) in weak.items() if k not in strong}
    final.update({k: v for k, (_, op, v) in strong.items() if op == "set"})
    return final


@settings(max_examples=300)
@given(st.lists(events(ids=["u"], merges=False), min_size=1, max_size=12).map(unique_uuids))
def test_timestamp_mode_final_values_on_one_person(sequence: list[IdentityEvent]) -> None:
    store = run(IdentityConfig(ordering=OrderingMode.TIMESTAMP), sequence)
    person = store.person_for(T, "u")
    assert person is not None
    assert person.visible_properties == timestamp_oracle(sequence)


@settings(max_examples=300)
@given(st.lists(events(ids=LEGAL[:4], dangerous=True), min_size=1, max_size=15).map(unique_uuids))
def test_timestamp_mode_final_values_across_merges(sequence: list[IdentityEvent]) -> None:
    """With every merge allowed, each person holds the operations of every event whose
    distinct id it holds, whatever the merges' order."""
    store = run(IdentityConfig(ordering=OrderingMode.TIMESTAMP), sequence)
    for person in store.persons(T):
        mine = [e for e in sequence if e.distinct_id in person.distinct_ids]
        assert person.visible_properties == timestamp_oracle(mine)


# -- oracle 3: arrival mode, sequentially ---------------------------------------------------------


@dataclass
class ArrivalOracle:
    """PostHog's rules on plain dicts: person key -> visible properties."""

    owner: dict[str, int] = field(default_factory=dict)
    values: dict[int, dict[str, JsonValue]] = field(default_factory=dict)
    fresh: itertools.count[int] = field(default_factory=itertools.count)

    def apply(self, e: IdentityEvent) -> None:
        """Every id legal, every merge allowed (merge_dangerously, no cap)."""
        into, other = e.distinct_id, e.other_id
        if e.kind is not EventKind.TRACK and other is not None and other != into:
            a, b = self.owner.get(into), self.owner.get(other)
            if a is None and b is None:
                self.owner[into] = self.owner[other] = a = next(self.fresh)
                self.values[a] = {}
            elif a is None or b is None:
                joined = a if a is not None else b
                assert joined is not None
                self.owner[into] = self.owner[other] = joined
            elif a != b:
                self.values[a] = {**self.values.pop(b), **self.values[a]}
                for distinct_id, number in list(self.owner.items()):
                    if number == b:
                        self.owner[distinct_id] = a
        if into not in self.owner:
            self.owner[into] = next(self.fresh)
            self.values[self.owner[into]] = {}
        current = self.values[self.owner[into]]
        before = dict(current)
        to_set: dict[str, JsonValue] = {}
        for key, value in e.updates.set_once:
            if key not in before and key not in to_set:
                to_set[key] = value
        for key, value in e.updates.set:
            to_set[key] = value
        current.update(to_set)
        for key in e.updates.unset:
            if key in before:
                current.pop(key, None)


@settings(max_examples=300)
@given(st.lists(events(ids=LEGAL[:4], dangerous=True), min_size=1, max_size=15))
def test_arrival_mode_against_a_sequential_oracle(sequence: list[IdentityEvent]) -> None:
    store = ReferenceStore(IdentityConfig(ordering=OrderingMode.ARRIVAL))
    oracle = ArrivalOracle()
    for event in sequence:
        (resolution,) = store.resolve_batch(T, [event], 0)
        oracle.apply(event)
        assert resolution.properties == oracle.values[oracle.owner[event.distinct_id]]
    for distinct_id, number in oracle.owner.items():
        person = store.person_for(T, distinct_id)
        assert person is not None
        assert person.visible_properties == oracle.values[number]


# -- metamorphic: order independence and idempotence of timestamp mode ----------------------------


def by_members(store: ReferenceStore) -> dict[frozenset[str], tuple[object, ...]]:
    return {
        p.distinct_ids: (dict(p.properties), p.created_at_ms, p.last_seen_ms, p.is_identified)
        for p in store.persons(T)
    }


@settings(max_examples=300)
@given(
    st.lists(events(ids=LEGAL[:5], dangerous=True), min_size=1, max_size=12).map(unique_uuids),
    st.data(),
)
def test_timestamp_mode_final_state_ignores_arrival_order_and_replays(
    sequence: list[IdentityEvent], data: st.DataObject
) -> None:
    config = IdentityConfig(ordering=OrderingMode.TIMESTAMP)
    reference = run(config, sequence)
    shuffled = data.draw(st.permutations(sequence))
    replays = data.draw(st.lists(st.sampled_from(sequence), max_size=6))
    assert by_members(run(config, [*shuffled, *replays])) == by_members(reference)


@settings(max_examples=300)
@given(
    st.lists(events(ids=[*LEGAL, *ILLEGAL], personless=True), min_size=1, max_size=15).map(
        unique_uuids
    ),
    st.sampled_from([2, 3, 10_000]),
    st.data(),
)
def test_timestamp_mode_replaying_applied_events_changes_nothing(
    sequence: list[IdentityEvent], cap: int, data: st.DataObject
) -> None:
    store = run(IdentityConfig(max_distinct_ids_per_person=cap), sequence)
    before = store.persons(T)
    for event in data.draw(st.lists(st.sampled_from(sequence), min_size=1, max_size=8)):
        store.resolve_batch(T, [event], 0)
    assert store.persons(T) == before


# -- the registers ------------------------------------------------------------------------------

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
