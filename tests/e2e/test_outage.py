"""Redis goes away mid-stream: the worker backs off, commits nothing, says so, and recovers."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from tests.e2e.harness import Collector, e2e_settings, produce, running_worker
from worker.app import build_ops_server
from worker.identity.ids import person_id_for

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test only, with AOF, that the test can stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("no redis-server binary for a private Redis")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.proc is not None:
            client = redis.Redis(port=self.port)
            try:
                client.shutdown(save=False)  # AOF is already on disk (fsync on shutdown)
            except redis.exceptions.ConnectionError:
                pass
            finally:
                client.close()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _committed(bootstrap: str, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    result = futures[group].result(15)
    return sum(tp.offset for tp in result.topic_partitions if tp.offset >= 0)


def test_a_redis_outage_pauses_the_worker_without_loss(
    kafka_bootstrap: str, private_redis: PrivateRedis
) -> None:
    name = f"outage-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(
        kafka_bootstrap,
        private_redis.url,
        name,
        redis={"retry_attempts": 2, "retry_backoff_seconds": 0.05, "socket_timeout_seconds": 1},
        buffer={"enabled": False},
    )
    topics = settings.topics

    def events(first: int, count: int) -> list[tuple[str, bytes, bytes]]:
        out = []
        for i in range(first, first + count):
            body = {
                "type": "track",
                "tenant": "o",
                "uuid": str(uuid.uuid4()),
                "event": "e",
                "distinct_id": f"user-{i % 5}",
                "timestamp": 1_760_000_000_000 + i,
            }
            out.append((topics.track, f"o:user-{i % 5}".encode(), json.dumps(body).encode()))
        return out

    def one(kind: str, distinct_id: str, **fields: object) -> tuple[str, bytes, bytes]:
        body = {
            "type": kind,
            "tenant": "o",
            "uuid": str(uuid.uuid4()),
            "distinct_id": distinct_id,
            "timestamp": 1_760_000_000_000,
            **fields,
        }
        topic = getattr(topics, kind)
        return topic, f"o:{distinct_id}".encode(), json.dumps(body).encode()

    # before the outage: anon-0 joins user-0's person, which gets a property; after it, a track
    # of anon-0 can only find that person (not uuid5 of anon-0) and the property in Redis
    merge = one("identify", "user-0", other_id="anon-0", set={"plan": "pro"})
    after_merge = one("track", "anon-0", event="e")

    collector = Collector(settings, [topics.enriched])
    try:
        with running_worker(settings) as worker:
            ops = build_ops_server(settings, worker)
            ops.start()
            try:
                produce(settings, [*events(0, 10), merge])
                assert len(collector.wait_for(topics.enriched, 11)) == 11
                deadline = time.monotonic() + 20
                while _committed(kafka_bootstrap, name) < 11 and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert _committed(kafka_bootstrap, name) == 11

                private_redis.stop()
                produce(settings, [*events(10, 10), after_merge])
                deadline = time.monotonic() + 30
                while _get(ops.port, "/readyz")[0] == 200 and time.monotonic() < deadline:
                    time.sleep(0.2)
                status, body = _get(ops.port, "/readyz")
                assert status == 503
                assert body["redis_ok"] is False
                assert body["reason"] == "redis unavailable"
                assert _get(ops.port, "/healthz")[0] == 200  # alive, just waiting
                collector.settle(2.0)
                assert len(collector.messages[topics.enriched]) == 11  # nothing skipped...
                assert _committed(kafka_bootstrap, name) == 11  # ...and nothing committed

                private_redis.start()  # same port, same AOF: the state comes back
                assert len(collector.wait_for(topics.enriched, 22, timeout=60)) >= 22
                deadline = time.monotonic() + 30
                while _get(ops.port, "/readyz")[0] != 200 and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert _get(ops.port, "/readyz")[0] == 200
                errors = worker.metrics.registry.get_sample_value(
                    "identity_worker_errors_total", {"component": "redis"}
                )
                assert errors is not None
                assert errors >= 1
            finally:
                ops.close()
    finally:
        collector.close()
    enriched = collector.json(topics.enriched)
    persons: dict[str, set[str]] = {}
    for e in enriched:
        persons.setdefault(e["distinct_id"], set()).add(e["person_id"])
    assert all(len(ids) == 1 for ids in persons.values())
    assert len(persons) == 6
    # the state survived the restart: only Redis knew that anon-0 belongs to user-0's person
    after_uuid = json.loads(after_merge[2])["uuid"]
    (after,) = [e for e in enriched if e["uuid"] == after_uuid]
    assert after["person_id"] == person_id_for("o", "user-0") != person_id_for("o", "anon-0")
    assert after["is_identified"] is True
    assert after["person_properties"] == {"plan": "pro"}
