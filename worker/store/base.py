"""The identity store port: what the pipeline needs from any store (Redis, or the reference)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from worker.identity.buffer import BatchResult, BufferStats, Released
from worker.identity.model import IdentityEvent, Person, Resolution

__all__ = ["BatchResult", "BufferStats", "BufferingStore", "IdentityStore", "Released"]


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


class BufferingStore(IdentityStore, Protocol):
    """An identity store with the 60-second buffer (docs/BUFFER.md)."""

    def resolve_buffered(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
    ) -> BatchResult:
        """Like ``resolve_batch``, but an event with a ``buffer_payload`` may wait."""
        ...

    def release_due(self, tenant: str, now_ms: int, limit: int) -> list[Released]:
        """Release (apply and lease) what waited long enough, and expired leases."""
        ...

    def ack(self, tenant: str, entry_ids: Sequence[str]) -> None:
        """Forget released events (``Released.entry_id``) once their outputs are written."""
        ...

    def forget(self, tenant: str, sources: Sequence[str]) -> None:
        """Drop the receipts kept for ``sources`` (``IdentityEvent.source``): their input
        offsets are committed, so they will not be replayed. Idempotent."""
        ...

    def buffered_tenants(self) -> list[str]: ...

    def due_tenants(self, now_ms: int) -> list[str]:
        """Tenants whose buffer may have something due at ``now_ms`` (waiting long enough, or
        an expired lease); never misses one. What the releaser sweeps."""
        ...

    def buffer_stats(self, tenant: str, now_ms: int) -> BufferStats: ...
