"""The Python engine (``worker/store/engine.py``) against the resolve script, on a real Redis:
for each call, the engine runs first on the tenant's data as Redis holds it, then the script
runs the same ARGV; both must give the same reply entries (as JSON values: a snapshot's keys may
come in another order) and leave the same data: the same ids hash (parents byte for byte,
records with the same fields, properties and ids), members strings and case folds.

The calls are the differential test's sequences (``test_differential.scenario``) without what
the engine does not cover yet: the buffer (the events' buffer payloads are dropped); groups,
replays answered from receipts, forgotten receipts and deletions stay (``delete_person.lua``
runs between calls). The receipts and the group state each call leaves are compared too."""

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
    Batch,
    Delete,
    Forget,
    SeededChoices,
    scenario,
)
from worker.identity import rules
from worker.identity.config import IdentityConfig
from worker.identity.model import EventKind, IdentityEvent, OrderingMode, PreparedOp
from worker.store import codec, engine, protocol, record_format
from worker.store.keys import TenantKeys, glob_escape
from worker.store.lua_loader import load_library
from worker.store.redis_store import RedisIdentityStore
from worker.store.script_call import ScriptCall

pytestmark = pytest.mark.integration

SEQUENCES = int(os.environ.get("IDENTITY_ENGINE_SEQUENCES", "60"))
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


def _receipts(client: redis.Redis, keys: TenantKeys) -> dict[tuple[bytes, bytes], Any]:
    """(bucket, source) -> the kept entry, as a JSON value (no buffer: no released ids)."""
    prefix = keys.receipts_prefix.encode()
    found: dict[tuple[bytes, bytes], Any] = {}
    for key in client.scan_iter(match=glob_escape(keys.receipts_prefix) + "*", count=1000):
        raw = cast(bytes, key)
        for source, text in cast(dict[bytes, bytes], client.hgetall(raw)).items():
            found[(raw[len(prefix) :], source)] = _json(text.split(b"\n", 1)[0])
    return found


class Pair:
    """One tenant's calls, each run by the engine, then by the script; compared."""

    def __init__(self, client: redis.Redis, config: IdentityConfig, prefix: str) -> None:
        self.client = client
        self.config = config
        self.store = RedisIdentityStore(client, config, prefix=prefix)
        self.library = load_library("resolve_batch.lua")
        ScriptCall.fcall(self.library).load(client)
        self.limits = codec.CallLimits.of(config, 0, 3_600_000)
        self.calls = 0

    def run(self, tenant: str, events: list[IdentityEvent], chunk: int, now: int) -> None:
        ops = [
            op
            for op in (rules.prepare(event, self.config) for event in events)
            if isinstance(op, PreparedOp)
        ]
        for start in range(0, len(ops), chunk):
            self.call(tenant, ops[start : start + chunk], now)

    def call(self, tenant: str, ops: list[PreparedOp], now: int) -> None:
        keys = self.store.keys(tenant)
        raw_tenant = keys.tenant.encode("utf-8", "surrogatepass")
        args = codec.encode_args(ops, self.limits, now_ms=now)
        ids_before = cast(dict[bytes, bytes], self.client.hgetall(keys.ids))
        members_before = _members(self.client, keys)
        folds_before = set(cast(dict[bytes, bytes], self.client.hgetall(keys.case_folds)))
        receipts_before = _receipts(self.client, keys)
        types_before, records_before, members_before_g = _groups(self.client, keys)

        outcome = engine.run(RedisState(self.client, keys), engine.parse_call(args))

        names = [name.encode() for name in keys.script_keys(uuid.uuid4().hex, None)]
        reply = self.client.fcall(self.library.function, len(names), *names, *args)
        self.calls += 1
        got_entries = _json(cast(bytes, reply))[0]
        assert [_json(e) for e in outcome.entries] == got_entries, f"call {self.calls}: {ops}"

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
                want_receipts[(bucket, source)] = _json(receipt)
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


@pytest.fixture
def unique_prefix(client: redis.Redis) -> Iterator[str]:
    prefix = f"test-engine-{uuid.uuid4().hex[:10]}"
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*", count=10_000):
        client.unlink(key)


def _check(client: redis.Redis, seed: int, ordering: OrderingMode, prefix: str) -> int:
    generated = scenario(SeededChoices(random.Random(seed)), ordering, False)
    pair = Pair(client, generated.config, f"{prefix}-{seed}")
    now = T0
    for advance, action in generated.steps:
        now += advance
        if isinstance(action, Batch):
            events = [dataclasses.replace(e, buffer_payload=None) for e in action.events]
            pair.run(action.tenant, events, generated.chunk, now)
        elif isinstance(action, Delete):
            pair.store.delete_person(action.tenant, distinct_id=action.distinct_id)
        elif isinstance(action, Forget):
            pair.store.forget(action.tenant, action.sources)
            pair.store.flush_forgotten()
    return pair.calls


@pytest.mark.parametrize("ordering", list(OrderingMode))
def test_the_engine_answers_and_writes_as_the_script_does(
    client: redis.Redis, unique_prefix: str, ordering: OrderingMode
) -> None:
    calls = 0
    for seed in range(SEQUENCES):
        try:
            calls += _check(client, seed, ordering, unique_prefix)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, {ordering}") from exc
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


def test_what_the_engine_does_not_cover_is_refused_before_anything_is_computed() -> None:
    config = IdentityConfig()
    limits = codec.CallLimits.of(config, 0, 3_600_000)
    event = IdentityEvent(
        tenant="t",
        kind=EventKind.TRACK,
        distinct_id="a",
        uuid="00000000-0000-0000-0000-000000000001",
        timestamp_ms=T0,
    )
    op = rules.prepare(event, config)
    assert isinstance(op, PreparedOp)
    release = codec.encode_args([], limits, command=protocol.COMMAND_RELEASE)
    with pytest.raises(engine.Unsupported, match="release"):
        engine.parse_call(release)
    buffered = codec.BufferPolicy(delay_ms=60_000, max_per_id=10, max_total=10, lease_ms=1)
    with pytest.raises(engine.Unsupported, match="buffer"):
        engine.parse_call(codec.encode_args([op], limits, buffer=buffered))
    with pytest.raises(engine.EngineError, match="format version"):
        engine.parse_call([b"1", *codec.encode_args([op], limits)[1:]])
