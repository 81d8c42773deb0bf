"""One direct example per identity rule (contract A2-A6, docs/IDENTITY.md), in both ordering
modes, each with a hand-written expected result.

The tests drive the reference model (``ReferenceStore``) and the pure property functions; the
expectations are written out here, never computed by the code under test. Person ids are
computed from the documented formula (uuid5 of ``"{tenant}:{distinct id}"`` in the documented
namespace), not by ``worker.identity.ids``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable

import pytest

from worker.identity import properties as props
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    EventKind,
    IdentityEvent,
    JsonValue,
    OrderingMode,
    Outcome,
    Person,
    PersonMode,
    PropertyOp,
    PropertyState,
    PropertyUpdates,
    Resolution,
)
from worker.identity.reference import ReferenceStore

T = "acme"
NAMESPACE = uuid.UUID("6f1f2b8e-3c0f-5a8e-9d54-1d1b0c6a7e21")  # docs/IDENTITY.md, "Persons"
TIMESTAMP, ARRIVAL = OrderingMode.TIMESTAMP, OrderingMode.ARRIVAL
BOTH = pytest.mark.parametrize("mode", [TIMESTAMP, ARRIVAL], ids=["timestamp", "arrival"])
_seq = itertools.count(1)


def pid(distinct_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{T}:{distinct_id}"))


def ev(
    kind: str,
    distinct_id: str,
    ts: int,
    other: str | None = None,
    *,
    set: dict[str, JsonValue] | None = None,
    set_once: dict[str, JsonValue] | None = None,
    unset: Iterable[str] = (),
    dangerous: bool = False,
    personless: bool = False,
    uid: str | None = None,
) -> IdentityEvent:
    return IdentityEvent(
        tenant=T,
        kind=EventKind(kind),
        distinct_id=distinct_id,
        uuid=uid or f"00000000-0000-4000-8000-{next(_seq):012d}",
        timestamp_ms=ts,
        other_id=other,
        merge_dangerously=dangerous,
        process_person=not personless,
        updates=PropertyUpdates(
            set=tuple((set or {}).items()),
            set_once=tuple((set_once or {}).items()),
            unset=tuple(unset),
        ),
    )


def make(mode: OrderingMode, **limits: int) -> ReferenceStore:
    """A store in ``mode``; its last-seen time exact unless ``limits`` say otherwise (the
    examples' times are a few seconds apart)."""
    limits = {"last_seen_resolution_ms": 0, **limits}
    return ReferenceStore(IdentityConfig(ordering=mode, **limits))  # type: ignore[arg-type]


def run(store: ReferenceStore, *events: IdentityEvent) -> Resolution:
    """Apply ``events`` one by one; the last one's resolution."""
    results = [store.resolve_batch(T, [e], 0)[0] for e in events]
    return results[-1]


def person(store: ReferenceStore, distinct_id: str) -> Person:
    found = store.person_for(T, distinct_id)
    assert found is not None, f"{distinct_id} has no person"
    return found


def kinds(resolution: Resolution) -> list[str]:
    return [w.kind.value for w in resolution.warnings]


def summary(p: Person) -> tuple[str, set[str], bool, int]:
    return p.person_id, set(p.distinct_ids), p.is_identified, p.version


# -- A2: creation, created_at / last_seen ---------------------------------------------------------


@BOTH
@pytest.mark.parametrize("kind", ["track", "identify"])
def test_a2_an_unknown_id_creates_its_person(mode: OrderingMode, kind: str) -> None:
    store = make(mode)
    r = run(store, ev(kind, "anon", 5_000, set={"plan": "free"}))
    assert (r.outcome, r.person_id, r.person_mode) == (Outcome.EMIT, pid("anon"), PersonMode.FULL)
    assert (r.person_created, r.merged, r.is_identified, r.created_at_ms) == (
        True,
        False,
        False,
        5_000,
    )
    assert (r.properties, r.person_version, r.overrides, r.warnings) == (
        {"plan": "free"},
        0,
        (),
        (),
    )
    p = person(store, "anon")
    assert summary(p) == (pid("anon"), {"anon"}, False, 0)
    assert (p.created_at_ms, p.last_seen_ms) == (5_000, 5_000)


@BOTH
def test_a2_created_at_is_the_earliest_and_last_seen_the_latest_without_a_version_bump(
    mode: OrderingMode,
) -> None:
    store = make(mode)
    r = run(store, ev("track", "u", 5_000), ev("track", "u", 3_000), ev("track", "u", 7_000))
    assert (r.person_created, r.created_at_ms, r.person_version) == (False, 3_000, 0)
    p = person(store, "u")
    assert (p.created_at_ms, p.last_seen_ms, p.version) == (3_000, 7_000, 0)


@BOTH
def test_a2_last_seen_is_the_latest_event_rounded_down_to_its_resolution(
    mode: OrderingMode,
) -> None:
    store = make(mode, last_seen_resolution_ms=60_000)  # the default
    run(store, ev("track", "u", 125_000))
    p = person(store, "u")
    assert (p.created_at_ms, p.last_seen_ms) == (125_000, 120_000)  # created_at exact
    run(store, ev("track", "u", 179_999), ev("track", "u", 61_000))
    assert person(store, "u").last_seen_ms == 120_000  # same minute, then an earlier one
    run(store, ev("track", "u", 180_000))
    p = person(store, "u")
    assert (p.created_at_ms, p.last_seen_ms, p.version) == (61_000, 180_000, 0)
    assert IdentityConfig().last_seen_resolution_ms == 60_000


@BOTH
def test_a2_ids_of_two_tenants_never_meet(mode: OrderingMode) -> None:
    store = make(mode)
    store.resolve_batch("other", [IdentityEvent("other", EventKind.TRACK, "u", "e1", 1)], 0)
    r = run(store, ev("identify", "u", 2, "x"))
    assert r.person_id == pid("u")
    assert (r.person_created, r.merged) == (True, True)
    other = store.person_for("other", "u")
    assert other is not None
    assert other.distinct_ids == {"u"}
    assert other.person_id == str(uuid.uuid5(NAMESPACE, "other:u"))
    assert store.person_for("other", "x") is None


# -- A3.1 / A3.2: no merge ------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("kind", ["identify", "alias"])
def test_a3_1_same_ids_merge_nothing_and_do_not_identify(mode: OrderingMode, kind: str) -> None:
    store = make(mode)
    first = run(store, ev(kind, "u", 1_000, "u"))
    assert (first.person_created, first.merged, first.is_identified, first.warnings) == (
        True,
        False,
        False,
        (),
    )
    again = run(store, ev(kind, "u", 2_000, "u"))
    assert (again.person_created, again.is_identified, again.person_version) == (False, False, 0)
    assert summary(person(store, "u")) == (pid("u"), {"u"}, False, 0)


@BOTH
@pytest.mark.parametrize("illegal", ["null", "'undefined'", "  ", "x" * 401])
def test_a3_2_an_illegal_other_id_merges_nothing_and_does_not_identify(
    mode: OrderingMode, illegal: str
) -> None:
    store = make(mode)
    run(store, ev("track", "u", 1_000))
    r = run(store, ev("identify", "u", 2_000, illegal, set={"k": 1}))
    assert kinds(r) == ["cannot_merge_with_illegal_distinct_id"]
    assert (r.person_id, r.merged, r.is_identified, r.overrides) == (pid("u"), False, False, ())
    assert r.properties == {"k": 1}  # the event is processed on into's person
    assert summary(person(store, "u")) == (pid("u"), {"u"}, False, 1)  # +1: the property
    assert store.person_for(T, illegal) is None


@BOTH
def test_a3_2_an_illegal_other_id_on_an_unknown_into_creates_an_unidentified_person(
    mode: OrderingMode,
) -> None:
    store = make(mode)
    r = run(store, ev("alias", "u", 1_000, "anonymous"))
    assert (r.person_created, r.merged, r.is_identified) == (True, False, False)
    assert summary(person(store, "u")) == (pid("u"), {"u"}, False, 0)


@BOTH
def test_a3_2_an_illegal_into_is_personless_and_never_merges(mode: OrderingMode) -> None:
    store = make(mode)
    run(store, ev("track", "anon", 1_000))
    r = run(store, ev("identify", "null", 2_000, "anon", set={"k": 1}))
    assert kinds(r) == ["cannot_merge_with_illegal_distinct_id", "illegal_distinct_id"]
    assert (r.outcome, r.person_id, r.person_mode, r.properties) == (
        Outcome.EMIT,
        pid("null"),
        PersonMode.PROPERTYLESS,
        {},
    )
    assert (r.merged, r.is_identified) == (False, False)
    assert store.person_for(T, "null") is None
    assert summary(person(store, "anon")) == (pid("anon"), {"anon"}, False, 0)


@BOTH
def test_a3_identify_without_an_anonymous_id_does_not_identify(mode: OrderingMode) -> None:
    store = make(mode)
    run(store, ev("track", "u", 1_000))
    r = run(store, ev("identify", "u", 2_000))
    assert (r.merged, r.is_identified, r.person_version) == (False, False, 0)
    r = run(store, ev("identify", "new", 3_000))
    assert (r.person_created, r.is_identified) == (True, False)
    assert summary(person(store, "new")) == (pid("new"), {"new"}, False, 0)


# -- A3.3 - A3.5 ----------------------------------------------------------------------------------


@BOTH
def test_a3_3_neither_has_a_person_one_new_identified_person_holds_both(mode: OrderingMode) -> None:
    store = make(mode)
    r = run(store, ev("identify", "user", 4_000, "anon", set={"k": 1}))
    assert (r.person_id, r.person_created, r.merged, r.is_identified) == (
        pid("user"),
        True,
        True,
        True,
    )
    assert [(o.distinct_id, o.old_person_id, o.new_person_id) for o in r.overrides] == [
        ("anon", pid("anon"), pid("user"))
    ]
    assert (r.properties, r.person_version, r.created_at_ms) == ({"k": 1}, 0, 4_000)
    assert person(store, "anon") == person(store, "user")
    assert summary(person(store, "anon")) == (pid("user"), {"user", "anon"}, True, 0)


@BOTH
def test_a3_4_other_joins_into_s_person(mode: OrderingMode) -> None:
    store = make(mode)
    run(store, ev("track", "user", 1_000))
    r = run(store, ev("alias", "user", 2_000, "crm"))
    assert (r.person_id, r.merged, r.person_created, r.is_identified) == (
        pid("user"),
        True,
        False,
        True,
    )
    assert [(o.distinct_id, o.old_person_id, o.new_person_id) for o in r.overrides] == [
        ("crm", pid("crm"), pid("user"))
    ]
    assert summary(person(store, "crm")) == (pid("user"), {"user", "crm"}, True, 1)


@BOTH
def test_a3_4_into_joins_other_s_person_which_keeps_its_id(mode: OrderingMode) -> None:
    store = make(mode)
    run(store, ev("track", "anon", 1_000, set={"a": 1}))
    r = run(store, ev("identify", "user", 2_000, "anon", set={"b": 2}))
    assert (r.person_id, r.merged, r.person_created, r.is_identified) == (
        pid("anon"),
        True,
        False,
        True,
    )
    assert [(o.distinct_id, o.old_person_id, o.new_person_id) for o in r.overrides] == [
        ("user", pid("user"), pid("anon"))
    ]
    assert r.properties == {"a": 1, "b": 2}
    assert summary(person(store, "user")) == (pid("anon"), {"user", "anon"}, True, 1)


@BOTH
def test_a3_5_same_person_changes_nothing(mode: OrderingMode) -> None:
    store = make(mode)
    run(store, ev("identify", "user", 1_000, "anon"))
    r = run(store, ev("alias", "anon", 2_000, "user"))
    assert (r.person_id, r.merged, r.overrides, r.warnings, r.is_identified) == (
        pid("user"),
        False,
        (),
        (),
        True,
    )
    assert summary(person(store, "user")) == (pid("user"), {"user", "anon"}, True, 0)
    assert person(store, "user").last_seen_ms == 2_000


# -- A3.6: two persons --------------------------------------------------------------------------


@BOTH
def test_a3_6_merges_when_other_is_unidentified_even_if_into_is_identified(
    mode: OrderingMode,
) -> None:
    store = make(mode)
    run(store, ev("identify", "user", 1_000, "anon1"))  # user's person: identified, version 0
    run(store, ev("track", "anon2", 500), ev("track", "anon2", 9_000, set={"x": 1}))  # version 1
    r = run(store, ev("identify", "user", 3_000, "anon2"))
    assert r.warnings == ()
    assert (r.person_id, r.merged, r.is_identified, r.created_at_ms) == (
        pid("user"),
        True,
        True,
        500,
    )
    assert [(o.distinct_id, o.old_person_id, o.new_person_id) for o in r.overrides] == [
        ("anon2", pid("anon2"), pid("user"))
    ]
    survivor = person(store, "anon2")
    assert summary(survivor) == (pid("user"), {"user", "anon1", "anon2"}, True, 2)  # max(0,1)+1
    assert (survivor.created_at_ms, survivor.last_seen_ms) == (500, 9_000)
    assert len(store.persons(T)) == 1


@BOTH
def test_a3_6_refused_when_other_is_identified_even_if_into_is_not(mode: OrderingMode) -> None:
    store = make(mode)
    run(store, ev("identify", "u2", 1_000, "a2"))  # other's person: identified
    run(store, ev("track", "u1", 1_000))  # into's person: not identified
    r = run(store, ev("identify", "u1", 2_000, "u2", set={"k": 1}))
    assert kinds(r) == ["cannot_merge_already_identified"]
    assert (r.person_id, r.merged, r.overrides, r.is_identified) == (pid("u1"), False, (), True)
    assert r.properties == {"k": 1}  # the event goes on into's person
    assert summary(person(store, "u1")) == (pid("u1"), {"u1"}, True, 1)  # identified: +1
    assert person(store, "u1").properties.keys() == {"k"}
    other = person(store, "u2")
    assert summary(other) == (pid("u2"), {"u2", "a2"}, True, 0)
    assert other.properties == {}


@BOTH
def test_a3_6_both_identified_refused(mode: OrderingMode) -> None:
    store = make(mode)
    run(store, ev("identify", "u1", 1_000, "a1"), ev("identify", "u2", 1_000, "a2"))
    r = run(store, ev("alias", "u1", 2_000, "u2"))
    assert kinds(r) == ["cannot_merge_already_identified"]
    assert summary(person(store, "a1")) == (pid("u1"), {"u1", "a1"}, True, 0)
    assert summary(person(store, "a2")) == (pid("u2"), {"u2", "a2"}, True, 0)


@BOTH
def test_a3_6_merge_dangerously_bypasses_the_guard(mode: OrderingMode) -> None:
    store = make(mode)
    run(store, ev("identify", "u1", 3_000, "a1"), ev("identify", "u2", 1_000, "a2"))
    run(store, ev("track", "u2", 4_000, set={"y": 2}), ev("track", "u2", 5_000, set={"z": 3}))
    r = run(store, ev("alias", "u1", 2_000, "u2", dangerous=True, set={"x": 1}))
    assert (r.person_id, r.merged, r.warnings) == (pid("u1"), True, ())
    assert [(o.distinct_id, o.old_person_id, o.new_person_id) for o in r.overrides] == [
        ("a2", pid("u2"), pid("u1")),
        ("u2", pid("u2"), pid("u1")),
    ]
    assert r.properties == {"x": 1, "y": 2, "z": 3}
    survivor = person(store, "a2")
    # version max(0, 2) + 1; the event's own property change adds nothing
    assert summary(survivor) == (pid("u1"), {"u1", "a1", "u2", "a2"}, True, 3)
    assert (survivor.created_at_ms, survivor.last_seen_ms) == (1_000, 5_000)
    assert [p.person_id for p in store.persons(T)] == [pid("u1")]


@BOTH
def test_a3_6_a_refused_merge_leaves_other_s_person_alone(mode: OrderingMode) -> None:
    """Cap refusal between two persons: other's (unidentified) person stays as it was."""
    store = make(mode, max_distinct_ids_per_person=2)
    run(store, ev("identify", "u", 1_000, "a"))  # u's person is full
    run(store, ev("track", "b", 1_000))
    r = run(store, ev("identify", "u", 2_000, "b"))
    assert kinds(r) == ["merge_limit_exceeded"]
    assert (r.person_id, r.merged, r.is_identified) == (pid("u"), False, True)
    assert summary(person(store, "b")) == (pid("b"), {"b"}, False, 0)
    assert summary(person(store, "u")) == (pid("u"), {"u", "a"}, True, 0)


# -- A3.7: the cap ------------------------------------------------------------------------------


@BOTH
def test_a3_7_a_join_to_a_full_person_is_refused_whole(mode: OrderingMode) -> None:
    store = make(mode, max_distinct_ids_per_person=1)
    run(store, ev("track", "anon", 1_000))  # one id: at the cap, not identified
    r = run(store, ev("identify", "user", 2_000, "anon", set={"k": 1}))
    assert kinds(r) == ["merge_limit_exceeded"]
    # the event lands on into's (new) person, which becomes identified; other's is untouched
    assert (r.person_id, r.person_created, r.merged, r.is_identified, r.overrides) == (
        pid("user"),
        True,
        False,
        True,
        (),
    )
    assert r.properties == {"k": 1}
    assert summary(person(store, "anon")) == (pid("anon"), {"anon"}, False, 0)
    assert summary(person(store, "user")) == (pid("user"), {"user"}, True, 0)


@BOTH
def test_a3_7_into_full_refuses_the_join_of_other(mode: OrderingMode) -> None:
    store = make(mode, max_distinct_ids_per_person=2)
    run(store, ev("identify", "u", 1_000, "a"))
    r = run(store, ev("alias", "u", 2_000, "b"))
    assert kinds(r) == ["merge_limit_exceeded"]
    assert (r.person_id, r.merged) == (pid("u"), False)
    assert store.person_for(T, "b") is None
    assert summary(person(store, "u")) == (pid("u"), {"u", "a"}, True, 0)


@BOTH
def test_a3_7_a_merge_of_exactly_the_cap_is_allowed_one_more_is_not(mode: OrderingMode) -> None:
    store = make(mode, max_distinct_ids_per_person=3)
    run(store, ev("identify", "u", 1_000, "a"), ev("track", "x", 1_000))
    r = run(store, ev("alias", "u", 2_000, "x"))
    assert r.merged  # 2 + 1 == 3
    run(store, ev("track", "y", 1_000))
    r = run(store, ev("alias", "y", 3_000, "u", dangerous=True))
    assert kinds(r) == ["merge_limit_exceeded"]  # 1 + 3 > 3
    assert summary(person(store, "y")) == (pid("y"), {"y"}, True, 1)
    assert person(store, "u").distinct_ids == {"u", "a", "x"}


@BOTH
def test_a3_7_a_cap_of_one_refuses_a3_3(mode: OrderingMode) -> None:
    store = make(mode, max_distinct_ids_per_person=1)
    r = run(store, ev("identify", "u", 1_000, "a"))
    assert kinds(r) == ["merge_limit_exceeded"]
    assert (r.person_created, r.merged, r.is_identified) == (True, False, True)
    assert store.person_for(T, "a") is None


# -- A4: properties -------------------------------------------------------------------------------


def props_after(mode: OrderingMode, *events: IdentityEvent) -> dict[str, JsonValue]:
    store = make(mode)
    run(store, *events)
    return person(store, events[0].distinct_id).visible_properties


@pytest.mark.parametrize(
    ("mode", "expected"), [(TIMESTAMP, "new"), (ARRIVAL, "old")], ids=["timestamp", "arrival"]
)
def test_a4_set_a_late_older_set(mode: OrderingMode, expected: str) -> None:
    got = props_after(
        mode, ev("track", "u", 2_000, set={"k": "new"}), ev("track", "u", 1_000, set={"k": "old"})
    )
    assert got == {"k": expected}


@BOTH
def test_a4_set_a_newer_set_overwrites(mode: OrderingMode) -> None:
    got = props_after(
        mode, ev("track", "u", 1_000, set={"k": 1}), ev("track", "u", 2_000, set={"k": 2})
    )
    assert got == {"k": 2}


@pytest.mark.parametrize(
    ("mode", "expected"), [(TIMESTAMP, "early"), (ARRIVAL, "late")], ids=["timestamp", "arrival"]
)
def test_a4_set_once_the_earlier_wins_in_timestamp_mode_the_first_in_arrival_mode(
    mode: OrderingMode, expected: str
) -> None:
    got = props_after(
        mode,
        ev("track", "u", 2_000, set_once={"k": "late"}),
        ev("track", "u", 1_000, set_once={"k": "early"}),
    )
    assert got == {"k": expected}


@BOTH
def test_a4_set_once_in_order_keeps_the_first(mode: OrderingMode) -> None:
    got = props_after(
        mode,
        ev("track", "u", 1_000, set_once={"k": "first"}),
        ev("track", "u", 2_000, set_once={"k": "second"}),
    )
    assert got == {"k": "first"}


@BOTH
def test_a4_set_once_never_overwrites_a_set_value(mode: OrderingMode) -> None:
    # timestamp mode: a set beats any set_once whatever the time; arrival: the key is present
    got = props_after(
        mode,
        ev("track", "u", 2_000, set={"k": "set"}),
        ev("track", "u", 1_000, set_once={"k": "once-earlier"}),
        ev("track", "u", 3_000, set_once={"k": "once-later"}),
    )
    assert got == {"k": "set"}


@BOTH
def test_a4_a_set_overwrites_a_set_once_value(mode: OrderingMode) -> None:
    got = props_after(
        mode,
        ev("track", "u", 2_000, set_once={"k": "once"}),
        ev("track", "u", 1_000, set={"k": "set"}),
    )
    assert got == {"k": "set"}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(TIMESTAMP, {}), (ARRIVAL, {"k": "old"})],
    ids=["timestamp", "arrival"],
)
def test_a4_unset_tombstone_blocks_an_older_set_in_timestamp_mode_only(
    mode: OrderingMode, expected: dict[str, JsonValue]
) -> None:
    got = props_after(
        mode,
        ev("track", "u", 1_000, set={"k": 1}),
        ev("track", "u", 3_000, unset=["k"]),
        ev("track", "u", 2_000, set={"k": "old"}),
    )
    assert got == expected


