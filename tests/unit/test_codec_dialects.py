"""The Altertable, SeerStack, LogRocket and Schematic dialects, PostHog capture's envelope,
dialect choice (header, topic, detection) and batches."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.codec import (
    DecodeError,
    DecodeOptions,
    InputEvent,
    JsonOptions,
    decode_message,
    decode_messages,
)
from worker.codec.fields import MISSING_TIMESTAMP, derive_uuid
from worker.codec.json_formats import JsonDialect, detect_dialect
from worker.identity.model import EventKind, PropertyUpdates, WarningKind

TS = "2024-05-01T12:00:00Z"
TS_MS = 1_714_564_800_000
KAFKA_MS = 1_714_564_999_000


def items(
    obj: Any,
    *,
    key: bytes | None = b"acme:x",
    headers: list[tuple[str, bytes | str | None]] | None = None,
    topic: str | None = None,
    options: DecodeOptions | None = None,
) -> list[InputEvent | DecodeError]:
    return decode_messages(
        json.dumps(obj).encode(),
        key,
        headers,
        "in/0/5",
        options or DecodeOptions(),
        received_at_ms=KAFKA_MS,
        topic=topic,
    )


def events(obj: Any, **kwargs: Any) -> list[InputEvent]:
    out = items(obj, **kwargs)
    assert all(isinstance(e, InputEvent) for e in out), out
    return [e for e in out if isinstance(e, InputEvent)]


def one(obj: Any, **kwargs: Any) -> InputEvent:
    (event,) = events(obj, **kwargs)
    return event


def missing_warned(e: InputEvent) -> bool:
    (warning,) = e.warnings
    return warning.kind is WarningKind.IGNORED_INVALID_TIMESTAMP and warning.details == {
        "reason": MISSING_TIMESTAMP,
        "now_ms": str(KAFKA_MS),
    }


def error(obj: Any, **kwargs: Any) -> DecodeError:
    (item,) = items(obj, **kwargs)
    assert isinstance(item, DecodeError), item
    return item


# --- Altertable -------------------------------------------------------------------------------

ALTERTABLE_IDENTIFY = {
    "environment": "production",
    "distinct_id": "u_01",
    "anonymous_id": "anon_123",
    "traits": {"plan": "premium"},
    "timestamp": TS,
}


def test_altertable_identify_merges_the_anonymous_id() -> None:
    e = one(ALTERTABLE_IDENTIFY)
    assert e.kind is EventKind.IDENTIFY
    assert (e.distinct_id, e.other_id) == ("u_01", "anon_123")
    assert e.tenant == "acme/production"
    assert e.updates == PropertyUpdates(set=(("plan", "premium"),))
    assert e.timestamp_ms == TS_MS
    assert e.ignored_timestamp is None
    assert e.uuid == derive_uuid("in/0/5")


def test_altertable_environment_isolates_identities() -> None:
    staging = one({**ALTERTABLE_IDENTIFY, "environment": "staging"})
    assert staging.tenant == "acme/staging"
    bad = error({**ALTERTABLE_IDENTIFY, "environment": "a:b"})
    assert (bad.reason, bad.field) == ("invalid_field", "environment")


def test_altertable_track_and_alias() -> None:
    track = one(
        {
            "environment": "production",
            "event": "Signed Up",
            "anonymous_id": "anon_1",
            "properties": {"plan": "x"},
            "timestamp": TS,
        }
    )
    assert (track.kind, track.event, track.distinct_id) == (EventKind.TRACK, "Signed Up", "anon_1")
    assert track.properties == {"plan": "x"}
    assert track.updates.is_empty
    alias = one({"environment": "production", "distinct_id": "u_01", "new_user_id": "u_02"})
    assert (alias.kind, alias.distinct_id, alias.other_id) == (EventKind.ALIAS, "u_01", "u_02")
    typed = one({"type": "alias", "environment": "p", "distinct_id": "a", "alias": "b"})
    assert typed.other_id == "b"
    assert error({"type": "page", "environment": "p", "distinct_id": "a"}).reason == (
        "unknown_event_type"
    )


def test_altertable_without_a_timestamp_takes_the_kafka_time_and_says_so() -> None:
    e = one({k: v for k, v in ALTERTABLE_IDENTIFY.items() if k != "timestamp"})
    assert e.timestamp_ms == KAFKA_MS
    assert missing_warned(e)


def test_a_batch_yields_each_element_in_order_and_a_bad_one_alone() -> None:
    batch: list[dict[str, Any]] = [
        {"environment": "production", "distinct_id": "user_1", "traits": {"plan": "starter"}},
        {"environment": "production", "traits": {"plan": "x"}},  # no distinct id
        {"environment": "production", "event": "Clicked", "distinct_id": "user_1"},
    ]
    first, bad, third = items(batch)
    assert isinstance(first, InputEvent)
    assert isinstance(third, InputEvent)
    assert isinstance(bad, DecodeError)
    assert (bad.reason, bad.index) == ("missing_field", 1)
    assert first.uuid == derive_uuid("in/0/5#0")
    assert third.uuid == derive_uuid("in/0/5#2")
    assert third.event == "Clicked"
    twice = json.dumps([{**batch[0], "timestamp": TS}] * 2).encode()
    with pytest.raises(DecodeError) as info:  # the one-event helper refuses a batch
        decode_message(twice, b"a:b", None, "r", DecodeOptions())
    assert info.value.reason == "invalid_field"


def test_an_empty_batch_is_one_dead_letter() -> None:
    bad = error([])
    assert (bad.reason, bad.index) == ("missing_field", None)


# --- SeerStack --------------------------------------------------------------------------------

SEERSTACK_IDENTIFY = {
    "user_id": "user_123",
    "email": "g@x.io",
    "name": "Grace Hopper",
    "attributes": {"plan": "enterprise", "team_size": 15},
}


def test_seerstack_identify_sets_attributes_email_and_name() -> None:
    e = one(SEERSTACK_IDENTIFY)
    assert (e.kind, e.distinct_id, e.other_id) == (EventKind.IDENTIFY, "user_123", None)
    assert dict(e.updates.set) == {
        "plan": "enterprise",
        "team_size": 15,
        "email": "g@x.io",
        "name": "Grace Hopper",
    }
    assert e.tenant == "acme"
    assert missing_warned(e)


def test_seerstack_needs_email_or_name() -> None:
    assert dict(one({"user_id": "u", "name": "N"}).updates.set) == {"name": "N"}
    bad = error({"user_id": "u", "attributes": {"plan": "x"}})
    assert bad.reason == "missing_field"
    assert "email or name" in bad.message
    assert error({"name": "N", "email": "e"}, headers=[("event-format", b"seerstack")]).field == (
        "user_id"
    )


def test_seerstack_events_and_logs_are_tracks() -> None:
    e = one(
        {"user_id": "u", "event": "checkout", "amount": 3}, headers=[("event-format", "seerstack")]
    )
    assert (e.kind, e.event, e.distinct_id) == (EventKind.TRACK, "checkout", "u")
    assert e.properties == {"amount": 3}
    log = one({"user_id": "u", "message": "timeout", "level": "error"})
    assert (log.kind, log.event) == (EventKind.TRACK, "log")
    assert log.properties == {"message": "timeout", "level": "error"}


# --- LogRocket --------------------------------------------------------------------------------

LOGROCKET = {
    "userID": "1234",
    "name": "John Smith",
    "email": "j@x.io",
    "traits": {"age": 43, "plan": "free", "beta": True, "ratio": 0.5},
}


def test_logrocket_user_update() -> None:
    e = one(LOGROCKET)
    assert (e.kind, e.distinct_id) == (EventKind.IDENTIFY, "1234")
    assert dict(e.updates.set) == {
        "name": "John Smith",
        "email": "j@x.io",
        "age": "43",
        "plan": "free",
        "beta": "true",
        "ratio": "0.5",
    }
    assert e.updates.unset == ()


def test_logrocket_blank_values_remove_the_trait() -> None:
    e = one({"userID": "1234", "email": "", "traits": {"plan": "  ", "old": None, "keep": "k"}})
    assert dict(e.updates.set) == {"keep": "k"}
    assert e.updates.unset == ("email", "plan", "old")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"userID": "1", "name": "n" * 1025}, "name too large (max 1024 characters)"),
        ({"userID": "1", "email": "e" * 1025}, "email too large (max 1024 characters)"),
        ({"userID": "1" * 1025}, "userID too large (max 1024 characters)"),
        ({"userID": "1", "traits": {"k": "v" * 1025}}, "user trait value too large"),
        ({"userID": "1", "traits": {"k" * 1025: "v"}}, "user trait key too large"),
    ],
)
def test_logrocket_size_limits_use_logrockets_messages(payload: Any, message: str) -> None:
    bad = error(payload)
    assert bad.reason == "value_out_of_range"
    assert bad.message.startswith(message)


def test_logrocket_exactly_1024_characters_is_fine_and_lists_are_refused() -> None:
    assert dict(one({"userID": "1", "name": "n" * 1024}).updates.set) == {"name": "n" * 1024}
    assert error({"userID": "1", "traits": {"k": [1]}}).reason == "invalid_field"


# --- Schematic --------------------------------------------------------------------------------

SCHEMATIC_IDENTIFY = {
    "keys": {"id": "demo-user"},
    "traits": {"role": "admin"},
    "company": {"keys": {"id": "demo-company"}, "name": "Demo", "traits": {"plan": "x"}},
}


def test_schematic_identify_with_one_key() -> None:
    e = one(SCHEMATIC_IDENTIFY)
    assert (e.kind, e.distinct_id, e.other_id) == (EventKind.IDENTIFY, "user:id:demo-user", None)
    assert dict(e.updates.set) == {"role": "admin"}
    assert e.properties == {"company": SCHEMATIC_IDENTIFY["company"]}
    assert not e.derived


def test_schematic_keys_name_one_person_in_key_name_order() -> None:
    payload = {
        "keys": {"stripe": "cus_9", "id": "1", "email": "a@b.c"},
        "name": "Ada",
        "traits": {"role": "admin"},
    }
    main, derived = events(payload)
    assert (main.distinct_id, main.other_id) == ("user:email:a@b.c", "user:id:1")
    assert dict(main.updates.set) == {"role": "admin", "name": "Ada"}
    assert not main.derived
    assert derived.derived
    assert (derived.kind, derived.distinct_id, derived.other_id) == (
        EventKind.IDENTIFY,
        "user:email:a@b.c",
        "user:stripe:cus_9",
    )
    assert derived.updates.is_empty
    assert derived.uuid == derive_uuid(f"{main.uuid}#user:stripe:cus_9")
    keys = {"email": "a@b.c", "stripe": "cus_9", "id": "1"}
    reordered = events({**payload, "keys": keys})
    assert [(e.distinct_id, e.other_id) for e in reordered] == [
        (e.distinct_id, e.other_id) for e in (main, derived)
    ]


def test_schematic_track_and_upsert_user_and_the_event_api_envelope() -> None:
    track = one(
        {
            "event_type": "track",
            "body": {"event": "query", "user": {"id": "1"}, "company": {"id": "c"}, "quantity": 2},
            "sent_at": TS,
            "idempotency_key": "k-1",
        }
    )
    assert (track.kind, track.event, track.distinct_id, track.other_id) == (
        EventKind.TRACK,
        "query",
        "user:id:1",
        None,
    )
    assert track.properties == {"company": {"id": "c"}, "quantity": 2}
    assert track.timestamp_ms == TS_MS
    assert track.ignored_timestamp is None
    assert track.warnings == ()
    assert track.uuid == derive_uuid("schematic:k-1")
    upsert = one({"type": "upsert_user", "body": {"keys": {"id": "1"}, "name": "A"}})
    assert (upsert.kind, dict(upsert.updates.set)) == (EventKind.IDENTIFY, {"name": "A"})


def test_schematic_unsupported_calls_and_bad_keys_are_refused() -> None:
    assert error({"type": "flag_check", "body": {"keys": {"id": "c"}}}).reason == (
        "unknown_event_type"
    )
    assert error({"keys": {}}).reason == "missing_field"
    assert error({"keys": {"id": {"x": 1}}}).reason == "invalid_field"


# --- PostHog capture's envelope and PostHog's rules --------------------------------------------


def test_posthog_capture_envelope_is_read_as_the_event_it_wraps() -> None:
    inner = {"event": "$pageview", "properties": {"$current_url": "/x"}, "offset": 1000}
    envelope = {
        "uuid": "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f",
        "distinct_id": "d1",
        "ip": "1.2.3.4",
        "data": json.dumps(inner),
        "now": "2024-05-01T12:00:10Z",
        "sent_at": "2024-05-01T12:00:09Z",
        "token": "phc_abc",
    }
    e = one(envelope, key=None)
    assert (e.event, e.distinct_id, e.tenant) == ("$pageview", "d1", "phc_abc")
    assert e.uuid == "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f"
    assert e.timestamp_ms == TS_MS + 9000  # now - offset
    assert e.sent_at_ms == TS_MS + 9000
    assert error({**envelope, "data": "{"}).reason == "json_invalid"


def test_posthog_person_property_normalisation() -> None:
    e = one(
        {
            "event": "$pageview",
            "distinct_id": "d",
            "properties": {
                "$browser": "Firefox",
                "utm_source": "news",
                "$set": {"$browser": "explicit"},
                "$set_once": {"$initial_utm_source": "first"},
            },
        }
    )
    assert dict(e.updates.set) == {"$browser": "explicit", "utm_source": "news"}
    assert dict(e.updates.set_once) == {
        "$initial_browser": "Firefox",
        "$initial_utm_source": "first",
    }
    off = one(
        {"event": "$pageview", "distinct_id": "d", "properties": {"$browser": "Firefox"}},
        options=DecodeOptions(json=JsonOptions(posthog_person_properties=())),
    )
    assert off.updates.is_empty


@pytest.mark.parametrize("event", ["$exception", "$$heatmap"])
def test_posthog_no_person_update_events(event: str) -> None:
    properties = {"$set": {"a": 1}, "$browser": "Firefox", "$unset": ["b"]}
    e = one({"event": event, "distinct_id": "d", "properties": properties})
    assert e.updates.is_empty
    assert e.properties == properties


def test_posthog_process_person_profile() -> None:
    base = {"event": "$pageview", "distinct_id": "d"}
    assert not one({**base, "properties": {"$process_person_profile": False}}).process_person
    e = one({**base, "properties": {"$process_person_profile": "false"}})
    assert e.process_person
    (warning,) = e.warnings
    assert warning.kind.value == "invalid_process_person_profile"
    assert warning.details == {"value_type": "str"}
    group = one(
        {
            "event": "$groupidentify",
            "distinct_id": "d",
            "properties": {"$process_person_profile": False},
        }
    )
    assert (group.kind, group.process_person) == (EventKind.IDENTIFY, False)
    assert group.groups == ()  # dropped by the rules: no group is read
    named = {"$group_type": "company", "$group_key": "c"}
    kept = one({"event": "$groupidentify", "distinct_id": "d", "properties": named})
    assert (kept.kind, kept.process_person) == (EventKind.TRACK, False)  # group only
    assert [(g.group_type, g.key) for g in kept.groups] == [("company", "c")]


def test_segment_without_a_timestamp_takes_the_kafka_time_and_says_so() -> None:
    e = one({"type": "identify", "userId": "u", "writeKey": "wk", "sentAt": TS})
    assert (e.timestamp_ms, e.ignored_timestamp) == (KAFKA_MS, None)
    assert missing_warned(e)
    assert e.sent_at_ms is None  # no skew correction for a time that is not the client's


# --- dialect choice ---------------------------------------------------------------------------

DETECTED: list[tuple[dict[str, Any], JsonDialect]] = [
    ({"data": "{}", "distinct_id": "d"}, "posthog"),
    ({"userId": "u", "type": "identify"}, "segment"),
    ({"userID": "u"}, "logrocket"),
    ({"keys": {"id": "1"}}, "schematic"),
    ({"type": "track", "body": {}}, "schematic"),
    ({"event": "query", "user": {"id": "1"}}, "schematic"),
    ({"environment": "p", "distinct_id": "d"}, "altertable"),
    ({"type": "track", "event": "e", "distinct_id": "d"}, "native"),
    ({"user_id": "u", "email": "e"}, "seerstack"),
    ({"event": "e", "distinct_id": "d", "user_id": "u"}, "posthog"),
    ({"type": "identify", "event": "$identify", "distinct_id": "d"}, "posthog"),
]


@pytest.mark.parametrize(("obj", "dialect"), DETECTED)
def test_detection_order(obj: dict[str, Any], dialect: JsonDialect) -> None:
    assert detect_dialect(obj) == dialect


def test_header_beats_topic_setting_beats_detection() -> None:
    payload = {"user_id": "u", "name": "N", "event": "e", "distinct_id": "d"}
    options = DecodeOptions(topic_dialects={"seer": "seerstack"})
    assert one(payload).distinct_id == "d"  # detected: PostHog
    assert one(payload, topic="seer", options=options).distinct_id == "u"
    header = [("event-format", b"posthog")]
    assert one(payload, topic="seer", options=options, headers=header).distinct_id == "d"
    assert error(payload, headers=[("event-format", b"mixpanel")]).reason == "invalid_field"


def test_settings_name_dialects_per_topic_and_the_person_property_list() -> None:
    from pydantic import ValidationError

    from tests.unit.test_orchestrator import MemorySink, Unbuffered
    from worker.app import build_pipeline
    from worker.clock import ManualClock
    from worker.codec.avro import AvroCodec
    from worker.config import Settings

    settings = Settings(
        formats={"topic_dialects": {"seer": "seerstack"}, "posthog_person_properties": ["$os"]},  # type: ignore[arg-type]
    )
    assert settings.formats.topic_dialects == {"seer": "seerstack"}
    with pytest.raises(ValidationError):
        Settings(formats={"topic_dialects": {"seer": "mixpanel"}})  # type: ignore[arg-type]
    pipeline = build_pipeline(settings, Unbuffered(), MemorySink(), AvroCodec(), ManualClock(0))
    options = pipeline._decoder.options
    assert options.topic_dialects == {"seer": "seerstack"}
    assert options.json.posthog_person_properties == ("$os",)
