"""Segment spec calls: identify, alias, track."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.codec import DecodeError, DecodeOptions, InputEvent, JsonOptions, decode_message
from worker.codec.fields import derive_uuid
from worker.identity.model import EventKind


def decode(obj: dict[str, Any], **options: Any) -> InputEvent:
    return decode_message(
        json.dumps(obj).encode(), None, None, "seg/1/99", DecodeOptions(json=JsonOptions(**options))
    )


IDENTIFY = {
    "type": "identify",
    "userId": "97980cfea0067",
    "anonymousId": "507f191e810c19729de860ea",
    "traits": {"name": "Peter Gibbons", "email": "peter@example.com", "plan": "premium"},
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "timestamp": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "writeKey": "wk_1",
    "context": {"library": {"name": "analytics.js", "version": "2.11.1"}, "ip": "8.8.8.8"},
}


def test_identify() -> None:
    e = decode(IDENTIFY)
    assert e.kind is EventKind.IDENTIFY
    assert e.tenant == "wk_1"
    assert e.distinct_id == "97980cfea0067"
    assert e.other_id == "507f191e810c19729de860ea"
    assert e.updates.set == (
        ("name", "Peter Gibbons"),
        ("email", "peter@example.com"),
        ("plan", "premium"),
    )
    assert e.updates.set_once == ()
    assert e.event is None
    assert e.timestamp_ms == 1_424_730_535_387
    assert e.sent_at_ms == 1_424_730_535_111
    assert e.uuid == derive_uuid("segment:022bb90c-bbac-11e4-8dfc-aa07a5b093db")
    assert not e.is_backend
    assert e.properties == {}


def test_identify_with_only_an_anonymous_id() -> None:
    e = decode({**IDENTIFY, "userId": None})
    assert e.distinct_id == "507f191e810c19729de860ea"
    assert e.other_id is None
    e = decode({**IDENTIFY, "userId": ""})
    assert e.distinct_id == "507f191e810c19729de860ea"


def test_alias() -> None:
    e = decode(
        {
            "type": "alias",
            "previousId": "39239-239239-239239-23923",
            "userId": "507f191e81",
            "timestamp": "2015-02-23T22:28:55.387Z",
            "projectId": "proj-7",
        }
    )
    assert e.kind is EventKind.ALIAS
    assert e.distinct_id == "507f191e81"
    assert e.other_id == "39239-239239-239239-23923"
    assert e.tenant == "proj-7"
    assert not e.merge_dangerously


@pytest.mark.parametrize("missing", ["userId", "previousId"])
def test_alias_needs_both_ids(missing: str) -> None:
    obj = {"type": "alias", "previousId": "a", "userId": "b", "timestamp": 1, "writeKey": "k"}
    del obj[missing]
    with pytest.raises(DecodeError) as info:
        decode(obj)
    assert info.value.reason == "missing_field"
    assert info.value.field == missing


TRACK = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u-1",
    "anonymousId": "a-1",
    "properties": {"revenue": 39.95, "products": [{"sku": "x", "qty": 2}]},
    "originalTimestamp": "2024-01-01T00:00:00Z",
    "timestamp": "2024-01-01T00:00:05Z",
    "writeKey": "wk",
    "context": {"library": {"name": "analytics-node", "version": "6.0.0"}},
}


def test_track_with_message_id() -> None:
    e = decode({**TRACK, "messageId": "m-1"})
    assert e.kind is EventKind.TRACK
    assert e.event == "Order Completed"
    assert e.distinct_id == "u-1"
    assert e.other_id is None
    assert e.properties == TRACK["properties"]
    assert e.updates.is_empty
    assert e.timestamp_ms == 1_704_067_200_000  # originalTimestamp, not the corrected one
    assert e.uuid == derive_uuid("segment:m-1")
    assert e.is_backend


def test_track_without_message_id_gets_a_deterministic_uuid() -> None:
    e = decode(TRACK)
    assert e.uuid == derive_uuid("seg/1/99")
    assert decode(TRACK).uuid == e.uuid


def test_track_by_anonymous_id_only() -> None:
    e = decode({**TRACK, "userId": None})
    assert e.distinct_id == "a-1"


def test_track_needs_an_id_and_a_name() -> None:
    for obj in ({**TRACK, "userId": None, "anonymousId": ""}, {**TRACK, "event": None}):
        with pytest.raises(DecodeError) as info:
            decode(obj)
        assert info.value.reason == "missing_field"


@pytest.mark.parametrize(
    ("library", "backend"),
    [("analytics-python", True), ("analytics-go", True), ("analytics.js", False)],
)
def test_backend_detection_by_library(library: str, backend: bool) -> None:
    obj = {**TRACK, "context": {"library": {"name": library}}}
    assert decode(obj).is_backend is backend


def test_server_library_set_is_configurable() -> None:
    obj = {**TRACK, "context": {"library": {"name": "analytics.js"}}}
    assert decode(obj, segment_backend_libs=frozenset({"analytics.js"})).is_backend


def test_nested_tenant_field() -> None:
    obj = {**TRACK, "writeKey": None, "context": {"projectId": "nested"}}
    assert decode(obj, segment_tenant_fields=("context.projectId",)).tenant == "nested"
