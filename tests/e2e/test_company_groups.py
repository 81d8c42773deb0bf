"""Groups (contract A9) through the real broker, the real Redis and the worker: PostHog
``$groupidentify`` and ``$groups``, a Segment ``group`` call remembered on the person, Schematic
companies (identify, track by another key, ``upsert_company``), a merge carrying memberships,
the group-type cap. Payloads are the products' own JSON, sent to the
track topic (any kind of event may arrive on any input topic)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.harness import Collector, e2e_settings, produce, running_worker
from worker.codec.fields import derive_uuid
from worker.config import Settings

pytestmark = pytest.mark.e2e

T0 = 1_760_000_000_000
MAX_GROUP_TYPES = 2


class Groups:
    """Sends PostHog, Segment and Schematic payloads for one tenant and waits for what the
    worker wrote."""

    def __init__(self, settings: Settings, collector: Collector, tenant: str) -> None:
        self.settings, self.collector, self.tenant = settings, collector, tenant
        self._n = 0

    def _produce(self, body: dict[str, Any]) -> None:
        produce(self.settings, [(self.settings.topics.track, None, json.dumps(body).encode())])

    def _ts(self) -> str:
        self._n += 1
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 / 1000 + self._n)) + "Z"

    def posthog(self, event: str, distinct_id: str, **properties: Any) -> str:
        event_uuid = str(uuid.uuid4())
        self._produce(
            {
                "event": event,
                "distinct_id": distinct_id,
                "team_id": self.tenant,
                "uuid": event_uuid,
                "timestamp": self._ts(),
                "properties": properties,
            }
        )
        return event_uuid

    def segment(self, call: str, **fields: Any) -> str:
        message_id = uuid.uuid4().hex
        self._produce(
            {
                "type": call,
                "writeKey": self.tenant,
                "messageId": message_id,
                "timestamp": self._ts(),
                **fields,
            }
        )
        return derive_uuid(f"segment:{message_id}")

    def schematic(self, call: str, body: dict[str, Any]) -> str:
        """A call in Schematic's event API envelope; its uuid (from the idempotency key)."""
        key = uuid.uuid4().hex
        self._produce(
            {
                "type": call,
                "tenant": self.tenant,
                "idempotency_key": key,
                "body": {**body, "timestamp": self._ts()},
            }
        )
        return derive_uuid(f"schematic:{key}")

    def wait(self, topic: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            found = [r for r in self.collector.json(topic) if match(r)]
            if found:
                return found[-1]
            assert time.monotonic() < deadline, f"nothing on {topic}"
            self.collector.poll(0.2)

    def enriched(self, event_uuid: str) -> dict[str, Any]:
        return self.wait(self.settings.topics.enriched, lambda r: r["uuid"] == event_uuid)

    def warnings(self, event_uuid: str) -> list[str]:
        self.wait(self.settings.topics.warnings, lambda r: r["event_uuid"] == event_uuid)
        return [
            w["type"]
            for w in self.collector.json(self.settings.topics.warnings)
            if w["event_uuid"] == event_uuid
        ]


@pytest.fixture(scope="module")
def env(kafka_bootstrap: str, redis_url: str) -> Iterator[tuple[Settings, Collector]]:
    name = f"e2e-groups-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        redis_url,
        name,
        buffer={"enabled": False},
        identity={"max_group_types": MAX_GROUP_TYPES},
    )
    topics = settings.topics
    collector = Collector(
        settings, [topics.enriched, topics.warnings, topics.group_changes, topics.dead_letters]
    )
    with running_worker(settings):
        yield settings, collector
    collector.close()


@pytest.fixture
def groups(env: tuple[Settings, Collector]) -> Groups:
    settings, collector = env
    return Groups(settings, collector, f"tenant-{uuid.uuid4().hex[:8]}")


