"""The Python engine (``worker/store/engine/``) against the resolve script, on a real Redis:
for each call, the script runs under one prefix, and the engine, then ``commit_batch.lua``
with the engine's writes, under another; the two prefixes hold the same data before the call
and must give the same reply (entries and released entries as JSON values: a snapshot's keys
may come in another order; the next due time) and hold the same data after it: the same ids
hash (parents byte for byte, records with the same fields, properties and ids), members
strings, case folds, receipts, group state and buffer. Each call also runs a second time on
what the engine's first run read alone (``engine/reads.py``): the answer must be the same, so
the read set is all the commit needs to check.

The engine reads the way a worker would: a prefetch of the call's data, the rest on demand
(``worker/store/prefetch.py``).

The calls are the differential test's sequences (``test_differential.scenario``), buffer off
and on, every step of them: batches and release calls through both; deletions
(``delete_person.lua``), forgotten receipts and acknowledgements through both stores, between
calls."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis

from tests.integration.test_differential import (
    Ack,
    Batch,
    Delete,
    Forget,
    ReleaseDue,
    SeededChoices,
    scenario,
)
from worker.identity import rules
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    EventKind,
    IdentityEvent,
    OrderingMode,
    PreparedOp,
    PropertyUpdates,
)
from worker.store import codec, engine, protocol, record_format
from worker.store.engine.cache import DecodeCache
from worker.store.engine.commit import commit_args
from worker.store.engine.reads import Recorded, Recording
from worker.store.keys import TenantKeys, glob_escape
from worker.store.lua_loader import load_library, load_script
from worker.store.prefetch import prefetch
from worker.store.redis_store import RedisIdentityStore
from worker.store.script_call import ScriptCall

pytestmark = pytest.mark.integration

SEQUENCES = int(os.environ.get("IDENTITY_ENGINE_SEQUENCES", "40"))
"""Seeded sequences per ordering mode."""
T0 = 1_700_000_000_000


def _semantic(field: bytes, value: bytes, tenant: bytes) -> object:
    """What a value of the ids hash means: a parent, or a record's fields and properties."""
    parent = record_format.parent_of(value)
    if parent is not None:
        return ("parent", parent)
    record = record_format.decode(value, field, tenant)
    meta, vals = record_format.decode_props(record)
    return (
        record.person_id,
        record.created_at,
        record.last_seen,
        record.identified,
        record.version,
        record.id_count,
        record.spilled,
        None if record.spilled else record_format.parse_members(record.others),
        {k: s.code + record_format.order_text(s.order) for k, s in meta.items()},
        vals,
    )


def _members(client: redis.Redis, keys: TenantKeys) -> dict[bytes, list[bytes]]:
    prefix = keys.members_prefix.encode()
    found: dict[bytes, list[bytes]] = {}
    for key in client.scan_iter(match=keys.members_pattern(), count=1000):
        raw = cast(bytes, key)
        found[raw[len(prefix) :]] = record_format.parse_members(cast(bytes, client.get(raw)))
    return found


def _json(text: bytes) -> Any:
    return json.loads(text)


def _buffer(client: redis.Redis, keys: TenantKeys) -> dict[str, Any]:
    """The tenant's buffer: queues, due times, entries (as JSON values), payloads, first
    releases, leases, the waiting count."""
    prefix = keys.buffer_prefix.encode()
    queues = {
        cast(bytes, k)[len(prefix) + 2 :]: cast(list[bytes], client.lrange(k, 0, -1))
        for k in client.scan_iter(match=glob_escape(keys.buffer_prefix) + "q:*", count=1000)
    }
    entries = cast(dict[bytes, bytes], client.hgetall(keys.buffer_entries))
    return {
        "queues": queues,
        "due": dict(
            cast(list[tuple[bytes, float]], client.zrange(keys.buffer_due, 0, -1, withscores=True))
        ),
        "entries": {k: _json(v) for k, v in entries.items()},
        "payloads": cast(dict[bytes, bytes], client.hgetall(keys.buffer_payloads)),
        "releases": {
            k: (v.split(b" ", 2)[:2], _json(v.split(b" ", 2)[2]))
            for k, v in cast(dict[bytes, bytes], client.hgetall(keys.buffer_releases)).items()
        },
        "pending": dict(
            cast(
                list[tuple[bytes, float]],
                client.zrange(keys.buffer_pending, 0, -1, withscores=True),
            )
        ),
        "n": int(cast(bytes | None, client.get(keys.buffer_count)) or 0),
    }


