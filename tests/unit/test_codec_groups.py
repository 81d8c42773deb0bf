"""Group data of the dialects (worker/codec/groups.py): PostHog, Segment, Schematic, ours in JSON
and Avro."""

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
from worker.codec.avro import AvroCodec, SchemaName
from worker.codec.encode import OutputEncoder
from worker.codec.groups import schematic_company
from worker.identity.model import EventKind, GroupInput, PropertyUpdates

UUID = "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f"
TS = "2024-05-01T12:00:00Z"


def decode(obj: dict[str, Any], **options: Any) -> InputEvent:
    return decode_message(
        json.dumps(obj).encode(),
        None,
        None,
        "events/0/7",
        DecodeOptions(json=JsonOptions(**options)),
    )


def posthog(event: str, **properties: Any) -> InputEvent:
    return decode(
        {
            "event": event,
            "distinct_id": "u1",
            "uuid": UUID,
            "team_id": 1,
            "timestamp": TS,
            "properties": properties,
        }
    )


def test_posthog_groupidentify_names_its_group_and_touches_no_person() -> None:
    e = posthog(
        "$groupidentify",
        **{"$group_type": "company", "$group_key": 42, "$group_set": {"name": "Acme"}},
    )
    assert e.kind is EventKind.TRACK
    assert not e.process_person
    assert e.groups == (
        GroupInput("company", "42", updates=PropertyUpdates(set=(("name", "Acme"),))),
    )


def test_posthog_groupidentify_without_a_type_is_a_dead_letter() -> None:
    with pytest.raises(DecodeError):
        posthog("$groupidentify", **{"$group_key": "acme"})


def test_posthog_groups_attach_the_event_in_order_skipping_unusable_keys() -> None:
    e = posthog("clicked", **{"$groups": {"company": "acme", "team": 7, "bad": None, "x": True}})
    assert e.process_person
    assert e.groups == (GroupInput("company", "acme"), GroupInput("team", "7"))
    assert e.properties["$groups"] == {"company": "acme", "team": 7, "bad": None, "x": True}


def test_segment_group_call_is_a_track_named_group_that_remembers() -> None:
    call = {
        "type": "group",
        "userId": "u1",
        "groupId": "g1",
        "traits": {"name": "Globex"},
        "writeKey": "w",
        "messageId": "m1",
        "timestamp": TS,
    }
    e = decode(call)
    assert (e.kind, e.event, e.distinct_id) == (EventKind.TRACK, "group", "u1")
    updates = PropertyUpdates(set=(("name", "Globex"),))
    assert e.groups == (GroupInput("company", "g1", remember=True, updates=updates),)
    assert decode(call, segment_group_type="account").groups[0].group_type == "account"
    with pytest.raises(DecodeError):
        decode({**call, "groupId": ""})


def test_schematic_company_hook() -> None:
    group = schematic_company("company", "company:id=1", "Acme", {"plan": "pro"})
    assert group.remember
    assert group.attach
    assert dict(group.updates.set) == {"plan": "pro", "name": "Acme"}


def schematic(obj: dict[str, Any]) -> list[InputEvent]:
    items = decode_messages(
        json.dumps(obj).encode(),
        b"t:x",
        None,
        "s/0/1",
        DecodeOptions(),
        received_at_ms=1_700_000_000_000,
    )
    assert all(isinstance(e, InputEvent) for e in items), items
    return [e for e in items if isinstance(e, InputEvent)]


def test_schematic_identify_remembers_its_company_keyed_by_its_first_key_name() -> None:
    company = {"keys": {"id": "co", "domain": "co.io"}, "name": "Co", "traits": {"seats": 5}}
    main, derived = schematic(
        {"keys": {"id": "1", "email": "a@b.c", "crm": "c9"}, "company": company}
    )
    updates = PropertyUpdates(set=(("seats", 5), ("name", "Co")))
    assert main.groups == (GroupInput("company", "company:domain:co.io", True, True, updates),)
    assert main.properties == {"company": company}  # still carried unchanged
    assert derived.derived
    assert derived.groups == ()  # the merge of a further key names no group
    reordered = {"keys": {"domain": "co.io", "id": "co"}, "name": "Co", "traits": {"seats": 5}}
    (again, _) = schematic(
        {"keys": {"id": "1", "email": "a@b.c", "crm": "c9"}, "company": reordered}
    )
    assert again.groups[0].key == "company:domain:co.io"