def test_posthog_groupidentify_then_an_event_with_groups(groups: Groups) -> None:
    identify = groups.posthog(
        "$groupidentify",
        "server",
        **{
            "$group_type": "company",
            "$group_key": "acme",
            "$group_set": {"name": "Acme", "plan": "pro"},
        },
    )
    first = groups.enriched(identify)
    assert first["person_mode"] == "propertyless"  # $groupidentify touches no person
    assert first["groups"] == {
        "company": {"key": "acme", "properties": {"name": "Acme", "plan": "pro"}}
    }
    change = groups.wait(
        groups.settings.topics.group_changes, lambda r: r["event_uuid"] == identify
    )
    assert change["tenant"] == groups.tenant
    assert (change["group_type"], change["group_key"], change["version"]) == ("company", "acme", 1)
    assert change["properties"] == {"name": "Acme", "plan": "pro"}

    event = groups.enriched(groups.posthog("clicked", "user-1", **{"$groups": {"company": "acme"}}))
    assert event["groups"] == {
        "company": {"key": "acme", "properties": {"name": "Acme", "plan": "pro"}}
    }
    assert event["person_mode"] == "full"
    # not remembered: a later event without $groups has no group
    assert groups.enriched(groups.posthog("clicked", "user-1"))["groups"] == {}


def test_a_segment_group_call_is_remembered_on_the_person(groups: Groups) -> None:
    call = groups.segment(
        "group", userId="u-1", groupId="g-42", traits={"name": "Globex", "employees": 12}
    )
    assert groups.enriched(call)["groups"] == {
        "company": {"key": "g-42", "properties": {"name": "Globex", "employees": 12}}
    }
    track = groups.enriched(groups.segment("track", userId="u-1", event="Order Completed"))
    assert track["groups"] == {
        "company": {"key": "g-42", "properties": {"name": "Globex", "employees": 12}}
    }


def test_a_schematic_company_follows_the_user_to_its_other_keys(groups: Groups) -> None:
    company = {"keys": {"id": "co-1"}, "name": "Initech", "traits": {"plan": "gold"}}
    identify = groups.enriched(
        groups.schematic(
            "identify", {"keys": {"id": "u-9", "email": "peter@initech.com"}, "company": company}
        )
    )
    initech = {"key": "company:id:co-1", "properties": {"plan": "gold", "name": "Initech"}}
    assert identify["distinct_id"] == "user:email:peter@initech.com"
    assert identify["groups"] == {"company": initech}
    # a track by the user's other key: the same person, enriched with the remembered company
    track = groups.enriched(groups.schematic("track", {"event": "report", "user": {"id": "u-9"}}))
    assert track["distinct_id"] == "user:id:u-9"
    assert track["person_id"] == identify["person_id"]
    assert track["groups"] == {"company": initech}
    # upsert_company: a personless group-only event that updates the company
    upsert = groups.schematic("upsert_company", {"keys": {"id": "co-1"}, "traits": {"seats": 40}})
    updated = groups.enriched(upsert)
    assert (updated["distinct_id"], updated["person_mode"]) == ("company:id:co-1", "propertyless")
    properties = {"plan": "gold", "name": "Initech", "seats": 40}
    assert updated["groups"] == {"company": {"key": "company:id:co-1", "properties": properties}}
    change = groups.wait(groups.settings.topics.group_changes, lambda r: r["event_uuid"] == upsert)
    assert (change["group_key"], change["version"]) == ("company:id:co-1", 2)
    later = groups.enriched(groups.schematic("track", {"event": "x", "user": {"id": "u-9"}}))
    assert later["groups"] == {"company": {"key": "company:id:co-1", "properties": properties}}


def test_a_merge_carries_memberships_to_the_survivor(groups: Groups) -> None:
    groups.enriched(groups.segment("track", userId="u-1", event="Signed Up"))
    groups.enriched(groups.segment("group", anonymousId="anon-1", groupId="g-7"))
    merge = groups.enriched(groups.segment("identify", userId="u-1", anonymousId="anon-1"))
    assert merge["groups"] == {"company": {"key": "g-7", "properties": {}}}
    later = groups.enriched(groups.segment("track", userId="u-1", event="Clicked"))
    assert later["person_id"] == merge["person_id"]
    assert later["groups"] == {"company": {"key": "g-7", "properties": {}}}


def test_a_group_type_past_the_cap_is_dropped_with_a_warning(groups: Groups) -> None:
    event_uuid = groups.posthog(
        "clicked", "user-1", **{"$groups": {"company": "acme", "team": "t1", "project": "p1"}}
    )
    assert groups.warnings(event_uuid) == ["group_type_limit"]
    assert groups.enriched(event_uuid)["groups"] == {
        "company": {"key": "acme", "properties": {}},
        "team": {"key": "t1", "properties": {}},
    }
