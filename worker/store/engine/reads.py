"""What a call read (pure: no I/O): the read set a writer checks before it applies the call's
writes (docs/ARCHITECTURE.md, *Rules in the worker*, step 3).

``Recording`` wraps a ``TenantState`` and keeps every read and its answer (``reads``), each
under a key naming what was read: ``("value", id)``, ``("queue", id)``, ``("expired_leases",
now, limit)``... ``Recorded`` is a ``TenantState`` that answers from such reads alone and raises
``EngineError`` for any other: the engine's outcome is a function of its read set
(``tests/integration/test_engine.py`` runs every call a second time on ``Recorded`` and requires
the same outcome), so a writer that finds every recorded read answered the same at commit time
may apply the writes computed from them.
"""

from __future__ import annotations

from worker.store.engine.state import EngineError, TenantState

ReadKey = tuple[object, ...]
"""What was read: the method's name, then its arguments."""


class Recording:
    """A ``TenantState`` that passes every read to ``inner`` and records it."""

    def __init__(self, inner: TenantState) -> None:
        self._inner = inner
        self.reads: dict[ReadKey, object] = {}

    def _keep(self, key: ReadKey, answer: object) -> None:
        self.reads.setdefault(key, answer)

    @property
    def tenant(self) -> bytes:
        return self._inner.tenant

    def value(self, distinct_id: bytes) -> bytes | None:
        answer = self._inner.value(distinct_id)
        self._keep(("value", distinct_id), answer)
        return answer

    def members(self, root: bytes) -> bytes | None:
        answer = self._inner.members(root)
        self._keep(("members", root), answer)
        return answer

    def any_fold(self) -> bool:
        answer = self._inner.any_fold()
        self._keep(("any_fold",), answer)
        return answer

    def any_deleted(self) -> bool:
        answer = self._inner.any_deleted()
        self._keep(("any_deleted",), answer)
        return answer

    def in_fold(self, folded: bytes) -> bool:
        answer = self._inner.in_fold(folded)
        self._keep(("in_fold", folded), answer)
        return answer

    def deleted_person_id(self, distinct_id: bytes) -> str | None:
        answer = self._inner.deleted_person_id(distinct_id)
        self._keep(("deleted_person_id", distinct_id), answer)
        return answer

    def receipt(self, bucket: bytes, source: bytes) -> bytes | None:
        answer = self._inner.receipt(bucket, source)
        self._keep(("receipt", bucket, source), answer)
        return answer

    def group_types(self) -> set[bytes]:
        answer = self._inner.group_types()
        self._keep(("group_types",), frozenset(answer))
        return answer

    def group_record(self, field: bytes) -> bytes | None:
        answer = self._inner.group_record(field)
        self._keep(("group_record", field), answer)
        return answer

    def group_members(self, person_id: bytes) -> bytes | None:
        answer = self._inner.group_members(person_id)
        self._keep(("group_members", person_id), answer)
        return answer

    def has_queues(self) -> bool:
        answer = self._inner.has_queues()
        self._keep(("has_queues",), answer)
        return answer

    def queue(self, distinct_id: bytes) -> list[bytes]:
        answer = self._inner.queue(distinct_id)
        self._keep(("queue", distinct_id), tuple(answer))
        return answer

    def waiting_count(self) -> int:
        answer = self._inner.waiting_count()
        self._keep(("waiting_count",), answer)
        return answer

    def buffered_entry(self, entry_id: bytes) -> bytes | None:
        answer = self._inner.buffered_entry(entry_id)
        self._keep(("buffered_entry", entry_id), answer)
        return answer

    def first_release(self, entry_id: bytes) -> bytes | None:
        answer = self._inner.first_release(entry_id)
        self._keep(("first_release", entry_id), answer)
        return answer

    def leased(self, entry_id: bytes) -> bool:
        answer = self._inner.leased(entry_id)
        self._keep(("leased", entry_id), answer)
        return answer

    def expired_leases(self, now: int, limit: int) -> list[bytes]:
        answer = self._inner.expired_leases(now, limit)
        self._keep(("expired_leases", now, limit), tuple(answer))
        return answer

    def due_ids(self, now: int, limit: int) -> list[bytes]:
        answer = self._inner.due_ids(now, limit)
        self._keep(("due_ids", now, limit), tuple(answer))
        return answer


class Recorded:
    """A ``TenantState`` answering from ``reads`` (``Recording.reads``) alone."""

    def __init__(self, tenant: bytes, reads: dict[ReadKey, object]) -> None:
        self.tenant = tenant
        self._reads = reads

    def _answer(self, *key: object) -> object:
        if key not in self._reads:
            raise EngineError(f"a read outside the read set: {key!r}")
        return self._reads[key]

    def value(self, distinct_id: bytes) -> bytes | None:
        return _optional_bytes(self._answer("value", distinct_id))

    def members(self, root: bytes) -> bytes | None:
        return _optional_bytes(self._answer("members", root))

    def any_fold(self) -> bool:
        return bool(self._answer("any_fold"))

    def any_deleted(self) -> bool:
        return bool(self._answer("any_deleted"))

    def in_fold(self, folded: bytes) -> bool:
        return bool(self._answer("in_fold", folded))

    def deleted_person_id(self, distinct_id: bytes) -> str | None:
        answer = self._answer("deleted_person_id", distinct_id)
        return answer if isinstance(answer, str) else None

    def receipt(self, bucket: bytes, source: bytes) -> bytes | None:
        return _optional_bytes(self._answer("receipt", bucket, source))

    def group_types(self) -> set[bytes]:
        answer = self._answer("group_types")
        return (
            {t for t in answer if isinstance(t, bytes)} if isinstance(answer, frozenset) else set()
        )

    def group_record(self, field: bytes) -> bytes | None:
        return _optional_bytes(self._answer("group_record", field))

    def group_members(self, person_id: bytes) -> bytes | None:
        return _optional_bytes(self._answer("group_members", person_id))

    def has_queues(self) -> bool:
        return bool(self._answer("has_queues"))

    def queue(self, distinct_id: bytes) -> list[bytes]:
        return _bytes_list(self._answer("queue", distinct_id))

    def waiting_count(self) -> int:
        answer = self._answer("waiting_count")
        return answer if isinstance(answer, int) else 0

    def buffered_entry(self, entry_id: bytes) -> bytes | None:
        return _optional_bytes(self._answer("buffered_entry", entry_id))

    def first_release(self, entry_id: bytes) -> bytes | None:
        return _optional_bytes(self._answer("first_release", entry_id))

    def leased(self, entry_id: bytes) -> bool:
        return bool(self._answer("leased", entry_id))

    def expired_leases(self, now: int, limit: int) -> list[bytes]:
        return _bytes_list(self._answer("expired_leases", now, limit))

    def due_ids(self, now: int, limit: int) -> list[bytes]:
        return _bytes_list(self._answer("due_ids", now, limit))


def _optional_bytes(answer: object) -> bytes | None:
    return answer if isinstance(answer, bytes) else None


def _bytes_list(answer: object) -> list[bytes]:
    return [item for item in answer if isinstance(item, bytes)] if isinstance(answer, tuple) else []
