"""The Python engine (``worker/store/engine/``) against the resolve script, on a real Redis:
for each call, the engine runs first on the tenant's data as Redis holds it, then the script
runs the same ARGV; both must give the same reply (entries and released entries as JSON values:
a snapshot's keys may come in another order; whether it reports the next due time) and leave
the same data: the same ids hash (parents byte for byte, records with the same fields,
properties and ids), members strings, case folds, receipts, group state and buffer. Each call
also runs a second time on what the first run read alone (``engine/reads.py``): the answer
must be the same, so the read set is all a writer needs to check.

The calls are the differential test's sequences (``test_differential.scenario``), buffer off
and on, every step of them: batches and release calls through both; deletions
(``delete_person.lua``), forgotten receipts and acknowledgements through the store, between
calls."""

from __future__ import annotations

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
from worker.identity.model import EventKind, IdentityEvent, OrderingMode, PreparedOp
from worker.store import codec, engine, protocol, record_format
from worker.store.engine.reads import Recorded, Recording
from worker.store.keys import TenantKeys, glob_escape
from worker.store.lua_loader import load_library
from worker.store.redis_store import RedisIdentityStore
from worker.store.script_call import ScriptCall

pytestmark = pytest.mark.integration

SEQUENCES = int(os.environ.get("IDENTITY_ENGINE_SEQUENCES", "40"))
"""Seeded sequences per ordering mode."""
T0 = 1_700_000_000_000


class RedisState:
    """``engine.TenantState`` read from Redis as it stands (the engine runs before the
    script, so nothing changes under it)."""

    def __init__(self, client: redis.Redis, keys: TenantKeys) -> None:
        self._client = client
        self._keys = keys

    @property
    def tenant(self) -> bytes:
        return self._keys.tenant.encode("utf-8", "surrogatepass")

    def group_types(self) -> set[bytes]:
        return cast(set[bytes], self._client.smembers(self._keys.groups_prefix + "types"))

    def group_record(self, field: bytes) -> bytes | None:
        key = self._keys.groups_prefix + "records"
        return cast(bytes | None, self._client.hget(key, field))

    def group_members(self, person_id: bytes) -> bytes | None:
        key = self._keys.groups_prefix + "members"
        return cast(bytes | None, self._client.hget(key, person_id))

    def value(self, distinct_id: bytes) -> bytes | None:
        return cast(bytes | None, self._client.hget(self._keys.ids, distinct_id))

    def members(self, root: bytes) -> bytes | None:
        return cast(bytes | None, self._client.get(self._keys.members_prefix.encode() + root))

    def in_fold(self, folded: bytes) -> bool:
        return bool(self._client.hexists(self._keys.case_folds, folded))

    def deleted_person_id(self, distinct_id: bytes) -> str | None:
        value = cast(bytes | None, self._client.hget(self._keys.deleted, distinct_id))
        return value.split(b"|", 1)[1].decode() if value else None

    def receipt(self, bucket: bytes, source: bytes) -> bytes | None:
        key = self._keys.receipts_prefix.encode() + bucket
        return cast(bytes | None, self._client.hget(key, source))

    def has_queues(self) -> bool:
        return bool(self._client.exists(self._keys.buffer_due))

    def queue(self, distinct_id: bytes) -> list[bytes]:
        key = self._keys.buffer_prefix.encode() + b"q:" + distinct_id
        return cast(list[bytes], self._client.lrange(key, 0, -1))

    def waiting_count(self) -> int:
        return int(cast(bytes | None, self._client.get(self._keys.buffer_count)) or 0)

    def buffered_entry(self, entry_id: bytes) -> bytes | None:
        return cast(bytes | None, self._client.hget(self._keys.buffer_entries, entry_id))

    def first_release(self, entry_id: bytes) -> bytes | None:
        return cast(bytes | None, self._client.hget(self._keys.buffer_releases, entry_id))

    def leased(self, entry_id: bytes) -> bool:
        return self._client.zscore(self._keys.buffer_pending, entry_id) is not None

    def expired_leases(self, now: int, limit: int) -> list[bytes]:
        key = self._keys.buffer_pending
        return cast(list[bytes], self._client.zrangebyscore(key, "-inf", now, 0, limit))

    def due_ids(self, now: int, limit: int) -> list[bytes]:
        key = self._keys.buffer_due
        return cast(list[bytes], self._client.zrangebyscore(key, "-inf", now, 0, limit))


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


