"""The pure Lua modules of ``lua/resolve/``, run inside the real Redis through small harness
scripts (a module joined with the ``PROTOCOL`` prelude by ``lua_loader.join``, then a few lines
that call it with ARGV), and compared with the Python they port.

- ``ordering.outranks`` against ``worker.identity.properties.outranks`` over random states:
  set / set_once / unset, timestamps from -2^63 to 2^63 - 1, uuids and value texts of any
  characters (lone surrogates included), with collisions made likely so the tie-breaks run;
- ``ordering.compare`` and ``ordering.bytecmp`` against Python's order of ``(ts, uuid)`` and of
  bytes;
- the ``PROTOCOL`` table the script sees against ``protocol.py``;
- ``records`` and ``record_codec``: a record (format 9) encoded, decoded and encoded again is the
  same text (narrow and wide headers, implicit person id), holds the states it was given (as
  ``read_person.lua``'s view shows them to Python), Lua derives the person ids Python gives,
  and a format-6 record is migrated when loaded; ``reply.entry`` gives the entry ``codec``
  decodes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence

import pytest
import redis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from worker.identity.ids import PERSON_NAMESPACE, person_id_for
from worker.identity.model import JsonValue, PropertyOp, PropertyState
from worker.identity.properties import canonical_json, outranks
from worker.store import codec, person_record, protocol
from worker.store.keys import TenantKeys
from worker.store.lua_loader import join

pytestmark = pytest.mark.integration

ENCODING, ERRORS = "utf-8", "surrogatepass"


def harness(modules: Sequence[str], body: str) -> str:
    """A script: the PROTOCOL prelude, ``modules`` (names under ``lua/``), then ``body``."""
    includes = [f'--- @include "{name}"' for name in ("protocol", *modules)]
    return join("\n".join([*includes, body]) + "\n")


OUTRANKS = harness(
    ["resolve/ordering"],
    """
