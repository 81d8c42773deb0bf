"""The tenant's data for one call of the engine, read up front, the rest read when the engine
asks for it (docs/ARCHITECTURE.md, *Rules in the worker*, step 3); ``prefetch_many`` reads the
calls of a round's wave, every tenant's, together.

``prefetch(client, keys, call)`` reads, in one pipeline, the call's ids (each op's ``into``,
``other``, and the lowercase form of an id that is not lowercase, which a case collision reads),
the receipts of the ops' sources and the tenant-wide values nearly every call reads, then their
ancestors with one ``HMGET`` per level of parents, as the resolve script's prefetch does
(``union_find.lua``); plain commands, so Redis spends on them only what the commands cost (no
script: a read-only script doing the same cost Redis 2.6 µs per op on the drain mix,
docs/BENCHMARKS.md). It returns a ``PrefetchedState``: a ``TenantState``
(``worker/store/engine/state.py``) that answers from what was read, and reads anything else
from Redis, one command each, counting them (``misses``): a members string of a merged tree
past 8 ids, the buffer's queues and entries, the groups' records and memberships, case folds and
deletions of a tenant that has some. Nothing read is trusted: the commit checks it all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import redis

from worker.store.engine.call import Call
from worker.store.keys import TenantKeys


def _ids_of(calls: Sequence[Call]) -> list[bytes]:
    ids: dict[bytes, None] = {}
    for call in calls:
        for op in call.ops:
            for distinct_id in (op.into, op.other):
                if distinct_id:
                    ids[distinct_id] = None
                    folded = distinct_id.lower()
                    if folded != distinct_id:
                        ids[folded] = None
    return list(ids)


def prefetch(client: redis.Redis, keys: TenantKeys, call: Call) -> PrefetchedState:
    """The call's data as a state (``prefetch_many`` of one call)."""
    return prefetch_many(client, [(keys, [call])])[0]


def prefetch_many(
    client: redis.Redis, requests: Sequence[tuple[TenantKeys, Sequence[Call]]]
) -> list[PrefetchedState]:
    """Per request (a tenant's keys and calls), the calls' data as one state: one pipeline for
    every request (the ops' ids, the receipts of their sources, the tenant-wide values), then
    one pipeline of ``HMGET``s per level of parents (none for ids that are roots, the common
    case: a tree is one level deep but for the ids merged into a bigger one)."""
    pipe = client.pipeline(transaction=False)
    plans: list[tuple[list[bytes], dict[bytes, list[bytes]]]] = []
    for keys, calls in requests:
        ids = _ids_of(calls)
        by_bucket: dict[bytes, dict[bytes, None]] = {}
        for call in calls:
            for op in call.ops:
                if op.source:
                    by_bucket.setdefault(op.bucket, {})[op.source] = None
        buckets = {bucket: list(sources) for bucket, sources in by_bucket.items()}
        plans.append((ids, buckets))
        if ids:
            pipe.hmget(keys.ids, ids)
        for bucket, sources in buckets.items():
            pipe.hmget(keys.receipts_prefix.encode() + bucket, sources)
        pipe.exists(keys.buffer_due)
        pipe.get(keys.buffer_count)
        pipe.smembers(keys.groups_prefix + "types")
        pipe.exists(keys.case_folds)
        pipe.exists(keys.deleted)
    replies: list[Any] = pipe.execute()
    at = 0
    states: list[PrefetchedState] = []
    levels: list[tuple[list[bytes], list[Any]]] = []
    for (keys, _), (ids, buckets) in zip(requests, plans, strict=True):
        got: list[Any] = []
        if ids:
            got, at = replies[at], at + 1
        found: dict[tuple[bytes, bytes], bytes | None] = {}
        for bucket, sources in buckets.items():
            for source, text in zip(sources, replies[at], strict=True):
                found[(bucket, source)] = text
            at += 1
        due, waiting, types, fold, deleted = replies[at : at + 5]
        at += 5
        states.append(
            PrefetchedState(
                client,
                keys,
                {},
                found,
                bool(due),
                int(waiting or 0),
                types,
                bool(fold),
                bool(deleted),
            )
        )
        levels.append((ids, got))
    while any(level for level, _ in levels):
        pipe = client.pipeline(transaction=False)
        asked: list[int] = []
        for index, ((level, got), state) in enumerate(zip(levels, states, strict=True)):
            parents = state.take_level(level, got)
            levels[index] = (parents, [])
            if parents:
                pipe.hmget(state.keys.ids, parents)
                asked.append(index)
        if not asked:
            break
        for index, got in zip(asked, pipe.execute(), strict=True):
            levels[index] = (levels[index][0], got)
    return states