def _expected_buffer(before: dict[str, Any], writes: engine.Writes) -> dict[str, Any]:
    queues = {k: list(v) for k, v in before["queues"].items()}
    due = dict(before["due"])
    for distinct_id in writes.queues_cleared:
        queues.pop(distinct_id, None)
        due.pop(distinct_id, None)
    for distinct_id, pushed in writes.queues_pushed.items():
        queues.setdefault(distinct_id, []).extend(pushed)
    for distinct_id, at in writes.due_added.items():
        due[distinct_id] = float(at)
    pending = dict(before["pending"])
    for entry_id, deadline in writes.leases.items():
        if deadline is None:
            pending.pop(entry_id, None)
        else:
            pending[entry_id] = float(deadline)
    releases = dict(before["releases"])
    for entry_id, text in writes.releases.items():
        parts = text.split(b" ", 2)
        releases[entry_id] = (parts[:2], _json(parts[2]))
    return {
        "queues": queues,
        "due": due,
        "entries": before["entries"] | {k: _json(v[0]) for k, v in writes.entries.items()},
        "payloads": before["payloads"] | {k: v[1] for k, v in writes.entries.items()},
        "releases": releases,
        "pending": pending,
        "n": before["n"] + writes.waiting_delta,
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


class Pair:
    """One tenant's calls, each run by the engine, then by the script; compared."""

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
        self.store = RedisIdentityStore(client, config, prefix=prefix, buffer=buffer)
        self.library = load_library("resolve_batch.lua")
        ScriptCall.fcall(self.library).load(client)
        self.limits = codec.CallLimits.of(config, 0, 3_600_000)
        self.calls = 0

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
            args = codec.encode_args(
                ops[start : start + chunk], self.limits, now_ms=now, buffer=buffer
            )
            self.call(tenant, args, ops)

    def release_due(self, tenant: str, now: int, limit: int) -> None:
        args = codec.encode_args(
            [],
            self.limits,
            now_ms=now,
            buffer=self.buffer,
            command=protocol.COMMAND_RELEASE,
            release_limit=limit,
        )
        self.call(tenant, args, [])

    def ack(self, tenant: str, count: int) -> None:
        acked, self.unacknowledged = self.unacknowledged[:count], self.unacknowledged[count:]
        self.store.ack(tenant, acked)

    def call(self, tenant: str, args: list[bytes], ops: object) -> None:
        keys = self.store.keys(tenant)
        raw_tenant = keys.tenant.encode("utf-8", "surrogatepass")
        ids_before = cast(dict[bytes, bytes], self.client.hgetall(keys.ids))
        members_before = _members(self.client, keys)
        folds_before = set(cast(dict[bytes, bytes], self.client.hgetall(keys.case_folds)))
        receipts_before = _receipts(self.client, keys)
        types_before, records_before, members_before_g = _groups(self.client, keys)
        buffer_before = _buffer(self.client, keys)

        recording = Recording(RedisState(self.client, keys))
        outcome = engine.run(recording, engine.parse_call(args))
        # the outcome is a function of what the call read (the read set a writer checks)
        again = engine.run(Recorded(recording.tenant, recording.reads), engine.parse_call(args))
        assert again == outcome, f"call {self.calls + 1}: an answer outside the read set"

        names = [name.encode() for name in keys.script_keys(uuid.uuid4().hex, None)]
        reply = self.client.fcall(self.library.function, len(names), *names, *args)
        self.calls += 1
        got_entries, got_released, next_due = _json(cast(bytes, reply))
        assert [_json(e) for e in outcome.entries] == got_entries, f"call {self.calls}: {ops}"
        assert [_json(e) for e in outcome.released] == got_released, f"call {self.calls}"
        assert (next_due is not False) == outcome.buffer_touched, f"call {self.calls}"
        self.unacknowledged += [released[-1] for released in got_released]

        want_ids = ids_before | outcome.writes.ids
        got_ids = cast(dict[bytes, bytes], self.client.hgetall(keys.ids))
        assert set(want_ids) == set(got_ids), f"call {self.calls}: ids differ"
        for field, value in got_ids.items():
            assert _semantic(field, want_ids[field], raw_tenant) == _semantic(
                field, value, raw_tenant
            ), f"call {self.calls}: {field!r}"

        want_members = {
            root: ids
            for root, ids in members_before.items()
            if root not in outcome.writes.members_deleted
        }
        for root, text in outcome.writes.members_appended.items():
            kept = [] if root in outcome.writes.members_fresh else want_members.get(root, [])
            want_members[root] = kept + record_format.parse_members(text)
        assert want_members == _members(self.client, keys), f"call {self.calls}: members"
        folds = set(cast(dict[bytes, bytes], self.client.hgetall(keys.case_folds)))
        assert folds_before | set(outcome.writes.folds) == folds, f"call {self.calls}: folds"
        want_receipts = receipts_before
        for bucket, receipts in outcome.writes.receipts.items():
            for source, receipt in receipts:
                want_receipts[(bucket, source)] = _receipt(receipt)
        assert want_receipts == _receipts(self.client, keys), f"call {self.calls}: receipts"
        writes = outcome.writes
        want_groups = (
            types_before | set(writes.group_types),
            records_before | {f: _json(t) for f, t in writes.group_records.items()},
            {
                p: m
                for p, m in (
                    members_before_g | {p: _json(t) for p, t in writes.group_members.items()}
                ).items()
                if p not in writes.group_members_deleted
            },
        )
        assert want_groups == _groups(self.client, keys), f"call {self.calls}: groups"
        want_buffer = _expected_buffer(buffer_before, writes)
        assert want_buffer == _buffer(self.client, keys), f"call {self.calls}: buffer"


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
            pair(action.tenant).store.delete_person(action.tenant, distinct_id=action.distinct_id)
        elif isinstance(action, Forget):
            pair(action.tenant).store.forget(action.tenant, action.sources)
            pair(action.tenant).store.flush_forgotten()
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
        IdentityEvent(
            tenant="t",
            kind=EventKind.IDENTIFY,
            distinct_id="user" if n % 2 else anon[n],
            uuid=f"00000000-0000-0000-0000-{n:012d}",
            timestamp_ms=T0 + n,
            other_id=anon[n] if n % 2 else "user",
        )
        for n in range(12)
    ]
    pair.run("t", events, 64, T0)
    # and a second person of as many ids merged into it: a union of two spilled trees
    other = [
        IdentityEvent(
            tenant="t",
            kind=EventKind.ALIAS,
            distinct_id="other",
            uuid=f"00000000-0000-0000-0001-{n:012d}",
            timestamp_ms=T0 + 100 + n,
            other_id=f"o-{n}",
        )
        for n in range(10)
    ]
    pair.run("t", other, 3, T0)
    merge = IdentityEvent(
        tenant="t",
        kind=EventKind.IDENTIFY,
        distinct_id="user",
        uuid="00000000-0000-0000-0002-000000000000",
        timestamp_ms=T0 + 500,
        other_id="other",
        merge_dangerously=True,
    )
    pair.run("t", [merge], 64, T0)
    # one tree of every id, kept in the members string of its root (the engine's writes were
    # compared with the script's at every call: this checks the sequence reached the case)
    ((root, ids),) = _members(client, pair.store.keys("t")).items()
    everyone = {b"user", b"other", *(a.encode() for a in anon), *(b"o-%d" % n for n in range(10))}
    assert set(ids) == everyone
    assert root in everyone