@BOTH
def test_a4_set_once_applies_again_after_an_unset(mode: OrderingMode) -> None:
    got = props_after(
        mode,
        ev("track", "u", 1_000, set={"k": 1}),
        ev("track", "u", 2_000, unset=["k"]),
        ev("track", "u", 3_000, set_once={"k": 2}),
    )
    # timestamp: the unset (strong) outranks the later set_once (weak); arrival: k was absent
    assert got == ({} if mode is TIMESTAMP else {"k": 2})


@BOTH
def test_a4_in_one_event_set_beats_set_once(mode: OrderingMode) -> None:
    got = props_after(mode, ev("track", "u", 1_000, set={"k": "set"}, set_once={"k": "once"}))
    assert got == {"k": "set"}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(TIMESTAMP, {}), (ARRIVAL, {"new": 2})],
    ids=["timestamp", "arrival"],
)
def test_a4_in_one_event_set_and_unset_of_the_same_key(
    mode: OrderingMode, expected: dict[str, JsonValue]
) -> None:
    """timestamp: unset applies last, whatever the key. arrival (PostHog): unset removes only
    keys present before the event, so a new key set and unset in one event stays set and an
    existing one is removed."""
    got = props_after(
        mode,
        ev("track", "u", 1_000, set={"old": 1}),
        ev("track", "u", 2_000, set={"old": 9, "new": 2}, unset=["old", "new"]),
    )
    assert got == expected