def _groups(client: redis.Redis, keys: TenantKeys) -> tuple[Any, ...]:
    """The tenant's group types, records and memberships (JSON values: an empty table of
    cjson may be [] where Python writes {})."""

    def values(name: str) -> dict[bytes, Any]:
        raw = cast(dict[bytes, bytes], client.hgetall(keys.groups_prefix + name))
        return {
            field: {k: (v or {}) if k in ("m", "v") else v for k, v in _json(text).items()}
            for field, text in raw.items()
        }

    types = cast(set[bytes], client.smembers(keys.groups_prefix + "types"))
    return types, values("records"), values("members")


def _receipt(text: bytes) -> tuple[Any, Any]:
    """A receipt: its entry and the entry ids it released, as JSON values."""
    answered, _, ids = text.partition(b"\n")
    return _json(answered), _json(ids) if ids else []


def _receipts(client: redis.Redis, keys: TenantKeys) -> dict[tuple[bytes, bytes], Any]:
    """(bucket, source) -> the kept entry and released ids (``_receipt``)."""
    prefix = keys.receipts_prefix.encode()
    found: dict[tuple[bytes, bytes], Any] = {}
    for key in client.scan_iter(match=glob_escape(keys.receipts_prefix) + "*", count=1000):
        raw = cast(bytes, key)
        for source, text in cast(dict[bytes, bytes], client.hgetall(raw)).items():
            found[(raw[len(prefix) :], source)] = _receipt(text)
    return found


def _ids(client: redis.Redis, keys: TenantKeys) -> dict[bytes, object]:
    """The ids hash, each value by what it means (``_semantic``)."""
    tenant = keys.tenant.encode("utf-8", "surrogatepass")
    raw = cast(dict[bytes, bytes], client.hgetall(keys.ids))
    return {field: _semantic(field, value, tenant) for field, value in raw.items()}


def _data(client: redis.Redis, keys: TenantKeys) -> dict[str, object]:
    """Everything a call may change, as what it means."""
    return {
        "ids": _ids(client, keys),
        "members": _members(client, keys),
        "folds": set(cast(dict[bytes, bytes], client.hgetall(keys.case_folds))),
        "receipts": _receipts(client, keys),
        "groups": _groups(client, keys),
        "buffer": _buffer(client, keys),
    }


class Pair:
    """One tenant's calls under two prefixes: the script runs each call on the first, the
    engine on the second, whose writes ``commit_batch.lua`` applies; their replies and data must
    agree after every call."""

    def __init__(
        self,
        client: redis.Redis,
        config: IdentityConfig,
        prefix: str,
        buffer: codec.BufferPolicy = codec.NO_BUFFER,
    ) -> None:
        self.client = client
        self.config = config
        self.buffer = buffer
        self.unacknowledged: list[str] = []
        self.store = RedisIdentityStore(client, config, prefix=f"{prefix}-s", buffer=buffer)
        self.engine_store = RedisIdentityStore(client, config, prefix=f"{prefix}-e", buffer=buffer)
        self.library = load_library("resolve_batch.lua")
        ScriptCall.fcall(self.library).load(client)
        self.commit = client.register_script(load_script("commit_batch.lua"))
        self.limits = codec.CallLimits.of(config, 0, 3_600_000)
        self.calls = 0
        self.cache = DecodeCache()
        """kept across the pair's calls, as a store keeps it: every entry must be what decoding
        its bytes gives"""

    def run(
        self,
        tenant: str,
        events: list[IdentityEvent],
        chunk: int,
        now: int,
        buffered: bool = False,
    ) -> None:
        ops = [
            op
            for op in (rules.prepare(event, self.config) for event in events)
            if isinstance(op, PreparedOp)
        ]
        buffer = self.buffer if buffered else codec.NO_BUFFER
        for start in range(0, len(ops), chunk):
            chunk_ops = ops[start : start + chunk]
            self.call(tenant, codec.encode_args(chunk_ops, self.limits, now_ms=now, buffer=buffer))

    def release_due(self, tenant: str, now: int, limit: int) -> None:
        args = codec.encode_args(
            [],
            self.limits,
            now_ms=now,
            buffer=self.buffer,
            command=protocol.COMMAND_RELEASE,
            release_limit=limit,
        )
        self.call(tenant, args)

    def ack(self, tenant: str, count: int) -> None:
        acked, self.unacknowledged = self.unacknowledged[:count], self.unacknowledged[count:]
        for store in (self.store, self.engine_store):
            store.ack(tenant, acked)

    def delete(self, tenant: str, distinct_id: str) -> None:
        deletions = [
            store.delete_person(tenant, distinct_id=distinct_id)
            for store in (self.store, self.engine_store)
        ]
        assert deletions[0] == deletions[1]

    def forget(self, tenant: str, sources: tuple[str, ...]) -> None:
        for store in (self.store, self.engine_store):
            store.forget(tenant, sources)
            store.flush_forgotten()

    def call(self, tenant: str, args: list[bytes]) -> None:
        self.calls += 1
        where = f"call {self.calls}"
        script_keys, engine_keys = self.store.keys(tenant), self.engine_store.keys(tenant)

        call = engine.parse_call(args)
        state = prefetch(self.client, engine_keys, call)
        recording = Recording(state)
        outcome = engine.run(recording, call, self.cache)
        check_cache(self.cache)
        # the outcome is a function of what the call read (the read set the commit checks)
        again = engine.run(Recorded(recording.tenant, recording.reads), engine.parse_call(args))
        assert again == outcome, f"{where}: an answer outside the read set"
        token = uuid.uuid4().hex
        committed = self.commit(
            keys=[name.encode() for name in engine_keys.script_keys(token, None)],
            args=commit_args(recording.reads, outcome, (0, 3_600_000)),
        )

        names = [name.encode() for name in script_keys.script_keys(token, None)]
        reply = self.client.fcall(self.library.function, len(names), *names, *args)

        assert _json(cast(bytes, committed)) == _json(cast(bytes, reply)), where
        self.unacknowledged += [released[-1] for released in _json(cast(bytes, reply))[1]]
        assert _data(self.client, engine_keys) == _data(self.client, script_keys), where


