"""Which person-change records an event's resolution calls for (pure).

A person's state is announced when its version moved past what this worker last announced for
it; a merged-away person is announced as ``merged_into`` the survivor. Versions make the
compacted topic safe with several workers: a consumer keeps, per person id, the record with
the highest version.
"""

from __future__ import annotations

from collections import OrderedDict

from worker.identity.model import Outcome, PersonMode, Resolution


class AnnouncedVersions:
    """The last version announced per person id, for the most recent ``capacity`` persons."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._versions: OrderedDict[str, int] = OrderedDict()

    def is_new(self, person_id: str, version: int) -> bool:
        """True (and remembered) when ``version`` is above the last one announced here."""
        last = self._versions.get(person_id)
        if last is not None:
            self._versions.move_to_end(person_id)
            if last >= version:
                return False
        self._versions[person_id] = version
        if len(self._versions) > self._capacity:
            self._versions.popitem(last=False)
        return True


def changed_person(resolution: Resolution, announced: AnnouncedVersions) -> bool:
    """Whether the resolution's person state should be announced."""
    if (
        resolution.outcome is not Outcome.EMIT
        or resolution.person_mode is not PersonMode.FULL
        or resolution.person_id is None
        or resolution.person_version is None
    ):
        return False
    return announced.is_new(resolution.person_id, resolution.person_version)


def merged_away(resolution: Resolution) -> list[str]:
    """Person ids whose events now belong to the resolution's person: the old person of every
    override (a merged person, or the id a joining distinct id's personless events carried),
    each once, in order."""
    return list(dict.fromkeys(o.old_person_id for o in resolution.overrides))