@BOTH
def test_a4_unset_on_creation(mode: OrderingMode) -> None:
    got = props_after(mode, ev("track", "u", 1_000, set={"k": 1}, unset=["k"]))
    assert got == ({} if mode is TIMESTAMP else {"k": 1})


@BOTH
def test_a4_repeated_keys_last_set_first_set_once(mode: OrderingMode) -> None:
    e = IdentityEvent(
        T,
        EventKind.TRACK,
        "u",
        "e-1",
        1_000,
        updates=PropertyUpdates(set=(("s", 1), ("s", 2)), set_once=(("o", 1), ("o", 2))),
    )
    assert props_after(mode, e) == {"s": 2, "o": 1}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # timestamp: per key, the newer set wins; the earlier set_once wins
        (TIMESTAMP, {"k": "other-newer", "j": "into", "once": "other-earlier", "o": 1, "i": 2}),
        # arrival: {...other, ...into}, then the event's own operations
        (ARRIVAL, {"k": "into-older", "j": "into", "once": "into-later", "o": 1, "i": 2}),
    ],
    ids=["timestamp", "arrival"],
)
def test_a4_properties_of_a_merge(mode: OrderingMode, expected: dict[str, JsonValue]) -> None:
    store = make(mode)
    run(
        store,
        ev("track", "other", 1_000, set={"k": "other-newer-placeholder"}),
        ev("track", "other", 3_000, set={"k": "other-newer", "j": "other"}, set_once={"o": 1}),
        ev("track", "other", 1_500, set_once={"once": "other-earlier"}),
        ev(
            "track", "into", 2_000, set={"k": "into-older", "i": 2}, set_once={"once": "into-later"}
        ),
        ev("track", "into", 4_000, set={"j": "into"}),
    )
    r = run(store, ev("identify", "into", 5_000, "other", set_once={"o": 99}))
    assert r.properties == expected
    assert person(store, "other").visible_properties == expected