def check_cache(cache: DecodeCache) -> None:
    """Every record and property state ``cache`` holds (decoded, or kept when the engine
    encoded them) is what decoding its bytes gives."""
    for value, record in cache._records.items():
        assert record_format.decode(value) == record, value
    for (snapshot, props), (metas, vals) in cache._states.items():
        meta, decoded = record_format.decode_states(snapshot, props)
        # in the same order too (a record encoded from them again lists its keys so)
        assert [(key, state.code + state.order) for key, state in meta.items()] == list(
            metas.items()
        )
        assert list(decoded.items()) == list(vals.items())


@pytest.fixture
def unique_prefix(client: redis.Redis) -> Iterator[str]:
    prefix = f"test-engine-{uuid.uuid4().hex[:10]}"
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*", count=10_000):
        client.unlink(key)


def _check(
    client: redis.Redis, seed: int, ordering: OrderingMode, buffered: bool, prefix: str
) -> int:
    generated = scenario(SeededChoices(random.Random(seed)), ordering, buffered)
    pairs: dict[str, Pair] = {}

    def pair(tenant: str) -> Pair:
        if tenant not in pairs:  # (one store serves every tenant; a pair per tenant's acks)
            pairs[tenant] = Pair(client, generated.config, f"{prefix}-{seed}", generated.buffer)
        return pairs[tenant]

    now = T0
    for advance, action in generated.steps:
        now += advance
        if isinstance(action, Batch):
            pair(action.tenant).run(
                action.tenant, action.events, generated.chunk, now, action.buffered
            )
        elif isinstance(action, Delete):
            pair(action.tenant).delete(action.tenant, action.distinct_id)
        elif isinstance(action, Forget):
            pair(action.tenant).forget(action.tenant, action.sources)
        elif isinstance(action, ReleaseDue):
            pair(action.tenant).release_due(action.tenant, now, action.limit)
        elif isinstance(action, Ack):
            pair(action.tenant).ack(action.tenant, action.count)
    return sum(p.calls for p in pairs.values())


@pytest.mark.parametrize("buffered", [False, True], ids=["buffer-off", "buffer-on"])
@pytest.mark.parametrize("ordering", list(OrderingMode))
def test_the_engine_answers_and_writes_as_the_script_does(
    client: redis.Redis, unique_prefix: str, ordering: OrderingMode, buffered: bool
) -> None:
    calls = 0
    for seed in range(SEQUENCES):
        try:
            calls += _check(client, seed, ordering, buffered, unique_prefix)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, {ordering}, buffered {buffered}") from exc
    assert calls > SEQUENCES  # every sequence made calls


