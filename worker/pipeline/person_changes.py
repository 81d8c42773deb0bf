"""Which person-change records an event's resolution calls for (pure).

A person's state is announced when the store says the event changed it
(``Resolution.person_changed``: the person was created or its version moved). The answer is
part of the store's reply, and a replayed event is answered from the store's receipt, so a
replay announces exactly what the first run did, whatever this worker remembers. A merged-away
person is announced as ``merged_into`` the survivor. Versions make the compacted topic safe with
several workers: a consumer keeps, per person id, the record with the highest version.
"""

from __future__ import annotations

from worker.identity.model import Outcome, PersonMode, Resolution


def changed_person(resolution: Resolution) -> bool:
    """Whether the resolution's person state should be announced."""
    return (
        resolution.person_changed
        and resolution.outcome is Outcome.EMIT
        and resolution.person_mode is PersonMode.FULL
        and resolution.person_id is not None
        and resolution.person_version is not None
    )


def merged_away(resolution: Resolution) -> list[str]:
    """Person ids whose events now belong to the resolution's person: the old person of every
    override (a merged person, or the id a joining distinct id's personless events carried),
    each once, in order."""
    overrides = resolution.overrides
    if not overrides:  # the common case
        return []
    return list(dict.fromkeys(o.old_person_id for o in overrides))
