"""Person records read and written in Python (``worker/store/record_format.py``) and the
MessagePack subset of their property states (``worker/store/msgpack_subset.py``), without Redis:
the encodings ``cmsgpack`` and ``record_codec.lua`` write, byte for byte, and round trips. That
Python and the script agree on records the script wrote is checked on a real Redis, for every
record of the integration tests (``tests/support/records.py``)."""

from __future__ import annotations

import json
import re
import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.identity.ids import person_id_for
from worker.store import msgpack_subset, record_format
from worker.store.record_format import Record, RecordError, State

# -- MessagePack, as cmsgpack writes it ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\xcc\x80"),
        (255, b"\xcc\xff"),
        (256, b"\xcd\x01\x00"),
        (65_535, b"\xcd\xff\xff"),
        (65_536, b"\xce\x00\x01\x00\x00"),
        (2**32, b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00"),
        (-1, b"\xff"),
        (-32, b"\xe0"),
        (-33, b"\xd0\xdf"),
        (-129, b"\xd1\xff\x7f"),
        (-32_769, b"\xd2\xff\xff\x7f\xff"),
        (-(2**31) - 1, b"\xd3\xff\xff\xff\xff\x7f\xff\xff\xff"),
        (b"", b"\xa0"),
        (b"x" * 31, b"\xbf" + b"x" * 31),
        (b"x" * 32, b"\xd9\x20" + b"x" * 32),
        (b"x" * 256, b"\xda\x01\x00" + b"x" * 256),
        ([], b"\x90"),
        ([1] * 15, b"\x9f" + b"\x01" * 15),
        ([1] * 16, b"\xdc\x00\x10" + b"\x01" * 16),
        ({b"a": 1}, b"\x81\xa1a\x01"),
        (1.5, b"\xcb" + struct.pack(">d", 1.5)),
        (None, b"\xc0"),
    ],
)
def test_values_are_written_as_cmsgpack_writes_them(
    value: msgpack_subset.Value, encoded: bytes
) -> None:
    assert msgpack_subset.pack(value) == encoded
    assert msgpack_subset.unpack(encoded) == [value]


_VALUES = st.recursive(
    st.binary(max_size=300) | st.integers(-(2**63), 2**64 - 1),
    lambda inner: st.lists(inner, max_size=20),
    max_leaves=40,
)


@given(st.lists(_VALUES, max_size=4))
def test_values_read_back_as_written(values: list[msgpack_subset.Value]) -> None:
    assert msgpack_subset.unpack(msgpack_subset.pack(*values)) == values


@pytest.mark.parametrize("data", [b"\xc1", b"\xa3ab", b"\x92\x01", b"\xcd\x01", b"\xc3"])
def test_what_cmsgpack_does_not_write_or_is_cut_short_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="MessagePack"):
        msgpack_subset.unpack(data)


def test_out_of_range_integers_and_booleans_are_refused() -> None:
    for value in (2**64, -(2**63) - 1, True):
        with pytest.raises(ValueError, match=r"64 bits|boolean"):
            msgpack_subset.pack(value)


# -- records ------------------------------------------------------------------------------------

TENANT = b"team:{1}%"
UUID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"


def _record(**changes: object) -> Record:
    fields: dict[str, object] = {
        "person_id": UUID,
        "implicit": False,
        "created_at": 1_700_000_000_123,
        "last_seen": 1_700_000_040_000,
        "identified": True,
        "spilled": False,
        "version": 3,
        "id_count": 2,
        "snapshot": b'{"plan":"pro"}',
        "props": b"",
        "others": b"4:anon",
    }
    fields.update(changes)
    return Record(**fields)  # type: ignore[arg-type]


def test_a_format_9_record_is_marker_flags_id_header_then_parts() -> None:
    encoded = record_format.encode(_record())
    # created_at and last_seen as 6 bytes each, version, id count, the parts' lengths as 2
    header = (1_700_000_000_123).to_bytes(6, "big") + (1_700_000_040_000).to_bytes(6, "big")
    header += struct.pack(">HHHH", 3, 2, 14, 0)
    assert encoded == b"\x03\x01" + uuid.UUID(UUID).bytes + header + b'{"plan":"pro"}4:anon'
    assert record_format.decode(encoded) == _record()


def test_an_implicit_record_stores_no_person_id_and_derives_it_from_its_root() -> None:
    person_id = person_id_for(TENANT.decode(), "anon")
    encoded = record_format.encode(_record(implicit=True, person_id=person_id))
    assert encoded[:2] == b"\x03\x09"  # implicit | identified
    assert record_format.decode(encoded).person_id is None
    assert record_format.decode(encoded, b"anon", TENANT).person_id == person_id