@BOTH
def test_a4_replaying_an_event_changes_nothing_in_timestamp_mode(mode: OrderingMode) -> None:
    store = make(mode)
    first = ev("track", "u", 1_000, set={"k": 1}, set_once={"o": 1})
    run(store, first, ev("track", "u", 2_000, set={"k": 2}))
    before = person(store, "u")
    run(store, first)
    after = person(store, "u")
    if mode is TIMESTAMP:
        assert after == before
    else:  # arrival: a replayed $set applies again (contract A12)
        assert after.visible_properties == {"k": 1, "o": 1}
        assert after.version == before.version + 1


# -- A4: size limits ----------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize(
    ("updates", "reason"),
    [
        ({"set": {"k" * 1025: 1}}, "key_too_long"),
        ({"unset": ["k" * 1025]}, "key_too_long"),
        ({"set_once": {"k": "v" * 1025}}, "value_too_long"),
        ({"set": {"ok": 1, "k": "v" * 1025}}, "value_too_long"),
    ],
)
def test_a4_a_length_violation_refuses_the_whole_update_but_not_the_merge(
    mode: OrderingMode, updates: dict[str, object], reason: str
) -> None:
    store = make(mode)
    run(store, ev("track", "u", 1_000, set={"ok": 0, "k": 0}))
    r = run(store, ev("identify", "u", 2_000, "anon", **updates))  # type: ignore[arg-type]
    assert kinds(r) == ["person_properties_size_violation"]
    assert r.warnings[0].details == {"reason": reason}
    assert (r.outcome, r.merged, r.is_identified) == (Outcome.EMIT, True, True)
    assert r.properties == {"ok": 0, "k": 0}


