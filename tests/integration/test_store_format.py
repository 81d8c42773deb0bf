"""What the store keeps in Redis (record format 9, ``lua/resolve/record_codec.lua``), on a real
Redis: the shape and size of a record, a tree's ids inside its record up to ``MEMBERS_INLINE`` and
in an append-only members string beyond, and the upgrade of data written by earlier releases:
format 7 records (store formats 7 and 8), read as they are and rewritten in format 9 when their
person changes, and format 6 data, rewritten by the first call that loads it."""

from __future__ import annotations

import dataclasses
import json
import struct
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.integration.test_redis_store import T0, TENANT, check_invariants, ev, pid, run
from worker.identity.config import IdentityConfig
from worker.identity.model import PropertyOp, PropertyState
from worker.identity.timestamps import last_seen_at
from worker.store import codec
from worker.store.keys import TenantKeys
from worker.store.protocol import MEMBERS_INLINE
from worker.store.redis_store import RedisIdentityStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(client: redis.Redis) -> Iterator[RedisIdentityStore]:
    prefix = f"test-format-{uuid.uuid4().hex[:10]}"
    yield RedisIdentityStore(client, IdentityConfig(), prefix=prefix)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


def _keys(store: RedisIdentityStore) -> TenantKeys:
    return store.keys(TENANT)


def _record(client: redis.Redis, store: RedisIdentityStore, distinct_id: str) -> bytes:
    value = client.hget(_keys(store).ids, distinct_id)
    assert isinstance(value, bytes), distinct_id
    return value


def _members_keys(client: redis.Redis, keys: TenantKeys) -> list[bytes]:
    return list(client.scan_iter(match=keys.members_pattern(), count=1000))


def test_a_person_alone_is_one_short_binary_record(
    store: RedisIdentityStore, client: redis.Redis
) -> None:
    run(store, ev("track", "anon-1"))
    record = _record(client, store, "anon-1")
    # marker, flags (not identified, not spilled; implicit: the person id is the one anon-1
    # creates, so it is not stored), then created_at and last_seen (6 bytes each), version, id
    # count, snapshot and property-state lengths (2 bytes each), the snapshot "{}"; no property
    # state, no other id
    seen = last_seen_at(T0, IdentityConfig().last_seen_resolution_ms)
    assert record == (
        b"\x03\x08"
        + T0.to_bytes(6, "big")
        + seen.to_bytes(6, "big")
        + struct.pack(">HHHH", 0, 1, 2, 0)
        + b"{}"
    )
    assert _members_keys(client, _keys(store)) == []


def test_a_person_id_is_stored_only_when_its_root_did_not_create_it(
    store: RedisIdentityStore, client: redis.Redis
) -> None:
    run(store, *(ev("alias", "x1", other=f"x{i}") for i in range(2, 5)))  # 4 ids under x1
    run(store, ev("identify", "a1", other="b1"))  # 2 ids under a1
    assert _record(client, store, "a1")[:2] == b"\x03\x09"  # identified, implicit
    # a1's person survives the merge, but x1's bigger tree gives the root: its id is stored
    (r,) = run(store, ev("alias", "a1", other="x1", dangerous=True))
    assert r.person_id == pid("a1")
    record = _record(client, store, "x1")
    assert record[:2] == b"\x03\x01"  # identified, not implicit
    assert record[2:18] == uuid.UUID(pid("a1")).bytes
    merged = store.person_for(TENANT, "x3")
    assert merged is not None
    assert merged.person_id == pid("a1")
    assert merged.distinct_ids == {"a1", "b1", "x1", "x2", "x3", "x4"}
    # written back again by a later call that names only other ids of the tree (the record is
    # read with its id stored and stays so): the same person id, stored, the new property
    run(store, ev("track", "x3", ts=T0 + 1, set={"plan": "pro"}))
    run(store, ev("track", "b1", ts=T0 + 2, set={"seat": 2}))
    record = _record(client, store, "x1")
    assert record[:2] == b"\x03\x01"
    assert record[2:18] == uuid.UUID(pid("a1")).bytes
    again = store.person_for(TENANT, "x2")
    assert again is not None
    assert again.person_id == pid("a1")
    assert {k: s.value for k, s in again.properties.items()} == {"plan": "pro", "seat": 2}
    check_invariants(client, _keys(store))


