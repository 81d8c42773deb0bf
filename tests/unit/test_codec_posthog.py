"""PostHog capture events, as the SDKs send them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.codec import DecodeError, DecodeOptions, InputEvent, JsonOptions, decode_message
from worker.codec.fields import derive_uuid
from worker.identity.model import EventKind

UUID = "0190B8B6-7D6A-7A4E-8C1E-1A2B3C4D5E6F"


def decode(obj: dict[str, Any], key: bytes | None = None, **options: Any) -> InputEvent:
    return decode_message(
        json.dumps(obj).encode(),
        key,
        None,
        "events/0/7",
        DecodeOptions(json=JsonOptions(**options)),
    )


def test_identify_with_anon_id_and_person_properties() -> None:
    e = decode(
        {
            "event": "$identify",
            "distinct_id": "user@example.com",
            "uuid": UUID,
            "timestamp": "2024-05-01T12:00:00.250Z",
            "sent_at": "2024-05-01T12:00:01+00:00",
            "team_id": 42,
            "properties": {
                "$anon_distinct_id": "anon-123",
                "$set": {"email": "user@example.com", "plan": "pro"},
                "$set_once": {"first_seen_url": "/home"},
                "$lib": "web",
            },
        }
    )
    assert e.kind is EventKind.IDENTIFY
    assert e.tenant == "42"
    assert e.distinct_id == "user@example.com"
    assert e.other_id == "anon-123"
    assert e.event == "$identify"
    assert e.uuid == UUID.lower()  # canonical text form
    assert e.timestamp_ms == 1_714_564_800_250
    assert e.sent_at_ms == 1_714_564_801_000
    assert e.updates.set == (("email", "user@example.com"), ("plan", "pro"))
    assert e.updates.set_once == (("first_seen_url", "/home"),)
    assert e.updates.unset == ()
    assert not e.is_backend
    assert e.process_person
    assert not e.merge_dangerously
    assert e.raw_format == "json"
    # properties are kept as received
    assert e.properties["$anon_distinct_id"] == "anon-123"
    assert e.properties["$set"] == {"email": "user@example.com", "plan": "pro"}


def test_identify_without_anon_id_merges_nothing() -> None:
    e = decode({"event": "$identify", "distinct_id": "u", "token": "phc_x", "timestamp": 5})
    assert e.kind is EventKind.IDENTIFY
    assert e.other_id is None
    assert e.tenant == "phc_x"


def test_top_level_set_is_folded_into_properties_and_wins() -> None:
    e = decode(
        {
            "event": "$identify",
            "distinct_id": "u",
            "team_id": 1,
            "timestamp": 1,
            "$set": {"a": "top", "b": "top"},
            "$set_once": {"c": 1},
            "properties": {"$set": {"a": "inner", "z": "inner"}},
        }
    )
    assert dict(e.updates.set) == {"a": "top", "z": "inner", "b": "top"}
    assert e.updates.set_once == (("c", 1),)
    assert e.properties["$set"] == {"a": "top", "z": "inner", "b": "top"}


def test_create_alias() -> None:
    e = decode(
        {
            "event": "$create_alias",
            "distinct_id": "user-1",
            "team_id": 1,
            "timestamp": 1,
            "properties": {"alias": "old-id", "$lib": "posthog-python"},
        }
    )
    assert e.kind is EventKind.ALIAS
    assert e.distinct_id == "user-1"
    assert e.other_id == "old-id"
    assert not e.merge_dangerously
    assert e.is_backend


def test_merge_dangerously() -> None:
    e = decode(
        {
            "event": "$merge_dangerously",
            "distinct_id": "user-1",
            "team_id": 1,
            "timestamp": 1,
            "properties": {"alias": "user-2"},
        }
    )
    assert e.kind is EventKind.ALIAS
    assert e.other_id == "user-2"
    assert e.merge_dangerously


def test_alias_without_alias_property_is_a_dead_letter() -> None:
    with pytest.raises(DecodeError) as info:
        decode({"event": "$create_alias", "distinct_id": "u", "team_id": 1, "timestamp": 1})
    assert info.value.reason == "missing_field"


@pytest.mark.parametrize(
    ("unset", "expected"),
    [
        (["a", "b"], ("a", "b")),
        ({"a": None, "b": "ignored"}, ("a", "b")),
        ([], ()),
    ],
    ids=["list", "object", "empty"],
)
def test_unset_list_and_object_forms(unset: Any, expected: tuple[str, ...]) -> None:
    e = decode(
        {
            "event": "pageview",
            "distinct_id": "u",
            "team_id": 1,
            "timestamp": 1,
            "properties": {"$unset": unset},
        }
    )
    assert e.kind is EventKind.TRACK
    assert e.updates.unset == expected


def test_personless_event() -> None:
    e = decode(
        {
            "event": "pageview",
            "distinct_id": "u",
            "team_id": 1,
            "timestamp": 1,
            "properties": {"$process_person_profile": False},
        }
    )
    assert not e.process_person
    assert e.properties == {"$process_person_profile": False}


@pytest.mark.parametrize("flag", [True, None, "false", 0])
def test_only_a_literal_false_makes_an_event_personless(flag: Any) -> None:
    e = decode(
        {
            "event": "pageview",
            "distinct_id": "u",
            "team_id": 1,
            "timestamp": 1,
            "properties": {"$process_person_profile": flag},
        }
    )
    assert e.process_person


@pytest.mark.parametrize(
    ("lib", "backend"),
    [
        ("posthog-node", True),
        ("posthog-go", True),
        ("posthog-elixir", True),
        ("web", False),
        ("posthog-ios", False),
        (None, False),
        (["posthog-node"], False),
    ],
)
def test_backend_detection_by_lib(lib: Any, backend: bool) -> None:
    e = decode(
        {
            "event": "pageview",
            "distinct_id": "u",
            "team_id": 1,
            "timestamp": 1,
            "properties": {"$lib": lib},
        }
    )
    assert e.is_backend is backend


def test_backend_libs_are_configurable() -> None:
    obj = {
        "event": "x",
        "distinct_id": "u",
        "team_id": 1,
        "timestamp": 1,
        "properties": {"$lib": "my-server-sdk"},
    }
    assert not decode(obj).is_backend
    assert decode(obj, posthog_backend_libs=frozenset({"my-server-sdk"})).is_backend


def test_missing_uuid_is_derived_from_the_message_position() -> None:
    obj = {"event": "x", "distinct_id": "u", "team_id": 1, "timestamp": 1}
    first, again = decode(obj), decode(obj)
    assert first.uuid == again.uuid == derive_uuid("events/0/7")


def test_numeric_distinct_id_and_nested_fallbacks() -> None:
    e = decode({"event": "x", "distinct_id": 12345, "team_id": 1, "timestamp": 1})
    assert e.distinct_id == "12345"
    e = decode({"event": "x", "properties": {"distinct_id": "p", "token": "tok"}, "timestamp": 1})
    assert e.distinct_id == "p"
    assert e.tenant == "tok"


def test_empty_and_illegal_distinct_ids_are_kept_for_the_identity_layer() -> None:
    assert decode({"event": "x", "distinct_id": "", "team_id": 1, "timestamp": 1}).distinct_id == ""
    e = decode(
        {
            "event": "$identify",
            "distinct_id": "null",
            "team_id": 1,
            "timestamp": 1,
            "properties": {"$anon_distinct_id": ""},
        }
    )
    assert (e.distinct_id, e.other_id) == ("null", "")


def test_tenant_from_key_then_default() -> None:
    obj = {"event": "x", "distinct_id": "u", "timestamp": 1}
    assert decode(obj, key=b"phc_token:u").tenant == "phc_token"
    assert decode(obj, key=b"no-colon", default_tenant="solo").tenant == "solo"
    assert decode(obj, tenant_fields=("project",), default_tenant="d").tenant == "d"
    assert decode({**obj, "project": "p9"}, tenant_fields=("project",)).tenant == "p9"


def test_missing_timestamp_uses_receive_time_minus_offset() -> None:
    value = json.dumps({"event": "x", "distinct_id": "u", "team_id": 1, "offset": 250}).encode()
    e = decode_message(value, None, None, "r", DecodeOptions(), received_at_ms=10_000)
    assert e.timestamp_ms == 9_750


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-05-01T12:00:00Z", 1_714_564_800_000),
        ("2024-05-01T14:00:00+02:00", 1_714_564_800_000),
        ("2024-05-01T12:00:00", 1_714_564_800_000),
        ("2024-05-01T12:00:00.123456Z", 1_714_564_800_123),
        (1_714_564_800_000, 1_714_564_800_000),
        (1_714_564_800_000.9, 1_714_564_800_000),
    ],
)
def test_timestamp_forms(text: Any, ms: int) -> None:
    assert (
        decode({"event": "x", "distinct_id": "u", "team_id": 1, "timestamp": text}).timestamp_ms
        == ms
    )


RECEIVED_MS = 1_714_564_800_000


@pytest.mark.parametrize(
    "offset", [10**30, -(10**30), 1.5, True, "250", RECEIVED_MS + 1, -(300_000_000_000_000)]
)
def test_an_insane_offset_gives_the_receive_time_and_the_reason(offset: object) -> None:
    value = json.dumps({"event": "x", "distinct_id": "u", "team_id": 1, "offset": offset})
    e = decode_message(value.encode(), None, None, "r", DecodeOptions(), received_at_ms=RECEIVED_MS)
    if offset == RECEIVED_MS + 1:  # year 1969: in the decoder's range, refused after correction
        assert e.ignored_timestamp is None
        assert e.timestamp_ms == -1
    else:
        assert e.timestamp_ms == RECEIVED_MS
        assert e.ignored_timestamp is not None
        assert "offset" in e.ignored_timestamp


@pytest.mark.parametrize("timestamp", ["yesterday", 10**20, "10000-01-01T00:00:00Z", [1], ""])
def test_a_malformed_timestamp_gives_the_receive_time_when_there_is_one(timestamp: object) -> None:
    obj = {"event": "x", "distinct_id": "u", "team_id": 1, "timestamp": timestamp}
    e = decode_message(
        json.dumps(obj).encode(), None, None, "r", DecodeOptions(), received_at_ms=RECEIVED_MS
    )
    assert e.timestamp_ms == RECEIVED_MS
    assert e.ignored_timestamp is not None
    assert "timestamp" in e.ignored_timestamp
    with pytest.raises(DecodeError) as info:  # without a receive time, nothing can stand in
        decode_message(json.dumps(obj).encode(), None, None, "r", DecodeOptions())
    assert (info.value.reason, info.value.field) == ("invalid_field", "timestamp")


def test_a_tenant_with_a_colon_is_refused_wherever_it_comes_from() -> None:
    obj = {"event": "x", "distinct_id": "u", "timestamp": 1}
    for options, key in (
        ({"posthog_tenant_fields": ("token",)}, None),
        ({"default_tenant": "a:b"}, None),
    ):
        body = json.dumps({**obj, "token": "a:b"}).encode()
        with pytest.raises(DecodeError) as info:
            decode_message(body, key, None, "r", DecodeOptions(json=JsonOptions(**options)))
        assert (info.value.reason, info.value.field) == ("invalid_field", "tenant")
    # a key's tenant is its prefix before the first ':', so it never holds one
    e = decode_message(json.dumps(obj).encode(), b"a:b:c", None, "r", DecodeOptions())
    assert e.tenant == "a"