def test_a_tree_past_the_inline_ids_spills_into_its_members_string(
    client: redis.Redis, unique_prefix: str
) -> None:
    config = IdentityConfig()
    pair = Pair(client, config, unique_prefix)
    anon = [f"anon-{n}" for n in range(12)]
    events = [
        _merging("user", anon[n], n, False) if n % 2 else _merging(anon[n], "user", n, False)
        for n in range(12)
    ]
    pair.run("t", events, 64, T0)
    # and a second person of as many ids merged into it: a union of two spilled trees
    other = [_event(EventKind.ALIAS, "other", 100 + n, other_id=f"o-{n}") for n in range(10)]
    pair.run("t", other, 3, T0)
    pair.run("t", [_merging("user", "other", 500)], 64, T0)
    # one tree of every id, kept in the members string of its root (the engine's writes were
    # compared with the script's at every call: this checks the sequence reached the case)
    ((root, ids),) = _members(client, pair.store.keys("t")).items()
    everyone = {b"user", b"other", *(a.encode() for a in anon), *(b"o-%d" % n for n in range(10))}
    assert set(ids) == everyone
    assert root in everyone


def _event(kind: EventKind, distinct_id: str, n: int, **changes: object) -> IdentityEvent:
    """The ``n``-th event of a test's tenant ``t``: its uuid and time from ``n``."""
    event = IdentityEvent(
        tenant="t",
        kind=kind,
        distinct_id=distinct_id,
        uuid=f"00000000-0000-0000-0000-{n:012d}",
        timestamp_ms=T0 + n,
    )
    return dataclasses.replace(event, **changes)  # type: ignore[arg-type]


def _merging(distinct_id: str, other: str, n: int, dangerous: bool = True) -> IdentityEvent:
    return _event(EventKind.IDENTIFY, distinct_id, n, other_id=other, merge_dangerously=dangerous)


def _track(distinct_id: str, n: int, **changes: object) -> IdentityEvent:
    return _event(EventKind.TRACK, distinct_id, n, **changes)


def test_a_find_over_three_hops_compresses_the_path_as_the_script_does(
    client: redis.Redis, unique_prefix: str
) -> None:
    pair = Pair(client, IdentityConfig(), unique_prefix)
    steps = [
        _merging("a0", "a1", 1),  # a1 -> a0
        _merging("b0", "b1", 2),
        _merging("b0", "b2", 3),
        _merging("b0", "a0", 4),  # the smaller tree under the bigger: a0 -> b0, a1 -> a0
        *(_merging("c0", f"c{n}", 4 + n) for n in range(1, 6)),
        _merging("c0", "b0", 20),  # b0 -> c0: a1 -> a0 -> b0 -> c0
    ]
    for event in steps:  # one call each: the engine reads what the script wrote
        pair.run("t", [event], 64, T0)
    ids = pair.store.keys("t").ids
    assert client.hget(ids, "a1") == b"Pa0"
    assert client.hget(ids, "a0") == b"Pb0"
    pair.run("t", [_track("a1", 30)], 64, T0)
    assert (client.hget(ids, "a1"), client.hget(ids, "a0")) == (b"Pc0", b"Pc0")
    assert client.hget(ids, "b0") == b"Pc0"


def test_a_format_6_record_and_malformed_argv_are_refused(
    client: redis.Redis, unique_prefix: str
) -> None:
    config = IdentityConfig()
    keys = RedisIdentityStore(client, config, prefix=unique_prefix).keys("t")
    client.hset(keys.ids, "old", b"Rp-1|1|1|0|0|1|2|2|{}{}{}")  # a format 6 record
    op = rules.prepare(_track("old", 1), config)
    assert isinstance(op, PreparedOp)
    args = codec.encode_args([op], codec.CallLimits.of(config, 0, 3_600_000))
    call = engine.parse_call(args)
    with pytest.raises(engine.Unsupported, match="format 6"):
        engine.run(prefetch(client, keys, call), call)
    with pytest.raises(engine.EngineError, match="format version"):
        engine.parse_call([b"1", *args[1:]])
    with pytest.raises(engine.EngineError, match="op 1"):
        engine.parse_call(args[:-3])