@BOTH
def test_a4_at_the_length_limits_the_update_applies(mode: OrderingMode) -> None:
    store = make(mode)
    r = run(store, ev("track", "u", 1_000, set={"k" * 1024: "v" * 1024}))
    assert (r.warnings, r.properties) == ((), {"k" * 1024: "v" * 1024})


@BOTH
def test_a4_total_size_refuses_growth_but_allows_shrinking(mode: OrderingMode) -> None:
    store = make(mode, max_properties_bytes=20)
    ok = run(store, ev("track", "u", 1_000, set={"k": "0123456789"}))  # 1 + 12 bytes
    assert (ok.warnings, ok.properties) == ((), {"k": "0123456789"})
    big = run(store, ev("track", "u", 2_000, set={"k2": "0123456789"}))  # 13 + 14 > 20
    assert kinds(big) == ["person_properties_size_violation"]
    assert big.warnings[0].details == {"reason": "properties_too_large"}
    assert (big.outcome, big.properties) == (Outcome.EMIT, {"k": "0123456789"})
    shrink = run(store, ev("track", "u", 3_000, set={"k": "x"}))
    assert (shrink.warnings, shrink.properties) == ((), {"k": "x"})
    assert person(store, "u").version == 1  # the refused update did not count


@BOTH
def test_a4_exactly_the_size_limit_is_allowed(mode: OrderingMode) -> None:
    store = make(mode, max_properties_bytes=13)
    r = run(store, ev("track", "u", 1_000, set={"k": "0123456789"}))  # 1 + 12 == 13
    assert (r.warnings, r.properties) == ((), {"k": "0123456789"})


