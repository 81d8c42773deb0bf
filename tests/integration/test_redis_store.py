"""``RedisIdentityStore`` against a real Redis: the rules of docs/IDENTITY.md scenario by scenario,
concurrency invariants, retries, and the key layout."""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from tests.support.records import assert_python_reads_record
from worker.errors import (
    InternalError,
    PermanentStoreError,
    StoreAccessError,
    TransientError,
    TransientStoreError,
)
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    DistinctIdOverride,
    EventKind,
    IdentityEvent,
    IdentityWarning,
    OrderingMode,
    Outcome,
    Person,
    PersonMode,
    PropertyOp,
    PropertyState,
    PropertyUpdates,
    Resolution,
    WarningKind,
)
from worker.identity.timestamps import last_seen_at
from worker.observability.status import BatchStats
from worker.pipeline.deadletter import STORE_REJECTED
from worker.pipeline.items import Decoded
from worker.pipeline.resolving import Rejected, Resolver
from worker.store import codec, person_record
from worker.store.base import BatchResult, IdentityStore
from worker.store.codec import person_id_for
from worker.store.commit_plan import RulesMode
from worker.store.keys import TenantKeys
from worker.store.lua_loader import load_script
from worker.store.protocol import MEMBERS_INLINE
from worker.store.redis_store import RedisIdentityStore, classify
from worker.store.script_call import ScriptCommand

pytestmark = pytest.mark.integration

TENANT = "team:{1}%"  # every character the key schema must escape
T0 = 1_700_000_000_000


# -- fixtures and builders ---------------------------------------------------------------------


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


StoreFactory = Callable[..., RedisIdentityStore]


@pytest.fixture(params=list(RulesMode), ids=lambda mode: f"rules-in-{mode}")
def make_store(
    redis_client: redis.Redis, prefix: str, request: pytest.FixtureRequest
) -> StoreFactory:
    """Stores of the test's prefix; each test runs twice, the rules in Redis (the resolve
    script) and in the worker (``redis.rules``)."""

    def make(config: IdentityConfig | None = None, **kwargs: Any) -> RedisIdentityStore:
        kwargs.setdefault("prefix", prefix)
        kwargs.setdefault("client", redis_client)
        kwargs.setdefault("rules", request.param)
        return RedisIdentityStore(config=config or IdentityConfig(), **kwargs)

    return make


_uuids = itertools.count()


def ev(
    kind: EventKind | str,
    distinct_id: str,
    ts: int = T0,
    other: str | None = None,
    *,
    tenant: str = TENANT,
    dangerous: bool = False,
    process_person: bool = True,
    set: dict[str, Any] | None = None,
    set_once: dict[str, Any] | None = None,
    unset: tuple[str, ...] = (),
    event_uuid: str | None = None,
) -> IdentityEvent:
    return IdentityEvent(
        tenant=tenant,
        kind=EventKind(kind),
        distinct_id=distinct_id,
        uuid=event_uuid or f"e-{next(_uuids):08d}",
        timestamp_ms=ts,
        other_id=other,
        merge_dangerously=dangerous,
        process_person=process_person,
        updates=PropertyUpdates(
            set=tuple((set or {}).items()),
            set_once=tuple((set_once or {}).items()),
            unset=unset,
        ),
    )


def pid(distinct_id: str, tenant: str = TENANT) -> str:
    return person_id_for(tenant, distinct_id)


def run(store: RedisIdentityStore, *events: IdentityEvent) -> list[Resolution]:
    return store.resolve_batch(TENANT, list(events), now_ms=T0)


def one(store: RedisIdentityStore, event: IdentityEvent) -> Resolution:
    (resolution,) = run(store, event)
    return resolution


def person(store: RedisIdentityStore, distinct_id: str) -> Person:
    found = store.person_for(TENANT, distinct_id)
    assert found is not None, distinct_id
    return found


def kinds(resolution: Resolution) -> list[WarningKind]:
    return [w.kind for w in resolution.warnings]


# -- invariants of the stored forest -----------------------------------------------------------


def _s(raw: bytes | str) -> str:
    return raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else raw


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def check_invariants(client: redis.Redis, keys: TenantKeys) -> dict[str, set[str]]:
    """Check the union-find of one tenant; return root -> distinct ids.

    No cycle; every id reaches a root that holds a person record (format 9, or 7 when a test
    wrote one); each record's
    ids (kept in it, or in its members string past ``MEMBERS_INLINE``) are exactly its tree's
    as the parent pointers say, and its count is their number; no person id belongs to two
    roots; a members key exists exactly for a tree too big to keep its ids in its record, and
    is a string; every key of the tenant is in one slot.
    """
    raw = {_s(k): cast(bytes, v) for k, v in client.hgetall(keys.ids).items()}
    assert all(v[:1] in (b"P", b"\x01", b"\x02", b"\x03", b"\x04") for v in raw.values())
    trees: dict[str, set[str]] = {}
    for distinct_id in raw:
        node, seen = distinct_id, {distinct_id}
        while raw[node].startswith(b"P"):
            node = _s(raw[node][1:])
            assert node in raw, f"{distinct_id}: chain leaves the forest at {node}"
            assert node not in seen, f"cycle through {distinct_id}"
            seen.add(node)
        trees.setdefault(node, set()).add(distinct_id)
    person_ids: dict[str, str] = {}
    read = load_script("read_person.lua")
    for root, ids in trees.items():
        view = client.eval(read, 2, keys.ids, keys.members_prefix, "id", root)
        found_root, found = person_record.root_and_person(cast(bytes, view))
        assert found_root == root
        spilled = client.get(keys.members(root)) if len(ids) > MEMBERS_INLINE else None
        assert_python_reads_record(
            keys.tenant, _b(root), raw[root], cast(bytes, view), cast(bytes | None, spilled)
        )
        assert found.person_id not in person_ids, f"{found.person_id} at {root}"
        person_ids[found.person_id] = root
        assert found.distinct_ids == ids
    member_roots = {
        keys.root_of_members_key(_s(k))
        for k in client.scan_iter(match=keys.members_pattern(), count=1000)
    }
    assert member_roots == {root for root, ids in trees.items() if len(ids) > MEMBERS_INLINE}
    assert all(client.type(keys.members(root)) == b"string" for root in member_roots)
    slots = {key_slot(k) for k in client.scan_iter(match=keys.all_pattern(), count=1000)}
    assert len(slots) <= 1
    return trees


# -- persons and merges (A2, A3) ---------------------------------------------------------------


def test_it_is_an_identity_store(make_store: StoreFactory) -> None:
    store: IdentityStore = make_store()  # checked by mypy
    assert store.persons(TENANT) == []


