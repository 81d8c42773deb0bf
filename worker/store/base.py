"""The identity store port: what the pipeline needs from any store (Redis, or the reference)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from worker.identity.model import IdentityEvent, Person, Resolution


class IdentityStore(Protocol):
    """Resolves batches of events of one tenant to persons, atomically per call.

    ``resolve_batch`` applies the events in order and returns one ``Resolution`` per event, in
    the same order. Implementations must be idempotent in ``timestamp`` mode: applying events
    that were already applied leaves the persons unchanged.
    """

    def resolve_batch(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
    ) -> list[Resolution]: ...

    def person_for(self, tenant: str, distinct_id: str) -> Person | None:
        """The person that holds ``distinct_id``, with all its distinct ids, or ``None``."""
        ...

    def persons(self, tenant: str) -> list[Person]:
        """Every person of a tenant (for inspection and tests; may be slow on big tenants)."""
        ...