def test_a_track_that_changes_nothing_writes_nothing(
    store: RedisIdentityStore, client: redis.Redis
) -> None:
    resolution = IdentityConfig().last_seen_resolution_ms
    start = last_seen_at(T0, resolution)
    run(store, ev("track", "u", ts=start + 1, set={"plan": "pro"}))
    record = _record(client, store, "u")
    # later in the same minute, then an earlier time in it: the record stays as it was
    run(store, ev("track", "u", ts=start + resolution - 1), ev("track", "u", ts=start + 5))
    assert _record(client, store, "u") == record
    run(store, ev("identify", "u", ts=start + 6, other="anon-u"))  # joins, identified: written
    record = _record(client, store, "u")
    (again,) = run(store, ev("identify", "u", ts=start + 7, other="anon-u"))  # changes nothing
    assert (again.merged, again.person_changed, again.is_identified) == (False, False, True)
    assert _record(client, store, "u") == record
    run(store, ev("track", "u", ts=start + resolution))  # the next minute: last_seen moves
    moved = store.person_for(TENANT, "u")
    assert moved is not None
    assert (moved.created_at_ms, moved.last_seen_ms) == (start + 1, start + resolution)
    assert _record(client, store, "u") != record


def test_properties_are_stored_once_and_an_order_key_once_per_event(
    store: RedisIdentityStore, client: redis.Redis
) -> None:
    run(store, ev("track", "u", set={"plan": "free", "country": "fr"}, event_uuid="e-one"))
    record = _record(client, store, "u")
    assert record.count(b'"free"') == 1  # in the snapshot only
    assert record.count(b"e-one") == 1  # one order key for the event's two states
    event_uuid = str(uuid.uuid4())  # a canonical uuid: its 16 bytes, not its text
    run(store, ev("track", "u", ts=T0 + 1, set={"plan": "pro"}, event_uuid=event_uuid))
    record = _record(client, store, "u")
    assert event_uuid.encode() not in record
    assert record.count(uuid.UUID(event_uuid).bytes) == 1
    person = store.person_for(TENANT, "u")
    assert person is not None
    assert person.properties == {
        "plan": PropertyState(PropertyOp.SET, "pro", T0 + 1, event_uuid),
        "country": PropertyState(PropertyOp.SET, "fr", T0, "e-one"),
    }


def test_an_event_that_changes_nothing_leaves_the_record_as_it_was(
    store: RedisIdentityStore, client: redis.Redis
) -> None:
    run(store, ev("track", "u", ts=T0 + 10, set={"k": 1}))
    before = _record(client, store, "u")
    (r,) = run(store, ev("track", "u", ts=T0 + 10))  # the same time, no property
    assert r.properties == {"k": 1}
    assert _record(client, store, "u") == before


def test_a_tree_keeps_its_ids_in_its_record_then_in_a_members_string(
    store: RedisIdentityStore, client: redis.Redis
) -> None:
    keys = _keys(store)
    run(store, *(ev("alias", "a0", other=f"a{i}") for i in range(1, MEMBERS_INLINE)))
    assert _members_keys(client, keys) == []  # MEMBERS_INLINE ids: all in the record
    run(store, ev("alias", "a0", other=f"a{MEMBERS_INLINE}"))
    assert [k.decode() for k in _members_keys(client, keys)] == [keys.members("a0")]
    assert client.type(keys.members("a0")) == b"string"
    run(store, ev("alias", "a0", other="a-last"))  # appended to
    raw = client.get(keys.members("a0"))
    assert isinstance(raw, bytes)
    ids = {f"a{i}" for i in range(MEMBERS_INLINE + 1)} | {"a-last"}
    assert raw.endswith(b"6:a-last")
    assert len(raw) == sum(len(f"{len(i)}:{i}") for i in ids)
    # two big trees merged: the smaller's members key goes, the larger's grows
    run(store, *(ev("alias", "b0", other=f"b{i}") for i in range(1, MEMBERS_INLINE + 1)))
    run(store, ev("alias", "a0", other="b0", dangerous=True))
    trees = check_invariants(client, keys)
    assert len(trees) == 1
    (root,) = trees
    assert [k.decode() for k in _members_keys(client, keys)] == [keys.members(root)]
    person = store.person_for(TENANT, "b3")
    assert person is not None
    assert person.distinct_ids == ids | {f"b{i}" for i in range(MEMBERS_INLINE + 1)}
    assert store.delete_person(TENANT, distinct_id="a1") is not None
    assert _members_keys(client, keys) == []
    assert client.hlen(keys.ids) == 0


