"""``identity-worker demo``: the main job on defaults, end to end, in one command.

Creates the topics, starts ``identity-worker run`` as a subprocess, produces a small stream of
events for a fresh demo tenant (PostHog, Segment, then one of each other dialect: Altertable,
SeerStack, LogRocket, Schematic and a PostHog capture envelope, then companies: a Schematic
track by another key of the user who was identified with a company, a PostHog
``$groupidentify`` and an event with ``$groups``), reads the enriched events,
overrides and warnings back from Kafka, prints them, and stops the worker with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from worker.config import Settings
from worker.kafka.admin import create_topics, topic_specs
from worker.ops.offsets import watermarks

WAIT_SECONDS = 60.0


def demo_events(tenant: str, extra: int) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(topic kind, distinct id, JSON payload) in the order they are produced."""
    ts = int(time.time() * 1000) - 60_000

    def at(i: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((ts + i * 1000) / 1000)) + "Z"

    def posthog(i: int, event: str, distinct_id: str, **props: Any) -> dict[str, Any]:
        return {
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{i}")),
            "event": event,
            "distinct_id": distinct_id,
            "team_id": tenant,
            "timestamp": at(i),
            "properties": {"$lib": "web", **props},
        }

    yield "track", "anon-1", posthog(1, "$pageview", "anon-1", **{"$set_once": {"referrer": "ad"}})
    yield (
        "identify",
        "user-1",
        posthog(
            2, "$identify", "user-1", **{"$anon_distinct_id": "anon-1", "$set": {"plan": "free"}}
        ),
    )
    yield "track", "user-1", posthog(3, "signed_up", "user-1", **{"$set": {"plan": "pro"}})
    yield "track", "anon-2", posthog(4, "$pageview", "anon-2")
    yield (
        "identify",
        "user-2",
        {
            "type": "identify",
            "userId": "user-2",
            "anonymousId": "anon-2",
            "traits": {"email_domain": "example.com"},
            "messageId": f"{tenant}-seg-5",
            "timestamp": at(5),
            "writeKey": tenant,
        },
    )
    yield "identify", "user-1", posthog(6, "$identify", "user-1", **{"$anon_distinct_id": "user-2"})
    yield "alias", "user-1", posthog(7, "$merge_dangerously", "user-1", alias="user-2")
    yield (
        "alias",
        "user-1",
        {
            "type": "alias",
            "userId": "crm-77",
            "previousId": "user-1",
            "messageId": f"{tenant}-seg-8",
            "timestamp": at(8),
            "writeKey": tenant,
        },
    )
    yield "track", "null", posthog(9, "clicked", "null")
    yield "track", "anon-3", posthog(10, "scrolled", "anon-3", **{"$process_person_profile": False})
    yield (
        "identify",
        "u_01",
        {
            "environment": "production",
            "distinct_id": "u_01",
            "anonymous_id": "anon_123",
            "traits": {"plan": "premium"},
            "timestamp": at(11),
        },
    )
    yield (
        "identify",
        "user_123",
        {
            "user_id": "user_123",
            "email": "grace@example.com",
            "name": "Grace Hopper",
            "attributes": {"plan": "enterprise"},
            "timestamp": at(12),
        },
    )
    yield (
        "identify",
        "1234",
        {
            "userID": "1234",
            "name": "John Smith",
            "traits": {"age": 43, "plan": "", "beta": True},
            "timestamp": at(13),
        },
    )
    yield (
        "identify",
        "demo-user",
        {
            "keys": {"id": "demo-user", "email": "demo@example.com"},
            "traits": {"role": "admin"},
            "company": {"keys": {"id": "demo-company"}, "name": "Demo"},
            "timestamp": at(14),
        },
    )
    capture = posthog(15, "$pageview", "user-1", **{"$browser": "Firefox", "utm_source": "news"})
    yield (
        "track",
        "user-1",
        {
            "uuid": capture.pop("uuid"),
            "distinct_id": capture.pop("distinct_id"),
            "token": capture.pop("team_id"),
            "data": json.dumps(capture),
            "now": at(15),
            "ip": "127.0.0.1",
        },
    )
    yield (
        "track",
        "demo-user",
        {"event": "viewed_report", "user": {"id": "demo-user"}, "timestamp": at(16)},
    )
    company = {"$group_type": "company", "$group_key": "demo-company"}
    group_set = {"$group_set": {"name": "Demo Company", "plan": "enterprise"}}
    yield "track", "server", posthog(17, "$groupidentify", "server", **company, **group_set)
    groups = {"$groups": {"company": "demo-company"}}
    yield "track", "crm-77", posthog(18, "invited_teammate", "crm-77", **groups)
    for i in range(extra):
        yield "track", f"anon-x{i % 7}", posthog(100 + i, "tick", f"anon-x{i % 7}", n=i)


