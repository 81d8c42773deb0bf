"""The pure choice of person-change records."""

from __future__ import annotations

from worker.identity.model import DistinctIdOverride, Outcome, PersonMode, Resolution
from worker.pipeline.person_changes import changed_person, merged_away


def res(
    version: int | None,
    *,
    mode: PersonMode = PersonMode.FULL,
    person: str = "p",
    overrides: tuple[DistinctIdOverride, ...] = (),
    changed: bool = True,
) -> Resolution:
    return Resolution(
        "u",
        Outcome.EMIT,
        person,
        mode,
        {},
        1,
        True,
        overrides=overrides,
        person_version=version,
        person_changed=changed,
    )


def test_a_state_is_announced_iff_the_store_says_the_event_changed_it() -> None:
    assert changed_person(res(0))
    assert not changed_person(res(0, changed=False))
    assert changed_person(res(7))
    # the answer alone decides: a replay answered from the store's receipt announces again
    assert changed_person(res(7))


def test_personless_and_unversioned_resolutions_announce_nothing() -> None:
    assert not changed_person(res(None))
    assert not changed_person(res(3, mode=PersonMode.PROPERTYLESS))
    rejected = Resolution("u", Outcome.REJECT, None, None, {}, None, False, person_changed=True)
    assert not changed_person(rejected)


def test_merged_away_lists_each_old_person_once() -> None:
    overrides = (
        DistinctIdOverride("a2", "old", "p"),
        DistinctIdOverride("u2", "old", "p"),
        DistinctIdOverride("x", "px", "p"),
    )
    assert merged_away(res(4, overrides=overrides)) == ["old", "px"]
    assert merged_away(res(4)) == []
