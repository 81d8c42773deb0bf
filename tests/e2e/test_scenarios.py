"""Each scenario class of the contract, through the real broker, the real Redis and the worker.

One worker runs for the module; every test uses its own tenant. Events are produced one at a time
and the test waits for each one's outputs, so the order across partitions is the test's order.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import Collector, e2e_settings, produce, running_worker
from worker.config import Settings
from worker.identity.ids import person_id_for

pytestmark = pytest.mark.e2e

T0 = 1_760_000_000_000


class Stream:
    """Produces native JSON events for one tenant and waits for what the worker wrote."""

    def __init__(self, settings: Settings, collector: Collector, tenant: str) -> None:
        self.settings = settings
        self.collector = collector
        self.tenant = tenant
        self._n = 0

    def send(self, kind: str, distinct_id: str, **fields: Any) -> str:
        self._n += 1
        event_uuid = str(uuid.uuid4())
        body = {
            "type": kind,
            "tenant": self.tenant,
            "uuid": event_uuid,
            "distinct_id": distinct_id,
            "timestamp": fields.pop("timestamp", T0 + self._n * 1000),
            **fields,
        }
        if kind == "track":
            body.setdefault("event", "clicked")
        topic = getattr(self.settings.topics, kind)
        produce(
            self.settings,
            [(topic, f"{self.tenant}:{distinct_id}".encode(), json.dumps(body).encode())],
        )
        return event_uuid

    def enriched(self, event_uuid: str, timeout: float = 30.0) -> dict[str, Any]:
        found = self._wait(self.settings.topics.enriched, event_uuid, timeout)
        assert found, f"no enriched event for {event_uuid}"
        return found[0]

    def warnings(
        self, event_uuid: str, count: int = 1, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        return self._wait(self.settings.topics.warnings, event_uuid, timeout, count)

    def overrides(self, event_uuid: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        return self._wait(self.settings.topics.overrides, event_uuid, timeout, count)

    def _wait(
        self, topic: str, event_uuid: str, timeout: float, count: int = 1
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [
                r
                for r in self.collector.json(topic)
                if r.get("event_uuid", r.get("uuid")) == event_uuid
            ]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            self.collector.poll(0.2)

    def step(self, kind: str, distinct_id: str, **fields: Any) -> dict[str, Any]:
        return self.enriched(self.send(kind, distinct_id, **fields))


@pytest.fixture(scope="module")
def env(kafka_bootstrap: str, redis_url: str) -> Iterator[tuple[Settings, Collector]]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(kafka_bootstrap, redis_url, name, buffer={"enabled": False})
    topics = settings.topics
    collector = Collector(
        settings,
        [
            topics.enriched,
            topics.warnings,
            topics.overrides,
            topics.dead_letters,
            topics.person_changes,
        ],
    )
    with running_worker(settings):
        yield settings, collector
    collector.close()


@pytest.fixture
def stream(env: tuple[Settings, Collector]) -> Stream:
    settings, collector = env
    return Stream(settings, collector, f"tenant-{uuid.uuid4().hex[:8]}")


def test_new_person(stream: Stream) -> None:
    e = stream.step("track", "anon-1", set_once={"referrer": "ad"})
    assert e["person_id"] == person_id_for(stream.tenant, "anon-1")
    assert e["person_mode"] == "full"
    assert e["is_identified"] is False
    assert e["person_properties"] == {"referrer": "ad"}
    assert e["person_created_at"] == e["timestamp"]
    assert e["buffered_ms"] == 0
    assert e["distinct_id"] == "anon-1"


def test_anonymous_then_identify(stream: Stream) -> None:
    anon = stream.step("track", "anon", set_once={"referrer": "ad"})
    uid = stream.send("identify", "user", other_id="anon", set={"plan": "pro"})
    ident = stream.enriched(uid)
    assert ident["person_id"] == anon["person_id"]
    assert ident["is_identified"] is True
    assert ident["person_properties"] == {"referrer": "ad", "plan": "pro"}
    (override,) = stream.overrides(uid, 1)
    assert override["distinct_id"] == "user"
    assert override["old_person_id"] == person_id_for(stream.tenant, "user")
    assert override["new_person_id"] == anon["person_id"]
    after = stream.step("track", "user")
    assert after["person_id"] == anon["person_id"]


def test_alias_joins_the_other_id(stream: Stream) -> None:
    first = stream.step("identify", "user-1", set={"name": "ada"})
    stream.step("alias", "user-1", other_id="crm-1")
    later = stream.step("track", "crm-1")
    assert later["person_id"] == first["person_id"]
    assert later["is_identified"] is True
    assert later["person_properties"] == {"name": "ada"}


def test_refused_merge_warns_and_stays_on_into(stream: Stream) -> None:
    a = stream.step("identify", "u1", other_id="a1")
    b = stream.step("identify", "u2", other_id="a2")
    assert a["person_id"] != b["person_id"]
    uid = stream.send("identify", "u1", other_id="u2")
    e = stream.enriched(uid)
    assert e["person_id"] == a["person_id"]
    (warning,) = stream.warnings(uid)
    assert warning["type"] == "cannot_merge_already_identified"
    assert warning["tenant"] == stream.tenant
    assert stream.step("track", "u2")["person_id"] == b["person_id"]


def test_merge_dangerously_merges_identified_persons(stream: Stream) -> None:
    a = stream.step("identify", "u1", other_id="a1", set={"x": 1})
    b = stream.step("identify", "u2", other_id="a2", set={"y": 2})
    uid = stream.send("alias", "u1", other_id="u2", merge_dangerously=True)
    e = stream.enriched(uid)
    assert e["person_id"] == a["person_id"]
    assert e["person_properties"] == {"x": 1, "y": 2}
    moved = stream.overrides(uid, 2)
    assert sorted(o["distinct_id"] for o in moved) == ["a2", "u2"]
    assert {(o["old_person_id"], o["new_person_id"]) for o in moved} == {
        (b["person_id"], a["person_id"])
    }
    assert stream.step("track", "a2")["person_id"] == a["person_id"]


def test_illegal_ids(stream: Stream) -> None:
    uid = stream.send("track", "null")
    e = stream.enriched(uid)
    assert e["person_mode"] == "propertyless"
    assert e["person_id"] == person_id_for(stream.tenant, "null")
    assert [w["type"] for w in stream.warnings(uid)] == ["illegal_distinct_id"]

    uid = stream.send("identify", "real-user", other_id="'anonymous'")
    e = stream.enriched(uid)
    assert e["person_mode"] == "full"
    assert e["is_identified"] is False
    assert [w["type"] for w in stream.warnings(uid)] == ["cannot_merge_with_illegal_distinct_id"]

    uid = stream.send("track", "x" * 401)
    assert [w["type"] for w in stream.warnings(uid)] == ["skipping_event_invalid_distinct_id"]


def test_personless_events(stream: Stream) -> None:
    e = stream.step("track", "anon-p", process_person=False, set={"ignored": True})
    assert e["person_mode"] == "propertyless"
    assert e["person_id"] == person_id_for(stream.tenant, "anon-p")
    assert e["person_properties"] == {}
    created = stream.step("track", "known", set={"k": 1}, timestamp=T0)
    late = stream.step("track", "known", process_person=False, timestamp=T0 + 61_000)
    assert late["person_id"] == created["person_id"]
    assert late["person_mode"] == "force_upgrade"
    assert late["person_properties"] == {}
    uid = stream.send("identify", "known", other_id="anon-p", process_person=False)
    assert [w["type"] for w in stream.warnings(uid)] == [
        "invalid_event_when_process_person_profile_is_false"
    ]


def test_timestamp_mode_orders_property_updates_by_event_time(stream: Stream) -> None:
    stream.step("track", "p", set={"plan": "pro"}, timestamp=T0 + 10_000)
    older = stream.step("track", "p", set={"plan": "free"}, timestamp=T0 + 5_000)
    assert older["person_properties"] == {"plan": "pro"}
    stream.step("track", "p", unset=["plan"], timestamp=T0 + 20_000)
    resurrect = stream.step("track", "p", set={"plan": "old"}, timestamp=T0 + 15_000)
    assert resurrect["person_properties"] == {}


def test_person_changes_announce_states_and_merges(stream: Stream) -> None:
    topic = stream.settings.topics.person_changes
    stream.step("track", "anon", set={"a": 1})
    u1 = stream.step("identify", "u1", other_id="anon", set={"plan": "pro"})
    u2 = stream.step("identify", "u2", other_id="anon2", set={"b": 2})
    last = stream.step("alias", "u1", other_id="u2", merge_dangerously=True)
    assert last["person_id"] == u1["person_id"]

    def records() -> list[dict[str, Any]]:
        return [r for r in stream.collector.json(topic) if r["tenant"] == stream.tenant]

    def arrived() -> bool:
        """u2's merged_into record and u1's state after the merge: they are keyed by different
        person ids, so they may come on different partitions, in either order."""
        got = records()
        gone = any(r["person_id"] == u2["person_id"] and r["merged_into"] for r in got)
        merged_state = any(
            r["person_id"] == u1["person_id"]
            and not r["merged_into"]
            and r["properties"] == last["person_properties"]
            for r in got
        )
        return gone and merged_state

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not arrived():
        stream.collector.poll(0.2)
    assert arrived(), "the merge's person changes never arrived"
    states = [r for r in records() if r["person_id"] == u1["person_id"] and not r["merged_into"]]
    versions = [r["version"] for r in states]
    assert versions == sorted(set(versions))  # each version once, increasing
    assert states[-1]["properties"] == last["person_properties"] == {"a": 1, "plan": "pro", "b": 2}
    assert states[-1]["is_identified"] is True
    (gone,) = [r for r in records() if r["person_id"] == u2["person_id"] and r["merged_into"]]
    assert gone["merged_into"] == u1["person_id"]
    assert gone["version"] == states[-1]["version"]


def test_undecodable_input_is_a_dead_letter(env: tuple[Settings, Collector]) -> None:
    settings, collector = env
    key = f"dl-{uuid.uuid4().hex}".encode()
    produce(settings, [(settings.topics.track, key, b"\x07 not an event")])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [m for m in collector.messages[settings.topics.dead_letters] if m.key() == key]
        if found:
            break
        collector.poll(0.2)
    (message,) = found
    assert message.value() == b"\x07 not an event"
    headers = dict(message.headers())
    assert headers["iw.error.reason"] == b"unknown_magic_byte"
    assert headers["iw.source.topic"] == settings.topics.track.encode()
    assert int(headers["iw.source.offset"]) >= 0


def test_arrival_mode_applies_updates_in_ingestion_order(
    kafka_bootstrap: str, redis_url: str
) -> None:
    name = f"e2e-arrival-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        redis_url,
        name,
        identity={"ordering": "arrival"},
        buffer={"enabled": False},
    )
    collector = Collector(
        settings, [settings.topics.enriched, settings.topics.warnings, settings.topics.overrides]
    )
    try:
        with running_worker(settings):
            stream = Stream(settings, collector, "arrival")
            stream.step("track", "p", set={"plan": "pro"}, timestamp=T0 + 10_000)
            older = stream.step("track", "p", set={"plan": "free"}, timestamp=T0 + 5_000)
            assert older["person_properties"] == {"plan": "free"}
            once = stream.step("track", "p", set_once={"plan": "x", "first": "y"})
            assert once["person_properties"] == {"plan": "free", "first": "y"}
    finally:
        collector.close()