local out = {}
for k = 1, #ARGV, 4 do
  out[#out + 1] = ordering.outranks(ARGV[k], ARGV[k + 1], ARGV[k + 2], ARGV[k + 3]) and 1 or 0
end
return out
""",
)

COMPARE = harness(
    ["resolve/ordering"],
    """
local out = {}
for k = 1, #ARGV, 2 do
  out[#out + 1] = ordering.compare(ARGV[k], ARGV[k + 1])
  out[#out + 1] = ordering.bytecmp(ARGV[k], ARGV[k + 1], 1)
end
return out
""",
)

COMPARE_STORED = harness(
    ["resolve/ordering", "resolve/record_codec", "resolve/properties"],
    """
-- ARGV: pairs of metas (text); each compared with either, both or neither order key stored.
local function stored(meta)
  return string.sub(meta, 1, 1) .. record_codec.pack_order(string.sub(meta, 2))
end
local out = {}
for k = 1, #ARGV, 2 do
  local x, y = ARGV[k], ARGV[k + 1]
  out[#out + 1] = properties.compare_metas(x, y)
  out[#out + 1] = properties.compare_metas(stored(x), y)
  out[#out + 1] = properties.compare_metas(x, stored(y))
  out[#out + 1] = properties.compare_metas(stored(x), stored(y))
end
return out
""",
)

PRELUDE = harness([], "return cjson.encode(PROTOCOL)")

RECORD_MODULES = ["resolve/record_codec", "resolve/union_find", "resolve/records"]

RECORD_ROUND_TRIP = harness(
    RECORD_MODULES,
    """
-- ARGV: person id, created_at, last_seen, version, id_count, the tenant's ids key, then key,
-- meta, text triples (text "" with an unset's meta: no value). The record's root is 'root'.
local meta, vals = {}, {}
for k = 7, #ARGV, 3 do
  meta[ARGV[k]] = ARGV[k + 1]
  if string.byte(ARGV[k + 1], 1) ~= string.byte(PROTOCOL.code.unset) then
    vals[ARGV[k]] = ARGV[k + 2]
  end
end
local person = records.new_person({
  person_id = ARGV[1], person_id_bytes = record_codec.person_id_bytes(ARGV[1]),
  created_at = tonumber(ARGV[2]), created_at_text = ARGV[2], last_seen = tonumber(ARGV[3]),
  last_seen_text = ARGV[3], identified = true, version = tonumber(ARGV[4]),
  version_text = ARGV[4], id_count = tonumber(ARGV[5]), spilled = false,
  others_text = '', others = { 'm' }, stored_members = false, meta = meta, vals = vals,
  properties_size = 0, snapshot = false,
})
local ctx = { keys = { ids = ARGV[6] }, values = {}, written = {}, persons = {}, dirty = {} }
local text = records.encode(person, 'root', ctx)
ctx.values.root = text
local loaded = records.load(ctx, 'root')
local untouched = records.encode(loaded, 'root', ctx)
if loaded.created_at_text ~= ARGV[2] or loaded.version_text ~= ARGV[4] then
  return redis.error_reply('texts: ' .. loaded.created_at_text .. ' ' .. loaded.version_text)
end
local fields = record_codec.decode(text, 'root', record_codec.tenant_of(ARGV[6]))
local view = record_codec.view('root', fields, { 'root', 'm' })
local metas = {} -- a decoded meta keeps its order key stored: its text form is the state
for key, m in pairs(records.meta_of(loaded)) do
  metas[key] = record_codec.meta_text(m)
end
return { text, untouched, view, cjson.encode(metas),
  cjson.encode(records.vals_of(loaded)), loaded.properties_size }
""",
)

LEGACY_MIGRATION = harness(
    RECORD_MODULES,
    """
-- ARGV: the members prefix, a format-6 record of the root 'root'.
local ctx = { keys = { members = ARGV[1], ids = 'p:{t}:ids' }, values = { root = ARGV[2] },
  written = {}, persons = {}, dirty = {}, added = {}, fresh = {}, dropped = {} }
local person = records.load(ctx, 'root')
local text = records.encode(person, 'root', ctx)
local ids = union_find.members_of(ctx, 'root', person)
local view = record_codec.view('root', record_codec.decode(text, 'root', 't'), ids)
local legacy = record_codec.view('root', record_codec.decode(ARGV[2]), ids)
return { text, view, legacy, ctx.dirty.root and 1 or 0, ctx.dropped.root and 1 or 0,
  ctx.fresh.root and 1 or 0 }
""",
)

ENTRY = harness(
    ["resolve/reply"],
    """
return reply.entry(ARGV[1], PROTOCOL.person_mode.full, ARGV[2], true, ARGV[3], false, true,
  { PROTOCOL.warning.merge_limit }, { { ARGV[4], 'old', 'new' } }, ARGV[5], true, nil, nil)
""",
)


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[redis.Redis]:
    redis_client = redis.Redis.from_url(redis_url)
    yield redis_client
    redis_client.close()


def _b(text: str) -> bytes:
    return text.encode(ENCODING, ERRORS)


def _eval(client: redis.Redis, script: str, args: Sequence[bytes]) -> object:
    return client.eval(script, 0, *args)


# -- strategies --------------------------------------------------------------------------------

timestamps = st.one_of(
    st.sampled_from([0, 1, -1, 10, 1_700_000_000_000, -(2**63), 2**63 - 1, 2**53, -(2**53)]),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-1000, 1000),
)
uuids = st.one_of(
    st.sampled_from(["", "e1", "e2", "00000000-0000-0000-0000-000000000001", "é", "\udfff"]),
    st.uuids().map(str),
    st.text(max_size=6),
)
values: st.SearchStrategy[JsonValue] = st.one_of(
    st.sampled_from([0, 1, "x", "y", None, True, "é", "\udfff"]),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.lists(st.integers(0, 3), max_size=2),
)


@st.composite
def states(draw: st.DrawFn) -> PropertyState:
    op = draw(st.sampled_from([PropertyOp.SET, PropertyOp.SET_ONCE, PropertyOp.UNSET]))
    value = None if op is PropertyOp.UNSET else draw(values)
    return PropertyState(op, value, draw(timestamps), draw(uuids))


_CODES = {PropertyOp.SET: protocol.SET, PropertyOp.SET_ONCE: protocol.SET_ONCE}


def _meta_and_text(state: PropertyState) -> tuple[str, str]:
    """The state as the script holds it: op code .. order key, and its value text."""
    code = _CODES.get(state.op, protocol.UNSET)
    text = "" if state.op is PropertyOp.UNSET else canonical_json(state.value)
    return code + codec.order_key(state.ts_ms, state.uuid), text


def _sign(x: tuple[int, str] | bytes, y: tuple[int, str] | bytes) -> int:
    return int(x > y) - int(x < y)  # type: ignore[operator]


# -- tests -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(st.tuples(states(), states()), min_size=1, max_size=20))
def test_outranks_agrees_with_python(
    client: redis.Redis, pairs: list[tuple[PropertyState, ...]]
) -> None:
    args: list[bytes] = []
    for new, current in pairs:
        args += [_b(part) for part in (*_meta_and_text(new), *_meta_and_text(current))]
    got = _eval(client, OUTRANKS, args)
    assert got == [int(outranks(new, current)) for new, current in pairs]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(st.tuples(st.tuples(timestamps, uuids), st.tuples(timestamps, uuids))))
def test_order_key_comparison_agrees_with_python(
    client: redis.Redis, pairs: list[tuple[tuple[int, str], tuple[int, str]]]
) -> None:
    args: list[bytes] = []
    expected: list[int] = []
    for (ts_x, uuid_x), (ts_y, uuid_y) in pairs:
        meta_x = _b(protocol.SET + codec.order_key(ts_x, uuid_x))
        meta_y = _b(protocol.SET_ONCE + codec.order_key(ts_y, uuid_y))
        args += [meta_x, meta_y]
        expected += [_sign((ts_x, uuid_x), (ts_y, uuid_y)), _sign(meta_x, meta_y)]
    assert _eval(client, COMPARE, args) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs=st.lists(
        st.tuples(st.tuples(timestamps, uuids), st.one_of(st.tuples(timestamps, uuids), st.none()))
    )
)
def test_stored_order_keys_compare_as_their_texts(
    client: redis.Redis, pairs: list[tuple[tuple[int, str], tuple[int, str] | None]]
) -> None:
    """A decoded meta keeps its order key stored (packed when it is 20 digits and a canonical
    uuid): compared with another in either form, it orders as the texts do (and as Python)."""
    args: list[bytes] = []
    expected: list[int] = []
    for x, maybe_y in pairs:
        y = x if maybe_y is None else maybe_y  # equal keys too
        args += [
            _b(protocol.SET + codec.order_key(*x)),
            _b(protocol.SET_ONCE + codec.order_key(*y)),
        ]
        expected += [_sign(x, y)] * 4
    assert _eval(client, COMPARE_STORED, args) == expected


def test_outranks_examples(client: redis.Redis) -> None:
    """Hand-written cases: each rule of the ranking, and the bytes a strcoll compare gets
    wrong."""
    cases = [  # (new, current, outranks)
        (PropertyState(PropertyOp.SET, 1, 5, "a"), PropertyState(PropertyOp.SET, 2, 4, "z"), True),
        (PropertyState(PropertyOp.SET, 1, 4, "a"), PropertyState(PropertyOp.SET, 2, 5, "a"), False),
        (
            PropertyState(PropertyOp.SET_ONCE, 1, 4, "a"),
            PropertyState(PropertyOp.SET_ONCE, 2, 5, "a"),
            True,
        ),
        (
            PropertyState(PropertyOp.SET_ONCE, 1, 1, "a"),
            PropertyState(PropertyOp.UNSET, None, 9, "a"),
            False,
        ),
        (
            PropertyState(PropertyOp.UNSET, None, -1, "a"),
            PropertyState(PropertyOp.SET_ONCE, 1, 0, "a"),
            True,
        ),
        (
            PropertyState(PropertyOp.SET, "b", 3, "u"),
            PropertyState(PropertyOp.SET, "a", 3, "u"),
            True,
        ),
        (
            PropertyState(PropertyOp.SET, "B", 3, "u"),
            PropertyState(PropertyOp.SET, "a", 3, "u"),
            False,
        ),
        (
            PropertyState(PropertyOp.SET, 1, -(2**63), "u"),
            PropertyState(PropertyOp.SET, 1, 2**63 - 1, "u"),
            False,
        ),
        (PropertyState(PropertyOp.SET, 1, 7, "é"), PropertyState(PropertyOp.SET, 1, 7, "z"), True),
    ]
    args: list[bytes] = []
    for new, current, expected in cases:
        assert outranks(new, current) is expected  # the cases are right
        args += [_b(part) for part in (*_meta_and_text(new), *_meta_and_text(current))]
    assert _eval(client, OUTRANKS, args) == [int(expected) for _, _, expected in cases]


def test_prelude_is_protocol(client: redis.Redis) -> None:
    raw = _eval(client, PRELUDE, [])
    assert isinstance(raw, bytes)
    assert json.loads(raw) == {
        "format_version": protocol.FORMAT_VERSION,
        "flag": {flag.name.lower(): flag.value for flag in protocol.OpFlag if flag.name},
        "max_flags": protocol.MAX_FLAGS,
        "members_inline": protocol.MEMBERS_INLINE,
        "person_namespace": str(PERSON_NAMESPACE),
        "reply_entry_fields": list(protocol.REPLY_ENTRY_FIELDS),
        "released_entry_fields": list(protocol.RELEASED_ENTRY_FIELDS),
        "code": protocol.PROPERTY_CODES,
        "warning": protocol.WARNINGS,
        "command": protocol.COMMANDS,
        "person_mode": protocol.PERSON_MODES,
        "ordering": protocol.ORDERING_MODES,
        "release_reason": protocol.RELEASE_REASONS,
        "check": protocol.COMMIT_CHECKS,
    }


_TENANT = "t%:{1}"
"""A tenant whose ids key escapes it (keys.escape_tenant): record_codec.tenant_of undoes that."""
_IMPLICIT = person_id_for(_TENANT, "root")
"""The person id that the record's root creates: not stored (format 9's implicit flag)."""

_TIMES = st.one_of(
    st.integers(0, 2**48 - 1),
    st.sampled_from([0, 2**48 - 1, 2**48, -1, -5, 253_402_300_799_999, 2**53]),
    st.integers(-(2**53), 2**53),
)
_COUNTS = st.one_of(
    st.integers(0, 70_000), st.sampled_from([65_535, 65_536]), st.integers(0, 2**53)
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    person_id=st.one_of(
        st.uuids().map(str), st.sampled_from(["p", "P-1", "é\udfff", _IMPLICIT, _IMPLICIT])
    ),
    keyed=st.dictionaries(
        st.one_of(st.text(max_size=6), st.sampled_from(["a", "/", '"', "\n", "\udfff"])),
        states(),
        max_size=6,
    ),
    times=st.tuples(_TIMES, _TIMES),
    counts=st.tuples(_COUNTS, _COUNTS),
)
def test_record_round_trip(
    client: redis.Redis,
    person_id: str,
    keyed: dict[str, PropertyState],
    times: tuple[int, int],
    counts: tuple[int, int],
) -> None:
    """Format 9 (what the store writes): the narrow header for times in [0, 2^48) ms and
    counts under 65,536, the wide one beyond; either decodes to what was encoded."""
    (created_at, last_seen), (version, id_count) = times, counts
    args = [_b(person_id), *(b"%d" % n for n in (created_at, last_seen, version, id_count))]
    args.append(_b(TenantKeys("test", _TENANT).ids))
    for key, state in keyed.items():
        meta, text = _meta_and_text(state)
        args += [_b(key), _b(meta), _b(text)]
    reply = _eval(client, RECORD_ROUND_TRIP, args)
    assert isinstance(reply, list)
    text, untouched, view, meta, vals, size = reply
    assert untouched == text
    assert text[:1] == (b"\x03" if _is_uuid(person_id) else b"\x04")
    narrow = all(0 <= t < 2**48 for t in times) and all(c < 65_536 for c in counts)
    assert text[1] & 4 == (0 if narrow else 4)  # the flags byte: wide
    assert text[1] & 1 == 1  # identified
    implicit = person_id == _IMPLICIT
    assert text[1] & 8 == (8 if implicit else 0)  # implicit: the person id is not stored
    stored = _is_uuid(person_id) and uuid.UUID(person_id).bytes in text
    assert stored == (_is_uuid(person_id) and not implicit)
    root, person = person_record.root_and_person(view)
    assert root == "root"
    assert person.person_id == person_id
    assert (person.created_at_ms, person.last_seen_ms, person.version) == (
        created_at,
        last_seen,
        version,
    )
    assert person.distinct_ids == frozenset({"root", "m"})
    assert person.properties == keyed
    expected = {k: _meta_and_text(s) for k, s in keyed.items()}
    assert json.loads(codec.as_text(meta) if meta != b"[]" else "{}") == {
        k: m for k, (m, _) in expected.items()
    }
    visible = {k: t for k, (m, t) in expected.items() if not m.startswith(protocol.UNSET)}
    assert json.loads(codec.as_text(vals) if vals != b"[]" else "{}") == visible
    assert size == sum(len(_b(k)) + len(_b(t)) for k, t in visible.items())


PERSON_UUID = harness(
    ["resolve/record_codec"],
    """
-- ARGV: a tenant's ids key, then distinct ids: the person id each creates, from the key's tenant.
local tenant = record_codec.tenant_of(ARGV[1])
local out = {}
for k = 2, #ARGV do
  out[#out + 1] = record_codec.person_uuid(tenant, ARGV[k])
end
return out
""",
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tenant=st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(["t", "%", "{}:%7B", "é"])),
    distinct_ids=st.lists(st.text(max_size=12), min_size=1, max_size=5),
)
def test_lua_derives_the_person_id_python_gives(
    client: redis.Redis, tenant: str, distinct_ids: list[str]
) -> None:
    """An implicit record's person id is derived in Lua from its root and the tenant of the ids
    key: it must be ``person_id_for``'s for every tenant and id Python can name."""
    assume(not any(0xD800 <= ord(c) <= 0xDFFF for c in tenant + "".join(distinct_ids)))
    key = TenantKeys("test", tenant).ids
    reply = _eval(client, PERSON_UUID, [_b(key), *(_b(i) for i in distinct_ids)])
    assert isinstance(reply, list)
    assert [codec.as_text(p) for p in reply] == [person_id_for(tenant, i) for i in distinct_ids]


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _legacy_record(meta: dict[str, str], vals: dict[str, str], count: int) -> bytes:
    meta_json = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode()
    vals_json = json.dumps(vals, separators=(",", ":"), ensure_ascii=False).encode()
    snapshot = ("{" + ",".join(f"{json.dumps(k)}:{t}" for k, t in vals.items()) + "}").encode()
    pid = b"00000000-0000-5000-8000-00000000000a"
    header = b"R%s|-5|12|1|3|%d|%d|%d|" % (pid, count, len(meta_json), len(vals_json))
    return header + meta_json + vals_json + snapshot


@pytest.mark.parametrize(
    ("meta", "vals", "count"),
    [
        ({}, {}, 1),
        ({"a": "s" + codec.order_key(10, "e1")}, {"a": '"x|"'}, 2),
        (
            {"a": "u" + codec.order_key(-10, "e2"), "b": "o" + codec.order_key(3, "e3")},
            {"b": "[1]"},
            12,
        ),
    ],
)
def test_a_format_6_record_is_migrated_when_loaded(
    client: redis.Redis, meta: dict[str, str], vals: dict[str, str], count: int
) -> None:
    prefix = f"test-lua-{uuid.uuid4().hex[:8]}:members:"
    members = ["root", *(f"m{k}" for k in range(1, count))]
    if count > 1:
        client.sadd(prefix + "root", *members)
    try:
        reply = _eval(client, LEGACY_MIGRATION, [_b(prefix), _legacy_record(meta, vals, count)])
    finally:
        client.delete(prefix + "root")
    assert isinstance(reply, list)
    text, view, legacy, dirty, dropped, fresh = reply
    assert text[:1] == b"\x03"  # format 9, the person id as 16 bytes
    assert person_record.person_of(view) == person_record.person_of(legacy)
    person = person_record.person_of(view)
    assert person.person_id == "00000000-0000-5000-8000-00000000000a"
    assert person.distinct_ids == frozenset(members)
    assert (dirty, dropped) == (1, int(count > 1))  # written back; the format-6 set deleted
    assert fresh == int(count > protocol.MEMBERS_INLINE)  # a big tree's ids move out


def test_reply_entry_is_what_codec_decodes(client: redis.Redis) -> None:
    raw = _eval(client, ENTRY, [b"pid", b"-3", b'{"k":1}', _b("é|\udfff"), b"7"])
    assert isinstance(raw, bytes)
    entry = json.loads(codec.as_text(raw))
    assert dict(zip(protocol.REPLY_ENTRY_FIELDS, entry, strict=True)) == {
        "person_id": "pid",
        "person_mode": "full",
        "created_at_ms": -3,
        "is_identified": True,
        "properties": {"k": 1},
        "merged": False,
        "person_created": True,
        "warnings": [protocol.WARNING_MERGE_LIMIT],
        "overrides": [["é|\udfff", "old", "new"]],
        "person_version": 7,
        "person_changed": True,
        "groups": {},
        "group_changes": [],
    }


def test_every_breakdown_cut_is_a_script_redis_loads(client: redis.Redis) -> None:
    # tests/bench/lua_icount.py --breakdown counts these variants of the resolve script
    from tests.bench.lua_icount import cut_script, cuts
    from worker.store.lua_loader import load_script

    script = load_script("resolve_batch.lua")
    for cut in cuts():
        sha = client.script_load(cut_script(script, cut))
        assert client.script_exists(sha) == [True], cut.name
