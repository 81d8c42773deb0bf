"""The direct Avro nodes (worker.codec.avro_binary) against fastavro: for any value or any bytes,
the codec with them (the default) gives the same bytes, records and errors as the codec without
them (``direct=False``: fastavro for everything)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import schemaless_reader
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_codec_errors import _event_record
from tests.unit.test_codec_roundtrip import input_events
from worker.codec import native
from worker.codec.avro import AvroCodec, SchemaName, _without_logical_types
from worker.codec.avro_binary import Reader, plan
from worker.codec.errors import DecodeError, EncodeError
from worker.codec.wire import frame

DIRECT = AvroCodec()
FASTAVRO = AvroCodec(direct=False)
_EVENT_ID = DIRECT.schema_id(SchemaName.EVENT)

_odd_text = st.text(st.characters(categories=["Cs", "Lu", "Nd", "Zs"]), max_size=4)
"""Text fastavro cannot always encode (lone surrogates) beside text it can."""


def values(schema: Any) -> st.SearchStrategy[Any]:
    """Values for ``schema`` (JSON, logical types removed): mostly valid, some of the wrong
    type or out of range, some records without a field."""
    if isinstance(schema, list):
        return st.one_of(*(values(branch) for branch in schema))
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            fields = {f["name"]: values(f["type"]) for f in schema["fields"]}
            complete = st.fixed_dictionaries(fields)
            partial = st.fixed_dictionaries({}, optional=fields)
            return st.one_of(complete, complete, complete, partial)
        if kind == "enum":
            return st.sampled_from(schema["symbols"]) | _odd_text
        if kind == "array":
            items = values(schema["items"])
            return st.lists(items, max_size=3) | st.tuples(items) | st.none()
        return values(kind)
    wrong: st.SearchStrategy[Any] = st.none() | st.integers(0, 2) | st.binary(max_size=3)
    if schema == "null":
        return st.none() | wrong
    if schema == "boolean":
        return st.booleans() | wrong
    if schema == "long":
        big = st.integers(-(2**64), 2**64)
        return st.integers(-(2**40), 2**40) | big | st.sampled_from([2**63 - 1, -(2**63)]) | wrong
    if schema == "string":
        return st.text(max_size=6) | _odd_text | wrong
    raise AssertionError(f"no values for {schema!r}")


def _plain(name: SchemaName) -> Any:
    return _without_logical_types(DIRECT._json[name])


def _encode(codec: AvroCodec, name: SchemaName, record: Any) -> bytes | str:
    try:
        return codec.encode(name, record)
    except EncodeError as exc:
        return f"EncodeError: {exc}"


def _decode(codec: AvroCodec, data: bytes) -> tuple[Any, ...]:
    try:
        decoded = codec.decode(SchemaName.EVENT, data)
    except DecodeError as exc:
        return ("DecodeError", exc.reason, str(exc))
    return (decoded.record, decoded.schema_id, decoded.body, decoded.same_schema)


def test_our_schemas_but_one_have_nodes() -> None:
    """The direct path covers the hot schemas; a schema it cannot cover gets none."""
    covered = {name for name in SchemaName if plan(_plain(name)) is not None}
    assert {SchemaName.EVENT, SchemaName.ENRICHED_EVENT, SchemaName.PERSON_CHANGE} <= covered
    assert (
        plan({"type": "record", "name": "F", "fields": [{"name": "x", "type": "double"}]}) is None
    )
    assert (
        plan({"type": "record", "name": "U", "fields": [{"name": "x", "type": ["long", "string"]}]})
        is None
    )
    assert plan("string") is None


@pytest.mark.parametrize("name", [name for name in SchemaName if plan(_plain(name)) is not None])
@given(data=st.data())
def test_encode_matches_fastavro(name: SchemaName, data: st.DataObject) -> None:
    record = data.draw(values(_plain(name)))
    assert _encode(DIRECT, name, record) == _encode(FASTAVRO, name, record)


@given(input_events())
def test_decode_of_events_matches_fastavro(event: Any) -> None:
    message = FASTAVRO.encode(SchemaName.EVENT, native.to_avro_record(event))
    direct = _decode(DIRECT, message)
    assert direct == _decode(FASTAVRO, message)
    record = schemaless_reader(
        io.BytesIO(message[5:]), FASTAVRO._local[SchemaName.EVENT].schema, None
    )
    assert direct[0] == record
    # the direct nodes themselves read and write every valid event (no fallback to fastavro)
    nodes = plan(_plain(SchemaName.EVENT))
    assert nodes is not None
    assert nodes.read_body(message[5:]) == record
    written = bytearray()
    nodes.write_body(written, record)
    assert bytes(written) == message[5:]


@given(input_events(), st.data())
def test_decode_of_damaged_bodies_matches_fastavro(event: Any, data: st.DataObject) -> None:
    """Truncated, extended or altered bodies: the same record or the same error."""
    body = bytearray(FASTAVRO.encode(SchemaName.EVENT, native.to_avro_record(event))[5:])
    for _ in range(data.draw(st.integers(1, 3))):
        edit = data.draw(st.sampled_from(["cut", "append", "set"]))
        if edit == "cut":
            del body[data.draw(st.integers(0, len(body))) :]
        elif edit == "append":
            body += data.draw(st.binary(min_size=1, max_size=4))
        elif body:
            body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    message = frame(_EVENT_ID, bytes(body))
    assert _decode(DIRECT, message) == _decode(FASTAVRO, message)


@given(st.binary(max_size=40))
def test_decode_of_any_bytes_matches_fastavro(body: bytes) -> None:
    message = frame(_EVENT_ID, body)
    assert _decode(DIRECT, message) == _decode(FASTAVRO, message)


@given(input_events(), st.data())
def test_appended_encoding_matches_fastavro(event: Any, data: st.DataObject) -> None:
    body = FASTAVRO.encode(SchemaName.EVENT, native.to_avro_record(event))[5:]
    tail_schema = _plain(SchemaName.ENRICHED_EVENT)
    tail_schema = {
        **tail_schema,
        "fields": tail_schema["fields"][len(_plain(SchemaName.EVENT)["fields"]) :],
    }
    tail = data.draw(values(tail_schema))

    def appended(codec: AvroCodec) -> bytes | str:
        try:
            return codec.encode_appended(SchemaName.ENRICHED_EVENT, SchemaName.EVENT, body, tail)
        except EncodeError as exc:
            return f"EncodeError: {exc}"

    assert appended(DIRECT) == appended(FASTAVRO)


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        (b"\x00", 0),
        (b"\x01", -1),
        (b"\x02", 1),
        (b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f", 2**62 - 1),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f", -(2**62)),
    ],
)
def test_varints(encoded: bytes, value: int) -> None:
    assert Reader(encoded).read_long() == value


def test_long_varints_go_to_fastavro() -> None:
    """A ten-byte varint (a long beyond 63 bits) is left to fastavro: the same record."""
    record = _event_record(timestamp=2**63 - 1, sent_at=-(2**63), event_groups=[])
    message = FASTAVRO.encode(SchemaName.EVENT, record)
    assert DIRECT.encode(SchemaName.EVENT, record) == message
    assert _decode(DIRECT, message) == _decode(FASTAVRO, message)
    assert _decode(DIRECT, message)[0] == record


@pytest.mark.parametrize(
    "timestamp",
    [
        b"\xff" * 9 + b"\x01",  # ten bytes, within 64 bits
        b"\xff" * 9 + b"\x7f",  # ten bytes, beyond 64 bits
        b"\x80" * 10 + b"\x00",  # eleven bytes
        b"\xfe" + b"\xff" * 7 + b"\x7f",  # nine bytes: read by the nodes
    ],
)
def test_overlong_varints_read_as_fastavro_reads_them(timestamp: bytes) -> None:
    body = b"\x02a\x00\x02t\x02d\x00" + timestamp + b"\x00\x00\x00\x01\x00\x04{}\x00\x00\x00\x00"
    message = frame(_EVENT_ID, body)
    assert _decode(DIRECT, message) == _decode(FASTAVRO, message)


@given(input_events())
def test_a_damaged_bodys_reason_carries_no_memory_address(event: Any) -> None:
    # fastavro names the buffer it read from ("cannot read boolean from <_io.BytesIO object at
    # 0x...>"): a dead letter's reason must be the same whenever the same bytes come again
    body = FASTAVRO.encode(SchemaName.EVENT, native.to_avro_record(event))[5:]
    reasons = [repr(_decode(FASTAVRO, frame(_EVENT_ID, body[:n]))) for n in range(len(body))]
    assert not [r for r in reasons if " at 0x" in r]
    assert any("from <_io.BytesIO>" in r for r in reasons)  # the event's booleans, cut short
