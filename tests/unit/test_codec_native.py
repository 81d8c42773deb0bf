"""Our own JSON shape, dialect detection, the dialect header, the key's tenant, Avro input."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from worker.codec import (
    DecodeOptions,
    InputEvent,
    OutputEncoder,
    decode_message,
    tenant_from_key,
    to_identity_event,
)
from worker.codec.json_formats import detect_dialect
from worker.identity.model import EventKind, IdentityEvent, PropertyUpdates

UUID = "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f"


def decode(obj: Any, *, headers: Any = None, key: bytes | None = None) -> InputEvent:
    return decode_message(json.dumps(obj).encode(), key, headers, "in/2/3", DecodeOptions())


NATIVE = {
    "uuid": UUID,
    "type": "identify",
    "tenant": "t1",
    "distinct_id": "user-1",
    "timestamp": 1_700_000_000_000,
    "sent_at": 1_700_000_000_500,
    "other_id": "anon-1",
    "merge_dangerously": True,
    "process_person": True,
    "source": "backend",
    "properties": {"$set": {"ignored": True}, "nested": {"a": [1, 2]}},
    "set": {"name": "Ada"},
    "set_once": {"first": 1},
    "unset": ["gone"],
}


def test_native_json() -> None:
    e = decode(NATIVE)
    assert e == InputEvent(
        tenant="t1",
        kind=EventKind.IDENTIFY,
        uuid=UUID,
        distinct_id="user-1",
        event=None,
        timestamp_ms=1_700_000_000_000,
        sent_at_ms=1_700_000_000_500,
        other_id="anon-1",
        merge_dangerously=True,
        process_person=True,
        is_backend=True,
        properties=NATIVE["properties"],  # type: ignore[arg-type]
        # our format's updates come from set/set_once/unset only, never from properties
        updates=PropertyUpdates(set=(("name", "Ada"),), set_once=(("first", 1),), unset=("gone",)),
        raw_format="json",
    )


def test_native_json_minimal_with_defaults() -> None:
    e = decode({"type": "track", "event": "e", "distinct_id": "d", "team_id": 3, "timestamp": 1})
    assert e.tenant == "3"
    assert e.process_person
    assert not e.is_backend
    assert not e.merge_dangerously
    assert e.properties == {}
    assert e.updates.is_empty


def test_avro_input_matches_json_input() -> None:
    e = decode(NATIVE)
    avro = decode_message(OutputEncoder("avro").input_event(e), None, None, "x", DecodeOptions())
    assert avro.raw_format == "avro"
    assert avro.avro_body is not None
    assert avro == InputEvent(**{**_fields(e), "raw_format": "avro"})


def _fields(e: InputEvent) -> dict[str, Any]:
    return {f.name: getattr(e, f.name) for f in dataclasses.fields(e)}


@pytest.mark.parametrize(
    ("obj", "dialect"),
    [
        ({"type": "track", "userId": "u", "event": "x"}, "segment"),
        ({"type": "alias", "previousId": "p", "userId": "u"}, "segment"),
        ({"type": "track", "event": "x", "distinct_id": "d"}, "native"),
        ({"type": "identify", "distinct_id": "d", "other_id": "o"}, "native"),
        ({"type": "identify", "event": "$identify", "distinct_id": "d", "tenant": "t"}, "native"),
        ({"type": "identify", "event": "$identify", "distinct_id": "d"}, "posthog"),
        ({"type": "capture", "event": "x", "distinct_id": "d"}, "posthog"),
        ({"event": "$pageview", "distinct_id": "d"}, "posthog"),
    ],
)
def test_dialect_detection(obj: dict[str, Any], dialect: str) -> None:
    assert detect_dialect(obj) == dialect


def test_posthog_node_identify_with_type_field() -> None:
    e = decode(
        {
            "type": "identify",
            "event": "$identify",
            "distinct_id": "d",
            "api_key": "phc",
            "timestamp": 1,
            "properties": {"$anon_distinct_id": "a", "$lib": "posthog-node"},
        }
    )
    assert (e.kind, e.other_id, e.tenant, e.is_backend) == (EventKind.IDENTIFY, "a", "phc", True)


def test_dialect_header_overrides_detection() -> None:
    obj = {"type": "track", "event": "x", "distinct_id": "d", "team_id": 1, "timestamp": 1}
    assert decode(obj).event == "x"
    e = decode(obj, headers=[("Event-Format", b"posthog")])
    assert e.kind is EventKind.TRACK
    assert e.raw_format == "json"


def test_leading_white_space_before_json() -> None:
    value = b"  \n" + json.dumps(NATIVE).encode()
    assert decode_message(value, None, None, "r", DecodeOptions()).distinct_id == "user-1"


@pytest.mark.parametrize(
    ("key", "tenant"),
    [
        (b"t1:user", "t1"),
        (b"t1:user:with:colons", "t1"),
        (b"nocolon", None),
        (b":x", None),
        (b"\xff:x", None),
        (None, None),
        (b"", None),
    ],
)
def test_tenant_from_key(key: bytes | None, tenant: str | None) -> None:
    assert tenant_from_key(key) == tenant


def test_payload_tenant_wins_over_the_key() -> None:
    assert decode(NATIVE, key=b"other:k").tenant == "t1"


def test_to_identity_event() -> None:
    e = decode(NATIVE)
    assert to_identity_event(e, 42) == IdentityEvent(
        tenant="t1",
        kind=EventKind.IDENTIFY,
        distinct_id="user-1",
        uuid=UUID,
        timestamp_ms=42,
        other_id="anon-1",
        merge_dangerously=True,
        process_person=True,
        updates=e.updates,
    )


def test_to_identity_event_drops_a_tracks_other_id() -> None:
    e = decode({**NATIVE, "type": "track", "event": "x"})
    assert e.other_id == "anon-1"  # carried unchanged to the output
    assert to_identity_event(e, 1).other_id is None
