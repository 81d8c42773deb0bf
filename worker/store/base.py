"""The identity store port: what the pipeline needs from any store (Redis, or the reference)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Released:
    """A buffered event handed back: applied in the store, to be emitted, then acknowledged."""

    event_uuid: str
    reason: str
    """merge (its id got a person), timeout, overflow, or redelivery (an expired lease)"""
    ingested_ms: int
    payload: bytes
    resolution: Resolution


@dataclass(frozen=True, slots=True)
class BatchResult:
    resolutions: list[Resolution]
    """One per event, in order; ``Outcome.BUFFER`` for an event that now waits."""
    released: list[Released]
    """Buffered events the batch released (their ids got a person, or a cap overflowed)."""


@dataclass(frozen=True, slots=True)
class BufferStats:
    events: int
    """events waiting"""
    ids: int
    """distinct ids with events waiting"""
    leased: int
    """released to a worker, not yet acknowledged"""
    oldest_age_ms: int | None
    """how long the oldest waiting event has waited"""


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

    def ack(self, tenant: str, event_uuids: Sequence[str]) -> None:
        """Forget released events once their outputs are written."""
        ...

    def buffered_tenants(self) -> list[str]: ...

    def buffer_stats(self, tenant: str, now_ms: int) -> BufferStats: ...
