"""Every modelled system's payloads end to end: the real broker, the real Redis, the worker.

One worker runs for the module (buffer off); every test uses its own tenant and sends all its
messages with one key, so they share a partition and keep their order. The alias input topic is
read as SeerStack (``formats.topic_dialects``) to show the setting at work.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.e2e.harness import Collector, e2e_settings, running_worker
from worker.codec.fields import MISSING_TIMESTAMP
from worker.config import Settings
from worker.identity.ids import person_id_for

pytestmark = pytest.mark.e2e

T0 = 1_760_000_000_000
Record = dict[str, Any]


class Tenant:
    """Sends one tenant's payloads (key ``<tenant>:x``) and waits for what the worker wrote."""

    def __init__(self, settings: Settings, collector: Collector) -> None:
        self.settings = settings
        self.collector = collector
        self.name = f"t{uuid.uuid4().hex[:10]}"
        self.topic = settings.topics.track

    def send(
        self,
        payload: Any,
        *,
        topic: str | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        timestamp_ms: int | None = None,
    ) -> bytes:
        value = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        producer = Producer({**self.settings.kafka.common(), "linger.ms": 1})
        extra: dict[str, Any] = {"timestamp": timestamp_ms} if timestamp_ms else {}
        producer.produce(
            topic or self.topic,
            key=f"{self.name}:x".encode(),
            value=value,
            headers=headers,
            **extra,
        )
        assert producer.flush(30) == 0
        return value

    def wait(
        self, topic: str, count: int, match: Callable[[Record], bool] = lambda r: True
    ) -> list[Record]:
        deadline = time.monotonic() + 45
        while True:
            found = [r for r in self._records(topic) if match(r)]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, (topic, found)
                return found
            self.collector.poll(0.2)

    def _records(self, topic: str) -> list[Record]:
        if topic == self.settings.topics.dead_letters:
            out = []
            for m in self.collector.messages[topic]:
                if (m.key() or b"").startswith(f"{self.name}:".encode()):
                    out.append({"value": m.value(), "headers": dict(m.headers() or [])})
            return out
        return [
            r for r in self.collector.json(topic) if str(r.get("tenant", "")).startswith(self.name)
        ]

    def enriched(
        self, count: int, match: Callable[[Record], bool] = lambda r: True
    ) -> list[Record]:
        return self.wait(self.settings.topics.enriched, count, match)

    def warnings(
        self, count: int, match: Callable[[Record], bool] = lambda r: True
    ) -> list[Record]:
        return self.wait(self.settings.topics.warnings, count, match)

    def dead(self, count: int) -> list[Record]:
        return self.wait(self.settings.topics.dead_letters, count)


@pytest.fixture(scope="module")
def env(kafka_bootstrap: str, redis_url: str) -> Iterator[tuple[Settings, Collector]]:
    name = f"e2e-dialects-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        redis_url,
        name,
        buffer={"enabled": False},
        formats={"topic_dialects": {f"{name}.alias": "seerstack"}},
    )
    topics = settings.topics
    collector = Collector(
        settings, [topics.enriched, topics.warnings, topics.overrides, topics.dead_letters]
    )
    with running_worker(settings):
        yield settings, collector
    collector.close()


@pytest.fixture
def tenant(env: tuple[Settings, Collector]) -> Tenant:
    return Tenant(*env)


def _event(name: str) -> Callable[[Record], bool]:
    return lambda r: r.get("event") == name


# --- Altertable -------------------------------------------------------------------------------


