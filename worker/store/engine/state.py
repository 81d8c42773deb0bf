"""What the engine reads and returns: the tenant's data (``TenantState``), the call's writes and
outcome, and its two errors (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from worker.errors import EngineError as EngineError
from worker.errors import Unsupported as Unsupported

# (the errors live in worker/errors.py, interpreted: a class the compiled build makes has no
# docstring, and every leaf of the tree tells the operator what to do)


class TenantState(Protocol):
    """The tenant's data, as the engine reads it."""

    @property
    def tenant(self) -> bytes:
        """The raw tenant (an implicit record's person id is derived from it)."""
        ...

    def group_types(self) -> set[bytes]:
        """The tenant's group types (the set ``<g>types``)."""
        ...

    def group_record(self, field: bytes) -> bytes | None:
        """A group's record (``<g>records``: type, a zero byte, key -> cjson)."""
        ...

    def group_members(self, person_id: bytes) -> bytes | None:
        """A person's memberships (``<g>members``: person id -> cjson)."""
        ...

    def value(self, distinct_id: bytes) -> bytes | None:
        """The field of the ids hash: ``b"P"`` and a parent, or a person record."""
        ...

    def members(self, root: bytes) -> bytes | None:
        """The members string of ``root`` (a tree past ``MEMBERS_INLINE`` ids)."""
        ...

    def any_fold(self) -> bool:
        """Whether the case-fold hash exists (else ``in_fold`` is false for every field)."""
        ...

    def in_fold(self, folded: bytes) -> bool:
        """Whether ``folded`` is a field of the case-fold hash."""
        ...

    def any_deleted(self) -> bool:
        """Whether the deleted hash exists (else ``deleted_person_id`` is None for every id)."""
        ...

    def deleted_person_id(self, distinct_id: bytes) -> str | None:
        """The person id a deleted id starts next (the deleted hash), or None."""
        ...

    def receipt(self, bucket: bytes, source: bytes) -> bytes | None:
        """The receipt kept for ``source`` in the receipt hash of ``bucket``, or None."""
        ...

    def has_queues(self) -> bool:
        """Whether the buffer's due set exists (some id has a queue)."""
        ...

    def queue(self, distinct_id: bytes) -> list[bytes]:
        """The entry ids waiting for ``distinct_id``, oldest first (``buf:q:<id>``)."""
        ...

    def waiting_count(self) -> int:
        """The tenant's number of waiting entries (``buf:n``)."""
        ...

    def buffered_entry(self, entry_id: bytes) -> bytes | None:
        """A buffered entry (``buf:e``): its ingestion time and op fields, as cjson."""
        ...

    def first_release(self, entry_id: bytes) -> bytes | None:
        """An entry's first release (``buf:r``): reason, time, reply entry."""
        ...

    def leased(self, entry_id: bytes) -> bool:
        """Whether an entry is leased (``buf:pending``)."""
        ...

    def expired_leases(self, now: int, limit: int) -> list[bytes]:
        """Up to ``limit`` entry ids whose lease ended by ``now``, earliest first."""
        ...

    def due_ids(self, now: int, limit: int) -> list[bytes]:
        """Up to ``limit`` ids whose queue is due by ``now``, earliest first."""
        ...


@dataclass(slots=True)
class Writes:
    """What the call writes: ``ids`` the fields of the ids hash set, ``members_deleted`` the
    members strings deleted, then ``members_appended`` (root -> the text appended; a root in
    ``members_fresh`` had its key deleted first), ``folds`` the case-fold fields added."""

    ids: dict[bytes, bytes] = field(default_factory=dict)
    members_deleted: set[bytes] = field(default_factory=set)
    members_appended: dict[bytes, bytes] = field(default_factory=dict)
    members_fresh: set[bytes] = field(default_factory=set)
    folds: list[bytes] = field(default_factory=list)
    receipts: dict[bytes, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    """bucket -> (source, receipt text) in the order kept"""
    group_types: list[bytes] = field(default_factory=list)
    group_records: dict[bytes, bytes] = field(default_factory=dict)
    group_members: dict[bytes, bytes] = field(default_factory=dict)
    group_members_deleted: set[bytes] = field(default_factory=set)
    queues_cleared: list[bytes] = field(default_factory=list)
    """ids whose queue was released (key deleted, removed from the due set), before pushes"""
    queues_pushed: dict[bytes, list[bytes]] = field(default_factory=dict)
    """id -> the entry ids appended to its queue"""
    due_added: dict[bytes, int] = field(default_factory=dict)
    """id -> due time, for a queue this call started"""
    entries: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)
    """entry id -> (the entry, its payload)"""
    releases: dict[bytes, bytes] = field(default_factory=dict)
    """entry id -> its first release (reason, time, reply entry)"""
    leases: dict[bytes, int | None] = field(default_factory=dict)
    """entry id -> lease deadline (None: the lease is dropped)"""
    waiting_delta: int = 0


@dataclass(slots=True)
class Outcome:
    entries: list[bytes]
    writes: Writes
    released: list[bytes] = field(default_factory=list)
    """the released entries of the reply (``reply.released`` texts), in release order"""
    buffer_touched: bool = False
    """whether the reply reports the tenant's next due time (computed after the writes, from
    Redis: the writer's to add)"""