def _next_enriched(consumer: Consumer, enriched_topic: str, tenant: str, seen: list[Any]) -> Any:
    """Read outputs until the next enriched event of ``tenant`` arrives (or the wait ends);
    every output of the tenant read on the way is kept in ``seen``."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = None
        for message in consumer.consume(num_messages=100, timeout=0.2):
            if message.error() is None and (message.key() or b"").startswith(tenant.encode()):
                seen.append(message)
                if found is None and message.topic() == enriched_topic:
                    found = message
        if found is not None:
            return found
    return None


def _at_end(settings: Settings, topics: list[str], group: str) -> Consumer:
    consumer = Consumer(
        {
            **settings.kafka.consumer_conf(),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
        }
    )
    metadata = consumer.list_topics(timeout=10)
    assignment = []
    for topic in topics:
        for partition in metadata.topics[topic].partitions:
            _low, high = watermarks(consumer, topic, partition)
            assignment.append(TopicPartition(topic, partition, high))
    consumer.assign(assignment)
    return consumer


def run_demo(settings: Settings, events: int = 0) -> int:
    print("== topics")
    for name, status in create_topics(settings.kafka.admin_conf(), topic_specs(settings)).items():
        print(f"   {name}: {status}")
    tenant = f"demo-{int(time.time())}"
    topics = settings.topics
    out_topics = [topics.enriched, topics.overrides, topics.warnings, topics.dead_letters]
    reader = _at_end(settings, out_topics, f"identity-worker-demo-{tenant}")

    print("== starting identity-worker run")
    env = {**os.environ, "IDENTITY_WORKER_OBSERVABILITY__LOG_FORMAT": "text"}
    worker = subprocess.Popen([sys.executable, "-m", "worker", "run"], env=env)
    emitted: list[Any] = []
    try:
        producer = Producer({**settings.kafka.producer_conf(), "enable.idempotence": True})
        stream = list(demo_events(tenant, events))
        print(f"== tenant {tenant}: producing {len(stream)} events one by one\n")
        print(f"   {'event':18s} {'distinct_id':12s} {'person':10s} {'mode':13s} id? properties")
        topic_of = {"track": topics.track, "identify": topics.identify, "alias": topics.alias}
        for kind, distinct_id, payload in stream:
            producer.produce(
                topic_of[kind],
                key=f"{tenant}:{distinct_id}".encode(),
                value=json.dumps(payload).encode(),
            )
            producer.flush(30)
            message = _next_enriched(reader, topics.enriched, tenant, emitted)
            if message is None:
                print(f"   no enriched event for {distinct_id} after {WAIT_SECONDS:.0f}s")
                break
            e = json.loads(message.value())
            print(
                f"   {e.get('event') or e['type']:18s} {e['distinct_id']:12s} "
                f"{e['person_id'][:8]:10s} {e['person_mode']:13s} "
                f"{'yes' if e['is_identified'] else 'no ':3s} "
                f"{json.dumps(e['person_properties'], sort_keys=True)}"
            )
            for group_type, group in (e.get("groups") or {}).items():
                properties = json.dumps(group["properties"], sort_keys=True)
                print(f"   {'':18s} group {group_type}={group['key']} {properties}")
        # the last event's warnings and overrides may trail its enriched event
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            for message in reader.consume(num_messages=100, timeout=0.2):
                if message.error() is None and (message.key() or b"").startswith(tenant.encode()):
                    emitted.append(message)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        reader.close()

    by_topic: dict[str, list[Any]] = {}
    for message in emitted:
        by_topic.setdefault(message.topic(), []).append(message)
    print(f"\n== {topics.overrides}: distinct-id overrides")
    for message in by_topic.get(topics.overrides, []):
        o = json.loads(message.value())
        print(f"   {o['distinct_id']:12s} {o['old_person_id'][:8]} -> {o['new_person_id'][:8]}")
    print(f"\n== {topics.warnings}: ingestion warnings")
    for message in by_topic.get(topics.warnings, []):
        w = json.loads(message.value())
        print(f"   {w['type']:40s} distinct_id={w['distinct_id']}")
    dead = by_topic.get(topics.dead_letters, [])
    print(f"\n== {topics.dead_letters}: {len(dead)} dead letters")
    print(f"\n== worker exited with code {code} after SIGTERM")
    enriched = len(by_topic.get(topics.enriched, []))
    if code != 0 or enriched == 0:
        print("demo FAILED: the worker did not enrich the stream", file=sys.stderr)
        return 1
    return 0