def _merging(distinct_id: str, other: str, n: int, dangerous: bool = True) -> IdentityEvent:
    return IdentityEvent(
        tenant="t",
        kind=EventKind.IDENTIFY,
        distinct_id=distinct_id,
        uuid=f"00000000-0000-0000-0003-{n:012d}",
        timestamp_ms=T0 + n,
        other_id=other,
        merge_dangerously=dangerous,
    )


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
    track = IdentityEvent(
        tenant="t",
        kind=EventKind.TRACK,
        distinct_id="a1",
        uuid="00000000-0000-0000-0004-000000000000",
        timestamp_ms=T0 + 30,
    )
    pair.run("t", [track], 64, T0)
    assert (client.hget(ids, "a1"), client.hget(ids, "a0")) == (b"Pc0", b"Pc0")
    assert client.hget(ids, "b0") == b"Pc0"


class _Format6State(RedisState):
    """A tenant whose one id holds a format 6 record (a release before format 7)."""

    def __init__(self) -> None:
        pass

    @property
    def tenant(self) -> bytes:
        return b"t"

    def value(self, distinct_id: bytes) -> bytes | None:
        return b"Rp-1|1|1|0|0|1|2|2|{}{}{}" if distinct_id == b"old" else None

    def receipt(self, bucket: bytes, source: bytes) -> bytes | None:
        return None

    def group_types(self) -> set[bytes]:
        return set()

    def deleted_person_id(self, distinct_id: bytes) -> str | None:
        return None


def test_a_format_6_record_and_malformed_argv_are_refused() -> None:
    config = IdentityConfig()
    limits = codec.CallLimits.of(config, 0, 3_600_000)
    event = IdentityEvent(
        tenant="t",
        kind=EventKind.TRACK,
        distinct_id="old",
        uuid="00000000-0000-0000-0000-000000000001",
        timestamp_ms=T0,
    )
    op = rules.prepare(event, config)
    assert isinstance(op, PreparedOp)
    args = codec.encode_args([op], limits)
    with pytest.raises(engine.Unsupported, match="format 6"):
        engine.run(_Format6State(), engine.parse_call(args))
    with pytest.raises(engine.EngineError, match="format version"):
        engine.parse_call([b"1", *args[1:]])
    with pytest.raises(engine.EngineError, match="op 1"):
        engine.parse_call(args[:-3])
