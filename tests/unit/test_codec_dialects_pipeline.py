"""Messages of several events through one batch (reference model of the rules, in-memory sink):
a batch's bad element is its own dead letter, Schematic's derived merges write no enriched
event, dialect warnings reach the warnings topic; and the NUL rule for merges."""

from __future__ import annotations

import json

from tests.unit.test_orchestrator import T0, TOPICS, MemorySink, message, pipeline
from worker.identity.config import IdentityConfig
from worker.identity.ids import person_id_for
from worker.identity.model import EventKind, IdentityEvent, WarningKind
from worker.identity.rules import prepare
from worker.identity.validation import is_illegal_for_merge, is_illegal_id
from worker.pipeline.deadletter import HEADER_INDEX, HEADER_REASON

TS = T0 - 1000


def test_a_bad_batch_element_is_dead_lettered_alone_and_the_others_go_on_in_order() -> None:
    sink = MemorySink()
    batch = [
        {
            "tenant": "acme",
            "environment": "prod",
            "distinct_id": "u1",
            "traits": {"plan": "a"},
            "timestamp": TS,
        },
        {
            "tenant": "acme",
            "environment": "prod",
            "event": "Clicked",
            "timestamp": TS,
        },  # no distinct id
        {
            "tenant": "acme",
            "environment": "prod",
            "event": "Bought",
            "distinct_id": "u1",
            "timestamp": TS,
        },
    ]
    value = json.dumps(batch).encode()
    outcome = pipeline(sink).process([message(4, value)])
    (dead,) = sink.on(TOPICS.dead_letters)
    assert dead.value == value  # the original message, whole
    headers = dict(dead.headers)
    assert headers[HEADER_INDEX] == b"1"
    assert headers[HEADER_REASON] == b"missing_field"
    enriched = sink.json(TOPICS.enriched)
    assert [e.get("event") for e in enriched] == [None, "Bought"]
    assert {e["person_id"] for e in enriched} == {person_id_for("acme/prod", "u1")}
    assert enriched[1]["person_properties"] == {"plan": "a"}
    assert outcome.next_offsets == {(TOPICS.track, 0): 5}


def test_a_whole_bad_message_has_no_index_header() -> None:
    sink = MemorySink()
    pipeline(sink).process([message(1, b"[")])
    (dead,) = sink.on(TOPICS.dead_letters)
    assert HEADER_INDEX not in dict(dead.headers)


def test_schematic_keys_make_one_person_and_one_enriched_event() -> None:
    sink = MemorySink()
    keys = {"id": "1", "email": "a@b.c", "crm": "c9"}
    identify = {"tenant": "acme", "keys": keys, "traits": {"role": "admin"}, "timestamp": TS}
    track = {"tenant": "acme", "event": "query", "user": {"crm": "c9"}, "timestamp": TS}
    pipeline(sink).process(
        [message(1, json.dumps(identify).encode()), message(2, json.dumps(track).encode())]
    )
    enriched = sink.json(TOPICS.enriched)
    assert [e["type"] for e in enriched] == ["identify", "track"]
    assert enriched[0]["person_id"] == enriched[1]["person_id"]
    assert enriched[1]["distinct_id"] == "user:crm:c9"
    assert enriched[1]["person_properties"] == {"role": "admin"}


def test_dialect_warnings_reach_the_warnings_topic() -> None:
    sink = MemorySink()
    body = {"event": "e", "distinct_id": "d", "team_id": 1, "timestamp": TS}
    body["properties"] = {"$process_person_profile": "no"}
    pipeline(sink).process([message(1, json.dumps(body).encode())])
    kinds = [w["type"] for w in sink.json(TOPICS.warnings)]
    assert kinds == ["invalid_process_person_profile"]
    assert len(sink.json(TOPICS.enriched)) == 1


def test_nul_ids_never_merge_but_keep_their_event() -> None:
    config = IdentityConfig()
    assert is_illegal_for_merge("a\x00b", config)
    assert not is_illegal_id("a\x00b", config)
    assert not is_illegal_for_merge("ab", config)
    event = IdentityEvent(
        tenant="t",
        kind=EventKind.IDENTIFY,
        distinct_id="user",
        uuid="00000000-0000-0000-0000-000000000001",
        timestamp_ms=TS,
        other_id="anon\x00",
    )
    op = prepare(event, config)
    assert not hasattr(op, "outcome")  # prepared, not rejected
    assert op.merge_with is None
    (warning,) = op.warnings
    assert warning.kind is WarningKind.CANNOT_MERGE_WITH_ILLEGAL_DISTINCT_ID
