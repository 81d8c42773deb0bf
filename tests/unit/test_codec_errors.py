"""Every DecodeError reason, each reached by a real malformed message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.codec import DECODE_REASONS, DecodeError, DecodeOptions, decode_message
from worker.codec.avro import SCHEMA_IDS, AvroCodec, SchemaName
from worker.codec.errors import EncodeError
from worker.codec.wire import frame, parse_frame

CODEC = AvroCodec()
UUID = "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f"


def _event_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "uuid": UUID,
        "type": "track",
        "tenant": "t1",
        "distinct_id": "d1",
        "event": "pageview",
        "timestamp": 1_700_000_000_000,
        "sent_at": None,
        "other_id": None,
        "merge_dangerously": False,
        "process_person": True,
        "source": "client",
        "properties": "{}",
        "set": None,
        "set_once": None,
        "unset": [],
    }
    record.update(changes)
    return record


def _avro(**changes: Any) -> bytes:
    return CODEC.encode(SchemaName.EVENT, _event_record(**changes))


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


POSTHOG_OK = {"event": "pageview", "distinct_id": "d1", "team_id": 1, "timestamp": 1}
POSTHOG_HEAD = b'{"event": "pageview", "distinct_id": "d1", "team_id": 1, "timestamp": 1, '


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


CASES: list[tuple[str, bytes | None, str]] = [
    ("empty_value", None, "tombstone"),
    ("empty_value", b"", "empty bytes"),
    ("unknown_magic_byte", b"\x01\x00\x00\x00\x01abc", "magic byte 1"),
    ("unknown_magic_byte", b"hello", "plain text"),
    ("unknown_magic_byte", b"  \n", "only white space"),
    ("invalid_frame", b"\x00\x00\x01", "short header"),
    ("unknown_schema_id", frame(999, b"\x00"), "id not local, no registry"),
    (
        "incompatible_schema",
        CODEC.encode(
            SchemaName.INGESTION_WARNING,
            {
                "type": "x",
                "tenant": "t",
                "event_uuid": None,
                "distinct_id": None,
                "details": {},
                "timestamp": 0,
            },
        ),
        "a warning on the input topic",
    ),
    ("avro_invalid", frame(SCHEMA_IDS[SchemaName.EVENT], b"\x02"), "truncated body"),
    ("avro_invalid", _avro() + b"\x00\x00", "trailing bytes"),
    ("avro_invalid", frame(SCHEMA_IDS[SchemaName.EVENT], b"\x04\xff\xfe"), "bad UTF-8"),
    ("avro_invalid", frame(SCHEMA_IDS[SchemaName.EVENT], b"\x00\x40"), "bad enum index"),
    ("json_invalid", b"{not json", "syntax"),
    ("json_invalid", b"[1, 2]", "an array"),
    ("json_invalid", b'{"event": NaN}', "NaN"),
    ("json_invalid", b'{"event": "\\ud800", "distinct_id": "d"}', "lone surrogate"),
    ("json_invalid", b'{"event": "\xff"}', "bad UTF-8"),
    ("json_invalid", b"[" * 100_000, "too deep"),
    ("unknown_format", _json({"foo": 1}), "no known shape"),
    ("missing_field", _json({"event": "pageview", "team_id": 1, "timestamp": 1}), "distinct_id"),
    ("missing_field", _json({"event": "x", "distinct_id": "d", "timestamp": 1}), "no tenant"),
    ("missing_field", _json({**POSTHOG_OK, "timestamp": None}), "no timestamp"),
    ("missing_field", _avro(type="alias", other_id=None, event=None), "alias without other id"),
    ("missing_field", _avro(event=None), "track without event name"),
    ("invalid_field", _json({**POSTHOG_OK, "uuid": "not-a-uuid"}), "uuid"),
    ("invalid_field", _json({**POSTHOG_OK, "timestamp": "yesterday"}), "timestamp text"),
    ("invalid_field", _json({**POSTHOG_OK, "timestamp": 10**20}), "timestamp range"),
    ("invalid_field", _json({**POSTHOG_OK, "distinct_id": 1.5}), "float distinct id"),
    ("invalid_field", _json({**POSTHOG_OK, "properties": []}), "properties not an object"),
    ("invalid_field", _json({**POSTHOG_OK, "properties": {"$unset": 3}}), "$unset"),
    ("invalid_field", _avro(properties="{oops"), "Avro properties not JSON"),
    ("invalid_field", _avro(set="[1]"), "Avro set not an object"),
    ("invalid_field", _avro(uuid="nope"), "Avro uuid"),
    ("invalid_field", _avro(tenant=""), "Avro empty tenant"),
    ("unknown_event_type", _json({"type": "page", "userId": "u", "writeKey": "k"}), "Segment page"),
    ("invalid_field", _json({**POSTHOG_OK, "team_id": "a:b"}), "tenant with a colon"),
    ("invalid_field", _avro(tenant="a:b"), "Avro tenant with a colon"),
    ("value_out_of_range", POSTHOG_HEAD + b'"$set": {"a": 1e400}}', "1e400 in $set"),
    ("value_out_of_range", POSTHOG_HEAD + b'"properties": {"a": [-1e400]}}', "-1e400"),
    ("value_out_of_range", _json({**POSTHOG_OK, "properties": {"n": 2**63}}), "2^63"),
    ("value_out_of_range", _avro(set='{"a": 1e999}'), "Avro set holds 1e999"),
    ("nesting_too_deep", _json({**POSTHOG_OK, "properties": _nested(65)}), "65 levels"),
    (
        "too_many_properties",
        _json({**POSTHOG_OK, "$set": {f"k{i}": i for i in range(1001)}}),
        "1,001",
    ),
    (
        "too_many_properties",
        _json({**POSTHOG_OK, "properties": {"$unset": [f"k{i}" for i in range(2700)]}}),
        "2,700 $unset keys",
    ),
    (
        "too_many_properties",
        _json(
            {
                **POSTHOG_OK,
                "$set": {f"s{i}": i for i in range(900)},
                "$set_once": {f"o{i}": i for i in range(900)},
                "properties": {"$unset": [f"u{i}" for i in range(900)]},
            }
        ),
        "2,700 operations in all",
    ),
]


@pytest.mark.parametrize(("reason", "value", "case"), CASES, ids=[f"{r}-{c}" for r, _, c in CASES])
def test_malformed_input_raises_decode_error(reason: str, value: bytes | None, case: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_message(value, None, None, "topic/0/1", DecodeOptions())
    assert info.value.reason == reason, (case, info.value)
    assert info.value.message
    assert len(info.value.message) <= 300


def test_every_reason_is_reached() -> None:
    reached = {reason for reason, _, _ in CASES}
    assert reached == set(DECODE_REASONS)


def test_unknown_event_type_in_our_format() -> None:
    value = _json({"type": "screen", "distinct_id": "d", "tenant": "t", "timestamp": 1})
    with pytest.raises(DecodeError) as info:
        decode_message(value, None, [("event-format", b"native")], "r", DecodeOptions())
    assert info.value.reason == "unknown_event_type"
    assert info.value.field == "type"


def test_bad_dialect_header() -> None:
    with pytest.raises(DecodeError) as info:
        decode_message(_json(POSTHOG_OK), None, [("event-format", b"xml")], "r", DecodeOptions())
    assert info.value.reason == "invalid_field"


def test_wire_frame_round_trip_and_range() -> None:
    assert parse_frame(frame(0x01020304, b"body")) == (0x01020304, b"body")
    assert frame(1, b"")[:5] == b"\x00\x00\x00\x00\x01"
    with pytest.raises(ValueError, match="out of range"):
        frame(-1, b"")
    with pytest.raises(DecodeError) as info:
        parse_frame(b"\x00\xff\xff\xff\xff")
    assert info.value.reason == "invalid_frame"


def test_encode_error_for_a_record_that_breaks_its_schema() -> None:
    with pytest.raises(EncodeError):
        CODEC.encode(SchemaName.EVENT, _event_record(timestamp="soon"))
    with pytest.raises(EncodeError):
        CODEC.encode(SchemaName.EVENT, _event_record(tenant=None))


def test_decode_error_str_names_the_reason() -> None:
    err = DecodeError("missing_field", "x" * 1000, field="f")
    assert str(err).startswith("missing_field: ")
    assert err.message.endswith("...")
    assert err.field == "f"
