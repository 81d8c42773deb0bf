"""The tenant's data as Redis will hold it once an earlier call of the round ran (pure: no I/O).

A round carries several calls of one tenant (``call_cost.split``), all planned before any is
sent: call ``k + 1`` must see what calls ``1..k`` write. ``Overlay(inner)``, with the ``Writes``
of each planned call laid on by ``add`` (as ``commit_batch.lua`` applies them, in order), answers
every read from those writes where they decide it, else from ``inner`` (the prefetch). Call
``k + 1``'s commit runs after call ``k``'s (they chain), so its checks, recorded through the
overlay, hold then unless another writer came between.

The buffer's structures (queues, the due set, entries, releases, leases) are not rebuilt: a
read of them after an earlier call of the round wrote to them raises ``NeedsFreshReads``, and
the store plans that call once the earlier ones answered, from a fresh prefetch. The waiting
count is exact (a sum).
"""

from __future__ import annotations

from worker.errors import NeedsFreshReads
from worker.store.engine.state import TenantState, Writes


def _touches_buffer(writes: Writes) -> bool:
    return bool(
        writes.queues_cleared
        or writes.queues_pushed
        or writes.due_added
        or writes.entries
        or writes.releases
        or writes.leases
    )


class Overlay:
    """A ``TenantState``: ``inner`` after the writes ``add`` lays on, in order. The writes are
    folded into one layer as they come (a round's ``k``-th call reads through one lookup, not
    through ``k - 1`` nested views)."""

    def __init__(self, inner: TenantState) -> None:
        self._inner = inner
        self._ids: dict[bytes, bytes] = {}
        self._members: dict[bytes, tuple[bool, bytes | None]] = {}
        """root -> (its key deleted first, the text appended since)"""
        self._folds: set[bytes] = set()
        self._receipts: dict[tuple[bytes, bytes], bytes] = {}
        self._group_types: set[bytes] = set()
        self._group_records: dict[bytes, bytes] = {}
        self._group_members: dict[bytes, bytes | None] = {}
        """person id -> its memberships text (None: deleted)"""
        self._buffer_written = False
        self._waiting_delta = 0

    def add(self, writes: Writes) -> None:
        """Lay ``writes`` (a later call's, as ``commit_batch.lua`` applies them) on top."""
        self._ids.update(writes.ids)
        members = self._members
        for root in writes.members_deleted:
            members[root] = (True, None)
        for root in writes.members_fresh:
            members[root] = (True, None)
        for root, text in writes.members_appended.items():
            reset, appended = members.get(root, (False, None))
            members[root] = (reset, text if appended is None else appended + text)
        self._folds.update(writes.folds)
        receipts = self._receipts
        for bucket, kept in writes.receipts.items():
            for source, text in kept:
                receipts[(bucket, source)] = text
        self._group_types.update(writes.group_types)
        self._group_records.update(writes.group_records)
        for person_id in writes.group_members_deleted:  # the HDELs run before the HSETs
            self._group_members[person_id] = None
        self._group_members.update(writes.group_members)
        self._buffer_written = self._buffer_written or _touches_buffer(writes)
        self._waiting_delta += writes.waiting_delta

    @property
    def tenant(self) -> bytes:
        return self._inner.tenant

    def _buffer(self, what: str) -> None:
        if self._buffer_written:
            raise NeedsFreshReads(f"{what} after an earlier call of the round wrote the buffer")

    def value(self, distinct_id: bytes) -> bytes | None:
        written = self._ids.get(distinct_id)
        return written if written is not None else self._inner.value(distinct_id)

    def members(self, root: bytes) -> bytes | None:
        found = self._members.get(root)
        if found is None:
            return self._inner.members(root)
        reset, appended = found
        before = None if reset else self._inner.members(root)
        if appended is None:
            return before
        return (before or b"") + appended

    def any_fold(self) -> bool:
        return bool(self._folds) or self._inner.any_fold()

    def any_deleted(self) -> bool:
        return self._inner.any_deleted()  # calls never write deletions

    def in_fold(self, folded: bytes) -> bool:
        return folded in self._folds or self._inner.in_fold(folded)

    def deleted_person_id(self, distinct_id: bytes) -> str | None:
        return self._inner.deleted_person_id(distinct_id)  # calls never write deletions

    def receipt(self, bucket: bytes, source: bytes) -> bytes | None:
        written = self._receipts.get((bucket, source))
        return written if written is not None else self._inner.receipt(bucket, source)

    def group_types(self) -> set[bytes]:
        return self._inner.group_types() | self._group_types

    def group_record(self, field: bytes) -> bytes | None:
        written = self._group_records.get(field)
        return written if written is not None else self._inner.group_record(field)

    def group_members(self, person_id: bytes) -> bytes | None:
        if person_id in self._group_members:
            return self._group_members[person_id]
        return self._inner.group_members(person_id)

    def has_queues(self) -> bool:
        self._buffer("the due set")
        return self._inner.has_queues()

    def queue(self, distinct_id: bytes) -> list[bytes]:
        self._buffer("a queue")
        return self._inner.queue(distinct_id)

    def waiting_count(self) -> int:
        return self._inner.waiting_count() + self._waiting_delta

    def buffered_entry(self, entry_id: bytes) -> bytes | None:
        self._buffer("an entry")
        return self._inner.buffered_entry(entry_id)

    def first_release(self, entry_id: bytes) -> bytes | None:
        self._buffer("a release")
        return self._inner.first_release(entry_id)

    def leased(self, entry_id: bytes) -> bool:
        self._buffer("a lease")
        return self._inner.leased(entry_id)

    def expired_leases(self, now: int, limit: int) -> list[bytes]:
        self._buffer("the leases")
        return self._inner.expired_leases(now, limit)

    def due_ids(self, now: int, limit: int) -> list[bytes]:
        self._buffer("the due set")
        return self._inner.due_ids(now, limit)
