"""Differential test: the Redis store (Lua) against the reference model (pure Python).

Hypothesis generates random event sequences: merges and chains, refused merges,
merge_dangerously, illegal ids (quoted forms included), personless events, property operations
with clashing keys and timestamps, replays and malformed duplicate uuids, several tenants, small
distinct-id caps and small size limits, in both ordering modes. Both stores get the same batches
(the Redis store with a random chunk size, so chunk boundaries fall anywhere) and must return
identical resolutions, field by field, and end with identical persons.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from tests.integration.test_redis_store import check_invariants
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    EventKind,
    IdentityEvent,
    JsonValue,
    OrderingMode,
    Person,
    PropertyUpdates,
    Resolution,
)
from worker.identity.reference import ReferenceStore
from worker.store.redis_store import RedisIdentityStore

pytestmark = pytest.mark.integration


T0 = 1_700_000_000_000
TENANTS = ("t1", "t:{2}")
LEGAL_IDS = ("a", "b", "c", "d", "e", "f", "user-1", "anon:é")
ILLEGAL_IDS = ("null", "'guest'", '"Anonymous"', "", "   ", "0", "NaN", "[object Object]")
KEYS = ("k1", "k2", "k3", "$initial_url", "k" * 12)
EXAMPLES_PER_MODE = 1000
"""2,000 random sequences per run of the suite (both ordering modes), about a minute."""


# -- strategies --------------------------------------------------------------------------------

json_values: st.SearchStrategy[JsonValue] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)
small_values = st.one_of(
    st.integers(0, 3), st.sampled_from(["x", "y", "xyzxyzxyzxyz"]), json_values
)


def _weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Pick a strategy with the given weights (percent), so rare cases stay rare."""
    total = sum(weight for weight, _ in choices)

    def pick(roll: int) -> st.SearchStrategy[Any]:
        for weight, strategy in choices:
            if roll < weight:
                return strategy
            roll -= weight
        raise AssertionError(roll)

    return st.integers(0, total - 1).flatmap(pick)


distinct_ids = _weighted((85, st.sampled_from(LEGAL_IDS)), (15, st.sampled_from(ILLEGAL_IDS)))
updates = st.builds(
    PropertyUpdates,
    set=st.lists(st.tuples(st.sampled_from(KEYS), small_values), max_size=3).map(tuple),
    set_once=st.lists(st.tuples(st.sampled_from(KEYS), small_values), max_size=2).map(tuple),
    unset=st.lists(st.sampled_from(KEYS), max_size=2).map(tuple),
)


@dataclass(frozen=True)
class Draft:
    """An event before its tenant, uuid and timestamp are decided."""

    kind: EventKind
    distinct_id: str
    other: str | None
    dangerous: bool
    process_person: bool
    updates: PropertyUpdates
    ts_offset: int


drafts = st.builds(
    Draft,
    kind=_weighted(
        (50, st.just(EventKind.TRACK)),
        (25, st.just(EventKind.IDENTIFY)),
        (25, st.just(EventKind.ALIAS)),
    ),
    distinct_id=distinct_ids,
    other=_weighted((15, st.none()), (85, distinct_ids)),
    dangerous=_weighted((60, st.just(False)), (40, st.just(True))),
    process_person=_weighted((92, st.just(True)), (8, st.just(False))),
    updates=_weighted((40, st.just(PropertyUpdates())), (60, updates)),
    ts_offset=st.sampled_from([0, 1, 2, 59_999, 60_000, 60_001, 120_000, -5]),
)


Batches = list[tuple[str, list[IdentityEvent]]]


def _same_tenant_prefix(events: list[IdentityEvent]) -> list[IdentityEvent]:
    return [e for e in itertools.takewhile(lambda e: e.tenant == events[0].tenant, events)]


