"""The 60-second buffer of the reference model (worker/identity/buffer.py), example by example,
without Redis. The differential test checks that the Lua script agrees with the same model."""

from __future__ import annotations

import itertools

from worker.identity.buffer import BufferPolicy, BufferStats, entry_id
from worker.identity.model import (
    EventKind,
    IdentityEvent,
    IdentityWarning,
    Outcome,
    PropertyUpdates,
    WarningKind,
)
from worker.identity.reference import ReferenceStore
from worker.store.base import BufferingStore

T = "t"
NOW = 1_800_000_000_000
DELAY = 60_000
LEASE = 10_000
OVERFLOW = IdentityWarning(WarningKind.BUFFER_OVERFLOW)
_n = itertools.count(1)


def ev(kind: str, distinct_id: str, *, backend: bool = False, **fields: object) -> IdentityEvent:
    n = next(_n)
    return IdentityEvent(
        T,
        EventKind(kind),
        distinct_id,
        f"uuid-{n:04d}",
        NOW - 1000 + n,
        buffer_payload=f"payload-{n}".encode() if backend else None,
        **fields,  # type: ignore[arg-type]
    )


def store(**policy: int) -> ReferenceStore:
    return ReferenceStore(buffer=BufferPolicy(**{"delay_ms": DELAY, "lease_ms": LEASE, **policy}))


def test_the_reference_store_is_a_buffering_store() -> None:
    typed: BufferingStore = store()
    assert typed.buffered_tenants() == []


def test_a_backend_event_of_an_unknown_id_waits_until_a_merge_gives_it_a_person() -> None:
    s = store()
    e1 = ev("track", "srv", backend=True, updates=PropertyUpdates(set=(("plan", "pro"),)))
    e2 = ev("track", "srv", backend=True)
    first = s.resolve_buffered(T, [e1, e2], NOW)
    assert [r.outcome for r in first.resolutions] == [Outcome.BUFFER, Outcome.BUFFER]
    assert s.person_for(T, "srv") is None
    assert s.buffer_stats(T, NOW + 5000) == BufferStats(2, 1, 0, 5000)
    assert s.buffered_tenants() == [T]

    anon = s.resolve_buffered(T, [ev("track", "web")], NOW + 10).resolutions[0]
    result = s.resolve_buffered(T, [ev("identify", "srv", other_id="web")], NOW + 20)
    assert result.resolutions[0].person_id == anon.person_id
    assert [(r.event_uuid, r.reason, r.ingested_ms, r.payload) for r in result.released] == [
        (e1.uuid, "merge", NOW, e1.buffer_payload),
        (e2.uuid, "merge", NOW, e2.buffer_payload),
    ]
    assert {r.resolution.person_id for r in result.released} == {anon.person_id}
    assert result.released[0].resolution.properties == {"plan": "pro"}
    assert s.buffer_stats(T, NOW + 20) == BufferStats(0, 0, 2, None)


def test_later_events_of_a_waiting_id_wait_behind_it_even_once_it_has_a_person() -> None:
    s = store()
    s.resolve_buffered(T, [ev("track", "srv", backend=True)], NOW)
    # a client event gives srv its person (and releases the queue right after it)
    client = s.resolve_buffered(T, [ev("track", "srv")], NOW + 1)
    assert client.resolutions[0].outcome is Outcome.EMIT
    assert [r.reason for r in client.released] == ["merge"]
    # no queue any more and a person: applied at once
    direct = s.resolve_buffered(T, [ev("track", "srv", backend=True)], NOW + 2)
    assert direct.resolutions[0].outcome is Outcome.EMIT


def test_a_queue_is_released_at_its_due_time_counted_from_its_first_entry() -> None:
    s = store()
    e1 = ev("track", "srv", backend=True)
    s.resolve_buffered(T, [e1], NOW)
    e2 = ev("track", "srv", backend=True)
    s.resolve_buffered(T, [e2], NOW + 30_000)
    assert s.release_due(T, NOW + DELAY - 1, 10) == []
    released = s.release_due(T, NOW + DELAY, 10)
    assert [(r.event_uuid, r.reason, r.ingested_ms) for r in released] == [
        (e1.uuid, "timeout", NOW),
        (e2.uuid, "timeout", NOW + 30_000),
    ]
    assert released[0].resolution.person_created
    assert released[1].resolution.person_id == released[0].resolution.person_id


