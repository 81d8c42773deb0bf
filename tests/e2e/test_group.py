"""Worker processes as a consumer group: sharing partitions, crashing, restarting.

The workers are real ``identity-worker run`` subprocesses. A crash is SIGKILL: nothing flushed,
nothing committed. Every input event must come out enriched at least once, and every event of
a merged person must carry that person's id.
"""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import Collector, e2e_settings, produce, worker_process
from worker.config import Settings

pytestmark = pytest.mark.e2e

T0 = 1_760_000_000_000


def _events(
    settings: Settings, tenant: str, users: int, per_user: int
) -> list[tuple[str, bytes, bytes]]:
    """Per user: an anonymous track, an identify merging it, then tracks on both ids.

    A user's events share one topic and one key, so one partition keeps their order (any kind
    of event may arrive on any input topic); users are spread over the three input topics.
    """
    topics = settings.topics
    inputs = [topics.track, topics.identify, topics.alias]
    records: list[tuple[str, bytes, bytes]] = []
    for u in range(users):
        anon, user = f"anon-{u}", f"user-{u}"
        topic = inputs[u % len(inputs)]  # every input partition gets events

        def event(
            kind: str, distinct_id: str, n: int, user: str = user, topic: str = topic, **fields: Any
        ) -> tuple[str, bytes, bytes]:
            body = {
                "type": kind,
                "tenant": tenant,
                "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{tenant}/{distinct_id}/{n}")),
                "distinct_id": distinct_id,
                "timestamp": T0 + n,
                **fields,
            }
            if kind == "track":
                body["event"] = "tick"
            return topic, f"{tenant}:{user}".encode(), json.dumps(body).encode()

        records.append(event("track", anon, 0))
        records.append(event("identify", user, 1, other_id=anon))
        for n in range(per_user):
            records.append(event("track", user if n % 2 else anon, 2 + n, set={"n": n}))
    return records


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Member:
    """A worker subprocess's own /metrics, on a port of its own."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.env = {"IDENTITY_WORKER_OBSERVABILITY__METRICS_PORT": str(self.port)}

    def _samples(self) -> dict[str, float]:
        """Sample name (labels dropped) -> the sum of its values; empty until it answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals

    def assigned(self) -> int:
        return int(self._samples().get("identity_worker_assigned_partitions", 0))

    def consumed(self) -> int:
        return int(self._samples().get("identity_worker_events_consumed_total", 0))


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


@pytest.fixture
def group(kafka_bootstrap: str, redis_url: str) -> Iterator[tuple[Settings, Collector]]:
    name = f"grp-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap, redis_url, name, batch={"max_messages": 50}, buffer={"enabled": False}
    )
    collector = Collector(settings, [settings.topics.enriched, settings.topics.dead_letters])
    yield settings, collector
    collector.close()


def _by_uuid(collector: Collector) -> dict[str, list[dict[str, Any]]]:
    seen: dict[str, list[dict[str, Any]]] = {}
    for event in collector.json(collector.topics[0]):
        seen.setdefault(event["uuid"], []).append(event)
    return seen


def test_two_workers_share_partitions_and_emit_every_event(
    group: tuple[Settings, Collector],
) -> None:
    settings, collector = group
    records = _events(settings, "grp", users=30, per_user=6)
    partitions = 3 * len(settings.topics.inputs)
    ma, mb = Member(), Member()
    with worker_process(settings, ma.env) as a, worker_process(settings, mb.env) as b:
        _wait_until(
            lambda: (
                ma.assigned() > 0
                and mb.assigned() > 0
                and ma.assigned() + mb.assigned() == partitions
            ),
            "both workers hold input partitions",
        )
        produce(settings, records)
        collector.wait_for(settings.topics.enriched, len(records), timeout=90)
        _wait_until(
            lambda: ma.consumed() + mb.consumed() >= len(records), "both counted what they read"
        )
        # both read a share: neither sat idle while the other did all the work
        assert ma.consumed() > 0
        assert mb.consumed() > 0
        a.send_signal(signal.SIGTERM)
        b.send_signal(signal.SIGTERM)
        assert a.wait(60) == 0
        assert b.wait(60) == 0
    collector.settle(1.0)
    by_uuid = _by_uuid(collector)
    sent = {json.loads(value)["uuid"] for _topic, _key, value in records}
    assert set(by_uuid) == sent
    # at-least-once: a rebalance may replay a batch, never lose one; no duplicates on a clean run
    # of two members is not promised, but every copy names the same person
    persons: dict[str, set[str]] = {}
    for copies in by_uuid.values():
        for event in copies:
            user = event["distinct_id"].split("-", 1)[1]
            persons.setdefault(user, set()).add(event["person_id"])
    assert all(len(ids) == 1 for ids in persons.values()), persons
    assert len(persons) == 30


def test_a_killed_worker_loses_nothing(group: tuple[Settings, Collector]) -> None:
    settings, collector = group
    # the survivor gets the partitions once the victim's session expired: the broker's
    # shortest session (group.min.session.timeout.ms) rather than librdkafka's 45 s
    quick = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"consumer": quick})}
    )
    records = _events(settings, "crash", users=40, per_user=8)
    half = len(records) // 2
    with worker_process(settings) as victim:
        produce(settings, records[:half])
        collector.wait_for(settings.topics.enriched, half // 3, timeout=60)
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
    produce(settings, records[half:])
    with worker_process(settings) as survivor:
        collector.wait_for(settings.topics.enriched, len(records), timeout=90)
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(60) == 0
    collector.settle(1.0)
    by_uuid = _by_uuid(collector)
    sent = {json.loads(value)["uuid"] for _topic, _key, value in records}
    assert set(by_uuid) == sent
    for copies in by_uuid.values():
        assert len({e["person_id"] for e in copies}) == 1  # a replay resolves the same way


def test_sigterm_finishes_and_commits_then_a_restart_reads_nothing_twice(
    group: tuple[Settings, Collector],
) -> None:
    settings, collector = group
    per_user = 4
    records = _events(settings, "graceful", users=10, per_user=per_user)
    first_member = Member()
    with worker_process(settings, first_member.env) as first:
        produce(settings, records)
        collector.wait_for(settings.topics.enriched, len(records), timeout=60)
        _wait_until(lambda: first_member.consumed() >= len(records), "the first counted all")
        assert first_member.consumed() == len(records)
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
    # one more event per user: same topics and keys, so every partition the first worker read
    # gets a new message after the ones it committed
    more = [
        (topic, key, json.dumps({**json.loads(value), "uuid": str(uuid.uuid4())}).encode())
        for topic, key, value in records[:: 2 + per_user]  # each user's first event
    ]
    assert len(more) == 10
    second_member = Member()
    with worker_process(settings, second_member.env) as second:
        _wait_until(lambda: second_member.assigned() > 0, "the restarted worker joined")
        produce(settings, more)
        collector.wait_for(settings.topics.enriched, len(records) + len(more), timeout=60)
        _wait_until(lambda: second_member.consumed() >= len(more), "the second counted all")
        # it read exactly the new events: anything uncommitted would have come before them
        assert second_member.consumed() == len(more)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    collector.settle(1.0)
    counts = [len(copies) for copies in _by_uuid(collector).values()]
    assert len(counts) == len(records) + len(more)
    assert set(counts) == {1}