# -- A5: illegal ids ----------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("illegal", ["", " ", "Anonymous", "GUEST", "null", "'null'", '"0"', "NaN"])
def test_a5_an_illegal_own_id_never_creates_a_person(mode: OrderingMode, illegal: str) -> None:
    store = make(mode)
    r = run(store, ev("track", illegal, 1_000, set={"k": 1}))
    assert (r.outcome, r.person_id, r.person_mode, r.properties, r.created_at_ms) == (
        Outcome.EMIT,
        pid(illegal),
        PersonMode.PROPERTYLESS,
        {},
        None,
    )
    assert kinds(r) == ["illegal_distinct_id"]
    assert store.persons(T) == []


@BOTH
@pytest.mark.parametrize("legal", ["NULL", "nan", "user-1", "'null", "1"])
def test_a5_near_misses_are_legal(mode: OrderingMode, legal: str) -> None:
    store = make(mode)
    r = run(store, ev("identify", legal, 1_000, "anon"))
    assert (r.merged, r.warnings) == (True, ())
    assert person(store, "anon").distinct_ids == {legal, "anon"}


@BOTH
def test_a5_an_overlong_id_is_rejected(mode: OrderingMode) -> None:
    store = make(mode)
    r = run(store, ev("track", "x" * 401, 1_000))
    assert (r.outcome, r.person_id) == (Outcome.REJECT, None)
    assert kinds(r) == ["skipping_event_invalid_distinct_id"]
    assert r.warnings[0].details == {"reason": "too_long", "length": "401"}
    assert store.persons(T) == []
    assert run(store, ev("track", "x" * 400, 1_000)).person_created


