"""The 60-second buffer in the real Redis, with time passed in (no sleeping)."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import uuid
from collections.abc import Callable

import pytest
import redis

from worker.identity.buffer import entry_id
from worker.identity.config import IdentityConfig
from worker.identity.ids import person_id_for
from worker.identity.model import (
    EventKind,
    IdentityEvent,
    OrderingMode,
    Outcome,
    PropertyUpdates,
    WarningKind,
)
from worker.identity.reference import ReferenceStore
from worker.store.base import BufferingStore
from worker.store.codec import BufferPolicy
from worker.store.keys import due_index
from worker.store.lua_loader import load_script
from worker.store.redis_store import RedisIdentityStore

pytestmark = pytest.mark.integration

T = "buf"
DELAY = 60_000
NOW = 1_800_000_000_000
_n = itertools.count(1)


def ev(kind: str, distinct_id: str, *, backend: bool = False, **fields: object) -> IdentityEvent:
    n = next(_n)
    event_uuid = str(uuid.UUID(int=n))
    return IdentityEvent(
        T,
        EventKind(kind),
        distinct_id,
        event_uuid,
        NOW - 1000 + n,
        buffer_payload=f"payload-{event_uuid}".encode() if backend else None,
        **fields,  # type: ignore[arg-type]
    )


def make_store(client: redis.Redis, prefix: str, **policy: int) -> RedisIdentityStore:
    return RedisIdentityStore(
        client,
        IdentityConfig(),
        prefix=prefix,
        buffer=BufferPolicy(**{"delay_ms": DELAY, "lease_ms": 10_000, **policy}),
    )


def test_backend_event_for_an_unknown_id_waits_then_a_merge_releases_it(
    client: redis.Redis, unique_name: str
) -> None:
    store = make_store(client, unique_name)
    e1 = ev("track", "srv-1", backend=True, updates=PropertyUpdates(set=(("plan", "pro"),)))
    e2 = ev("track", "srv-1", backend=True)
    first = store.resolve_buffered(T, [e1, e2], NOW)
    assert [r.outcome for r in first.resolutions] == [Outcome.BUFFER, Outcome.BUFFER]
    assert first.released == []
    assert store.person_for(T, "srv-1") is None
    stats = store.buffer_stats(T, NOW + 5000)
    assert (stats.events, stats.ids, stats.leased, stats.oldest_age_ms) == (2, 1, 0, 5000)
    assert store.buffered_tenants() == [T]

    anon = store.resolve_buffered(T, [ev("track", "web-anon")], NOW + 10)
    identify = ev("identify", "srv-1", other_id="web-anon")
    result = store.resolve_buffered(T, [identify], NOW + 20)
    (resolution,) = result.resolutions
    person = anon.resolutions[0].person_id
    assert resolution.person_id == person
    assert [(r.event_uuid, r.reason, r.ingested_ms) for r in result.released] == [
        (e1.uuid, "merge", NOW),
        (e2.uuid, "merge", NOW),
    ]
    assert [r.payload for r in result.released] == [e1.buffer_payload, e2.buffer_payload]
    assert all(r.resolution.person_id == person for r in result.released)
    assert result.released[0].resolution.properties == {"plan": "pro"}
    stats = store.buffer_stats(T, NOW + 30)
    assert (stats.events, stats.ids, stats.leased) == (0, 0, 2)
    store.ack(T, [r.entry_id for r in result.released])
    assert store.buffer_stats(T, NOW + 30).leased == 0


def test_released_at_the_due_time_in_order(client: redis.Redis, unique_name: str) -> None:
    store = make_store(client, unique_name)
    events = [
        ev("track", "late", backend=True, updates=PropertyUpdates(set=(("n", i),)))
        for i in range(3)
    ]
    store.resolve_buffered(T, events[:1], NOW)
    store.resolve_buffered(T, events[1:], NOW + 30_000)
    assert store.release_due(T, NOW + DELAY - 1, 100) == []
    released = store.release_due(T, NOW + DELAY, 100)
    assert [r.event_uuid for r in released] == [e.uuid for e in events]
    assert {r.reason for r in released} == {"timeout"}
    assert released[0].resolution.person_created
    assert [r.resolution.properties["n"] for r in released] == [0, 1, 2]
    assert store.person_for(T, "late") is not None


def test_later_events_of_a_waiting_id_wait_behind_it(client: redis.Redis, unique_name: str) -> None:
    store = make_store(client, unique_name)
    waiting = ev("track", "w", backend=True)
    store.resolve_buffered(T, [waiting], NOW)
    # a client event gives the id a person: the waiting event is released right after it
    client_event = ev("track", "w")
    result = store.resolve_buffered(T, [client_event, ev("track", "w", backend=True)], NOW + 1)
    assert result.resolutions[0].outcome is Outcome.EMIT
    assert result.resolutions[1].outcome is Outcome.EMIT  # the id has a person and no queue
    assert [r.event_uuid for r in result.released] == [waiting.uuid]


def test_overflow_releases_at_once_with_a_warning(client: redis.Redis, unique_name: str) -> None:
    store = make_store(client, unique_name, max_per_id=2)
    a, b, c = (ev("track", "busy", backend=True) for _ in range(3))
    assert [r.outcome for r in store.resolve_buffered(T, [a, b], NOW).resolutions] == [
        Outcome.BUFFER,
        Outcome.BUFFER,
    ]
    result = store.resolve_buffered(T, [c], NOW + 1)
    (resolution,) = result.resolutions
    assert resolution.outcome is Outcome.EMIT
    assert [w.kind for w in resolution.warnings] == [WarningKind.BUFFER_OVERFLOW]
    assert [(r.event_uuid, r.reason) for r in result.released] == [
        (a.uuid, "overflow"),
        (b.uuid, "overflow"),
    ]
    assert all(
        r.resolution.warnings[0].kind is WarningKind.BUFFER_OVERFLOW for r in result.released
    )
    assert store.buffer_stats(T, NOW).events == 0


def test_total_cap_per_tenant(client: redis.Redis, unique_name: str) -> None:
    store = make_store(client, unique_name, max_total=2)
    store.resolve_buffered(
        T, [ev("track", "x1", backend=True), ev("track", "x2", backend=True)], NOW
    )
    result = store.resolve_buffered(T, [ev("track", "x3", backend=True)], NOW)
    assert result.resolutions[0].outcome is Outcome.EMIT
    assert result.resolutions[0].warnings[0].kind is WarningKind.BUFFER_OVERFLOW


def test_a_redelivered_message_is_not_buffered_twice(client: redis.Redis, unique_name: str) -> None:
    store = make_store(client, unique_name)
    e = ev("track", "dup", backend=True)
    store.resolve_buffered(T, [e], NOW)
    again = store.resolve_buffered(T, [e], NOW + 1)
    assert again.resolutions[0].outcome is Outcome.BUFFER
    assert store.buffer_stats(T, NOW).events == 1
    assert [r.event_uuid for r in store.release_due(T, NOW + DELAY, 10)] == [e.uuid]


def test_an_unacknowledged_release_is_redelivered_after_its_lease(
    client: redis.Redis, unique_name: str
) -> None:
    store = make_store(client, unique_name, lease_ms=10_000)
    e = ev("track", "lease", backend=True)
    store.resolve_buffered(T, [e], NOW)
    (first,) = store.release_due(T, NOW + DELAY, 10)  # this worker "crashes" before acking
    assert store.release_due(T, NOW + DELAY + 9_999, 10) == []
    (again,) = store.release_due(T, NOW + DELAY + 10_000, 10)
    assert (again.event_uuid, again.reason) == (e.uuid, "redelivery")
    assert again.resolution.person_id == first.resolution.person_id
    store.ack(T, [entry_id(e)])
    assert store.release_due(T, NOW + DELAY + 100_000, 10) == []


def test_the_buffer_survives_a_new_store_instance(redis_url: str, unique_name: str) -> None:
    first_client = redis.Redis.from_url(redis_url)
    e = ev("track", "restart", backend=True)
    make_store(first_client, unique_name).resolve_buffered(T, [e], NOW)
    first_client.close()
    second_client = redis.Redis.from_url(redis_url)
    try:
        released = make_store(second_client, unique_name).release_due(T, NOW + DELAY, 10)
        assert [r.payload for r in released] == [e.buffer_payload]
    finally:
        second_client.close()


def test_buffer_off_applies_everything(client: redis.Redis, unique_name: str) -> None:
    store = make_store(client, unique_name, delay_ms=0)
    result = store.resolve_buffered(T, [ev("track", "now", backend=True)], NOW)
    assert result.resolutions[0].outcome is Outcome.EMIT
    assert store.buffered_tenants() == []


def test_concurrent_releases_hand_each_entry_to_one_worker(
    redis_url: str, unique_name: str
) -> None:
    setup = redis.Redis.from_url(redis_url)
    events = [ev("track", f"c{i % 40}", backend=True) for i in range(200)]
    make_store(setup, unique_name).resolve_buffered(T, events, NOW)
    setup.close()
    got: list[list[str]] = []
    lock = threading.Lock()

    def worker() -> None:
        c = redis.Redis.from_url(redis_url)
        store = make_store(c, unique_name)
        mine: list[str] = []
        for _ in range(20):
            mine += [r.event_uuid for r in store.release_due(T, NOW + DELAY, 5)]
        c.close()
        with lock:
            got.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    flat = [u for mine in got for u in mine]
    assert sorted(flat) == sorted(e.uuid for e in events)  # each released exactly once
    assert sum(1 for mine in got if mine) >= 1


# -- replays, stored releases, entry ids, arrival order: the Redis store and the reference model
# -- alike (the differential test checks them at random; these name each behaviour).

StoreMaker = Callable[..., BufferingStore]


@pytest.fixture(params=["redis", "reference"])
def new_store(request: pytest.FixtureRequest, client: redis.Redis, unique_name: str) -> StoreMaker:
    def make(ordering: OrderingMode = OrderingMode.TIMESTAMP, **policy: int) -> BufferingStore:
        config = IdentityConfig(ordering=ordering)
        buffer = BufferPolicy(**{"delay_ms": DELAY, "lease_ms": 10_000, **policy})
        if request.param == "reference":
            return ReferenceStore(config, buffer=buffer)
        return RedisIdentityStore(client, config, prefix=unique_name, buffer=buffer)

    return make


def _at(source: str, event: IdentityEvent) -> IdentityEvent:
    return dataclasses.replace(event, source=source)


def test_a_replayed_batch_answers_as_the_first_time_and_changes_nothing(
    new_store: StoreMaker,
) -> None:
    store = new_store(OrderingMode.ARRIVAL)
    waiting = _at("in/0/1", ev("track", "srv", backend=True, updates=_set("plan", "free")))
    batch = [
        waiting,
        _at("in/0/2", ev("identify", "srv", other_id="web", updates=_set("plan", "pro"))),
        _at("in/0/3", ev("alias", "srv", other_id="mobile")),
    ]
    first = store.resolve_buffered(T, batch, NOW)
    assert [r.person_changed for r in first.resolutions] == [False, True, True]
    assert [r.entry_id for r in first.released] == ["in/0/1"]
    persons = store.persons(T)
    # the same input again, in other chunks, the released entry not yet acknowledged
    for chunk in ([batch[1]], [batch[2], batch[0]]):
        again = store.resolve_buffered(T, chunk, NOW + 5)
        assert again.resolutions == [first.resolutions[batch.index(e)] for e in chunk]
        if chunk[0] is batch[1]:  # its trigger: the entry it released comes back, re-leased
            assert again.released == first.released
        else:
            assert again.released == []
    assert store.persons(T) == persons
    assert first.resolutions[2].overrides  # the change feed record repeats on replay
    store.ack(T, [r.entry_id for r in first.released])
    assert store.resolve_buffered(T, [batch[1]], NOW + 6).released == []
    store.forget(T, ["in/0/1"])  # committed: a later message at that position is applied again
    applied = store.resolve_buffered(T, [batch[0]], NOW + 7).resolutions[0]
    assert (applied.outcome, applied.person_changed) == (Outcome.EMIT, True)
    assert applied.properties == {"plan": "free"}  # arrival mode: its $set applies again
    assert applied.person_version == persons[0].version + 1


def test_a_redelivery_repeats_the_first_release(new_store: StoreMaker) -> None:
    store = new_store()
    e = ev("track", "lease", backend=True, updates=_set("k", "v"))
    store.resolve_buffered(T, [e], NOW)
    (first,) = store.release_due(T, NOW + DELAY, 10)
    store.resolve_batch(T, [ev("track", "lease", updates=_set("k", "later"))], NOW + DELAY + 1)
    (again,) = store.release_due(T, NOW + DELAY + 10_000, 10)
    assert again.reason == "redelivery"
    assert (again.resolution, again.released_ms) == (first.resolution, NOW + DELAY)
    assert again.resolution.properties == {"k": "v"}


def test_events_sharing_a_uuid_for_two_ids_are_both_queued(new_store: StoreMaker) -> None:
    store = new_store()
    one = ev("track", "first", backend=True)
    two = dataclasses.replace(ev("track", "second", backend=True), uuid=one.uuid)
    result = store.resolve_buffered(T, [one, two], NOW)
    assert [r.outcome for r in result.resolutions] == [Outcome.BUFFER, Outcome.BUFFER]
    released = store.release_due(T, NOW + DELAY, 10)
    assert sorted(r.entry_id for r in released) == sorted([entry_id(one), entry_id(two)])
    assert {r.resolution.person_id for r in released} == {
        person_id_for(T, "first"),
        person_id_for(T, "second"),
    }


def test_in_arrival_mode_the_trigger_sets_after_the_events_it_released(
    new_store: StoreMaker,
) -> None:
    store = new_store(OrderingMode.ARRIVAL)
    store.resolve_batch(T, [ev("track", "web")], NOW)
    older = ev("track", "srv", backend=True, updates=_set("plan", "free"))
    assert store.resolve_buffered(T, [older], NOW).resolutions[0].outcome is Outcome.BUFFER
    trigger = ev("identify", "srv", other_id="web", updates=_set("plan", "pro"))
    result = store.resolve_buffered(T, [trigger], NOW + 1)
    (released,) = result.released
    web = person_id_for(T, "web")
    # the merge first: the buffered event lands on the merged person ...
    assert released.resolution.person_id == web
    assert released.resolution.properties == {"plan": "free"}
    # ... and the trigger's own $set last, as the events arrived
    assert result.resolutions[0].properties == {"plan": "pro"}
    person = store.person_for(T, "srv")
    assert person is not None
    assert person.visible_properties == {"plan": "pro"}
    assert result.resolutions[0].person_version == person.version


def test_due_tenants_lists_only_tenants_with_something_due(new_store: StoreMaker) -> None:
    store = new_store()
    assert store.due_tenants(NOW) == []
    store.resolve_buffered(T, [ev("track", "late", backend=True)], NOW)
    assert store.due_tenants(NOW + DELAY - 1) == []
    assert store.due_tenants(NOW + DELAY) == [T]
    released = store.release_due(T, NOW + DELAY, 10)
    store.ack(T, [r.entry_id for r in released])
    store.release_due(T, NOW + DELAY + 10_000, 10)  # the lease's due time: nothing left
    assert store.due_tenants(NOW + 100 * DELAY) == []
    assert store.buffered_tenants() == [T]


def test_a_call_without_a_buffer_policy_leaves_queues_to_their_due_time(
    new_store: StoreMaker,
) -> None:
    store = new_store()
    store.resolve_buffered(T, [ev("track", "q", backend=True)], NOW)
    store.resolve_batch(T, [ev("identify", "q", other_id="w")], NOW + 1)
    (released,) = store.release_due(T, NOW + DELAY, 10)
    assert (released.reason, released.resolution.person_id) == ("timeout", person_id_for(T, "q"))


def _set(key: str, value: str) -> PropertyUpdates:
    return PropertyUpdates(set=((key, value),))


def test_the_due_index_is_only_lowered_while_its_entry_lies_ahead(
    client: redis.Redis, unique_name: str
) -> None:
    update = client.register_script(load_script("due_index.lua"))
    index = due_index(unique_name)

    def report(next_due: str, now: int) -> float | None:
        update(keys=[index], args=[T, next_due, now])
        return client.zscore(index, T)

    assert report("", 0) is None
    assert report("100", 0) == 100
    assert report("150", 50) == 100  # a call that saw an older state: not raised
    assert report("", 50) == 100  # nor removed
    assert report("80", 50) == 80  # lowered
    assert report("200", 90) == 200  # due: replaced by what the call saw
    assert report("", 250) is None  # due and nothing left: removed


def test_a_replay_restores_a_lost_due_index_entry(client: redis.Redis, unique_name: str) -> None:
    store = make_store(client, unique_name)
    waiting = dataclasses.replace(ev("track", "lost", backend=True), source="in/0/5")
    store.resolve_buffered(T, [waiting], NOW)
    client.delete(due_index(unique_name))  # the worker died before it updated the index
    assert store.due_tenants(NOW + DELAY) == []
    store.resolve_buffered(T, [waiting], NOW + 1)  # its batch, replayed: from the receipt
    assert store.due_tenants(NOW + DELAY) == [T]
    assert store.buffer_stats(T, NOW + 1).events == 1