def test_ids_differing_only_by_case_collide_in_one_call_and_across_calls(
    make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    store = make_store()
    keys = store.keys(TENANT)
    first, second = run(store, ev("track", "user-1"), ev("track", "User-1"))
    assert kinds(first) == []
    assert (second.person_id, second.person_created) == (pid("User-1"), True)
    assert kinds(second) == [WarningKind.DISTINCT_ID_CASE_COLLISION]
    assert {_s(k) for k in redis_client.hkeys(keys.case_folds)} == {"user-1"}
    assert kinds(one(store, ev("track", "User-1"))) == []  # known: nothing new
    assert kinds(one(store, ev("track", "USER-1"))) == [WarningKind.DISTINCT_ID_CASE_COLLISION]
    merged = one(store, ev("identify", "Anon", other="ANON"))  # both new, same fold
    assert merged.merged
    assert kinds(merged) == [WarningKind.DISTINCT_ID_CASE_COLLISION]
    joined = one(store, ev("identify", "user-1", other="anon"))  # joins: lowercase variant
    assert kinds(joined) == [WarningKind.DISTINCT_ID_CASE_COLLISION]
    assert kinds(one(store, ev("track", "Émile"))) == []
    assert kinds(one(store, ev("track", "émile"))) == []  # non-ASCII case is no collision
    assert {_s(k) for k in redis_client.hkeys(keys.case_folds)} == {
        "user-1",
        "anon",
    }  # no ASCII capital in "Émile"
    check_invariants(redis_client, keys)


def test_track_creates_a_person(make_store: StoreFactory, redis_client: redis.Redis) -> None:
    store = make_store()
    r = one(store, ev("track", "anon-1", set={"plan": "free"}))
    assert r.outcome is Outcome.EMIT
    assert r.person_id == pid("anon-1")
    assert r.person_mode is PersonMode.FULL
    assert r.properties == {"plan": "free"}
    assert (r.created_at_ms, r.is_identified, r.person_created, r.merged) == (
        T0,
        False,
        True,
        False,
    )
    p = person(store, "anon-1")
    seen = last_seen_at(T0, IdentityConfig().last_seen_resolution_ms)  # T0's minute
    assert (p.version, p.last_seen_ms, p.distinct_ids) == (0, seen, frozenset({"anon-1"}))
    check_invariants(redis_client, store.keys(TENANT))


def test_later_events_update_the_person(make_store: StoreFactory) -> None:
    store = make_store()
    run(store, ev("track", "a", T0, set={"x": 1}))
    r = one(store, ev("track", "a", T0 - 10, set={"y": 2}))
    assert r.created_at_ms == T0 - 10  # created_at is the earliest event applied
    assert r.properties == {"x": 1, "y": 2}
    assert not r.person_created
    one(store, ev("track", "a", T0 + 60_000))  # no property change: version unchanged
    p = person(store, "a")
    seen = last_seen_at(T0 + 60_000, IdentityConfig().last_seen_resolution_ms)
    assert (p.created_at_ms, p.last_seen_ms, p.version) == (T0 - 10, seen, 1)


def test_identify_without_anonymous_id_merges_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    r = one(store, ev("identify", "user", set={"email": "u@x"}))
    assert (r.is_identified, r.merged, r.person_created) == (False, False, True)


def test_a3_3_neither_has_a_person(make_store: StoreFactory, redis_client: redis.Redis) -> None:
    store = make_store()
    r = one(store, ev("identify", "user", other="anon", set={"n": 1}))
    assert r.person_id == pid("user")
    assert (r.is_identified, r.merged, r.person_created) == (True, True, True)
    assert r.overrides == (DistinctIdOverride("anon", pid("anon"), pid("user")),)
    p = person(store, "anon")
    assert p.person_id == pid("user")
    assert (p.distinct_ids, p.version) == (frozenset({"user", "anon"}), 0)
    check_invariants(redis_client, store.keys(TENANT))


def test_a3_4_other_joins_intos_person(make_store: StoreFactory) -> None:
    store = make_store()
    run(store, ev("track", "user"))
    r = one(store, ev("identify", "user", other="anon"))
    assert (r.person_id, r.merged, r.person_created, r.is_identified) == (
        pid("user"),
        True,
        False,
        True,
    )
    assert r.overrides == (DistinctIdOverride("anon", pid("anon"), pid("user")),)
    assert person(store, "anon").version == 1


def test_a3_4_into_joins_others_person_which_keeps_its_id(make_store: StoreFactory) -> None:
    store = make_store()
    run(store, ev("track", "anon", T0, set={"a": 1}))
    r = one(store, ev("identify", "user", T0 + 5, other="anon", set={"b": 2}))
    assert r.person_id == pid("anon")
    assert r.overrides == (DistinctIdOverride("user", pid("user"), pid("anon")),)
    assert r.properties == {"a": 1, "b": 2}
    p = person(store, "user")
    assert (p.person_id, p.version, p.is_identified) == (pid("anon"), 1, True)


def test_a3_5_same_person_becomes_identified(make_store: StoreFactory) -> None:
    store = make_store()
    run(store, ev("track", "a"), ev("alias", "a", other="b", dangerous=True))
    r = one(store, ev("identify", "b", other="a"))
    assert (r.merged, r.overrides, r.is_identified) == (False, (), True)
    assert person(store, "a").version == 1  # identified by the alias; nothing changed since


def test_a3_6_merge_of_two_persons(make_store: StoreFactory, redis_client: redis.Redis) -> None:
    store = make_store()
    run(
        store,
        ev("track", "u", T0 + 100, set={"name": "U", "shared": "from-u"}),
        ev("track", "o1", T0, set={"plan": "pro", "shared": "from-o"}),
        ev("alias", "o1", T0 + 1, other="o2"),  # o's person: o1, o2; identified...
    )
    # ... so only merge_dangerously may merge it.
    refused = one(store, ev("identify", "u", T0 + 200, other="o2"))
    assert kinds(refused) == [WarningKind.CANNOT_MERGE_ALREADY_IDENTIFIED]
    assert (refused.person_id, refused.merged, refused.is_identified) == (pid("u"), False, True)
    versions = (person(store, "u").version, person(store, "o1").version)
    r = one(store, ev("alias", "u", T0 + 300, other="o2", dangerous=True))
    assert (r.person_id, r.merged, r.warnings) == (pid("u"), True, ())
    assert r.overrides == (
        DistinctIdOverride("o1", pid("o1"), pid("u")),
        DistinctIdOverride("o2", pid("o1"), pid("u")),
    )
    # timestamp mode: the later $set of each key wins
    assert r.properties == {"name": "U", "plan": "pro", "shared": "from-u"}
    assert r.created_at_ms == T0
    p = person(store, "o2")
    assert p.person_id == pid("u")
    assert p.distinct_ids == frozenset({"u", "o1", "o2"})
    assert p.version == max(versions) + 1
    assert p.last_seen_ms == last_seen_at(T0 + 300, IdentityConfig().last_seen_resolution_ms)
    trees = check_invariants(redis_client, store.keys(TENANT))
    assert list(trees.values()) == [{"u", "o1", "o2"}]


def test_a3_6_merge_of_an_unidentified_person_is_allowed(make_store: StoreFactory) -> None:
    store = make_store()
    run(store, ev("track", "u"), ev("track", "anon"))
    r = one(store, ev("identify", "u", other="anon"))
    assert r.merged
    assert person(store, "anon").person_id == pid("u")


def test_a3_7_cap_refuses_joins_and_merges_whole(
    make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    store = make_store(IdentityConfig(max_distinct_ids_per_person=3))
    run(store, ev("identify", "u", other="a1"), ev("alias", "u", other="a2"))
    assert len(person(store, "u").distinct_ids) == 3
    # A3.4 into has the full person: refused, the event lands on u's person.
    r = one(store, ev("alias", "u", other="a3"))
    assert kinds(r) == [WarningKind.MERGE_LIMIT_EXCEEDED]
    assert (r.person_id, r.merged) == (pid("u"), False)
    assert store.person_for(TENANT, "a3") is None
    # A3.4 other has the full person: into gets its own person, identified.
    r = one(store, ev("identify", "new", other="a1"))
    assert kinds(r) == [WarningKind.MERGE_LIMIT_EXCEEDED]
    assert (r.person_id, r.person_created, r.is_identified) == (pid("new"), True, True)
    # A3.6: 2 + 3 > 3, refused whole.
    run(store, ev("track", "x"), ev("alias", "x", other="y"))
    r = one(store, ev("alias", "x", other="u", dangerous=True))
    assert kinds(r) == [WarningKind.MERGE_LIMIT_EXCEEDED]
    assert person(store, "x").distinct_ids == frozenset({"x", "y"})
    check_invariants(redis_client, store.keys(TENANT))


def test_stateless_refusals_make_no_store_call(
    make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    store = make_store()
    results = run(
        store,
        ev("track", "null"),
        ev("identify", "'guest'", other="user"),
        ev("alias", "user", other='"undefined"'),
        ev("identify", "x" * 401),
        ev("alias", "a", other="b", process_person=False),
        ev("alias", "same", other="same"),
    )
    assert results[0].person_mode is PersonMode.PROPERTYLESS
    assert results[0].person_id == pid("null")
    assert kinds(results[1]) == [
        WarningKind.CANNOT_MERGE_WITH_ILLEGAL_DISTINCT_ID,
        WarningKind.ILLEGAL_DISTINCT_ID,
    ]
    # illegal other: processed on into, not identified
    assert kinds(results[2]) == [WarningKind.CANNOT_MERGE_WITH_ILLEGAL_DISTINCT_ID]
    assert (results[2].person_id, results[2].is_identified) == (pid("user"), False)
    assert results[3].outcome is Outcome.REJECT
    assert results[4].outcome is Outcome.REJECT
    assert (results[5].merged, results[5].is_identified) == (False, False)
    assert {p.person_id for p in store.persons(TENANT)} == {pid("user"), pid("same")}
    assert store.person_for(TENANT, "null") is None


def test_path_compression_and_union_by_size(
    make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    store = make_store()
    keys = store.keys(TENANT)
    run(store, *(ev("alias", "x1", other=f"x{i}") for i in range(2, 5)))  # 4 ids under x1
    run(store, ev("track", "a1"), ev("identify", "a1", other="b1"))  # b1 -> a1
    # a1's person (2 ids) is smaller: its root a1 goes under x1, b1 is two hops away
    r = one(store, ev("alias", "a1", other="x1", dangerous=True))
    assert r.person_id == pid("a1")  # into's person id survives, wherever the root is
    assert redis_client.hget(keys.ids, "a1") == b"Px1"
    assert redis_client.hget(keys.ids, "b1") == b"Pa1"
    assert (redis_client.hget(keys.ids, "x1") or b"")[:1] in (b"\x03", b"\x04")  # a root
    assert person(store, "b1").person_id == pid("a1")
    one(store, ev("track", "b1"))
    assert redis_client.hget(keys.ids, "b1") == b"Px1"  # compressed
    check_invariants(redis_client, keys)


def test_long_chains_of_merges(make_store: StoreFactory, redis_client: redis.Redis) -> None:
    store = make_store()
    events = [ev("track", f"id{i}", T0 + i) for i in range(60)]
    events += [ev("alias", f"id{i}", T0 + 100 + i, other=f"id{i + 1}") for i in range(59)]
    results = run(store, *events)
    assert all(r.merged for r in results[60:])
    assert all(not r.warnings for r in results)
    trees = check_invariants(redis_client, store.keys(TENANT))
    assert len(trees) == 1
    p = person(store, "id59")
    assert p.person_id == pid("id0")  # each alias lands on the person id0 created
    assert p.created_at_ms == T0


# -- properties (A4) ---------------------------------------------------------------------------


PROPERTY_EVENTS = [
    ev("track", "p", T0 + 3, set={"a": "3"}, event_uuid="u3"),
    ev("track", "p", T0 + 1, set={"a": "1", "b": 1}, set_once={"o": "first"}, event_uuid="u1"),
    ev("track", "p", T0 + 2, set_once={"o": "second", "c": 0}, unset=("b",), event_uuid="u2"),
    ev("track", "p", T0 + 5, unset=("a",), event_uuid="u5"),
    ev("track", "p", T0 + 4, set={"a": "4", "c": 4}, event_uuid="u4"),
    ev("track", "p", T0 + 2, set={"d": "tie-x"}, event_uuid="same"),
    ev("track", "p", T0 + 2, set={"d": "tie-y"}, event_uuid="same"),
]


def test_timestamp_mode_is_order_independent_and_idempotent(make_store: StoreFactory) -> None:
    finals = []
    for order in [
        PROPERTY_EVENTS,
        PROPERTY_EVENTS[::-1],
        PROPERTY_EVENTS[2:] + PROPERTY_EVENTS[:2],
    ]:
        store = make_store(prefix=f"ord-{uuid.uuid4().hex[:10]}")
        run(store, *order)
        before = person(store, "p")
        run(store, *order)  # replay: nothing changes
        assert person(store, "p") == before
        finals.append(before)
    assert all(f.properties == finals[0].properties for f in finals)
    assert finals[0].visible_properties == {"o": "first", "c": 4, "d": "tie-y"}
    assert finals[0].properties["a"] == PropertyState(PropertyOp.UNSET, None, T0 + 5, "u5")
    assert finals[0].properties["o"] == PropertyState(PropertyOp.SET_ONCE, "first", T0 + 1, "u1")


def test_timestamp_mode_set_once_never_replaces_a_set(make_store: StoreFactory) -> None:
    store = make_store()
    run(store, ev("track", "p", T0 + 10, set={"k": "set"}))
    r = one(store, ev("track", "p", T0, set_once={"k": "once"}))
    assert r.properties == {"k": "set"}
    r = one(store, ev("track", "p", T0 + 5, set={"k": "older"}))
    assert r.properties == {"k": "set"}


def test_within_one_event_set_beats_set_once_and_unset_applies_last(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    r = one(store, ev("track", "p", set={"k": "s", "u": 1}, set_once={"k": "o"}, unset=("u",)))
    assert r.properties == {"k": "s"}


def test_arrival_mode_follows_posthog(make_store: StoreFactory) -> None:
    store = make_store(IdentityConfig(ordering=OrderingMode.ARRIVAL))
    r = one(store, ev("track", "p", T0, set={"a": 1}, set_once={"o": 1}, unset=("gone",)))
    assert r.properties == {"a": 1, "o": 1}
    r = one(store, ev("track", "p", T0 - 100, set={"a": 2}, set_once={"o": 2, "n": 3}))
    assert r.properties == {"a": 2, "o": 1, "n": 3}  # arrival order, not timestamps
    r = one(store, ev("track", "p", T0, set={"b": 1, "a": 2}, unset=("b", "n", "o")))
    # sets first, then unsets of keys present before the event: b (absent before) stays set,
    # n and o go; a's value is unchanged, so its state keeps the event that last changed it
    assert r.properties == {"a": 2, "b": 1}
    p = person(store, "p")
    assert p.properties["a"] == PropertyState(PropertyOp.SET, 2, T0 - 100, p.properties["a"].uuid)
    # merge: {...other, ...into}
    run(store, ev("track", "q", T0, set={"a": "q", "only_q": 1}))
    r = one(store, ev("alias", "q", other="p"))
    assert r.properties == {"a": "q", "only_q": 1, "b": 1}


def test_properties_size_limit(make_store: StoreFactory) -> None:
    # size = len(key) + len(canonical json): "k" + '"xxxx"' = 7 bytes
    store = make_store(IdentityConfig(max_properties_bytes=20))
    r = one(store, ev("track", "p", T0, set={"k": "xxxx", "l": "yyyy"}))
    assert (r.properties, r.warnings) == ({"k": "xxxx", "l": "yyyy"}, ())  # 14 bytes
    r = one(store, ev("track", "p", T0 + 1, set={"m": "zzzz"}))  # 21 > 20: refused whole
    assert kinds(r) == [WarningKind.PERSON_PROPERTIES_SIZE_VIOLATION]
    assert r.warnings[0].details == {"reason": "properties_too_large"}
    assert r.properties == {"k": "xxxx", "l": "yyyy"}
    assert person(store, "p").version == 0
    r = one(store, ev("track", "p", T0 + 2, set={"m": "z"}, unset=("k",)))
    assert (r.properties, r.warnings) == ({"l": "yyyy", "m": "z"}, ())
    # a merge is never refused for size, and an update that shrinks is allowed above the limit
    run(store, ev("track", "q", T0, set={"big": "0123456789"}))
    r = one(store, ev("alias", "p", T0 + 3, other="q"))
    assert r.merged
    assert r.warnings == ()
    r = one(store, ev("track", "p", T0 + 4, set={"big": "0"}))
    assert (r.warnings, r.properties["big"]) == ((), "0")


def test_key_and_value_length_limits_refuse_the_whole_update(make_store: StoreFactory) -> None:
    store = make_store(IdentityConfig(max_property_value_length=3))
    r = one(store, ev("track", "p", set={"ok": "abc", "bad": "abcd"}))
    assert r.warnings == (
        IdentityWarning(WarningKind.PERSON_PROPERTIES_SIZE_VIOLATION, {"reason": "value_too_long"}),
    )
    assert (r.properties, r.person_created) == ({}, True)


def test_values_keep_their_exact_json(make_store: StoreFactory) -> None:
    store = make_store()
    values = {
        "float": 0.1 + 0.2,
        "big": 2**70,
        "neg0": -0.0,
        "nested": {"z": [1, None, True, {"é": 'ü/\\"\n'}]},
        "emoji": "🙂",
        'key/with"quotes': "",
    }
    r = one(store, ev("track", "p", set=values))
    assert r.properties == values
    assert person(store, "p").visible_properties == values


# -- personless (A6) ---------------------------------------------------------------------------


def test_personless_without_a_person(make_store: StoreFactory, redis_client: redis.Redis) -> None:
    store = make_store()
    r = one(store, ev("track", "ghost", process_person=False, set={"x": 1}))
    assert (r.person_id, r.person_mode, r.properties) == (
        pid("ghost"),
        PersonMode.PROPERTYLESS,
        {},
    )
    assert (r.created_at_ms, r.is_identified, r.person_created) == (None, False, False)
    assert store.persons(TENANT) == []
    stored = redis_client.scan_iter(match=store.keys(TENANT).all_pattern())
    assert [k for k in stored if b":reply:" not in k] == []  # only the kept reply


def test_personless_with_a_person(make_store: StoreFactory) -> None:
    store = make_store()
    run(store, ev("identify", "u", T0, other="a", set={"x": 1}))
    before = person(store, "a")
    r = one(store, ev("track", "a", T0 + 60_000, process_person=False, set={"y": 1}))
    assert (r.person_id, r.person_mode, r.properties) == (pid("u"), PersonMode.PROPERTYLESS, {})
    assert (r.created_at_ms, r.is_identified) == (T0, True)
    r = one(store, ev("track", "a", T0 + 60_001, process_person=False))
    assert r.person_mode is PersonMode.FORCE_UPGRADE
    assert person(store, "a") == before


# -- batches, tenants, keys --------------------------------------------------------------------


def test_chunks_give_the_same_answers_as_one_call(make_store: StoreFactory) -> None:
    events = [ev("track", f"a{i % 4}", T0 + i, set={"i": i}) for i in range(12)]
    events += [ev("identify", f"a{i}", T0 + 20, other=f"a{i + 1}") for i in range(3)]
    events += [ev("track", "null"), ev("track", "a0", process_person=False)]
    whole = make_store(prefix=f"w-{uuid.uuid4().hex[:10]}")
    chunked = make_store(prefix=f"c-{uuid.uuid4().hex[:10]}", max_ops_per_call=2)
    assert run(whole, *events) == run(chunked, *events)

    def by_id(store: RedisIdentityStore) -> list[Person]:
        return sorted(store.persons(TENANT), key=lambda p: p.person_id)

    assert by_id(whole) == by_id(chunked)


def test_heavy_ops_are_cut_into_more_calls_by_cost(make_store: StoreFactory) -> None:
    # 8 $set tracks (3 units each) and 8 plain tracks (1 unit), cost budget 6: each call holds
    # two heavy ops or up to six plain ones; the answers are those of one call
    events = [ev("track", f"a{i % 3}", T0 + i, set={"i": i}) for i in range(8)]
    events += [ev("track", f"a{i % 3}", T0 + 10 + i) for i in range(8)]
    whole = make_store(prefix=f"w-{uuid.uuid4().hex[:10]}")
    cut = make_store(prefix=f"c-{uuid.uuid4().hex[:10]}", max_call_cost=6)
    unsent = whole.plan_many([(TENANT, events)], now_ms=T0)
    assert unsent.calls == 1
    unsent.abandon()
    planned = cut.plan_many([(TENANT, events)], now_ms=T0)
    assert planned.calls == 4 + 2  # 8 heavy ops two by two, then 8 plain ones in two calls
    (result,) = planned.results()
    assert not isinstance(result, Exception)
    assert result.resolutions == run(whole, *events)
    persons = sorted(cut.persons(TENANT), key=lambda p: p.person_id)
    assert len(persons) == 3
    assert persons == sorted(whole.persons(TENANT), key=lambda p: p.person_id)


def test_tenants_are_isolated_each_in_one_slot(
    make_store: StoreFactory, redis_client: redis.Redis, prefix: str
) -> None:
    store = make_store()
    tenants = ["t1", "t{1}", "t:1", "t%7B1%7D"]
    for tenant in tenants:
        store.resolve_batch(tenant, [ev("alias", "a", other="b", tenant=tenant)], now_ms=T0)
    slots: dict[str, set[int]] = {}
    for key in redis_client.scan_iter(match=f"{prefix}:*"):
        tag = _s(key).split("{", 1)[1].split("}", 1)[0]
        slots.setdefault(tag, set()).add(key_slot(key))
    assert len(slots) == len(tenants)
    assert all(len(s) == 1 for s in slots.values())
    for tenant in tenants:
        (p,) = store.persons(tenant)
        assert p.person_id == pid("a", tenant)
        assert p.distinct_ids == frozenset({"a", "b"})
        check_invariants(redis_client, store.keys(tenant))


def test_each_call_keeps_only_the_latest_reply(
    make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    store = make_store(reply_ttl_ms=60_000)
    keys = store.keys(TENANT)
    for i in range(3):
        run(store, ev("track", f"a{i}"))
    replies = [k for k in redis_client.scan_iter(match=keys.all_pattern()) if b":reply:" in k]
    assert len(replies) == 1
    assert 0 < redis_client.pttl(replies[0]) <= 60_000


def test_each_round_deletes_the_replies_of_the_round_before(
    make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    store = make_store(max_ops_per_call=1)
    keys = store.keys(TENANT)

    def replies() -> set[bytes]:
        return {k for k in redis_client.scan_iter(match=keys.all_pattern()) if b":reply:" in k}

    run(store, *[ev("track", f"a{i}") for i in range(3)])
    first = replies()
    assert len(first) == 3  # read only once the round ended: none deleted by its own calls
    run(store, *[ev("track", f"b{i}") for i in range(3)])
    second = replies()
    assert len(second) == 3
    assert not first & second


def test_a_client_that_decodes_responses_works_too(
    redis_url: str, make_store: StoreFactory
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = make_store(client=client)
    (r,) = run(store, ev("identify", "u", other="a", set={"k": "é"}))
    assert r.properties == {"k": "é"}
    assert person(store, "a").distinct_ids == frozenset({"u", "a"})
    assert [p.person_id for p in store.persons(TENANT)] == [pid("u")]
    client.close()


def test_events_of_another_tenant_are_refused(make_store: StoreFactory) -> None:
    with pytest.raises(InternalError, match="tenant"):
        make_store().resolve_batch("other", [ev("track", "a")], now_ms=T0)


# -- concurrency -------------------------------------------------------------------------------


def _hammer(redis_url: str, prefix: str, worker: int, rounds: int) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisIdentityStore(
        client, IdentityConfig(max_distinct_ids_per_person=12), prefix=prefix
    )
    ids = [f"id{i}" for i in range(16)]
    for r in range(rounds):
        batch = []
        for j in range(8):
            a = ids[(worker * 7 + r * 3 + j * 5) % len(ids)]
            b = ids[(worker * 3 + r * 5 + j * 11 + 1) % len(ids)]
            kind = ("track", "identify", "alias")[(r + j + worker) % 3]
            batch.append(
                ev(
                    kind,
                    a,
                    T0 + r,
                    None if kind == "track" else b,
                    dangerous=(r + j) % 4 == 0,
                    set={f"w{worker}": r},
                    event_uuid=f"w{worker}-{r}-{j}",
                )
            )
        store.resolve_batch(TENANT, batch, now_ms=T0)
    client.close()


def test_concurrent_threads_and_processes_keep_one_valid_forest(
    redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    threads = [threading.Thread(target=_hammer, args=(redis_url, prefix, w, 40)) for w in range(4)]
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_hammer, args=(redis_url, prefix, w, 40)) for w in range(4, 7)
    ]
    workers: list[threading.Thread | multiprocessing.process.BaseProcess] = [*threads, *processes]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert all(p.exitcode == 0 for p in processes)
    store = RedisIdentityStore(redis_client, IdentityConfig(), prefix=prefix)
    trees = check_invariants(redis_client, store.keys(TENANT))
    assert sum(len(ids) for ids in trees.values()) == 16
    persons = store.persons(TENANT)
    assert len({p.person_id for p in persons}) == len(persons) == len(trees)
    assert all(len(p.distinct_ids) <= 12 for p in persons)


# -- errors and retries ------------------------------------------------------------------------


def _recording_sleep(sleeps: list[float]) -> Callable[[float], None]:
    """Record the store's backoff delays, but sleep a fixed short time."""

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(0.05)

    return sleep


def _losing_connection(lose: set[int]) -> type[redis.Connection]:
    """A connection class that drops its socket after reading the n-th reply of the resolve
    script (n in ``lose``, counted over every connection of the class): the server ran the call,
    its reply is lost, as when the connection resets at that moment."""
    counter = itertools.count(1)

    class Losing(redis.Connection):
        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            reply = super().read_response(*args, **kwargs)
            # a resolve call's reply, or a commit's (the rules in the worker: its due time)
            answered = isinstance(reply, bytes) and (
                reply.startswith(b"[[") or reply in (b"false", b"null")
            )
            if answered and next(counter) in lose:
                self.disconnect()  # type: ignore[no-untyped-call]
                raise redis.exceptions.ConnectionError("connection reset after the script ran")
            return reply

    return Losing


def test_a_lost_reply_is_not_applied_twice(redis_url: str, make_store: StoreFactory) -> None:
    client = redis.Redis.from_url(redis_url, connection_class=_losing_connection({1}))
    sleeps: list[float] = []
    config = IdentityConfig(ordering=OrderingMode.ARRIVAL)
    store = make_store(config, client=client, sleep=sleeps.append)
    r1, r2 = run(store, ev("track", "a", set={"n": 1}), ev("alias", "a", other="b"))
    assert len(sleeps) == 1
    # the retry returned the original reply: created, merged and the override are all there
    assert (r1.person_created, r2.merged) == (True, True)
    assert r2.overrides == (DistinctIdOverride("b", pid("b"), pid("a")),)
    assert person(store, "a").version == 1  # arrival mode: a second run would have bumped it
    client.close()


def _round_events() -> list[IdentityEvent]:
    """Events whose second application would show: arrival mode bumps the version on every
    ``$set``, and a second merge would not report ``merged``."""
    return [
        ev("track", "a", set={"n": 1}),
        ev("track", "a", T0 + 1, set={"n": 2}),
        ev("alias", "a", other="b"),
        ev("track", "b", T0 + 2, set={"n": 3}),
        ev("identify", "c", other="b", set={"n": 4}),
    ]


@pytest.mark.parametrize("lose", [{1}, {2}, {2, 3}, {5}])
def test_replies_lost_mid_round_are_read_again_not_applied_twice(
    redis_url: str, make_store: StoreFactory, lose: set[int]
) -> None:
    """One chunk per event, all sent in one round; the connection drops after the server ran
    the calls but before the replies of ``lose`` were read: the calls not read are sent again
    with the same tokens, and get their kept replies."""
    client = redis.Redis.from_url(redis_url, connection_class=_losing_connection(lose))
    sleeps: list[float] = []
    config = IdentityConfig(ordering=OrderingMode.ARRIVAL)
    store = make_store(config, client=client, sleep=sleeps.append, max_ops_per_call=1)
    control = make_store(config, prefix=f"c-{uuid.uuid4().hex[:10]}", max_ops_per_call=1)
    events = _round_events()
    assert run(store, *events) == run(control, *events)
    assert len(sleeps) == len(lose)
    assert person(store, "c") == person(control, "c")
    assert person(store, "c").version == 4
    client.close()


def _killed_while_paused(admin: redis.Redis) -> type[redis.Connection]:
    """A connection class whose first round is sent while the server holds every write
    (``CLIENT PAUSE WRITE``), and which the server then kills (``CLIENT KILL ADDR``) before the
    pause ends: none of the round's calls ran, and the connection breaks in the middle of the
    round."""
    rounds = itertools.count(1)

    class Killed(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            data = b"".join(command) if isinstance(command, list) else bytes(command)
            if b"EVALSHA" not in data or next(rounds) != 1:
                super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]
                return
            self.connect()  # type: ignore[no-untyped-call]
            host, port = cast(socket.socket, self._sock).getsockname()[:2]
            admin.client_pause(10_000, all=False)  # writes wait; CLIENT KILL does not
            try:
                super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]
                assert admin.client_kill_filter(_type="normal", addr=f"{host}:{port}") == 1
            finally:
                admin.client_unpause()

    return Killed


def test_a_connection_killed_mid_round_is_replaced_and_the_round_sent_again(
    redis_url: str, make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    client = redis.Redis.from_url(redis_url, connection_class=_killed_while_paused(redis_client))
    sleeps: list[float] = []
    config = IdentityConfig(ordering=OrderingMode.ARRIVAL)
    store = make_store(config, client=client, sleep=sleeps.append, max_ops_per_call=2)
    control = make_store(config, prefix=f"c-{uuid.uuid4().hex[:10]}", max_ops_per_call=2)
    events = _round_events()
    assert run(store, *events) == run(control, *events)
    assert len(sleeps) == 1
    assert person(store, "c") == person(control, "c")
    client.close()


POISON = pytest.mark.interpreted_only(
    reason="plants a bad operation by replacing a compiled function"
)


def _poison_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event setting ``poison`` is encoded with an operation code the script does not know:
    the script refuses its call (``bad ARGV``) before writing anything."""
    real = codec.key_operations

    def key_operations(
        updates: PropertyUpdates, ordering: OrderingMode
    ) -> list[tuple[str, str, Any]]:
        ops = real(updates, ordering)
        return [("?", "poison", "1")] if any(k == "poison" for _, k, _ in ops) else ops

    monkeypatch.setattr(codec, "key_operations", key_operations)


@POISON
def test_a_refused_chunk_refuses_the_later_chunks_of_its_round(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    """Chunk 2 of 4 is refused: chunk 1 is applied, chunks 3 and 4 (sent in the same round)
    are refused by the chain check and apply nothing, as if they had never been sent."""
    _poison_ops(monkeypatch)
    store = make_store(IdentityConfig(ordering=OrderingMode.ARRIVAL), max_ops_per_call=1)
    events = [
        ev("track", "a0"),
        ev("track", "a1", set={"poison": 1}),
        ev("alias", "a2", other="a0"),
        ev("track", "a3"),
    ]
    with pytest.raises(PermanentStoreError, match="bad ARGV"):
        run(store, *events)
    assert person(store, "a0").distinct_ids == frozenset({"a0"})
    assert [store.person_for(TENANT, d) for d in ("a1", "a2", "a3")] == [None, None, None]
    # what the bisection does next: the events after the refused one apply, once
    merged, created = run(store, events[2], events[3])
    assert (merged.merged, created.person_created) == (True, True)
    assert person(store, "a0").distinct_ids == frozenset({"a0", "a2"})
    check_invariants(redis_client, store.keys(TENANT))


@POISON
def test_a_round_of_several_tenants_refuses_only_the_guilty_tenant(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_ops(monkeypatch)
    store = make_store(max_ops_per_call=1)
    guilty = [ev("track", "g0", tenant="g"), ev("track", "g1", tenant="g", set={"poison": 1})]
    fine = [ev("track", "f0", tenant="f"), ev("alias", "f1", other="f0", tenant="f")]
    refused, result = store.resolve_buffered_many([("g", guilty), ("f", fine)], T0)
    assert isinstance(refused, PermanentStoreError)
    assert isinstance(result, BatchResult)
    assert [r.person_id for r in result.resolutions] == [pid("f0", "f")] * 2
    assert store.person_for("g", "g0") is not None
    assert store.person_for("g", "g1") is None
    wrong = store.resolve_buffered_many([("x", fine), ("f", [ev("track", "f2", tenant="f")])], T0)
    assert isinstance(wrong[0], InternalError)  # an event of another tenant: that request only
    assert isinstance(wrong[1], BatchResult)


@POISON
def test_requests_of_one_tenant_in_a_round_chain_on_each_other(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_ops(monkeypatch)
    store = make_store()
    first = [ev("track", "h0", tenant="h"), ev("track", "h1", tenant="h", set={"poison": 1})]
    second = [ev("track", "h2", tenant="h")]
    results = store.resolve_buffered_many([("h", first), ("h", second)], T0)
    assert all(isinstance(r, PermanentStoreError) for r in results)
    assert store.person_for("h", "h2") is None  # after the refused call: not applied


@POISON
def test_the_resolver_rounds_every_tenant_and_narrows_down_only_the_refused_one(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _poison_ops(monkeypatch)
    store = make_store(max_ops_per_call=2)
    events = [
        ev("track", "g0", tenant="g"),
        ev("track", "f0", tenant="f"),
        ev("track", "g1", tenant="g", set={"poison": 1}),
        ev("alias", "f1", other="f0", tenant="f"),
        ev("track", "g2", tenant="g"),
    ]
    decoded = [Decoded(cast(Any, None), cast(Any, None), e) for e in events]
    resolved = Resolver(store).resolve(decoded, T0, BatchStats())
    answers = [answer for _, answer in resolved.answers]
    refused = answers.pop(2)
    assert isinstance(refused, Rejected)
    assert refused.reason == STORE_REJECTED
    assert [cast(Resolution, a).person_id for a in answers] == [
        pid("g0", "g"),
        pid("f0", "f"),
        pid("f0", "f"),
        pid("g2", "g"),
    ]
    assert store.person_for("g", "g1") is None


FLUSHES = pytest.mark.parametrize(
    ("command", "flush"),
    [(ScriptCommand.EVALSHA, "SCRIPT FLUSH"), (ScriptCommand.AUTO, "FUNCTION FLUSH")],
    ids=["evalsha", "auto"],
)
"""A store calling its script with ``EVALSHA`` and Redis's script cache flushed; one calling
it as it does by default (its function library on Redis 7+) and the functions flushed."""


@FLUSHES
def test_a_flushed_script_cache_is_reloaded_in_the_middle_of_a_round(
    make_store: StoreFactory, redis_client: redis.Redis, command: ScriptCommand, flush: str
) -> None:
    config = IdentityConfig(ordering=OrderingMode.ARRIVAL)
    store = make_store(config, max_ops_per_call=1, script_command=command)
    control = make_store(config, prefix=f"c-{uuid.uuid4().hex[:10]}", max_ops_per_call=1)
    run(store, ev("track", "z"))
    _flush(redis_client, flush)
    events = _round_events()
    assert run(store, *events) == run(control, *events)
    assert person(store, "c") == person(control, "c")


@POISON
def test_without_kept_replies_calls_go_one_at_a_time(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``reply_ttl_ms=0`` keeps no reply to chain on: the calls are sent one by one, and a
    refused chunk still stops the later ones."""
    config = IdentityConfig(ordering=OrderingMode.ARRIVAL)
    store = make_store(config, max_ops_per_call=1, reply_ttl_ms=0)
    control = make_store(config, prefix=f"c-{uuid.uuid4().hex[:10]}", max_ops_per_call=1)
    events = _round_events()
    assert run(store, *events) == run(control, *events)
    _poison_ops(monkeypatch)
    with pytest.raises(PermanentStoreError, match="bad ARGV"):
        run(store, ev("track", "p0"), ev("track", "p1", set={"poison": 1}), ev("track", "p2"))
    assert store.person_for(TENANT, "p0") is not None
    assert store.person_for(TENANT, "p2") is None


def test_a_replayed_batch_is_answered_from_its_receipts(
    make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    store = make_store(IdentityConfig(ordering=OrderingMode.ARRIVAL), receipt_ttl_ms=50_000)
    events = [
        dataclasses.replace(ev("track", "a", set={"n": 1}), source="in/0/7"),
        dataclasses.replace(ev("alias", "a", other="b"), source="in/0/8#1"),
    ]
    first = run(store, *events)
    assert [(r.person_created, r.merged, r.person_changed) for r in first] == [
        (True, False, True),
        (False, True, True),
    ]
    key = store.keys(TENANT).receipts("in/0/7")
    assert key == store.keys(TENANT).receipts("in/0/8#1")  # one hash per offset range
    assert 0 < redis_client.pttl(key) <= 50_000
    # a crash before the commit: the batch again, after a later event moved the person
    run(store, ev("track", "a", set={"n": 2}))
    version = person(store, "a").version
    assert run(store, *events) == first  # same overrides, same flags, same properties
    assert person(store, "a").version == version  # nothing applied again
    store.forget(TENANT, ["in/0/7", "in/0/8#1"])
    assert redis_client.exists(key) == 1  # the HDELs lead the next round
    again = run(store, *events)
    assert (again[0].person_changed, again[1].merged) == (True, False)  # applied again
    store.forget(TENANT, ["in/0/7", "in/0/8#1"])
    store.flush_forgotten()
    assert redis_client.exists(key) == 0


def test_a_killed_connection_between_calls_is_replaced(
    redis_url: str, make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
    store = make_store(client=client)
    run(store, ev("track", "a"))
    assert redis_client.client_kill_filter(_id=str(client.client_id())) == 1
    r = one(store, ev("alias", "a", other="b"))
    assert r.merged
    assert person(store, "b").distinct_ids == frozenset({"a", "b"})
    client.close()


BUSY_SCRIPT = """
local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end
local start = now()
while now() - start < tonumber(ARGV[1]) do end
return 1
"""


def _wait_until_redis_is_busy(redis_url: str, timeout: float = 10.0) -> None:
    """Until a PING goes unanswered for 0.1 s: the server is inside the slow script."""
    deadline = time.monotonic() + timeout
    while True:
        probe = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0), socket_timeout=0.1)
        try:
            probe.ping()
        except redis.exceptions.TimeoutError:
            return
        finally:
            probe.close()
        assert time.monotonic() < deadline, "the slow script never started"


@pytest.mark.parametrize("max_ops", [64, 1])
def test_a_timed_out_call_that_ran_later_is_not_applied_twice(
    redis_url: str, make_store: StoreFactory, max_ops: int
) -> None:
    """Redis is blocked by another client's slow script; our call (or round of calls, one per
    event with ``max_ops`` 1) times out client-side while its commands wait in the server's
    buffer. The server may run them after the slow script (the replies go nowhere); the
    retries find the kept replies instead of running again."""
    blocker = redis.Redis.from_url(redis_url)
    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0), socket_timeout=0.15)
    sleeps: list[float] = []
    store = make_store(IdentityConfig(ordering=OrderingMode.ARRIVAL), client=client)
    store_sleep = make_store(
        IdentityConfig(ordering=OrderingMode.ARRIVAL),
        client=client,
        retry_attempts=50,
        sleep=_recording_sleep(sleeps),
        max_ops_per_call=max_ops,
    )
    run(store, ev("track", "a", set={"n": 1}))
    connection = blocker.connection_pool.get_connection()
    # sent before the probe starts: the idle server picks it up at once
    connection.send_command("EVAL", BUSY_SCRIPT, 0, 600_000)  # type: ignore[no-untyped-call]
    slow = threading.Thread(target=connection.read_response)
    slow.start()
    _wait_until_redis_is_busy(redis_url)
    try:
        r1, r2 = run(
            store_sleep, ev("track", "a", T0 + 1, set={"n": 2}), ev("alias", "a", other="b")
        )
    finally:
        slow.join()
        blocker.connection_pool.release(connection)
    assert sleeps  # it did time out and retry
    assert (r1.properties, r2.merged) == ({"n": 2}, True)
    assert r2.overrides == (DistinctIdOverride("b", pid("b"), pid("a")),)
    p = person(store, "b")
    # arrival mode: running the chunk twice would have bumped the version twice more
    assert (p.version, p.visible_properties) == (2, {"n": 2})
    blocker.close()
    client.close()


def test_unreachable_redis_raises_transient_after_bounded_attempts(
    make_store: StoreFactory,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = redis.Redis(port=port, retry=Retry(NoBackoff(), 0), socket_connect_timeout=0.2)
    sleeps: list[float] = []
    store = make_store(client=client, retry_attempts=4, sleep=sleeps.append)
    with pytest.raises(TransientStoreError, match="after 4 attempts") as info:
        run(store, ev("track", "a"))
    assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):  # exponential, with jitter in [d/2, d]
        delay = 0.05 * 2**attempt
        assert delay / 2 <= slept <= delay


def test_foreign_data_is_a_permanent_error(
    make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    sleeps: list[float] = []
    store = make_store(sleep=sleeps.append)
    redis_client.set(store.keys(TENANT).ids, "not a hash")
    with pytest.raises(PermanentStoreError):
        run(store, ev("track", "a"))
    assert sleeps == []


def _flush(client: redis.Redis, flush: str) -> None:
    if flush == "FUNCTION FLUSH" and int(client.info("server")["redis_version"].split(".")[0]) < 7:
        flush = "SCRIPT FLUSH"  # a Redis before 7: ``auto`` called the script with EVALSHA
    client.execute_command(flush)  # type: ignore[no-untyped-call]


@FLUSHES
def test_a_flushed_script_cache_is_reloaded(
    make_store: StoreFactory, redis_client: redis.Redis, command: ScriptCommand, flush: str
) -> None:
    store = make_store(script_command=command)
    run(store, ev("track", "a"))
    _flush(redis_client, flush)
    assert one(store, ev("alias", "a", other="b")).merged
    _flush(redis_client, flush)
    assert person(store, "b").distinct_ids == frozenset({"a", "b"})
    assert store.person_for(TENANT, "unknown") is None


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (redis.exceptions.ConnectionError("reset"), TransientStoreError),
        (redis.exceptions.TimeoutError("slow"), TransientStoreError),
        (redis.exceptions.BusyLoadingError("LOADING"), TransientStoreError),
        (
            redis.exceptions.ReadOnlyError("READONLY You can't write against a replica."),
            TransientStoreError,
        ),
        (
            redis.exceptions.ResponseError("BUSY Redis is busy running a script."),
            TransientStoreError,
        ),
        (
            redis.exceptions.ResponseError("MASTERDOWN Link with MASTER is down"),
            TransientStoreError,
        ),
        # the user's, not an event's: retried by the runner, never dead-lettered
        (redis.exceptions.AuthenticationError("invalid password"), StoreAccessError),
        (
            redis.exceptions.NoPermissionError("NOPERM no permissions to run 'evalsha'"),
            StoreAccessError,
        ),
        (redis.exceptions.ResponseError("ERR user_script:1: boom"), PermanentStoreError),
        (redis.exceptions.OutOfMemoryError("OOM command not allowed"), PermanentStoreError),
    ],
)
def test_classify(error: Exception, kind: type[Exception]) -> None:
    assert classify(error) is kind
    assert issubclass(classify(error), TransientError) == (kind is not PermanentStoreError)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of our own (with an AOF), which a test may stop and start again."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.directory), "--save", ""),
                *("--appendonly", "yes", "--appendfsync", "always"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        probe = redis.Redis(port=self.port)
        while True:
            try:
                probe.ping()
                probe.close()
                return
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make redis-install)")
    server = PrivateRedis(binary, tmp_path)
    server.start()
    yield server
    server.stop()


def test_retries_across_a_redis_restart(private_redis: PrivateRedis) -> None:
    client = redis.Redis(
        port=private_redis.port, retry=Retry(NoBackoff(), 0), socket_connect_timeout=0.5
    )
    sleeps: list[float] = []
    store = RedisIdentityStore(
        client,
        IdentityConfig(ordering=OrderingMode.ARRIVAL),
        retry_attempts=100,
        sleep=_recording_sleep(sleeps),
    )
    run(store, ev("track", "a", set={"n": 1}))
    private_redis.stop()
    restarter = threading.Timer(0.5, private_redis.start)  # back in ~0.5 s, scripts forgotten
    restarter.start()
    try:
        r = one(store, ev("alias", "a", T0 + 1, other="b", set={"n": 2}))
    finally:
        restarter.join()
    assert sleeps
    assert r.merged
    p = person(store, "b")
    assert (p.distinct_ids, p.version, p.visible_properties) == (
        frozenset({"a", "b"}),
        1,
        {"n": 2},
    )
    client.close()


def test_forgotten_receipts_lead_the_next_round_or_go_at_once_without_rounds(
    make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    """Pipelined rounds: ``forget``'s HDELs wait for the next round (a release round too)
    and run before its calls; one call at a time (no kept replies): they go at once."""
    rounds = make_store(IdentityConfig())
    run(rounds, dataclasses.replace(ev("track", "a"), source="in/0/1"))
    key = rounds.keys(TENANT).receipts("in/0/1")
    rounds.forget(TENANT, ["in/0/1"])
    assert redis_client.hexists(key, "in/0/1")
    run(rounds, dataclasses.replace(ev("track", "b"), source="in/0/2"))
    assert not redis_client.hexists(key, "in/0/1")
    assert redis_client.hexists(key, "in/0/2")
    rounds.forget(TENANT, ["in/0/2"])
    rounds.release_due(TENANT, now_ms=0, limit=10)
    assert not redis_client.hexists(key, "in/0/2")

    single = make_store(IdentityConfig(), reply_ttl_ms=0)
    run(single, dataclasses.replace(ev("track", "c"), source="in/0/3"))
    single.forget(TENANT, ["in/0/3"])
    assert not redis_client.hexists(single.keys(TENANT).receipts("in/0/3"), "in/0/3")


# -- rounds sent ahead (plan, send, results or abandon) ----------------------------------------


def _sourced(*events: IdentityEvent) -> list[IdentityEvent]:
    return [dataclasses.replace(e, source=f"in/0/{i}") for i, e in enumerate(events)]


def test_a_sent_round_runs_before_its_replies_are_read(
    make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    """``send`` returns at once and Redis runs the round while nobody reads: the person shows
    up (seen from another connection) before ``results`` is called, which then answers as a
    store that waited for every reply."""
    config = IdentityConfig(ordering=OrderingMode.ARRIVAL)
    store = make_store(config, max_ops_per_call=2)
    control = make_store(config, prefix=f"c-{uuid.uuid4().hex[:10]}", max_ops_per_call=2)
    events = _round_events()
    planned = store.plan_many([(TENANT, events)], T0)
    assert store.person_for(TENANT, "c") is None  # planning sends nothing
    planned.send()
    deadline = time.monotonic() + 10
    while store.person_for(TENANT, "c") is None:
        assert time.monotonic() < deadline, "the sent round did not run"
        time.sleep(0.005)
    (result,) = planned.results()
    assert isinstance(result, BatchResult)
    assert result.resolutions == run(control, *events)
    assert person(store, "c") == person(control, "c")
    for name in (store, control):
        assert person(name, "c").version == 4  # applied once


def test_an_abandoned_round_ran_whole_and_its_replay_answers_from_the_receipts(
    make_store: StoreFactory,
) -> None:
    """A round sent and then abandoned (its batch failed elsewhere) has run to the end when
    ``abandon`` returns; the batch read again gets the answers the round gave."""
    config = IdentityConfig(ordering=OrderingMode.ARRIVAL)
    store = make_store(config, max_ops_per_call=1)
    control = make_store(config, prefix=f"c-{uuid.uuid4().hex[:10]}", max_ops_per_call=1)
    events = _sourced(*_round_events())
    planned = store.plan_many([(TENANT, events)], T0)
    planned.send()
    planned.abandon()
    assert person(store, "c").version == 4  # every call ran
    assert run(store, *events) == run(control, *events)  # the replay: receipts, nothing twice
    assert person(store, "c").version == 4
    assert person(store, "c") == person(control, "c")


def test_a_round_abandoned_before_it_was_sent_changes_nothing(
    make_store: StoreFactory, redis_client: redis.Redis
) -> None:
    store = make_store()
    planned = store.plan_many([(TENANT, [ev("track", "a", set={"n": 1})])], T0)
    planned.abandon()
    assert store.person_for(TENANT, "a") is None
    assert list(redis_client.scan_iter(match=store.keys(TENANT).all_pattern())) == []
    with pytest.raises(InternalError):
        planned.results()


def test_a_round_sent_on_a_dead_connection_is_sent_again_when_read(
    redis_url: str, make_store: StoreFactory
) -> None:
    """The write of ``send`` fails (the server is not there): ``send`` does not raise,
    ``results`` retries the round and answers once the server is back."""
    sleeps: list[float] = []
    dead = redis.Redis.from_url(redis_url, connection_class=_refusing_first_connection())
    store = make_store(client=dead, sleep=sleeps.append)
    planned = store.plan_many([(TENANT, [ev("track", "a", set={"n": 1})])], T0)
    planned.send()
    (result,) = planned.results()
    assert isinstance(result, BatchResult)
    assert result.resolutions[0].person_created
    assert len(sleeps) == 1
    dead.close()


def _refusing_first_connection() -> type[redis.Connection]:
    """A connection class whose first connect fails, as when the server is restarting."""
    attempts = itertools.count(1)

    class Refusing(redis.Connection):
        def connect(self) -> None:
            if next(attempts) == 1:
                raise redis.exceptions.ConnectionError("connection refused")
            super().connect()  # type: ignore[no-untyped-call]

    return Refusing