def test_altertable_identify_then_track(tenant: Tenant) -> None:
    env_tenant = f"{tenant.name}/production"
    tenant.send(
        {
            "environment": "production",
            "event": "Viewed",
            "anonymous_id": "anon_123",
            "timestamp": T0,
        }
    )
    (anon,) = tenant.enriched(1, _event("Viewed"))
    tenant.send(
        {
            "environment": "production",
            "distinct_id": "u_01",
            "anonymous_id": "anon_123",
            "traits": {"plan": "premium"},
            "timestamp": T0 + 1000,
        }
    )
    tenant.send(
        {
            "environment": "production",
            "event": "Bought",
            "distinct_id": "u_01",
            "timestamp": T0 + 2000,
        }
    )
    (bought,) = tenant.enriched(1, _event("Bought"))
    assert anon["tenant"] == env_tenant
    assert bought["person_id"] == anon["person_id"] == person_id_for(env_tenant, "anon_123")
    assert bought["person_properties"] == {"plan": "premium"}
    assert bought["is_identified"] is True
    # another environment is another identity space
    tenant.send(
        {"environment": "staging", "event": "Bought", "distinct_id": "u_01", "timestamp": T0 + 3000}
    )
    (staging,) = tenant.enriched(1, lambda r: r["tenant"] == f"{tenant.name}/staging")
    assert staging["person_id"] != bought["person_id"]
    assert staging["person_properties"] == {}


def test_altertable_batch_dead_letters_one_element_and_emits_the_others_in_order(
    tenant: Tenant,
) -> None:
    batch = [
        {
            "environment": "production",
            "distinct_id": "user_123",
            "traits": {"plan": "starter"},
            "timestamp": T0,
        },
        {"environment": "production", "event": "Broken", "timestamp": T0},  # no id
        {
            "environment": "production",
            "event": "Clicked",
            "distinct_id": "user_123",
            "timestamp": T0 + 1,
        },
        {
            "environment": "production",
            "event": "Upgraded",
            "distinct_id": "user_123",
            "timestamp": T0 + 2,
        },
    ]
    value = tenant.send(batch)
    (dead,) = tenant.dead(1)
    assert dead["value"] == value
    assert dead["headers"]["iw.source.index"] == b"1"
    assert dead["headers"]["iw.error.reason"] == b"missing_field"
    enriched = tenant.enriched(3)
    assert [e.get("event") for e in enriched] == [None, "Clicked", "Upgraded"]
    assert enriched[2]["person_properties"] == {"plan": "starter"}
    assert len({e["uuid"] for e in enriched}) == 3


# --- SeerStack (on the topic configured as SeerStack) -----------------------------------------


def test_seerstack_identify_then_event(tenant: Tenant) -> None:
    alias_topic = tenant.settings.topics.alias
    tenant.send(
        {"user_id": "user_123", "email": "g@x.io", "attributes": {"plan": "free"}},
        topic=alias_topic,
    )
    tenant.send(
        {"user_id": "user_123", "name": "Grace Hopper", "attributes": {"plan": "pro"}},
        topic=alias_topic,
    )
    # an event with user_id and event: PostHog when detected, SeerStack on this topic
    tenant.send({"user_id": "user_123", "event": "checkout", "amount": 3}, topic=alias_topic)
    (checkout,) = tenant.enriched(1, _event("checkout"))
    assert checkout["person_id"] == person_id_for(tenant.name, "user_123")
    assert checkout["person_properties"] == {
        "plan": "pro",
        "email": "g@x.io",
        "name": "Grace Hopper",
    }
    assert checkout["properties"] == {"amount": 3}
    tenant.send({"user_id": "user_123", "attributes": {"plan": "x"}}, topic=alias_topic)
    (dead,) = tenant.dead(1)
    assert b"email or name" in dead["headers"]["iw.error.message"]
    (warning,) = tenant.warnings(1, _event_uuid(checkout["uuid"]))
    assert warning["type"] == "ignored_invalid_timestamp"
    assert warning["details"]["reason"] == MISSING_TIMESTAMP


def _event_uuid(value: str) -> Callable[[Record], bool]:
    return lambda r: r.get("event_uuid") == value


# --- LogRocket --------------------------------------------------------------------------------


