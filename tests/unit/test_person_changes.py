"""The pure choice of person-change records."""

from __future__ import annotations

from worker.identity.model import DistinctIdOverride, Outcome, PersonMode, Resolution
from worker.pipeline.person_changes import AnnouncedVersions, changed_person, merged_away


def res(
    version: int | None,
    *,
    mode: PersonMode = PersonMode.FULL,
    person: str = "p",
    overrides: tuple[DistinctIdOverride, ...] = (),
) -> Resolution:
    return Resolution(
        "u", Outcome.EMIT, person, mode, {}, 1, True, overrides=overrides, person_version=version
    )


def test_a_state_is_announced_once_per_version() -> None:
    announced = AnnouncedVersions()
    assert changed_person(res(0), announced)
    assert not changed_person(res(0), announced)  # same version: nothing changed
    assert changed_person(res(2), announced)
    assert not changed_person(res(1), announced)  # stale
    assert changed_person(res(0, person="q"), announced)


def test_personless_and_unversioned_resolutions_announce_nothing() -> None:
    announced = AnnouncedVersions()
    assert not changed_person(res(None), announced)
    assert not changed_person(res(3, mode=PersonMode.PROPERTYLESS), announced)
    rejected = Resolution("u", Outcome.REJECT, None, None, {}, None, False)
    assert not changed_person(rejected, announced)


def test_the_cache_forgets_the_least_recent_person() -> None:
    announced = AnnouncedVersions(capacity=2)
    for person in ("a", "b"):
        assert announced.is_new(person, 1)
    assert not announced.is_new("a", 1)  # touches a: b is now the oldest
    assert announced.is_new("c", 1)  # evicts b
    assert announced.is_new("b", 1)  # forgotten, announced again
    assert not announced.is_new("c", 1)


def test_merged_away_lists_each_old_person_once() -> None:
    overrides = (
        DistinctIdOverride("a2", "old", "p"),
        DistinctIdOverride("u2", "old", "p"),
        DistinctIdOverride("x", "px", "p"),
    )
    assert merged_away(res(4, overrides=overrides)) == ["old", "px"]
    assert merged_away(res(4)) == []