def test_schematic_track_attaches_its_company_to_that_event_only() -> None:
    (bare,) = schematic({"event": "query", "user": {"id": "1"}, "company": {"id": "co"}})
    assert bare.groups == (GroupInput("company", "company:id:co"),)
    (full,) = schematic(
        {"event": "query", "user": {"id": "1"}, "company": {"keys": {"id": "co"}, "name": "Co"}}
    )
    named = PropertyUpdates(set=(("name", "Co"),))
    assert full.groups == (GroupInput("company", "company:id:co", updates=named),)
    (none,) = schematic({"event": "query", "user": {"id": "1"}})
    assert none.groups == ()


def test_schematic_upsert_company_is_a_personless_group_only_event() -> None:
    body = {"keys": {"id": "co"}, "name": "Co", "traits": {"plan": "pro"}}
    (e,) = schematic({"type": "upsert_company", "body": body})
    assert (e.kind, e.event, e.distinct_id, e.other_id) == (
        EventKind.TRACK,
        "upsert_company",
        "company:id:co",
        None,
    )
    assert not e.process_person
    assert e.updates.is_empty
    assert e.properties == {}
    updates = PropertyUpdates(set=(("plan", "pro"), ("name", "Co")))
    assert e.groups == (GroupInput("company", "company:id:co", updates=updates),)
    (same,) = schematic({"event_type": "company", "body": body})
    assert same.groups == e.groups


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"keys": {"id": "1"}, "company": {"keys": {}}}, "missing_field"),
        ({"keys": {"id": "1"}, "company": "co"}, "invalid_field"),
        ({"keys": {"id": "1"}, "company": {"keys": {"id": "c"}, "traits": [1]}}, "invalid_field"),
        ({"event": "e", "user": {"id": "1"}, "company": {"id": {"x": 1}}}, "invalid_field"),
        ({"type": "upsert_company", "body": {"name": "Co"}}, "missing_field"),
    ],
)
def test_schematic_bad_companies_are_refused(payload: dict[str, Any], reason: str) -> None:
    (item,) = decode_messages(
        json.dumps(payload).encode(),
        b"t:x",
        None,
        "s/0/1",
        DecodeOptions(),
        received_at_ms=1_700_000_000_000,
    )
    assert isinstance(item, DecodeError)
    assert item.reason == reason


NATIVE_GROUPS = [
    {"group_type": "company", "group_key": "acme", "set": {"name": "Acme"}, "unset": ["old"]},
    {"group_type": "team", "group_key": "t1", "attach": False, "remember": True},
]
EXPECTED = (
    GroupInput("company", "acme", updates=PropertyUpdates(set=(("name", "Acme"),), unset=("old",))),
    GroupInput("team", "t1", attach=False, remember=True),
)


def _native(**extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "e",
        "tenant": "t",
        "uuid": UUID,
        "distinct_id": "u1",
        "timestamp": 1_700_000_000_000,
        **extra,
    }


def test_native_json_event_groups_round_trip() -> None:
    e = decode(_native(event_groups=NATIVE_GROUPS))
    assert e.groups == EXPECTED
    again = decode_message(
        OutputEncoder("json").input_event(e), None, None, "x/0/1", DecodeOptions()
    )
    assert again.groups == EXPECTED
    assert decode(_native()).groups == ()
    with pytest.raises(DecodeError):
        decode(_native(event_groups=[{"group_type": "", "group_key": "k"}]))
    with pytest.raises(DecodeError):
        decode(_native(event_groups={"company": "acme"}))


def test_native_avro_event_groups_round_trip() -> None:
    e = decode(_native(event_groups=NATIVE_GROUPS))
    avro = AvroCodec()
    data = OutputEncoder("avro", avro).input_event(e)
    decoded = decode_message(data, None, None, "x/0/1", DecodeOptions(avro=avro))
    assert decoded.groups == EXPECTED
    assert avro.decode(SchemaName.EVENT, data).record["event_groups"][0]["set"] == '{"name":"Acme"}'


def test_person_and_group_operations_together_are_capped() -> None:
    half = {f"k{n}": n for n in range(1_001)}
    with pytest.raises(DecodeError, match="too_many_properties"):
        decode(_native(set=half, event_groups=[{"group_type": "c", "group_key": "k", "set": half}]))
    many = [{"group_type": f"t{n}", "group_key": "k"} for n in range(101)]
    with pytest.raises(DecodeError, match="too_many_properties"):
        decode(_native(event_groups=many))