def test_logrocket_traits_blank_removal_and_size_errors(tenant: Tenant) -> None:
    tenant.send(
        {
            "userID": "1234",
            "name": "John Smith",
            "email": "j@x.io",
            "traits": {"age": 43, "plan": "free", "beta": True},
            "timestamp": T0,
        }
    )
    track = {"event": "clicked", "distinct_id": "1234", "timestamp": T0 + 1000}
    tenant.send(track)
    (first,) = tenant.enriched(1, _event("clicked"))
    assert first["person_properties"] == {
        "name": "John Smith",
        "email": "j@x.io",
        "age": "43",
        "plan": "free",
        "beta": "true",
    }
    tenant.send({"userID": "1234", "traits": {"plan": "", "age": 44}, "timestamp": T0 + 2000})
    tenant.send({"userID": "1234", "name": "n" * 1025, "timestamp": T0 + 3000})
    tenant.send({**track, "event": "again", "timestamp": T0 + 4000})
    (again,) = tenant.enriched(1, _event("again"))
    assert again["person_id"] == first["person_id"]
    assert again["person_properties"] == {
        "name": "John Smith",
        "email": "j@x.io",
        "age": "44",
        "beta": "true",
    }
    (dead,) = tenant.dead(1)
    assert dead["headers"]["iw.error.reason"] == b"value_out_of_range"
    assert b"name too large (max 1024 characters)" in dead["headers"]["iw.error.message"]


# --- Schematic --------------------------------------------------------------------------------


def test_schematic_multi_key_user(tenant: Tenant) -> None:
    tenant.send(
        {
            "keys": {"id": "demo-user", "email": "d@x.io", "stripe": "cus_1"},
            "traits": {"role": "admin"},
            "name": "Demo",
            "company": {"keys": {"id": "demo-company"}, "name": "Demo Co"},
            "timestamp": T0,
        }
    )
    tenant.send(
        {
            "event_type": "track",
            "body": {"event": "query", "user": {"stripe": "cus_1"}, "timestamp": T0 + 1},
        }
    )
    tenant.send({"event": "export", "user": {"id": "demo-user"}, "timestamp": T0 + 2})
    (query,) = tenant.enriched(1, _event("query"))
    (export,) = tenant.enriched(1, _event("export"))
    assert query["person_id"] == export["person_id"]
    assert query["person_id"] == person_id_for(tenant.name, "user:email:d@x.io")
    assert query["person_properties"] == {"role": "admin", "name": "Demo"}
    identifies = tenant.enriched(1, lambda r: r["type"] == "identify")
    assert len(identifies) == 1  # the derived merge of the third key writes no enriched event
    assert identifies[0]["properties"]["company"]["name"] == "Demo Co"
    # a company key never meets a user key of the same name and value
    tenant.send({"event": "x", "user": {"id": "demo-company"}, "timestamp": T0 + 3})
    (x,) = tenant.enriched(1, _event("x"))
    assert x["person_id"] != query["person_id"]


# --- PostHog ----------------------------------------------------------------------------------


def _posthog(tenant: Tenant, event: str, distinct_id: str, **properties: Any) -> Record:
    return {
        "event": event,
        "distinct_id": distinct_id,
        "timestamp": T0,
        "uuid": str(uuid.uuid4()),
        "properties": properties,
    }


def test_posthog_exception_never_updates_the_person(tenant: Tenant) -> None:
    tenant.send(_posthog(tenant, "$identify", "u", **{"$set": {"plan": "a"}}))
    tenant.send(_posthog(tenant, "$exception", "u", **{"$set": {"plan": "b"}, "$browser": "X"}))
    tenant.send(_posthog(tenant, "after", "u"))
    (exc,) = tenant.enriched(1, _event("$exception"))
    (after,) = tenant.enriched(1, _event("after"))
    assert exc["properties"]["$set"] == {"plan": "b"}  # carried unchanged
    assert after["person_properties"] == {"plan": "a"}


def test_posthog_process_person_profile_rules(tenant: Tenant) -> None:
    off = {"$process_person_profile": False}
    identify = _posthog(tenant, "$identify", "u", **{**off, "$anon_distinct_id": "a"})
    group = _posthog(tenant, "$groupidentify", "u", **off, **{"$group_type": "company"})
    odd = _posthog(tenant, "odd", "u", **{"$process_person_profile": "false", "$set": {"k": 1}})
    for payload in (identify, group, odd):
        tenant.send(payload)
    dropped = tenant.warnings(2, lambda r: r["event_uuid"] in (identify["uuid"], group["uuid"]))
    assert {w["type"] for w in dropped} == {"invalid_event_when_process_person_profile_is_false"}
    (warning,) = tenant.warnings(1, _event_uuid(odd["uuid"]))
    assert warning["type"] == "invalid_process_person_profile"
    (enriched,) = tenant.enriched(1, _event("odd"))
    assert enriched["person_properties"] == {"k": 1}  # counted as true
    tenant.send(_posthog(tenant, "last", "u"))
    tenant.enriched(1, _event("last"))
    assert tenant.enriched(0, lambda r: r["uuid"] in (identify["uuid"], group["uuid"])) == []