# -- A6: personless -----------------------------------------------------------------------------


@BOTH
def test_a6_personless_without_a_person(mode: OrderingMode) -> None:
    store = make(mode)
    r = run(store, ev("track", "p", 1_000, personless=True, set={"k": 1}))
    assert (r.outcome, r.person_id, r.person_mode, r.properties) == (
        Outcome.EMIT,
        pid("p"),
        PersonMode.PROPERTYLESS,
        {},
    )
    assert (r.created_at_ms, r.is_identified, r.person_created, r.warnings) == (
        None,
        False,
        False,
        (),
    )
    assert store.persons(T) == []


@BOTH
def test_a6_personless_with_a_person_and_force_upgrade(mode: OrderingMode) -> None:
    store = make(mode)
    run(store, ev("identify", "p", 100_000, "anon", set={"k": 1}))
    before = person(store, "p")
    at_a_minute = run(store, ev("track", "anon", 160_000, personless=True, set={"k": 2}))
    later = run(store, ev("track", "anon", 160_001, personless=True))
    assert (at_a_minute.person_id, at_a_minute.person_mode, at_a_minute.properties) == (
        pid("p"),
        PersonMode.PROPERTYLESS,
        {},
    )
    assert (later.person_id, later.person_mode, later.created_at_ms, later.is_identified) == (
        pid("p"),
        PersonMode.FORCE_UPGRADE,
        100_000,
        True,
    )
    assert person(store, "p") == before  # not updated, not even last_seen


@BOTH
@pytest.mark.parametrize("kind", ["identify", "alias"])
def test_a6_personless_merging_events_are_rejected(mode: OrderingMode, kind: str) -> None:
    store = make(mode)
    run(store, ev("track", "a", 1_000))
    r = run(store, ev(kind, "u", 2_000, "a", personless=True, dangerous=kind == "alias"))
    assert (r.outcome, r.person_id) == (Outcome.REJECT, None)
    assert kinds(r) == ["invalid_event_when_process_person_profile_is_false"]
    assert store.person_for(T, "u") is None
    assert summary(person(store, "a")) == (pid("a"), {"a"}, False, 0)


# -- versions -----------------------------------------------------------------------------------


@BOTH
def test_version_counts_changes_only(mode: OrderingMode) -> None:
    store = make(mode)
    same = ev("track", "u", 1_000, set={"k": 1})
    steps = [
        (same, 0),  # creation
        (ev("track", "u", 500), 0),  # created_at moves: no bump
        (ev("track", "u", 9_000), 0),  # last_seen moves: no bump
        (same, 0),  # a replay changes nothing
        (ev("track", "u", 3_000, set={"k": 2}), 1),  # a property changes
        (ev("identify", "u", 4_000), 1),  # identify without other: nothing
        (ev("alias", "u", 5_000, "v"), 2),  # a join (and identified): one bump
        (ev("alias", "v", 6_000, "u"), 2),  # same person: nothing
        (ev("alias", "u", 7_000, "w", set={"k": 3}), 3),  # join + property: still one bump
    ]
    for event, version in steps:
        r = run(store, event)
        assert r.person_version == version, event
        assert person(store, "u").version == version


