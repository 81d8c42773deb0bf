"""The store with the rules in the worker (``redis.rules = worker``) where one writer never goes:
a commit whose reads another writer changed, a call the engine does not cover, a call that must
wait for its round's earlier calls. Each answers as the resolve script does on the same data
(a second store, ``rules = script``, under another prefix, given the same events).

The differential test (``test_differential.py``) runs both modes against the reference model;
the engine's call-by-call agreement with the script is ``test_engine.py``'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import redis

import worker.store.redis_store as redis_store
from worker.errors import PermanentStoreError
from worker.identity.buffer import BufferPolicy
from worker.identity.config import IdentityConfig
from worker.identity.model import EventKind, IdentityEvent, PropertyUpdates, WarningKind
from worker.store.commit_plan import PlannedCommit, RulesMode, plan_commit
from worker.store.redis_store import MAX_STALE, RedisIdentityStore

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000


def _event(
    n: int, distinct_id: str, kind: EventKind = EventKind.TRACK, **more: Any
) -> IdentityEvent:
    return IdentityEvent(
        tenant="t",
        kind=kind,
        distinct_id=distinct_id,
        uuid=f"00000000-0000-0000-0000-{n:012d}",
        timestamp_ms=T0 + n,
        source=f"in/0/{n}",
        **more,
    )


def _set(n: int, distinct_id: str, key: str, value: int) -> IdentityEvent:
    return _event(n, distinct_id, updates=PropertyUpdates(set=((key, value),)))


@pytest.fixture
def stores(client: redis.Redis, prefix: str) -> tuple[RedisIdentityStore, RedisIdentityStore]:
    """(worker, script): the rules in the worker under ``prefix``, the script under another."""
    config = IdentityConfig()
    return (
        RedisIdentityStore(client, config, prefix=prefix, rules=RulesMode.WORKER),
        RedisIdentityStore(client, config, prefix=f"{prefix}-s"),
    )


@pytest.fixture
def other(client: redis.Redis, prefix: str) -> RedisIdentityStore:
    """Another worker, on the same keys as ``stores``' first (the script's rules)."""
    return RedisIdentityStore(client, IdentityConfig(), prefix=prefix)


@pytest.fixture
def interleave(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], object]]:
    """Actions run between a call's planning and its commit, one per planning, as another
    writer would (the planning itself is the store's own)."""
    actions: list[Callable[[], object]] = []

    def planned(*args: Any, **kwargs: Any) -> PlannedCommit:
        result = plan_commit(*args, **kwargs)
        if actions:
            actions.pop(0)()
        return result

    monkeypatch.setattr(redis_store, "plan_commit", planned)
    return actions


def test_a_commit_whose_reads_changed_is_planned_again_and_sees_the_other_write(
    stores: tuple[RedisIdentityStore, RedisIdentityStore],
    other: RedisIdentityStore,
    interleave: list[Callable[[], object]],
) -> None:
    mine, script = stores
    for store in (mine, script):
        store.resolve_batch("t", [_set(1, "u", "a", 1)], T0)
    # between the planning and the commit, the other worker sets b on u's person
    interleave.append(lambda: other.resolve_batch("t", [_set(2, "u", "b", 2)], T0))
    script.resolve_batch("t", [_set(2, "u", "b", 2)], T0)
    got = mine.resolve_batch("t", [_set(3, "u", "c", 3)], T0)
    want = script.resolve_batch("t", [_set(3, "u", "c", 3)], T0)
    assert got == want
    assert dict(got[0].properties) == {"a": 1, "b": 2, "c": 3}
    assert (mine.rules_stats.stale, mine.rules_stats.commits) == (1, 3)
    assert mine.persons("t") == script.persons("t")


def test_a_first_deletion_between_planning_and_commit_refuses_the_commit(
    stores: tuple[RedisIdentityStore, RedisIdentityStore],
    other: RedisIdentityStore,
    interleave: list[Callable[[], object]],
) -> None:
    """While a tenant has deleted no one, a call reads that once (not each id's deletion). Here
    another writer creates x and deletes it between the planning and the commit of a call that
    creates x: x's field is absent both times, but a deleted id starts a new person id (A10),
    so the commit is refused and the call planned again takes that person id."""
    mine, script = stores
    for store in (mine, script):
        store.resolve_batch("t", [_set(1, "y", "a", 1)], T0)

    def create_and_delete(store: RedisIdentityStore) -> None:
        store.resolve_batch("t", [_set(2, "x", "a", 1)], T0)
        store.delete_person("t", distinct_id="x")

    interleave.append(partial(create_and_delete, other))
    create_and_delete(script)
    batch = [_set(3, "x", "b", 2), _set(4, "y", "b", 2)]
    got = mine.resolve_batch("t", batch, T0)
    want = script.resolve_batch("t", batch, T0)
    assert got == want
    assert got[0].person_created
    assert (mine.rules_stats.stale, mine.rules_stats.commits) == (1, 3)
    assert mine.persons("t") == script.persons("t")


def test_a_first_case_fold_between_planning_and_commit_refuses_the_commit(
    stores: tuple[RedisIdentityStore, RedisIdentityStore],
    other: RedisIdentityStore,
    interleave: list[Callable[[], object]],
) -> None:
    """While a tenant has no case folds, a call reads that once: ``X`` created between the
    planning and the commit of a call creating ``x`` refuses the commit; planned again, the
    call warns of the collision."""
    mine, script = stores
    for store in (mine, script):
        store.resolve_batch("t", [_set(1, "y", "a", 1)], T0)
    interleave.append(partial(other.resolve_batch, "t", [_set(2, "X", "a", 1)], T0))
    script.resolve_batch("t", [_set(2, "X", "a", 1)], T0)
    batch = [_set(3, "x", "b", 2)]
    got = mine.resolve_batch("t", batch, T0)
    assert got == script.resolve_batch("t", batch, T0)
    assert [w.kind for w in got[0].warnings] == [WarningKind.DISTINCT_ID_CASE_COLLISION]
    assert (mine.rules_stats.stale, mine.rules_stats.commits) == (1, 3)
    assert mine.persons("t") == script.persons("t")


def test_a_call_refused_again_and_again_goes_to_the_script(
    stores: tuple[RedisIdentityStore, RedisIdentityStore],
    other: RedisIdentityStore,
    interleave: list[Callable[[], object]],
) -> None:
    mine, script = stores
    events = [_set(1, "u", "a", 1), _set(2, "v", "a", 1)]
    for store in (mine, script):
        store.resolve_batch("t", events, T0)
    for n in range(MAX_STALE):  # every planning meets a change of u's person
        change = [_set(10 + n, "u", "n", n)]
        interleave.append(partial(other.resolve_batch, "t", change, T0))
        script.resolve_batch("t", change, T0)
    batch = [_set(20, "u", "c", 3), _event(21, "v", EventKind.IDENTIFY, other_id="u")]
    got = mine.resolve_batch("t", batch, T0)
    assert got == script.resolve_batch("t", batch, T0)
    assert dict(got[0].properties) == {"a": 1, "n": MAX_STALE - 1, "c": 3}
    stats = mine.rules_stats
    assert (stats.stale, stats.script) == (MAX_STALE, 1)
    assert mine.persons("t") == script.persons("t")


def test_a_format_6_record_sends_its_tenant_to_the_script(
    client: redis.Redis, stores: tuple[RedisIdentityStore, RedisIdentityStore]
) -> None:
    mine, script = stores
    for store in (mine, script):  # a person record as a release older than format 7 wrote it
        client.hset(store.keys("t").ids, "old", b"Rp-1|1|1|0|0|1|2|2|{}{}{}")
    batch = [_set(1, "old", "a", 1), _set(2, "new", "a", 1)]
    got = mine.resolve_batch("t", batch, T0)
    assert got == script.resolve_batch("t", batch, T0)
    assert (mine.rules_stats.script, mine.rules_stats.commits) == (1, 0)
    # migrated by the script: the next call is the engine's
    assert mine.resolve_batch("t", [_set(3, "old", "b", 2)], T0) == script.resolve_batch(
        "t", [_set(3, "old", "b", 2)], T0
    )
    assert mine.rules_stats.commits == 1
    assert mine.persons("t") == script.persons("t")


def test_a_call_that_reads_the_buffer_its_round_wrote_waits_for_a_second_wave(
    client: redis.Redis, prefix: str
) -> None:
    config = IdentityConfig()
    buffer = BufferPolicy(delay_ms=60_000)
    mine, script = (
        RedisIdentityStore(
            client, config, prefix=name, buffer=buffer, max_ops_per_call=1, rules=rules
        )
        for name, rules in ((prefix, RulesMode.WORKER), (f"{prefix}-s", RulesMode.SCRIPT))
    )
    batch = [  # one op a call: the identify's call reads the queue the first call wrote
        _event(1, "anon", buffer_payload=b"one"),
        _event(2, "anon", buffer_payload=b"two"),
        _event(3, "user", EventKind.IDENTIFY, other_id="anon"),
        _event(4, "user"),
    ]
    got = mine.resolve_buffered("t", batch, T0)
    want = script.resolve_buffered("t", batch, T0)
    assert got == want
    assert [r.payload for r in got.released] == [b"one", b"two"]
    stats = mine.rules_stats
    assert stats.deferred >= 1
    assert (stats.stale, stats.commits, stats.script) == (0, 4, 0)
    assert mine.persons("t") == script.persons("t")


def test_a_tenant_whose_keys_a_foreign_writer_broke_fails_alone(
    client: redis.Redis, stores: tuple[RedisIdentityStore, RedisIdentityStore]
) -> None:
    mine, _ = stores
    client.set(mine.keys("broken").ids, "not a hash")  # WRONGTYPE for every read of it
    broken = dataclasses.replace(_event(1, "u"), tenant="broken")
    results = mine.resolve_buffered_many([("broken", [broken]), ("t", [_set(2, "u", "a", 1)])], T0)
    assert isinstance(results[0], PermanentStoreError)
    assert "WRONGTYPE" in str(results[0])
    healthy = results[1]
    assert not isinstance(healthy, Exception)
    assert dict(healthy.resolutions[0].properties) == {"a": 1}