def _computed(
    client: redis.Redis, store: RedisIdentityStore, events: list[IdentityEvent]
) -> tuple[Recording, engine.Outcome, list[bytes]]:
    config = IdentityConfig()
    ops = [op for op in (rules.prepare(e, config) for e in events) if isinstance(op, PreparedOp)]
    args = codec.encode_args(ops, codec.CallLimits.of(config, 0, 3_600_000), now_ms=T0)
    call = engine.parse_call(args)
    recording = Recording(prefetch(client, store.keys("t"), call))
    return recording, engine.run(recording, call), args


def test_a_commit_is_refused_whole_when_something_it_read_changed(
    client: redis.Redis, unique_prefix: str
) -> None:
    store = RedisIdentityStore(client, IdentityConfig(), prefix=unique_prefix)
    store.resolve_batch("t", [_track("a", 1), _track("b", 2)], T0)
    keys = store.keys("t")
    merge = dataclasses.replace(_track("a", 3), kind=EventKind.IDENTIFY, other_id="b")
    recording, outcome, _ = _computed(client, store, [merge, _track("c", 4)])
    assert ("value", b"b") in recording.reads
    # another worker changes what the engine read about b: the commit writes nothing
    store.resolve_batch("t", [_track("b", 5, updates=PropertyUpdates(set=(("k", 1),)))], T0)
    before = _data(client, keys)
    commit = client.register_script(load_script("commit_batch.lua"))
    names = [n.encode() for n in keys.script_keys(uuid.uuid4().hex, None)]
    with pytest.raises(redis.ResponseError, match="IWSTALE v b changed"):
        commit(keys=names, args=commit_args(recording.reads, outcome, (0, 3_600_000)))
    assert _data(client, keys) == before
    # computed again from what Redis holds now, it commits
    recording, outcome, _ = _computed(client, store, [merge, _track("c", 4)])
    reply = commit(keys=names, args=commit_args(recording.reads, outcome, (0, 3_600_000)))
    assert _json(cast(bytes, reply))[0] == [_json(e) for e in outcome.entries]
    assert client.hget(keys.ids, "c") is not None


def test_a_commit_sent_again_is_answered_from_its_kept_reply_and_applies_nothing_twice(
    client: redis.Redis, unique_prefix: str
) -> None:
    store = RedisIdentityStore(client, IdentityConfig(), prefix=unique_prefix)
    keys = store.keys("t")
    recording, outcome, _ = _computed(client, store, [_track("a", 1)])
    commit = client.register_script(load_script("commit_batch.lua"))
    names = [n.encode() for n in keys.script_keys(uuid.uuid4().hex, None)]
    args = commit_args(recording.reads, outcome, (60_000, 3_600_000))
    first = commit(keys=names, args=args)
    after = _data(client, keys)
    # the reply was lost: the same call again (its reads no longer hold) gets the same reply
    assert commit(keys=names, args=args) == first
    assert _data(client, keys) == after
    # a call chained on a predecessor that did not run is refused
    chained = [*keys.script_keys(uuid.uuid4().hex, None), keys.reply("never-ran")]
    with pytest.raises(redis.ResponseError, match="IWCHAIN"):
        commit(keys=[n.encode() for n in chained], args=args)


def test_a_commit_without_its_entries_answers_and_keeps_the_next_due_time_alone(
    client: redis.Redis, unique_prefix: str
) -> None:
    store = RedisIdentityStore(client, IdentityConfig(), prefix=unique_prefix)
    keys = store.keys("t")
    recording, outcome, _ = _computed(client, store, [_track("a", 1), _track("b", 2)])
    commit = client.register_script(load_script("commit_batch.lua"))
    token = uuid.uuid4().hex
    names = [n.encode() for n in keys.script_keys(token, None)]
    args = commit_args(recording.reads, outcome, (60_000, 3_600_000), echo=False)
    assert commit(keys=names, args=args) == b"false"  # no buffer touched
    assert client.get(keys.reply(token)) == b"false"  # what a retry and the chain find
    assert commit(keys=names, args=args) == b"false"
    # the same writes as the commit that returns its entries (both prefixes started empty)
    other = RedisIdentityStore(client, IdentityConfig(), prefix=f"{unique_prefix}-echo").keys("t")
    echoed = [n.encode() for n in other.script_keys(uuid.uuid4().hex, None)]
    full = commit(keys=echoed, args=commit_args(recording.reads, outcome, (60_000, 3_600_000)))
    assert _json(cast(bytes, full))[2] is False
    assert _data(client, keys) == _data(client, other)
    assert client.hlen(keys.ids) == 2
