"""The 60-second buffer end to end: backend events wait, then land on the right person."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from tests.e2e.harness import Collector, e2e_settings, produce, running_worker
from worker.clock import ShiftedClock
from worker.identity.ids import person_id_for

pytestmark = pytest.mark.e2e


def posthog(tenant: str, event: str, distinct_id: str, lib: str, **props: Any) -> bytes:
    return json.dumps(
        {
            "uuid": str(uuid.uuid4()),
            "event": event,
            "distinct_id": distinct_id,
            "team_id": tenant,
            "timestamp": int(time.time() * 1000),
            "properties": {"$lib": lib, **props},
        }
    ).encode()


def test_backend_events_wait_for_a_merge_or_their_timeout(
    kafka_bootstrap: str, redis_url: str
) -> None:
    name = f"buf-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        redis_url,
        name,
        buffer={"enabled": True, "delay_seconds": 60, "release_interval_seconds": 0.2},
    )
    topics = settings.topics
    tenant = "bufdemo"
    clock = ShiftedClock()
    collector = Collector(settings, [topics.enriched, topics.warnings])

    def send(event: str, distinct_id: str, lib: str, **props: Any) -> str:
        value = posthog(tenant, event, distinct_id, lib, **props)
        produce(settings, [(topics.track, f"{tenant}:{distinct_id}".encode(), value)])
        return str(json.loads(value)["uuid"])

    def enriched(event_uuid: str, timeout: float = 30) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in collector.json(topics.enriched):
                if e["uuid"] == event_uuid:
                    return e
            collector.poll(0.2)
        return None

    try:
        with running_worker(settings, clock):
            # 1. a backend event for an id nobody holds waits...
            srv = send("order_paid", "srv-1", "posthog-python", **{"$set": {"plan": "pro"}})
            web = send("$pageview", "web-anon", "web")
            assert enriched(web) is not None
            assert enriched(srv, timeout=3) is None
            # ...until an identify merges its id: it lands on the web person, properties and all
            ident = send("$identify", "srv-1", "web", **{"$anon_distinct_id": "web-anon"})
            identify = enriched(ident)
            released = enriched(srv)
            assert identify is not None
            assert released is not None
            assert released["person_id"] == identify["person_id"]
            assert released["person_id"] == person_id_for(tenant, "web-anon")
            assert released["buffered_ms"] >= 3000
            assert released["person_properties"]["plan"] == "pro"

            # 2. without a merge, events wait out the delay, in order
            late = [
                send("job_run", "cron-7", "posthog-node", **{"$set": {"n": n}}) for n in range(3)
            ]
            assert enriched(late[0], timeout=3) is None
            clock.advance(61)
            results = [enriched(u) for u in late]
            assert all(r is not None for r in results)
            assert [r["person_properties"]["n"] for r in results if r] == [0, 1, 2]
            assert {r["person_id"] for r in results if r} == {person_id_for(tenant, "cron-7")}
            assert all(r["buffered_ms"] >= 61_000 for r in results if r)
            positions = {m.value(): i for i, m in enumerate(collector.messages[topics.enriched])}
            order = sorted(
                late,
                key=lambda u: next(i for v, i in positions.items() if json.loads(v)["uuid"] == u),
            )
            assert order == late

            # 3. a client event is never buffered
            client = send("$pageview", "new-web-user", "web")
            assert enriched(client, timeout=10) is not None
    finally:
        collector.close()