def test_a_person_id_that_is_no_canonical_uuid_is_stored_as_text() -> None:
    for person_id in ("legacy-7", UUID.upper(), "é"):
        encoded = record_format.encode(_record(person_id=person_id))
        text = person_id.encode()
        assert encoded.startswith(b"\x04\x01" + b"%d:%s" % (len(text), text))
        assert record_format.decode(encoded).person_id == person_id


@pytest.mark.parametrize(
    "changes",
    [
        {"created_at": -5},
        {"last_seen": 2**48},
        {"version": 65_536},
        {"id_count": 70_000, "spilled": True, "others": b""},
        {"snapshot": b'{"k":"' + b"x" * 65_530 + b'"}'},
    ],
)
def test_what_outgrows_the_narrow_header_takes_the_wide_one(changes: dict[str, object]) -> None:
    record = _record(**changes)
    encoded = record_format.encode(record)
    assert encoded[1] & 4  # wide
    assert record_format.decode(encoded) == record


def test_a_spilled_record_keeps_no_ids_and_its_tree_is_its_members_string() -> None:
    record = _record(spilled=True, id_count=3)
    decoded = record_format.decode(record_format.encode(record))
    assert decoded.others == b""
    members = record_format.members_text([b"root", b"a:b", b""])
    assert record_format.tree_ids(b"root", decoded, members) == [b"root", b"a:b", b""]
    assert record_format.tree_ids(b"root", _record(), None) == [b"root", b"anon"]


def test_a_format_7_record_reads_as_the_script_reads_it() -> None:
    value = b"\x01" + uuid.UUID(UUID).bytes + b"1700|1760|10|4|2|14|0|" + b'{"plan":"pro"}' + b"1:x"
    record = record_format.decode(value)
    assert record == _record(
        created_at=1700,
        last_seen=1760,
        version=4,
        others=b"1:x",
        format=record_format.FORMAT_7,
    )


def test_a_format_6_record_reads_with_its_states_as_cjson() -> None:
    order = b"09223372036854775908" + UUID.encode()
    meta = json.dumps({"plan": "s" + order.decode()}).encode()
    vals = b'{"plan":"\\"pro\\""}'
    value = b"Rp-1|100|160|1|0|1|%d|%d|" % (len(meta), len(vals)) + meta + vals + b'{"plan":"pro"}'
    record = record_format.decode(value)
    assert (record.person_id, record.created_at, record.last_seen, record.version) == (
        "p-1",
        100,
        160,
        0,
    )
    assert record.snapshot == b'{"plan":"pro"}'
    meta_read, vals_read = record_format.decode_props(record)
    assert meta_read == {b"plan": State(b"s", record_format.pack_order(order))}
    assert vals_read == {b"plan": b'"pro"'}


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"x",
        b"\x03",
        b"\x03\x10",  # unknown flags
        b"\x03\x01" + b"\0" * 10,  # person id cut short
        b"\x03\x08" + b"\0" * 19,  # header cut short
        b"\x03\x08" + b"\0" * 16 + b"\0\x05\0\0" + b"{}",  # snapshot longer than the value
        b"\x04\x01x:abc",
        b"\x01" + b"\0" * 16 + b"1|2|10|",
        b"Rp|1|2",
    ],
)
def test_unreadable_values_raise_record_error(value: bytes) -> None:
    with pytest.raises(RecordError):
        record_format.decode(value)


def test_parents_and_records_are_told_apart() -> None:
    assert record_format.parent_of(b"Proot") == b"root"
    assert record_format.parent_of(record_format.encode(_record())) is None
    assert record_format.is_record(record_format.encode(_record()))
    assert not record_format.is_record(b"Proot")
    assert not record_format.is_record(b"")


_RECORDS = st.builds(
    Record,
    person_id=st.sampled_from([UUID, "text-id", "é€"]),
    implicit=st.just(False),
    created_at=st.integers(-(2**62), 2**62),
    last_seen=st.integers(-(2**62), 2**62),
    identified=st.booleans(),
    spilled=st.just(False),
    version=st.integers(0, 2**40),
    id_count=st.integers(1, 2**20),
    snapshot=st.binary(max_size=80),
    props=st.binary(max_size=80),
    others=st.binary(max_size=40),
)


@given(_RECORDS)
def test_records_read_back_as_written(record: Record) -> None:
    assert record_format.decode(record_format.encode(record)) == record


# -- property states ----------------------------------------------------------------------------


