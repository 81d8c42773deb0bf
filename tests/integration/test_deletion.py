"""Person deletion (contract A10) in the Redis store: what goes, what stays, and the person an
id starts after its deletion. The differential test checks the same against the reference
model on random sequences."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.integration.test_redis_store import check_invariants, ev
from worker.identity.config import IdentityConfig
from worker.identity.deletion import Deletion
from worker.identity.ids import person_id_for
from worker.identity.model import GroupInput, WarningKind
from worker.store.redis_store import RedisIdentityStore

pytestmark = pytest.mark.integration

TENANT = "team:{1}%"
T0 = 1_700_000_000_000


@pytest.fixture
def store(client: redis.Redis) -> Iterator[RedisIdentityStore]:
    prefix = f"test-del-{uuid.uuid4().hex[:12]}"
    yield RedisIdentityStore(client, IdentityConfig(), prefix=prefix)
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.unlink(key)


def _merged_person(store: RedisIdentityStore) -> str:
    """Anon-1 and user-1 in one person, with properties and a remembered group; ``other``
    alone. Returns the merged person's id."""
    team = GroupInput("company", "acme", attach=True, remember=True)
    store.resolve_batch(TENANT, [ev("track", "Anon-1", T0, set={"email": "a@example.com"})], T0)
    merge = ev("identify", "user-1", T0 + 1, "Anon-1", set={"plan": "pro"})
    grouped = dataclasses.replace(ev("track", "user-1", T0 + 2), groups=(team,))
    store.resolve_batch(TENANT, [merge, grouped], T0)
    store.resolve_batch(TENANT, [ev("track", "other", T0 + 3, set={"x": 1})], T0)
    person = store.person_for(TENANT, "user-1")
    assert person is not None
    assert person.distinct_ids == {"Anon-1", "user-1"}
    assert store.memberships(TENANT)
    return person.person_id


def test_deleting_by_one_id_removes_the_person_and_all_its_ids(
    store: RedisIdentityStore, client: redis.Redis
) -> None:
    person_id = _merged_person(store)
    deleted = store.delete_person(TENANT, distinct_id="Anon-1")
    assert deleted == Deletion(TENANT, person_id, ("Anon-1", "user-1"), 0)
    assert store.person_for(TENANT, "Anon-1") is None
    assert store.person_for(TENANT, "user-1") is None
    assert [p.distinct_ids for p in store.persons(TENANT)] == [{"other"}]
    assert store.memberships(TENANT) == {}
    keys = store.keys(TENANT)
    assert client.hkeys(keys.case_folds) == []  # "anon-1" was only Anon-1's fold
    assert client.exists(keys.members("user-1"), keys.members("Anon-1")) == 0
    check_invariants(client, keys)


def test_an_id_deleted_starts_a_new_person_with_no_properties(store: RedisIdentityStore) -> None:
    old = _merged_person(store)
    store.delete_person(TENANT, distinct_id="user-1")
    (resolution,) = store.resolve_batch(TENANT, [ev("track", "user-1", T0 + 10)], T0)
    assert resolution.person_id == person_id_for(TENANT, "user-1", 1) != old
    assert resolution.properties == {}
    assert resolution.person_created
    # no case collision with the deleted Anon-1's fold any more
    (lower,) = store.resolve_batch(TENANT, [ev("track", "anon-1", T0 + 11)], T0)
    assert WarningKind.DISTINCT_ID_CASE_COLLISION not in [w.kind for w in lower.warnings]
    # deleted again: the next epoch
    store.delete_person(TENANT, distinct_id="user-1")
    (again,) = store.resolve_batch(TENANT, [ev("track", "user-1", T0 + 12)], T0)
    assert again.person_id == person_id_for(TENANT, "user-1", 2)


def test_deletion_by_person_id_and_idempotence(store: RedisIdentityStore) -> None:
    person_id = _merged_person(store)
    assert store.delete_person(TENANT, person_id=str(uuid.uuid4())) is None
    deleted = store.delete_person(TENANT, person_id=person_id)
    assert deleted is not None
    assert deleted.distinct_ids == ("Anon-1", "user-1")
    assert store.delete_person(TENANT, person_id=person_id) is None
    assert store.delete_person(TENANT, distinct_id="user-1") is None
    assert store.delete_person(TENANT, distinct_id="never-seen") is None
    with pytest.raises(ValueError, match="exactly one"):
        store.delete_person(TENANT)