@st.composite
def scenarios(draw: st.DrawFn, ordering: OrderingMode) -> tuple[IdentityConfig, Batches, int]:
    """A config, batches (tenant, events) and the Redis chunk size."""
    config = IdentityConfig(
        ordering=ordering,
        max_distinct_ids_per_person=draw(st.sampled_from([10_000, 2, 3, 4])),
        max_properties_bytes=draw(st.sampled_from([512 * 1024, 200, 60, 24])),
        max_property_key_length=draw(st.sampled_from([1024, 1024, 6])),
        max_property_value_length=draw(st.sampled_from([1024, 1024, 8])),
    )
    events: list[IdentityEvent] = []
    counter = itertools.count()
    for draft in draw(st.lists(drafts, min_size=1, max_size=24)):
        roll = draw(st.integers(0, 9))
        if events and roll == 0:  # an exact replay of an earlier event
            events.append(draw(st.sampled_from(events)))
            continue
        tenant = draw(_weighted((80, st.just(TENANTS[0])), (20, st.just(TENANTS[1]))))
        event_uuid = f"00000000-0000-0000-0000-{next(counter):012d}"
        ts = T0 + draft.ts_offset + draw(st.integers(0, 3))
        if events and roll == 1:  # a malformed duplicate: same uuid and timestamp
            twin = draw(st.sampled_from(events))
            tenant, event_uuid, ts = twin.tenant, twin.uuid, twin.timestamp_ms
        events.append(
            IdentityEvent(
                tenant=tenant,
                kind=draft.kind,
                distinct_id=draft.distinct_id,
                uuid=event_uuid,
                timestamp_ms=ts,
                other_id=None if draft.kind is EventKind.TRACK else draft.other,
                merge_dangerously=draft.dangerous,
                process_person=draft.process_person,
                updates=draft.updates,
            )
        )
    batches: Batches = []
    sizes = draw(st.lists(st.integers(1, 6), min_size=len(events), max_size=len(events)))
    rest = list(events)
    for size in sizes:
        if not rest:
            break
        batch = _same_tenant_prefix(rest)[:size]
        batches.append((batch[0].tenant, batch))
        rest = rest[len(batch) :]
    return config, batches, draw(st.integers(1, 5))


# -- the test ----------------------------------------------------------------------------------


RUN = f"diff-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    for key in client.scan_iter(match=f"{RUN}-*", count=5000):
        client.unlink(key)
    client.close()


_examples = itertools.count()


def _by_id(persons: list[Person]) -> list[Person]:
    return sorted(persons, key=lambda p: p.person_id)


def _normalised(person: Person) -> Person:
    """Plain dicts, so Mapping types of the two stores compare equal."""
    return Person(
        person_id=person.person_id,
        created_at_ms=person.created_at_ms,
        last_seen_ms=person.last_seen_ms,
        is_identified=person.is_identified,
        version=person.version,
        distinct_ids=frozenset(person.distinct_ids),
        properties=dict(person.properties),
    )


def _label(resolution: Resolution) -> None:
    """Coverage labels (``pytest --hypothesis-show-statistics``)."""
    if resolution.merged:
        event("merged")
        if len(resolution.overrides) > 1:
            event("merged, several ids moved")
        if resolution.properties:
            event("merged, with properties")
    for warning in resolution.warnings:
        event(f"warning {warning.kind.value}")
    if resolution.person_mode is not None:
        event(f"mode {resolution.person_mode.value}")


def _check(
    client: redis.Redis,
    config: IdentityConfig,
    batches: Batches,
    chunk: int,
) -> None:
    prefix = f"{RUN}-{next(_examples)}"
    expected_store = ReferenceStore(config)
    actual_store = RedisIdentityStore(client, config, prefix=prefix, max_ops_per_call=chunk)
    note(f"config={config} chunk={chunk}")
    for number, (tenant, events) in enumerate(batches):
        expected = expected_store.resolve_batch(tenant, events, now_ms=T0)
        actual = actual_store.resolve_batch(tenant, events, now_ms=T0)
        for item, want, got in zip(events, expected, actual, strict=True):
            assert got == want, f"batch {number}, event {item}"
            _label(want)
    for tenant in TENANTS:
        want_persons = [_normalised(p) for p in _by_id(expected_store.persons(tenant))]
        got_persons = [_normalised(p) for p in _by_id(actual_store.persons(tenant))]
        assert got_persons == want_persons, tenant
        check_invariants(client, actual_store.keys(tenant))
        for person in want_persons:
            for distinct_id in person.distinct_ids:
                found = actual_store.person_for(tenant, distinct_id)
                assert found is not None
                assert _normalised(found) == person


@pytest.mark.parametrize("ordering", list(OrderingMode))
@settings(
    max_examples=EXAMPLES_PER_MODE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_redis_store_agrees_with_the_reference_model(
    redis_client: redis.Redis, ordering: OrderingMode, data: st.DataObject
) -> None:
    _check(redis_client, *data.draw(scenarios(ordering), label="scenario"))
