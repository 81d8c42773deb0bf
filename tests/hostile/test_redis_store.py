"""The messages of issue 13 that stopped the worker, and the bounds chosen against them, through
the real Redis store and its script: what the codec lets through, the script can take."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from tests.hostile.corpus import RECEIVED_AT_MS, HostileMessage, corpus
from tests.hostile.harness import CODEC, decode
from worker.codec import DecodeError, InputEvent
from worker.codec.encode import OutputEncoder
from worker.codec.envelope import to_identity_event
from worker.codec.fields import MAX_OBJECT_KEYS, MAX_PROPERTY_OPERATIONS
from worker.config import LUA_UNPACK_BOUND
from worker.identity.config import IdentityConfig
from worker.identity.model import EventKind, IdentityEvent, Outcome, PropertyUpdates, WarningKind
from worker.identity.timestamps import normalize_timestamp
from worker.store.codec import BufferPolicy, order_key
from worker.store.commit_plan import RulesMode
from worker.store.redis_store import RedisIdentityStore

pytestmark = pytest.mark.integration

CONFIG = IdentityConfig()
NOW_MS = RECEIVED_AT_MS + 500
BUFFER = BufferPolicy(delay_ms=60_000, max_per_id=LUA_UNPACK_BOUND, lease_ms=30_000)
PAYLOADS = OutputEncoder("json", CODEC)
TENANT = "2"


@pytest.fixture(params=list(RulesMode), ids=lambda mode: f"rules-in-{mode}")
def store(redis_url: str, request: pytest.FixtureRequest) -> Iterator[RedisIdentityStore]:
    client = redis.Redis.from_url(redis_url)
    prefix = f"hostile-{uuid.uuid4().hex[:12]}"
    yield RedisIdentityStore(client, CONFIG, prefix=prefix, buffer=BUFFER, rules=request.param)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _identity(event: InputEvent) -> tuple[IdentityEvent, WarningKind | None]:
    """As the processor builds it: corrected time, a buffer payload for a backend event."""
    ts, warning = normalize_timestamp(
        event.timestamp_ms,
        event.sent_at_ms,
        NOW_MS,
        CONFIG.future_timestamp_margin_ms,
        ignored=event.ignored_timestamp,
    )
    identity = to_identity_event(event, ts)
    if event.is_backend:
        identity = replace(identity, buffer_payload=PAYLOADS.input_event(event))
    return identity, warning.kind if warning else None


def _by_name(name: str) -> HostileMessage:
    (message,) = [m for m in corpus() if m.name == name]
    return message


def test_a_huge_posthog_offset_reaches_the_store_as_the_receive_time(
    store: RedisIdentityStore,
) -> None:
    message = _by_name("posthog offset 1e30")
    with pytest.raises(ValueError, match="out of range"):
        order_key(RECEIVED_AT_MS - 10**30, "u")  # what the store was given before
    event = decode(message)
    assert isinstance(event, InputEvent)
    identity, warning = _identity(event)
    assert warning is WarningKind.IGNORED_INVALID_TIMESTAMP
    assert identity.timestamp_ms == NOW_MS
    (resolution,) = store.resolve_buffered(event.tenant, [identity], NOW_MS).resolutions
    assert resolution.outcome is Outcome.EMIT


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("backend $set 1e400", "value_out_of_range"),
        ("backend 2,700 $unset keys", "too_many_properties"),
    ],
)
def test_the_other_crashers_never_reach_the_store(name: str, reason: str) -> None:
    result = decode(_by_name(name))
    assert isinstance(result, DecodeError)
    assert result.reason == reason


NO_UPDATES = PropertyUpdates()


def _backend_track(distinct_id: str, updates: PropertyUpdates = NO_UPDATES) -> IdentityEvent:
    event = InputEvent(
        tenant=TENANT,
        kind=EventKind.TRACK,
        uuid=str(uuid.uuid4()),
        distinct_id=distinct_id,
        event="server-side",
        timestamp_ms=RECEIVED_AT_MS,
        sent_at_ms=None,
        other_id=None,
        merge_dangerously=False,
        process_person=True,
        is_backend=True,
        properties={},
        updates=updates,
        raw_format="json",
    )
    identity, _ = _identity(event)
    return identity


def test_a_buffered_event_with_the_most_property_operations_fits_the_script(
    store: RedisIdentityStore,
) -> None:
    half = MAX_PROPERTY_OPERATIONS // 2
    updates = PropertyUpdates(
        set=tuple((f"s{i}", i) for i in range(half)),
        unset=tuple(f"u{i}" for i in range(half)),
    )
    assert half <= MAX_OBJECT_KEYS
    waiting = _backend_track("server-user", updates)
    (buffered,) = store.resolve_buffered(TENANT, [waiting], NOW_MS).resolutions
    assert buffered.outcome is Outcome.BUFFER
    # the id gets a person: the entry (all its operations) is read back and applied
    identify = replace(_backend_track("server-user"), kind=EventKind.IDENTIFY, buffer_payload=None)
    result = store.resolve_buffered(TENANT, [identify], NOW_MS + 1)
    (released,) = result.released
    assert released.event_uuid == waiting.uuid
    assert len(released.resolution.properties) == half
    assert json.loads(released.payload)["distinct_id"] == "server-user"


def test_a_full_queue_of_one_id_is_released_in_one_call(store: RedisIdentityStore) -> None:
    """``buffer.max_events_per_id`` at its bound: the overflow unpacks the whole queue."""
    events = [_backend_track("busy-id") for _ in range(LUA_UNPACK_BOUND)]
    resolutions = store.resolve_buffered(TENANT, events, NOW_MS).resolutions
    assert {r.outcome for r in resolutions} == {Outcome.BUFFER}
    result = store.resolve_buffered(TENANT, [_backend_track("busy-id")], NOW_MS + 1)
    assert len(result.released) == LUA_UNPACK_BOUND
    assert {r.reason for r in result.released} == {"overflow"}


def test_a_release_batch_of_expired_leases_at_the_bound(store: RedisIdentityStore) -> None:
    """``buffer.release_batch_size`` at its bound: the expired leases are unpacked at once."""
    events = [_backend_track(f"id-{i}") for i in range(LUA_UNPACK_BOUND)]
    store.resolve_buffered(TENANT, events, NOW_MS)
    due = NOW_MS + BUFFER.delay_ms
    assert len(store.release_due(TENANT, due, LUA_UNPACK_BOUND)) == LUA_UNPACK_BOUND
    expired = store.release_due(TENANT, due + BUFFER.lease_ms + 1, LUA_UNPACK_BOUND)
    assert len(expired) == LUA_UNPACK_BOUND
    assert {r.reason for r in expired} == {"redelivery"}