# -- format 7, written by store formats 7 and 8 ------------------------------------------------


_SEEN_7 = last_seen_at(T0 - 5, IdentityConfig().last_seen_resolution_ms)


def _format_7(client: redis.Redis, keys: TenantKeys, root: str, other: str) -> bytes:
    """Writes a person of two ids with one property as store formats 7 and 8 did: the person id
    as 16 bytes, then the times and counters as digits between "|"."""
    snapshot = b'{"plan":"pro"}'
    props = _props_of_one_set(len(b'"plan"'), len(b'"pro"'))
    others = b"%d:%s" % (len(other), other.encode())
    record = (
        b"\x01"
        + uuid.UUID(pid(root)).bytes
        + b"%d|%d|10|4|2|%d|%d|" % (T0 - 120_000, _SEEN_7, len(snapshot), len(props))
        + snapshot
        + props
        + others
    )
    client.hset(keys.ids, mapping={root: record, other: "P" + root})
    return record


def _props_of_one_set(key_length: int, text_length: int) -> bytes:
    """cmsgpack.pack(ords, visible, hidden) of one key set by one event (order key stored as
    its text, which record_codec reads as it reads a packed one)."""
    order = codec.order_key(T0 - 5, "e-old").encode()
    assert len(order) < 32  # a msgpack fixstr
    ords = b"\x91" + bytes([0xA0 + len(order)]) + order  # [order]
    visible = b"\x93" + bytes([key_length, text_length, 0])  # [klen, tlen, state 0: set]
    return ords + visible + b"\x90"  # hidden: []


def test_format_7_records_are_read_and_rewritten_in_format_9_when_changed(
    store: RedisIdentityStore, client: redis.Redis
) -> None:
    keys = _keys(store)
    record = _format_7(client, keys, "f7", "f7-anon")
    before = store.person_for(TENANT, "f7-anon")
    assert before is not None
    assert (before.person_id, before.distinct_ids) == (pid("f7"), frozenset({"f7", "f7-anon"}))
    assert (before.created_at_ms, before.last_seen_ms, before.version) == (T0 - 120_000, _SEEN_7, 4)
    assert before.visible_properties == {"plan": "pro"}
    # an event that changes nothing leaves the format-7 record as it is
    (r,) = run(store, ev("track", "f7-anon", ts=T0 - 5))
    assert (r.person_id, r.properties, r.is_identified) == (pid("f7"), {"plan": "pro"}, True)
    assert _record(client, store, "f7") == record
    # one that changes the person writes it in format 9, the same person
    (r,) = run(store, ev("track", "f7", ts=T0, set={"seen": True}))
    assert r.properties == {"plan": "pro", "seen": True}
    rewritten = _record(client, store, "f7")
    assert rewritten[:2] == b"\x03\x09"  # format 9, identified, implicit (f7 created it)
    after = store.person_for(TENANT, "f7")
    assert after is not None
    assert after.distinct_ids == before.distinct_ids
    assert after.properties["plan"] == before.properties["plan"]
    assert after.created_at_ms == T0 - 120_000
    assert after.version == 5
    check_invariants(client, keys)


