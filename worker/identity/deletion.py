"""Person deletion (contract A10): what a deletion removed (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Deletion:
    """A deleted person: its id, every distinct id it held (sorted), and how many buffered
    events of those ids were dropped with it."""

    tenant: str
    person_id: str
    distinct_ids: tuple[str, ...]
    buffered: int = 0
