"""The stateless identity rules: what can be decided about one event without any state.

``prepare`` runs first for every event (docs/IDENTITY.md, "Pipeline of one event"). It returns a
final ``Resolution`` when no store is needed (a rejected event, or an illegal own distinct id,
emitted personless) and otherwise a ``PreparedOp`` for the store's stateful rules.
"""

from __future__ import annotations

from typing import Final

from worker.identity.config import IdentityConfig
from worker.identity.groups import prepare_groups
from worker.identity.ids import person_id_for
from worker.identity.model import (
    NO_UPDATES,
    EventKind,
    IdentityEvent,
    IdentityWarning,
    Outcome,
    PersonMode,
    PreparedOp,
    PropertyUpdates,
    Resolution,
    WarningKind,
)
from worker.identity.validation import is_illegal_for_merge, is_illegal_id, is_overlong

_MERGING_KINDS: Final = frozenset({EventKind.IDENTIFY, EventKind.ALIAS})


def _reject(event: IdentityEvent, warning: IdentityWarning) -> Resolution:
    return Resolution(
        event_uuid=event.uuid,
        outcome=Outcome.REJECT,
        person_id=None,
        person_mode=None,
        properties={},
        created_at_ms=None,
        is_identified=False,
        warnings=(warning,),
    )


def prepare(event: IdentityEvent, config: IdentityConfig) -> PreparedOp | Resolution:
    """Apply the stateless rules to ``event``."""
    if is_overlong(event.distinct_id, config):
        return _reject(
            event,
            IdentityWarning(
                WarningKind.SKIPPING_EVENT_INVALID_DISTINCT_ID,
                {"reason": "too_long", "length": str(len(event.distinct_id))},
            ),
        )
    merging = event.kind in _MERGING_KINDS
    if merging and not event.process_person:
        return _reject(
            event,
            IdentityWarning(
                WarningKind.INVALID_EVENT_WHEN_PROCESS_PERSON_PROFILE_IS_FALSE,
                {"event_kind": event.kind.value},
            ),
        )
    other = event.other_id if merging else None
    warnings: list[IdentityWarning] = []
    merge_with: str | None = None
    if other is not None and other != event.distinct_id:
        if _illegal(other, config) or _illegal(event.distinct_id, config):
            warnings.append(
                IdentityWarning(
                    WarningKind.CANNOT_MERGE_WITH_ILLEGAL_DISTINCT_ID,
                    {"illegal": "distinct_id" if _illegal(event.distinct_id, config) else "other"},
                )
            )
        else:
            merge_with = other

    if is_illegal_id(event.distinct_id, config):
        warnings.append(IdentityWarning(WarningKind.ILLEGAL_DISTINCT_ID))
        return personless(event, tuple(warnings))

    updates = event.updates
    violation = length_violation(updates, config)
    if violation is not None:
        warnings.append(
            IdentityWarning(WarningKind.PERSON_PROPERTIES_SIZE_VIOLATION, {"reason": violation})
        )
        updates = NO_UPDATES
    groups, group_warnings = (
        prepare_groups(event.groups, lambda u: length_violation(u, config))
        if event.groups
        else ((), ())
    )
    return PreparedOp(
        event=event,
        merge_with=merge_with,
        updates=updates,
        warnings=(*warnings, *group_warnings),
        groups=groups,
    )


def personless(
    event: IdentityEvent,
    warnings: tuple[IdentityWarning, ...],
    *,
    person_id: str | None = None,
    created_at_ms: int | None = None,
    is_identified: bool = False,
    mode: PersonMode = PersonMode.PROPERTYLESS,
) -> Resolution:
    """An emitted event that touches no person (A5, A6): with no person, the id its distinct
    id would give one (``person_id_for``); with one, that person's id, and empty properties."""
    return Resolution(
        event_uuid=event.uuid,
        outcome=Outcome.EMIT,
        person_id=person_id or person_id_for(event.tenant, event.distinct_id),
        person_mode=mode,
        properties={},
        created_at_ms=created_at_ms,
        is_identified=is_identified,
        warnings=warnings,
    )


def _illegal(distinct_id: str, config: IdentityConfig) -> bool:
    return is_illegal_for_merge(distinct_id, config)


def length_violation(updates: PropertyUpdates, config: IdentityConfig) -> str | None:
    """``key_too_long`` / ``value_too_long`` when one operation breaks a length limit."""
    if not (updates.set or updates.set_once or updates.unset):  # the common case
        return None
    keys = [k for k, _ in updates.set] + [k for k, _ in updates.set_once] + list(updates.unset)
    if any(len(k) > config.max_property_key_length for k in keys):
        return "key_too_long"
    values = [v for _, v in updates.set] + [v for _, v in updates.set_once]
    if any(isinstance(v, str) and len(v) > config.max_property_value_length for v in values):
        return "value_too_long"
    return None
