"""The group rules (contract A9) on the reference model: memberships, merges, personless events,
the type cap, group properties under A4 in both ordering modes."""

from __future__ import annotations

from worker.identity.config import IdentityConfig
from worker.identity.model import (
    EventKind,
    GroupChange,
    GroupInput,
    GroupView,
    IdentityEvent,
    IdentityWarning,
    OrderingMode,
    PropertyUpdates,
    Resolution,
    WarningKind,
)
from worker.identity.reference import ReferenceStore

T0 = 1_700_000_000_000
_n = iter(range(1_000_000))


def ev(
    distinct_id: str,
    *groups: GroupInput,
    ts: int = 0,
    kind: EventKind = EventKind.TRACK,
    other: str | None = None,
    process_person: bool = True,
) -> IdentityEvent:
    return IdentityEvent(
        tenant="t",
        kind=kind,
        distinct_id=distinct_id,
        uuid=f"00000000-0000-0000-0000-{next(_n):012d}",
        timestamp_ms=T0 + ts,
        other_id=other,
        process_person=process_person,
        groups=groups,
    )


def run(store: ReferenceStore, *events: IdentityEvent) -> list[Resolution]:
    return store.resolve_batch("t", list(events), T0)


def keys(resolution: Resolution) -> dict[str, str]:
    return {t: view.key for t, view in resolution.groups.items()}


def sets(**values: object) -> PropertyUpdates:
    return PropertyUpdates(set=tuple(values.items()))  # type: ignore[arg-type]


def test_explicit_groups_attach_one_event_and_remembered_ones_stay() -> None:
    store = ReferenceStore()
    first, second = run(store, ev("u", GroupInput("company", "acme")), ev("u"))
    assert keys(first) == {"company": "acme"}
    assert keys(second) == {}
    remembered, later = run(store, ev("u", GroupInput("company", "beta", remember=True)), ev("u"))
    assert keys(remembered) == keys(later) == {"company": "beta"}
    (explicit,) = run(store, ev("u", GroupInput("company", "acme")))
    assert keys(explicit) == {"company": "acme"}  # the event's own wins for that event
    assert keys(run(store, ev("u"))[0]) == {"company": "beta"}


def test_group_properties_are_carried_and_announced_when_changed() -> None:
    store = ReferenceStore()
    update = GroupInput("company", "acme", attach=False, updates=sets(name="Acme"))
    event = ev("admin", update, process_person=False)
    (changed,) = run(store, event)
    assert changed.groups == {}  # not attached
    assert changed.group_changes == (GroupChange("company", "acme", 1, {"name": "Acme"}),)
    (again,) = run(store, event)
    assert again.group_changes == ()  # a replay changes nothing
    (tagged,) = run(store, ev("u", GroupInput("company", "acme")))
    assert tagged.groups == {"company": GroupView("acme", {"name": "Acme"})}


def test_personless_events_carry_explicit_groups_and_never_remember() -> None:
    store = ReferenceStore()
    run(store, ev("u"))
    (personless,) = run(
        store, ev("u", GroupInput("company", "acme", remember=True), process_person=False)
    )
    assert keys(personless) == {"company": "acme"}
    assert keys(run(store, ev("u"))[0]) == {}
    assert store.memberships("t") == {}


def test_a_merge_keeps_the_survivors_membership_and_takes_the_others_where_it_has_none() -> None:
    for ordering in OrderingMode:
        store = ReferenceStore(IdentityConfig(ordering=ordering))
        run(
            store,
            ev("user", GroupInput("company", "survivor", remember=True), ts=1),
            ev("anon", GroupInput("company", "merged", remember=True), ts=2),
            ev("anon", GroupInput("team", "t1", remember=True), ts=2),
        )
        (merge,) = run(store, ev("user", kind=EventKind.IDENTIFY, other="anon", ts=3))
        assert merge.merged
        # timestamp mode: the newer per type; arrival mode: the survivor's
        want = "merged" if ordering is OrderingMode.TIMESTAMP else "survivor"
        assert keys(merge) == {"company": want, "team": "t1"}, ordering
        assert list(store.memberships("t")) == [merge.person_id]


def test_timestamp_mode_membership_is_the_latest_by_event_time() -> None:
    store = ReferenceStore()
    run(store, ev("u", GroupInput("company", "new", remember=True), ts=10))
    (late,) = run(store, ev("u", GroupInput("company", "old", remember=True), ts=5))
    assert keys(late) == {"company": "old"}  # explicit for this event
    assert keys(run(store, ev("u", ts=20))[0]) == {"company": "new"}


def test_a_type_past_the_cap_is_dropped_with_a_warning_others_kept() -> None:
    store = ReferenceStore(IdentityConfig(max_group_types=2))
    (event,) = run(
        store,
        ev("u", GroupInput("a", "1"), GroupInput("b", "2"), GroupInput("c", "3", remember=True)),
    )
    assert keys(event) == {"a": "1", "b": "2"}
    assert event.warnings == (IdentityWarning(WarningKind.GROUP_TYPE_LIMIT),)
    assert store.group_types("t") == ["a", "b"]
    assert store.memberships("t") == {}


def test_group_properties_follow_the_length_and_size_limits() -> None:
    config = IdentityConfig(max_property_value_length=4, max_properties_bytes=20)
    store = ReferenceStore(config)
    (long_value,) = run(store, ev("u", GroupInput("company", "a", updates=sets(k="too long"))))
    assert long_value.warnings == (
        IdentityWarning(WarningKind.GROUP_PROPERTIES_SIZE_VIOLATION, {"reason": "value_too_long"}),
    )
    (too_big,) = run(
        store, ev("u", GroupInput("company", "a", updates=sets(a="1234", b="1234", c="1234")))
    )
    assert too_big.warnings == (
        IdentityWarning(
            WarningKind.GROUP_PROPERTIES_SIZE_VIOLATION, {"reason": "properties_too_large"}
        ),
    )
    assert too_big.group_changes == ()
    assert store.groups("t") == []
