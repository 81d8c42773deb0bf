"""The tenant's data as Redis will hold it once an earlier call of the round ran (pure: no I/O).

A round carries several calls of one tenant (``call_cost.split``), all planned before any is
sent: call ``k + 1`` must see what call ``k`` writes. ``Overlay(inner, writes)`` answers every
read from ``writes`` (the ``Writes`` of call ``k``, as ``commit_batch.lua`` applies them) where
they decide it, else from ``inner`` (the prefetch, or the overlay of an earlier call). Call
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
    """A ``TenantState``: ``inner`` after ``writes``."""

    def __init__(self, inner: TenantState, writes: Writes) -> None:
        self._inner = inner
        self._writes = writes
        self._buffer_written = _touches_buffer(writes)
        self._receipts: dict[tuple[bytes, bytes], bytes] = {
            (bucket, source): text
            for bucket, kept in writes.receipts.items()
            for source, text in kept
        }

    @property
    def tenant(self) -> bytes:
        return self._inner.tenant

    def _buffer(self, what: str) -> None:
        if self._buffer_written:
            raise NeedsFreshReads(f"{what} after an earlier call of the round wrote the buffer")

    def value(self, distinct_id: bytes) -> bytes | None:
        written = self._writes.ids.get(distinct_id)
        return written if written is not None else self._inner.value(distinct_id)

    def members(self, root: bytes) -> bytes | None:
        w = self._writes
        before = (
            None
            if root in w.members_deleted or root in w.members_fresh
            else self._inner.members(root)
        )
        appended = w.members_appended.get(root)
        if appended is None:
            return before
        return (before or b"") + appended

    def in_fold(self, folded: bytes) -> bool:
        return folded in self._writes.folds or self._inner.in_fold(folded)

    def deleted_person_id(self, distinct_id: bytes) -> str | None:
        return self._inner.deleted_person_id(distinct_id)  # calls never write deletions

    def receipt(self, bucket: bytes, source: bytes) -> bytes | None:
        written = self._receipts.get((bucket, source))
        return written if written is not None else self._inner.receipt(bucket, source)

    def group_types(self) -> set[bytes]:
        return self._inner.group_types() | set(self._writes.group_types)

    def group_record(self, field: bytes) -> bytes | None:
        written = self._writes.group_records.get(field)
        return written if written is not None else self._inner.group_record(field)

    def group_members(self, person_id: bytes) -> bytes | None:
        w = self._writes
        written = w.group_members.get(person_id)  # the HDELs run before the HSETs
        if written is not None:
            return written
        if person_id in w.group_members_deleted:
            return None
        return self._inner.group_members(person_id)

    def has_queues(self) -> bool:
        self._buffer("the due set")
        return self._inner.has_queues()

    def queue(self, distinct_id: bytes) -> list[bytes]:
        self._buffer("a queue")
        return self._inner.queue(distinct_id)

    def waiting_count(self) -> int:
        return self._inner.waiting_count() + self._writes.waiting_delta

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
