"""Illegal distinct ids (contract A5): PostHog's lists, configurable, with quoted forms."""

from __future__ import annotations

from functools import cache

from worker.identity.config import IdentityConfig

_QUOTES = ("'", '"')


def _unquoted(distinct_id: str) -> str:
    for quote in _QUOTES:
        if len(distinct_id) >= 2 and distinct_id[0] == quote and distinct_id[-1] == quote:
            return distinct_id[1:-1]
    return distinct_id


@cache
def _folded(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(name.casefold() for name in names)


def is_illegal_id(distinct_id: str, config: IdentityConfig) -> bool:
    """Empty or whitespace-only, or (bare or in single/double quotes, surrounding white space
    ignored) one of the configured
    illegal ids: case-insensitively for ``illegal_ids_case_insensitive``, exactly for
    ``illegal_ids_case_sensitive``. Length is checked separately (``is_overlong``)."""
    stripped = distinct_id.strip()
    if not stripped:
        return True
    insensitive = _folded(config.illegal_ids_case_insensitive)
    for candidate in {stripped, _unquoted(stripped)}:
        if candidate in config.illegal_ids_case_sensitive or candidate.casefold() in insensitive:
            return True
    return False


def is_overlong(distinct_id: str, config: IdentityConfig) -> bool:
    """Longer than ``max_distinct_id_length`` characters: the event is rejected."""
    return len(distinct_id) > config.max_distinct_id_length


NUL = "\x00"


def is_illegal_for_merge(distinct_id: str, config: IdentityConfig) -> bool:
    """An id that may not take part in a merge (``cannot_merge_with_illegal_distinct_id``):
    illegal (``is_illegal_id``), too long (``is_overlong``), or holding a NUL character, which
    PostHog refuses to merge although the event itself goes on."""
    return (
        NUL in distinct_id or is_illegal_id(distinct_id, config) or is_overlong(distinct_id, config)
    )