def test_posthog_nul_ids_never_merge(tenant: Tenant) -> None:
    tenant.send(_posthog(tenant, "seen", "anon\u0000x"))
    ident = _posthog(tenant, "$identify", "user", **{"$anon_distinct_id": "anon\u0000x"})
    tenant.send(ident)
    (warning,) = tenant.warnings(1, _event_uuid(ident["uuid"]))
    assert warning["type"] == "cannot_merge_with_illegal_distinct_id"
    (enriched,) = tenant.enriched(1, lambda r: r["uuid"] == ident["uuid"])
    assert enriched["person_id"] == person_id_for(tenant.name, "user")


def test_posthog_case_collision_gets_its_own_person_and_a_warning(tenant: Tenant) -> None:
    first = _posthog(tenant, "first", "Alice", **{"$set": {"plan": "a"}})
    variant = _posthog(tenant, "variant", "alice")
    again = _posthog(tenant, "again", "alice")
    merge = _posthog(tenant, "$identify", "ALICE", **{"$anon_distinct_id": "anon-1"})
    for payload in (first, variant, again, merge):
        tenant.send(payload)
    (enriched,) = tenant.enriched(1, _event("variant"))
    assert enriched["person_id"] == person_id_for(tenant.name, "alice")  # its own person
    assert enriched["person_properties"] == {}  # nothing of Alice's
    (warning,) = tenant.warnings(1, _event_uuid(variant["uuid"]))
    assert warning["type"] == "distinct_id_case_collision"
    (identified,) = tenant.enriched(1, lambda r: r["uuid"] == merge["uuid"])
    assert identified["person_id"] == person_id_for(tenant.name, "ALICE")
    (third,) = tenant.warnings(1, _event_uuid(merge["uuid"]))  # a third variant: ALICE
    assert third["type"] == "distinct_id_case_collision"
    # the same id again, and the first one: no new id, no warning (warnings are keyed by
    # tenant, so one partition: any of theirs would have come before the merge's)
    assert tenant.warnings(0, lambda r: r["event_uuid"] in (first["uuid"], again["uuid"])) == []


def test_posthog_capture_envelope_and_person_property_normalisation(tenant: Tenant) -> None:
    inner = {"event": "$pageview", "properties": {"$browser": "Firefox", "utm_source": "news"}}
    envelope = {
        "uuid": str(uuid.uuid4()),
        "distinct_id": "d1",
        "ip": "1.2.3.4",
        "data": json.dumps(inner),
        "now": "2025-10-09T08:53:20Z",
        "sent_at": "2025-10-09T08:53:19Z",
        "token": tenant.name,
    }
    tenant.send(envelope)
    (pageview,) = tenant.enriched(1, _event("$pageview"))
    assert pageview["uuid"] == envelope["uuid"]
    assert pageview["distinct_id"] == "d1"
    assert pageview["person_properties"] == {
        "$browser": "Firefox",
        "utm_source": "news",
        "$initial_browser": "Firefox",
        "$initial_utm_source": "news",
    }


def test_segment_without_a_timestamp_uses_the_kafka_timestamp(tenant: Tenant) -> None:
    kafka_ms = T0 + 123_000
    tenant.send(
        {"type": "identify", "userId": "u", "traits": {"a": 1}, "messageId": "m1"},
        timestamp_ms=kafka_ms,
    )
    (identify,) = tenant.enriched(1, lambda r: r["distinct_id"] == "u")
    assert identify["timestamp"] == kafka_ms
    (warning,) = tenant.warnings(1, _event_uuid(identify["uuid"]))
    assert warning["type"] == "ignored_invalid_timestamp"
    assert warning["details"]["reason"] == MISSING_TIMESTAMP