class PrefetchedState:
    """A ``TenantState`` over what ``prefetch`` read; what it lacks is read from Redis."""

    def __init__(
        self,
        client: redis.Redis,
        keys: TenantKeys,
        values: dict[bytes, bytes | None],
        receipts: dict[tuple[bytes, bytes], bytes | None],
        has_queues: bool,
        waiting: int,
        types: Iterable[bytes],
        any_fold: bool,
        any_deleted: bool,
    ) -> None:
        self._client = client
        self._keys = keys
        self.tenant = keys.tenant.encode("utf-8", "surrogatepass")
        self.misses = 0
        """reads the prefetch did not answer"""
        self._values = values
        self._receipts = receipts
        self._has_queues = has_queues
        self._waiting = waiting
        self._types = set(types)
        self._any_fold = any_fold
        self._any_deleted = any_deleted

    @property
    def keys(self) -> TenantKeys:
        return self._keys

    def take_level(self, level: list[bytes], got: list[Any]) -> list[bytes]:
        """Keep the values ``got`` of the ids ``level``; the parents not read yet."""
        values = self._values
        parents: dict[bytes, None] = {}
        for distinct_id, value in zip(level, got, strict=True):
            values[distinct_id] = value
        for value in got:
            if value and value[:1] == b"P" and value[1:] not in values:
                parents[value[1:]] = None
        return list(parents)

    def forgotten(self, receipts: Iterable[tuple[bytes, bytes]]) -> None:
        """Receipts (bucket, source) whose ``HDEL`` runs before the call: read as absent."""
        for bucket, source in receipts:
            self._receipts[(bucket, source)] = None

    def _miss(self) -> redis.Redis:
        self.misses += 1
        return self._client

    def value(self, distinct_id: bytes) -> bytes | None:
        if distinct_id in self._values:
            return self._values[distinct_id]
        return cast(bytes | None, self._miss().hget(self._keys.ids, distinct_id))

    def members(self, root: bytes) -> bytes | None:
        key = self._keys.members_prefix.encode() + root
        return cast(bytes | None, self._miss().get(key))

    def any_fold(self) -> bool:
        return self._any_fold

    def any_deleted(self) -> bool:
        return self._any_deleted

    def in_fold(self, folded: bytes) -> bool:
        if not self._any_fold:
            return False
        return bool(self._miss().hexists(self._keys.case_folds, folded))

    def deleted_person_id(self, distinct_id: bytes) -> str | None:
        if not self._any_deleted:
            return None
        value = cast(bytes | None, self._miss().hget(self._keys.deleted, distinct_id))
        return value.split(b"|", 1)[1].decode() if value else None

    def receipt(self, bucket: bytes, source: bytes) -> bytes | None:
        if (bucket, source) in self._receipts:
            return self._receipts[(bucket, source)]
        key = self._keys.receipts_prefix.encode() + bucket
        return cast(bytes | None, self._miss().hget(key, source))

    def group_types(self) -> set[bytes]:
        return set(self._types)

    def group_record(self, field: bytes) -> bytes | None:
        key = self._keys.groups_prefix + "records"
        return cast(bytes | None, self._miss().hget(key, field))

    def group_members(self, person_id: bytes) -> bytes | None:
        key = self._keys.groups_prefix + "members"
        return cast(bytes | None, self._miss().hget(key, person_id))

    def has_queues(self) -> bool:
        return self._has_queues

    def queue(self, distinct_id: bytes) -> list[bytes]:
        if not self._has_queues:
            return []
        key = self._keys.buffer_prefix.encode() + b"q:" + distinct_id
        return cast(list[bytes], self._miss().lrange(key, 0, -1))

    def waiting_count(self) -> int:
        return self._waiting

    def buffered_entry(self, entry_id: bytes) -> bytes | None:
        return cast(bytes | None, self._miss().hget(self._keys.buffer_entries, entry_id))

    def first_release(self, entry_id: bytes) -> bytes | None:
        return cast(bytes | None, self._miss().hget(self._keys.buffer_releases, entry_id))

    def leased(self, entry_id: bytes) -> bool:
        return self._miss().zscore(self._keys.buffer_pending, entry_id) is not None

    def expired_leases(self, now: int, limit: int) -> list[bytes]:
        key = self._keys.buffer_pending
        return cast(list[bytes], self._miss().zrangebyscore(key, "-inf", now, 0, limit))

    def due_ids(self, now: int, limit: int) -> list[bytes]:
        key = self._keys.buffer_due
        return cast(list[bytes], self._miss().zrangebyscore(key, "-inf", now, 0, limit))