def test_an_order_key_is_stored_in_26_bytes_that_compare_as_its_text() -> None:
    older = b"09223372036854775908" + UUID.encode()
    newer = b"09223372036854776000" + UUID.encode()
    stored = record_format.pack_order(older)
    assert len(stored) == 26
    assert stored[0] == 0
    assert record_format.order_text(stored) == older
    assert (record_format.pack_order(older) < record_format.pack_order(newer)) == (older < newer)
    for text in (b"1234", b"09223372036854775908" + UUID.upper().encode()):
        assert record_format.pack_order(text) == text  # not packable: kept as text
        assert record_format.order_text(text) == text


_ORDER_TEXT = re.compile(
    rb"(\d{10})(\d{10})([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
"""What packs (ordering.lua's keys: 20 digits, then the event's uuid in canonical form)."""


def _packed(text: bytes) -> bytes:
    match = _ORDER_TEXT.fullmatch(text)
    if match is None or int(match[1]) >= 1 << 32:
        return text
    high, low = int(match[1]), int(match[2])
    raw = bytes.fromhex(match[3].replace(b"-", b"").decode())
    return b"\0" + struct.pack(">IBI16s", high, low >> 32, low & 0xFFFFFFFF, raw)


def _order_key(digits: int, key: uuid.UUID, form: str) -> bytes:
    text = {"lower": str(key), "upper": str(key).upper(), "bare": key.hex}[form]
    return b"%020d" % digits + text.encode()


_ORDER_KEYS = st.one_of(
    st.builds(
        _order_key,
        st.integers(min_value=0, max_value=10**20 - 1),
        st.uuids(),
        st.sampled_from(["lower", "upper", "bare"]),
    ),
    st.binary(min_size=50, max_size=60).filter(lambda b: b[:1] != b"\0"),  # (a stored form)
    st.text("0123456789abcdef-٣", min_size=54, max_size=58).map(str.encode),
)


@given(_ORDER_KEYS, _ORDER_KEYS)
def test_order_keys_pack_as_the_pattern_says_and_compare_as_their_texts(a: bytes, b: bytes) -> None:
    for text in (a, b):
        assert record_format.pack_order(text) == _packed(text)
        assert record_format.order_text(record_format.pack_order(text)) == text
    pa, pb = record_format.pack_order(a), record_format.pack_order(b)
    if pa[:1] == pb[:1] == b"\0":
        assert (pa < pb) == (a < b)
        assert (pa == pb) == (a == b)


def test_keys_are_quoted_as_cjson_quotes_them() -> None:
    assert record_format.quote(b"plan") == b'"plan"'
    assert record_format.quote(b'a"b\\c/d') == b'"a\\"b\\\\c\\/d"'
    assert record_format.quote(b"\x00\x08\t\n\x0c\r\x1f\x7f") == (
        b'"\\u0000\\b\\t\\n\\f\\r\\u001f\\u007f"'
    )
    assert record_format.quote("é😀".encode()) == '"é😀"'.encode()


def test_property_states_encode_as_the_script_does_and_read_back() -> None:
    set_order = record_format.pack_order(b"09223372036854775908" + UUID.encode())
    other_order = b"not-packable"
    meta = {
        b"plan": State(b"s", set_order),
        b'we"ird/\n': State(b"o", other_order),
        b"gone": State(b"u", set_order),
    }
    vals = {b"plan": b'"pro"', b'we"ird/\n': b"[1,2]"}
    snapshot, props = record_format.encode_props(meta, vals)
    assert snapshot == b'{"plan":"pro","we\\"ird\\/\\n":[1,2]}'
    assert msgpack_subset.unpack(props) == [
        [set_order, other_order],  # in the order first met
        [6, 5, 0, 13, 5, 5],  # key text length, value text length, index * 4 + code
        [b"gone", 2],
    ]
    record = _record(snapshot=snapshot, props=props)
    assert record_format.decode_props(record) == (meta, vals)


def test_a_person_without_property_states_stores_none() -> None:
    assert record_format.encode_props({}, {}) == (b"{}", b"")
    assert record_format.decode_props(_record(snapshot=b"{}")) == ({}, {})


def test_unreadable_property_states_raise_record_error() -> None:
    for props in (b"\xc1", msgpack_subset.pack([b"o"], [4, 5, 9], []), b"\x90\x90"):
        with pytest.raises(RecordError):
            record_format.decode_props(_record(props=props))


def test_members_strings_read_back_and_refuse_garbage() -> None:
    ids = [b"a", b"", b"12:34", "é".encode()]
    assert record_format.parse_members(record_format.members_text(ids)) == ids
    for text in (b"x:a", b"5:ab", b"3"):
        with pytest.raises(RecordError):
            record_format.parse_members(text)