@BOTH
def test_version_identify_of_an_unidentified_person_bumps_once(mode: OrderingMode) -> None:
    store = make(mode, max_distinct_ids_per_person=1)
    run(store, ev("track", "u", 1_000), ev("track", "a", 1_000))
    r = run(store, ev("identify", "u", 2_000, "a"))  # refused by the cap, still identifies u
    assert (r.is_identified, r.person_version) == (True, 1)
    r = run(store, ev("identify", "u", 3_000, "a"))  # refused again: nothing changes
    assert (r.is_identified, r.person_version) == (True, 1)


# -- the pure property functions, directly ----------------------------------------------------


def state(op: str, value: JsonValue, ts: int, uid: str = "u") -> PropertyState:
    return PropertyState(PropertyOp(op), value, ts, uid)


@pytest.mark.parametrize(
    ("new", "current", "expected"),
    [
        (state("set", 1, 2), state("set", 2, 1), True),  # strong: later wins
        (state("set", 1, 1), state("set", 2, 2), False),
        (state("unset", None, 2), state("set", 2, 1), True),
        (state("set", 1, 1, "b"), state("set", 2, 1, "a"), True),  # same ts: larger uuid
        (state("set_once", 1, 1), state("set_once", 2, 2), True),  # weak: earlier wins
        (state("set_once", 1, 2), state("set_once", 2, 1), False),
        (state("set_once", 1, 1, "a"), state("set_once", 2, 1, "b"), True),
        (state("set", 1, 1), state("set_once", 2, 9), True),  # strong beats weak, any time
        (state("set_once", 1, 1), state("set", 2, 9), False),
        (state("set_once", 1, 0), state("unset", None, 9), False),
        (state("set", "b", 1), state("set", "a", 1), True),  # same (ts, uuid): larger text
        (state("set", "a", 1), state("set", "a", 1), False),
    ],
)
def test_outranks(new: PropertyState, current: PropertyState, expected: bool) -> None:
    assert props.outranks(new, current) is expected


def test_event_operations_reduce_to_one_per_key() -> None:
    updates = PropertyUpdates(
        set=(("s", 1), ("s", 2), ("both", "set")),
        set_once=(("o", 1), ("o", 2), ("both", "once"), ("gone", 1)),
        unset=("gone",),
    )
    assert props.event_operations(updates) == {
        "s": (PropertyOp.SET, 2),
        "o": (PropertyOp.SET_ONCE, 1),
        "both": (PropertyOp.SET, "set"),
        "gone": (PropertyOp.UNSET, None),
    }


def test_apply_timestamp_and_join() -> None:
    before = {"k": state("set", 1, 5), "o": state("set_once", "first", 5)}
    updates = PropertyUpdates(set=(("k", 2),), set_once=(("o", "earlier"), ("n", 3)))
    assert props.apply_timestamp(before, updates, 4, "e") == {
        "k": state("set", 1, 5),  # older set loses
        "o": state("set_once", "earlier", 4, "e"),  # earlier set_once wins
        "n": state("set_once", 3, 4, "e"),
    }
    other = {"k": state("unset", None, 6), "x": state("set", 0, 1)}
    assert props.join_timestamp(before, other) == {
        "k": state("unset", None, 6),
        "o": state("set_once", "first", 5),
        "x": state("set", 0, 1),
    }


def test_apply_arrival_and_merge() -> None:
    before = {"k": state("set", 1, 5), "same": state("set", "v", 5)}
    updates = PropertyUpdates(
        set=(("same", "v"), ("new", 1)), set_once=(("k", 9), ("o", 2)), unset=("k", "new")
    )
    assert props.apply_arrival(before, updates, 7, "e") == {
        "same": state("set", "v", 5),  # unchanged value: state not rewritten
        "new": state("set", 1, 7, "e"),  # absent before the event: the unset skips it
        "o": state("set", 2, 7, "e"),
    }
    into = {"k": state("set", "into", 1)}
    other = {"k": state("set", "other", 9), "j": state("set", "other", 9)}
    assert props.merge_arrival(into, other) == {
        "k": state("set", "into", 1),
        "j": state("set", "other", 9),
    }


def test_properties_size_counts_visible_keys_and_canonical_values() -> None:
    properties = {
        "k": state("set", "0123456789", 1),  # 1 + 12
        "é": state("set", {"b": 1, "a": [1, 2]}, 1),  # 2 + len('{"a":[1,2],"b":1}') = 17
        "gone": state("unset", None, 1),
    }
    assert props.properties_size(properties) == 13 + 2 + 17