def test_an_unacknowledged_release_is_redelivered_when_its_lease_expires() -> None:
    s = store()
    e1 = ev("track", "srv", backend=True)
    s.resolve_buffered(T, [e1], NOW)
    s.release_due(T, NOW + DELAY, 10)
    assert s.release_due(T, NOW + DELAY + LEASE - 1, 10) == []
    again = s.release_due(T, NOW + DELAY + LEASE, 10)
    assert [(r.event_uuid, r.reason) for r in again] == [(e1.uuid, "redelivery")]
    s.ack(T, [entry_id(e1)])
    assert s.release_due(T, NOW + 10 * DELAY, 10) == []
    assert s.buffer_stats(T, NOW) == BufferStats(0, 0, 0, None)


def test_a_full_queue_overflows_the_waiting_events_and_the_new_one_all_warned() -> None:
    s = store(max_per_id=2)
    e1, e2, e3 = (ev("track", "srv", backend=True) for _ in range(3))
    result = s.resolve_buffered(T, [e1, e2, e3], NOW)
    assert [r.outcome for r in result.resolutions] == [Outcome.BUFFER, Outcome.BUFFER, Outcome.EMIT]
    assert [(r.event_uuid, r.reason) for r in result.released] == [
        (e1.uuid, "overflow"),
        (e2.uuid, "overflow"),
    ]
    assert all(r.resolution.warnings == (OVERFLOW,) for r in result.released)
    assert result.resolutions[2].warnings == (OVERFLOW,)


def test_the_tenant_cap_counts_every_waiting_event() -> None:
    s = store(max_total=1)
    result = s.resolve_buffered(
        T, [ev("track", "a", backend=True), ev("track", "b", backend=True)], NOW
    )
    assert [r.outcome for r in result.resolutions] == [Outcome.BUFFER, Outcome.EMIT]
    assert result.resolutions[1].warnings == (OVERFLOW,)
    assert result.released == []  # b had nothing waiting


def test_an_event_whose_uuid_is_already_kept_is_not_queued_twice() -> None:
    s = store()
    e1 = ev("track", "srv", backend=True)
    assert s.resolve_buffered(T, [e1, e1], NOW).resolutions[1].outcome is Outcome.BUFFER
    assert s.buffer_stats(T, NOW).events == 1


def test_without_the_buffer_every_event_is_applied_at_once() -> None:
    s = ReferenceStore()
    result = s.resolve_buffered(T, [ev("track", "srv", backend=True)], NOW)
    assert result.resolutions[0].outcome is Outcome.EMIT
    assert s.buffered_tenants() == []


def test_a_personless_event_that_overflows_keeps_its_warning() -> None:
    s = store(max_per_id=1)
    s.resolve_buffered(T, [ev("track", "srv", backend=True)], NOW)
    lone = ev("track", "srv", backend=True, process_person=False)
    result = s.resolve_buffered(T, [lone], NOW + 1)
    assert result.resolutions[0].warnings == (OVERFLOW,)
    assert [r.reason for r in result.released] == ["overflow"]


def test_a_replayed_trigger_returns_its_released_entries_until_they_are_acknowledged() -> None:
    s = store()
    waiting = ev("track", "srv", backend=True, source="in/0/1")
    s.resolve_buffered(T, [waiting], NOW)
    trigger = ev("identify", "srv", other_id="web", source="in/0/2")
    first = s.resolve_buffered(T, [trigger], NOW + 1)
    (released,) = first.released
    assert (released.entry_id, released.released_ms) == ("in/0/1", NOW + 1)
    replay = s.resolve_buffered(T, [waiting, trigger], NOW + 2)
    assert replay.resolutions[1] == first.resolutions[0]
    assert replay.released == first.released  # same reason, time and resolution
    assert s.buffer_stats(T, NOW + 2).leased == 1
    # re-leased by the replay: not due again until NOW + 2 + LEASE
    assert s.release_due(T, NOW + 1 + LEASE, 10) == []
    assert s.due_tenants(NOW + 2 + LEASE) == [T]
    s.ack(T, [released.entry_id])
    assert s.resolve_buffered(T, [trigger], NOW + 3).released == []
    assert s.due_tenants(NOW + 100 * DELAY) == []


def test_a_forgotten_source_is_applied_again() -> None:
    s = ReferenceStore()
    e = ev("alias", "a", other_id="b", source="in/3/9")
    assert s.resolve_batch(T, [e], NOW)[0].merged
    assert s.resolve_batch(T, [e], NOW)[0].merged  # from the receipt
    s.forget(T, ["in/3/9"])
    again = s.resolve_batch(T, [e], NOW)[0]
    assert (again.merged, again.person_changed, again.overrides) == (False, False, ())
