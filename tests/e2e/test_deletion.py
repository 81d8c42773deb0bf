"""Person deletion (contract A10) through the real worker process, Kafka and Redis: requests on
the deletions topic, and ``identity-worker delete`` with its exit codes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import Collector, e2e_settings, produce, worker_process
from tests.e2e.test_scenarios import Stream
from worker.cli import main
from worker.config import Settings
from worker.identity.ids import person_id_for
from worker.pipeline.deadletter import HEADER_REASON

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env(kafka_bootstrap: str, redis_url: str) -> Iterator[tuple[Settings, Collector]]:
    name = f"e2e-del-{uuid.uuid4().hex[:8]}"
    settings = e2e_settings(kafka_bootstrap, redis_url, name, buffer={"enabled": False})
    topics = settings.topics
    collector = Collector(
        settings,
        [
            topics.enriched,
            topics.overrides,
            topics.person_changes,
            topics.deletion_audit,
            topics.dead_letters,
        ],
    )
    with worker_process(settings):
        yield settings, collector
    collector.close()


def _wait(collector: Collector, topic: str, wanted: Any, timeout: float = 60.0) -> list[Any]:
    """The messages of ``topic`` for which ``wanted(message)`` holds, once there is one."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in collector.messages[topic] if wanted(m)]
        if found or time.monotonic() > deadline:
            return found
        collector.poll(0.2)


def _request(settings: Settings, body: dict[str, Any] | bytes) -> None:
    value = body if isinstance(body, bytes) else json.dumps(body).encode()
    produce(settings, [(settings.topics.deletions, None, value)])


def test_a_deletion_request_deletes_the_person_and_a_later_event_starts_a_new_one(
    env: tuple[Settings, Collector],
) -> None:
    settings, collector = env
    topics = settings.topics
    stream = Stream(settings, collector, f"tenant-{uuid.uuid4().hex[:8]}")
    tenant = stream.tenant
    anon = stream.step("track", "anon", set_once={"referrer": "ad"})
    merged = stream.step("identify", "user", other_id="anon", set={"plan": "pro"})
    old = anon["person_id"]
    assert merged["person_id"] == old
    assert merged["person_properties"] == {"referrer": "ad", "plan": "pro"}

    _request(settings, {"tenant": tenant, "distinct_id": "user", "requested_by": "e2e"})

    def audit_of(m: Any) -> bool:
        return bool(json.loads(m.value())["tenant"] == tenant)

    (audit,) = _wait(collector, topics.deletion_audit, audit_of)
    record = json.loads(audit.value())
    assert record["status"] == "deleted"
    assert record["person_id"] == old
    assert record["distinct_id_count"] == 2
    assert record["requested_by"] == "e2e"
    assert "plan" not in audit.value().decode()
    assert "pro" not in audit.value().decode()

    person_key = f"{tenant}:{old}".encode()
    tombstones = _wait(
        collector, topics.person_changes, lambda m: m.key() == person_key and m.value() is None
    )
    assert len(tombstones) == 1
    for distinct_id in ("anon", "user"):
        key = f"{tenant}:{distinct_id}".encode()
        found = _wait(collector, topics.overrides, lambda m, k=key: m.key() == k)
        assert found, distinct_id
        assert found[-1].value() is None  # the last record of the key is its tombstone

    later = stream.step("track", "anon")
    assert later["person_id"] == person_id_for(tenant, "anon", 1) != old
    assert later["person_properties"] == {}

    # a person that does not exist: an audit record says so; a bad request is a dead letter
    _request(settings, {"tenant": tenant, "distinct_id": "nobody", "requested_by": "e2e"})
    _request(settings, b"{not json")
    not_found = _wait(
        collector,
        topics.deletion_audit,
        lambda m: (
            json.loads(m.value())["requested_distinct_id"] == "nobody"
            and json.loads(m.value())["tenant"] == tenant
        ),
    )
    assert [json.loads(m.value())["status"] for m in not_found] == ["not_found"]
    letters = _wait(collector, topics.dead_letters, lambda m: m.value() == b"{not json")
    assert dict(letters[0].headers())[HEADER_REASON] == b"bad_deletion_request"


def test_delete_command_exit_codes(
    env: tuple[Settings, Collector],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, collector = env
    stream = Stream(settings, collector, f"tenant-{uuid.uuid4().hex[:8]}")
    first = stream.step("identify", "u-1", set={"name": "ada"})
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers)
    monkeypatch.setenv("IDENTITY_WORKER_REDIS__URL", settings.redis.url.get_secret_value())
    monkeypatch.setenv("IDENTITY_WORKER_REDIS__KEY_PREFIX", settings.redis.key_prefix)
    for topic in ("person_changes", "overrides", "deletion_audit"):
        name = f"IDENTITY_WORKER_TOPICS__{topic.upper()}"
        monkeypatch.setenv(name, getattr(settings.topics, topic))
    tenant = ["--tenant", stream.tenant]

    assert main(["delete", *tenant, "--person", first["person_id"], "--requested-by", "ops"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "deleted"
    assert out["person_id"] == first["person_id"]
    assert out["distinct_id_count"] == 1

    assert main(["delete", *tenant, "--distinct-id", "u-1"]) == 1  # idempotent: gone already
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "not_found"
    assert captured.err.count("\n") == 1
    assert "not found" in captured.err

    with pytest.raises(SystemExit) as usage:
        main(["delete", *tenant])  # neither --distinct-id nor --person
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as both:
        main(["delete", *tenant, "--distinct-id", "a", "--person", "p"])
    assert both.value.code == 2

    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    capsys.readouterr()
    assert main(["delete", *tenant, "--distinct-id", "x", "--timeout", "2"]) == 3
    assert capsys.readouterr().err.startswith("identity-worker: error: kafka unavailable")
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers)
    monkeypatch.setenv("IDENTITY_WORKER_REDIS__URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("IDENTITY_WORKER_REDIS__RETRY_ATTEMPTS", "1")
    assert main(["delete", *tenant, "--distinct-id", "x"]) == 3
    assert "redis unavailable" in capsys.readouterr().err
