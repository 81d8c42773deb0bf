"""Illegal distinct ids (contract A5): PostHog's lists, configurable, with quoted forms."""

from __future__ import annotations

from typing import Final

from worker.identity.config import IdentityConfig

_QUOTES: Final = ("'", '"')


def _unquoted(distinct_id: str) -> str:
    for quote in _QUOTES:
        if len(distinct_id) >= 2 and distinct_id[0] == quote and distinct_id[-1] == quote:
            return distinct_id[1:-1]
    return distinct_id


_SETS: dict[int, tuple[tuple[str, ...], frozenset[str], frozenset[str]]] = {}
"""The lookup sets of each configured list, by the list's identity (hashing the list itself on
every event would cost more than the lookups)."""
_MAX_SETS: Final = 64


def _sets(names: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """``names`` as a set, and case-folded as a set."""
    entry = _SETS.get(id(names))
    if entry is None or entry[0] is not names:
        if len(_SETS) >= _MAX_SETS:
            _SETS.clear()
        entry = (names, frozenset(names), frozenset(name.casefold() for name in names))
        _SETS[id(names)] = entry
    return entry[1], entry[2]


def _listed(candidate: str, config: IdentityConfig) -> bool:
    exact, _ = _sets(config.illegal_ids_case_sensitive)
    _, folded = _sets(config.illegal_ids_case_insensitive)
    return candidate in exact or candidate.casefold() in folded


def is_illegal_id(distinct_id: str, config: IdentityConfig) -> bool:
    """Empty or whitespace-only, or (bare or in single/double quotes, surrounding white space
    ignored) one of the configured
    illegal ids: case-insensitively for ``illegal_ids_case_insensitive``, exactly for
    ``illegal_ids_case_sensitive``. Length is checked separately (``is_overlong``)."""
    stripped = distinct_id.strip()
    if not stripped:
        return True
    if _listed(stripped, config):
        return True
    unquoted = _unquoted(stripped)
    return unquoted is not stripped and _listed(unquoted, config)


def is_overlong(distinct_id: str, config: IdentityConfig) -> bool:
    """Longer than ``max_distinct_id_length`` characters: the event is rejected."""
    return len(distinct_id) > config.max_distinct_id_length


NUL: Final = "\x00"


def is_illegal_for_merge(distinct_id: str, config: IdentityConfig) -> bool:
    """An id that may not take part in a merge (``cannot_merge_with_illegal_distinct_id``):
    illegal (``is_illegal_id``), too long (``is_overlong``), or holding a NUL character, which
    PostHog refuses to merge although the event itself goes on."""
    return (
        NUL in distinct_id or is_illegal_id(distinct_id, config) or is_overlong(distinct_id, config)
    )
