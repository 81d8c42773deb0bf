"""ARGV encoding and reply decoding of the Redis store (no Redis needed)."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.identity.buffer import entry_id
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    DistinctIdOverride,
    EventKind,
    GroupChange,
    GroupView,
    IdentityEvent,
    IdentityWarning,
    OrderingMode,
    Outcome,
    PersonMode,
    PreparedOp,
    PropertyUpdates,
    WarningKind,
)
from worker.identity.properties import canonical_json
from worker.store import codec

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def _op(
    *,
    distinct_id: str = "a",
    other: str | None = None,
    updates: PropertyUpdates | None = None,
    process_person: bool = True,
    dangerous: bool = False,
    warnings: tuple[IdentityWarning, ...] = (),
) -> PreparedOp:
    event = IdentityEvent(
        tenant="t",
        kind=EventKind.IDENTIFY if other else EventKind.TRACK,
        distinct_id=distinct_id,
        uuid="u-1",
        timestamp_ms=1_700_000_000_000,
        other_id=other,
        merge_dangerously=dangerous,
        process_person=process_person,
        updates=updates or PropertyUpdates(),
    )
    return PreparedOp(event=event, merge_with=other, updates=event.updates, warnings=warnings)


def test_person_id_is_uuid5_of_tenant_and_distinct_id() -> None:
    namespace = uuid.UUID("6f1f2b8e-3c0f-5a8e-9d54-1d1b0c6a7e21")
    assert codec.person_id_for("t", "a:b") == str(uuid.uuid5(namespace, "t:a:b"))


def test_canonical_json() -> None:
    assert canonical_json({"b": [1, 2.5], "a": "é"}) == '{"a":"é","b":[1,2.5]}'


@given(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(),
    st.text(),
)
def test_order_key_sorts_bytewise_like_ts_then_uuid(t1: int, t2: int, u1: str, u2: str) -> None:
    k1, k2 = codec.order_key(t1, u1), codec.order_key(t2, u2)
    b1, b2 = (k.encode("utf-8", "surrogatepass") for k in (k1, k2))
    expected = (t1, u1.encode("utf-8", "surrogatepass")) < (t2, u2.encode("utf-8", "surrogatepass"))
    assert (b1 < b2) == expected
    assert codec.parse_order_key(k1) == (t1, u1)


def test_order_key_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        codec.order_key(2**63, "u")


UPDATES = PropertyUpdates(
    set=(("a", 1), ("b", 2), ("a", 3), ("f", 7)),
    set_once=(("a", 9), ("c", 4), ("c", 5), ("d", 6)),
    unset=("d", "e", "f"),
)


def _key(op: tuple[str, str, object]) -> str:
    return op[1]


def test_key_operations_timestamp_mode_decides_one_op_per_key() -> None:
    assert sorted(codec.key_operations(UPDATES, OrderingMode.TIMESTAMP), key=_key) == [
        ("s", "a", 3),
        ("s", "b", 2),
        ("o", "c", 4),
        ("u", "d", None),
        ("u", "e", None),
        ("u", "f", None),
    ]


def test_key_operations_arrival_mode_sets_then_unsets() -> None:
    assert sorted(codec.key_operations(UPDATES, OrderingMode.ARRIVAL), key=_key) == [
        ("s", "a", 3),
        ("s", "b", 2),
        ("o", "c", 4),
        ("x", "d", 6),
        ("u", "e", None),
        ("x", "f", 7),
    ]


def test_encode_args_layout() -> None:
    limits = codec.CallLimits.of(
        IdentityConfig(ordering=OrderingMode.ARRIVAL, max_distinct_ids_per_person=7), 5000
    )
    ops = [
        _op(updates=PropertyUpdates(set=(("k", {"x": 1.0}),), unset=("gone",))),
        _op(distinct_id="u", other="a", dangerous=True),
        _op(process_person=False),
    ]
    args = [a.decode() for a in codec.encode_args(ops, limits, now_ms=42)]
    header = [codec.FORMAT_VERSION, "arrival", "7", str(512 * 1024), "60000", "5000", "42"]
    header += ["0", "100", "1000000", "30000", "resolve", "0"]  # buffer off; command
    header += ["3600000", "3", "60000"]  # receipt TTL, ops, last-seen resolution
    assert args[: codec.HEADER_LENGTH] == header
    ts, ord_key = "1700000000000", codec.order_key(1_700_000_000_000, "u-1")
    pid = codec.person_id_for
    assert args[16:] == [
        *["1", "a", pid("t", "a"), "", "", ts, ord_key, "2"],
        *["s", "k", '{"x":1.0}', "u", "gone", "", "0", "", ""],  # no groups, no source
        *["7", "u", pid("t", "u"), "a", pid("t", "a"), ts, ord_key, "0", "0", "", ""],
        *["0", "a", pid("t", "a"), "", "", ts, ord_key, "0", "0", "", ""],
    ]


def test_an_op_with_a_source_carries_it_and_its_receipt_bucket() -> None:
    limits = codec.CallLimits.of(IdentityConfig(), 0)

    def source_args(source: str) -> list[bytes]:
        event = dataclasses.replace(_op().event, source=source)
        return codec.encode_args([PreparedOp(event, None, event.updates)], limits)[-2:]

    # an input position: its partition and offset range; any other source: itself
    assert source_args("in/2/5000#1") == [b"in/2/5000#1", b"in/2/1"]
    assert source_args("a test") == [b"a test", b"a test"]


def test_a_bufferable_op_carries_its_ingestion_time_and_payload() -> None:
    limits = codec.CallLimits.of(IdentityConfig(), 0)
    event = _op().event
    bufferable = PreparedOp(
        dataclasses.replace(event, buffer_payload=b"\x00raw"), None, event.updates
    )
    policy = codec.BufferPolicy(delay_ms=60_000, max_per_id=3, max_total=9, lease_ms=5)
    args = codec.encode_args([bufferable], limits, now_ms=7, buffer=policy)
    assert [a.decode() for a in args[7:15]] == [
        "60000",
        "3",
        "9",
        "5",
        "resolve",
        "0",
        "3600000",
        "1",
    ]
    assert args[16] == b"9"  # process person + bufferable
    assert args[-3:] == [b"7", b"\x00raw", entry_id(bufferable.event).encode()]
    off = codec.encode_args([bufferable], limits, now_ms=7)  # buffer off: applied at once
    assert off[16] == b"1"
    assert b"\x00raw" not in off


def test_lone_surrogates_survive_the_wire() -> None:
    limits = codec.CallLimits.of(IdentityConfig(), 0)
    updates = PropertyUpdates(set=(("k\ud800", "v\udfff"),))
    args = codec.encode_args([_op(updates=updates)], limits)[:-3]  # without groups and source
    assert args[-2:] == [
        "k\ud800".encode("utf-8", "surrogatepass"),
        '"v\udfff"'.encode("utf-8", "surrogatepass"),
    ]
    assert codec.as_text(args[-1]) == '"v\udfff"'


def test_decode_reply() -> None:
    stateless = IdentityWarning(WarningKind.CANNOT_MERGE_WITH_ILLEGAL_DISTINCT_ID)
    ops = [_op(other="b", warnings=(stateless,)), _op(process_person=False)]
    released_entry = [
        *["p3", "full", 9, False, {}, False, True, ["buffer_overflow"], [], 0, True, {}, []]
    ]
    reply = json.dumps(
        [
            [
                [
                    "p1",
                    "full",
                    5,
                    True,
                    {"k": [1, {"z": None}]},
                    True,
                    False,
                    ["merge_limit_exceeded", "person_properties_size_violation"],
                    [["z", "old", "p1"], ["b", "old", "p1"]],
                    7,
                    True,
                    {"company": ["acme", {"n": 1}]},
                    [["company", "acme", 2, {"n": 1}]],
                ],
                ["p2", "propertyless", None, False, {}, False, False, [], [], None, False, {}, []],
            ],
            [["e-9", "overflow", 1234, released_entry, 1300, "in/0/9"]],
            None,
        ]
    ).encode()
    decoded = codec.decode_reply(reply, ops)
    (first, second), (released,) = decoded.resolutions, decoded.released
    assert decoded.next_due is None
    assert (released.released_ms, released.entry_id) == (1300, "in/0/9")
    assert first.person_changed
    assert not second.person_changed
    assert (released.event_uuid, released.reason, released.ingested_ms) == ("e-9", "overflow", 1234)
    assert released.resolution.person_created
    assert released.resolution.warnings == (IdentityWarning(WarningKind.BUFFER_OVERFLOW),)
    assert first.event_uuid == "u-1"
    assert first.outcome is Outcome.EMIT
    assert first.person_mode is PersonMode.FULL
    assert first.properties == {"k": [1, {"z": None}]}
    assert first.created_at_ms == 5
    assert first.is_identified
    assert first.merged
    assert not first.person_created
    assert first.warnings == (
        stateless,
        IdentityWarning(WarningKind.MERGE_LIMIT_EXCEEDED),
        IdentityWarning(
            WarningKind.PERSON_PROPERTIES_SIZE_VIOLATION, {"reason": "properties_too_large"}
        ),
    )
    assert first.overrides == (  # sorted by distinct id
        DistinctIdOverride("b", "old", "p1"),
        DistinctIdOverride("z", "old", "p1"),
    )
    assert first.person_version == 7
    assert first.groups == {"company": GroupView("acme", {"n": 1})}
    assert first.group_changes == (GroupChange("company", "acme", 2, {"n": 1}),)
    assert second.person_mode is PersonMode.PROPERTYLESS
    assert second.created_at_ms is None
    assert second.person_version is None


def test_decode_a_buffered_result() -> None:
    ops = [_op()]
    reply = json.dumps(
        [[["", "buffered", None, False, {}, False, False, [], [], None, False, {}, []]], [], False]
    )
    decoded = codec.decode_reply(reply, ops)
    (resolution,), released = decoded.resolutions, decoded.released
    assert resolution.outcome is Outcome.BUFFER
    assert resolution.person_id is None
    assert released == []


@pytest.mark.parametrize(
    "reply",
    [b"{}", b"[]", b'[["p"]]', b"not json", b"[[[1,2,3,4,5,6,7,8,9,10]],[]]", b'[[], [["x"]]]'],
)
def test_decode_reply_rejects_malformed(reply: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (json.JSONDecodeError is a ValueError)
        codec.decode_reply(reply, [_op()])


@given(json_values)
def test_values_round_trip_through_their_text(value: object) -> None:
    text = canonical_json(value)  # type: ignore[arg-type]
    assert json.loads(text) == value


_any_text = st.text(st.characters(blacklist_categories=()))  # lone surrogates included
_wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: beyond 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | _any_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_any_text, children, max_size=4)
    ),
    max_leaves=12,
)


@given(_wire_values, st.booleans())
def test_reply_texts_are_read_exactly_as_the_standard_library_reads_them(
    value: object, escaped: bool
) -> None:
    """orjson reads a reply only where it gives what ``json.loads`` gives: same values, same
    types (``1`` is no ``1.0``, a 20-digit integer stays an integer), lone surrogates kept."""
    text = json.dumps(value, ensure_ascii=escaped, separators=(",", ":"))
    raw = text.encode("utf-8", "surrogatepass")
    want = json.loads(text)
    for wire in (raw, text):  # bytes, and str from a client that decodes responses
        got = codec.loads_reply(wire)
        assert got == want
        assert repr(got) == repr(want)


@given(_wire_values | st.text(st.characters(min_codepoint=0, max_codepoint=127)))
def test_encode_args_writes_each_value_as_its_canonical_json(value: object) -> None:
    limits = codec.CallLimits.of(IdentityConfig(), 0)
    op = _op(updates=PropertyUpdates(set=(("k", value),)))  # type: ignore[arg-type]
    args = codec.encode_args([op], limits)
    assert args[codec.HEADER_LENGTH + 8 : codec.HEADER_LENGTH + 11] == [
        b"s",
        b"k",
        canonical_json(value).encode("utf-8", "surrogatepass"),  # type: ignore[arg-type]
    ]


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), _any_text)
def test_encode_args_writes_the_order_key(ts: int, event_uuid: str) -> None:
    limits = codec.CallLimits.of(IdentityConfig(), 0)
    event = dataclasses.replace(_op().event, timestamp_ms=ts, uuid=event_uuid)
    args = codec.encode_args([PreparedOp(event, None, event.updates)], limits)
    assert args[codec.HEADER_LENGTH + 5 : codec.HEADER_LENGTH + 7] == [
        str(ts).encode(),
        codec.order_key(ts, event_uuid).encode("utf-8", "surrogatepass"),
    ]


def test_encode_args_keeps_giving_each_id_its_person_after_many_ids() -> None:
    limits = codec.CallLimits.of(IdentityConfig(), 0)
    ops = [_op(distinct_id=f"id-{n}", other=f"other-{n}") for n in range(70_000)]
    args = codec.encode_args(ops, limits)
    for n in (0, 40_000, 69_999):
        at = codec.HEADER_LENGTH + n * 11
        assert args[at + 1 : at + 5] == [
            f"id-{n}".encode(),
            codec.person_id_for("t", f"id-{n}").encode(),
            f"other-{n}".encode(),
            codec.person_id_for("t", f"other-{n}").encode(),
        ]