# -- format 6, the release before format 7 --------------------------------------------------------


def _format_6(
    client: redis.Redis, keys: TenantKeys, root: str, others: list[str], props: dict[str, str]
) -> None:
    """Writes a person as format 6 did: its record at root, its set, parent references."""
    order = codec.order_key(T0 - 5, "e-old")
    meta = json.dumps({k: "s" + order for k in props}, separators=(",", ":")).encode()
    vals = json.dumps(props, separators=(",", ":")).encode()
    snapshot = ("{" + ",".join(f"{json.dumps(k)}:{t}" for k, t in props.items()) + "}").encode()
    count = 1 + len(others)
    header = b"R%s|%d|%d|%d|%d|%d|%d|%d|" % (
        pid(root).encode(),
        T0 - 5,
        T0 - 5,
        int(bool(others)),
        len(others),
        count,
        len(meta),
        len(vals),
    )
    client.hset(keys.ids, root, header + meta + vals + snapshot)
    for other in others:
        client.hset(keys.ids, other, "P" + root)
    if others:
        client.sadd(keys.members(root), root, *others)


@pytest.mark.parametrize("size", [1, 2, MEMBERS_INLINE + 2])
def test_format_6_data_is_read_then_migrated(
    store: RedisIdentityStore, client: redis.Redis, size: int
) -> None:
    keys = _keys(store)
    others = [f"old-{i}" for i in range(1, size)]
    _format_6(client, keys, "old-0", others, {"plan": '"pro"'})
    before = store.person_for(TENANT, others[-1] if others else "old-0")
    assert before is not None
    assert before.person_id == pid("old-0")
    assert before.distinct_ids == frozenset({"old-0", *others})
    assert before.visible_properties == {"plan": "pro"}
    assert [p.person_id for p in store.persons(TENANT)] == [pid("old-0")]

    (r,) = run(store, ev("track", "old-0", ts=T0, set={"seen": True}))
    assert (r.person_id, r.properties) == (pid("old-0"), {"plan": "pro", "seen": True})
    assert _record(client, store, "old-0")[:1] == b"\x03"  # rewritten in format 9
    big = size > MEMBERS_INLINE
    assert client.type(keys.members("old-0")) == (b"string" if big else b"none")
    after = store.person_for(TENANT, "old-0")
    assert after is not None
    assert after.distinct_ids == before.distinct_ids
    # last seen: the stored T0 - 5, later than T0 rounded down to its minute
    assert last_seen_at(T0, IdentityConfig().last_seen_resolution_ms) < T0 - 5
    assert (after.created_at_ms, after.last_seen_ms) == (T0 - 5, T0 - 5)
    assert after.properties["plan"] == before.properties["plan"]
    check_invariants(client, keys)


def test_a_format_6_person_can_be_deleted(store: RedisIdentityStore, client: redis.Redis) -> None:
    keys = _keys(store)
    _format_6(client, keys, "old-0", ["old-1"], {})
    deletion = store.delete_person(TENANT, person_id=pid("old-0"))
    assert deletion is not None
    assert deletion.distinct_ids == ("old-0", "old-1")
    assert client.exists(keys.ids, keys.members("old-0")) == 0


def test_a_receipt_is_its_entry_and_one_written_with_a_newline_reads_the_same(
    store: RedisIdentityStore, client: redis.Redis
) -> None:
    event = dataclasses.replace(ev("track", "a", set={"n": 1}), source="in/0/7")
    first = run(store, event)
    key = _keys(store).receipts("in/0/7")
    receipt = client.hget(key, "in/0/7")
    assert isinstance(receipt, bytes)
    # an op that released nothing keeps its reply entry as is: a JSON array, no newline
    assert b"\n" not in receipt
    assert json.loads(receipt)[0] == first[0].person_id
    assert first[0].person_created
    assert run(store, event) == first  # answered from the receipt: "created" again
    # the form written before (the entry, a newline, nothing) is read the same
    client.hset(key, "in/0/7", receipt + b"\n")
    assert run(store, event) == first
