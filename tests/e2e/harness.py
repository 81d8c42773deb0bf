"""Runs the real worker (in a thread, or as a subprocess) against real Kafka and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource

from worker.app import Worker, build_worker
from worker.clock import Clock
from worker.config import RedisSettings, Settings, TopicSettings, load_settings
from worker.kafka.admin import create_topics, topic_specs

DEFAULT_RULES: str = RedisSettings.model_fields["rules"].default
"""``redis.rules`` when a test names none: the setting's default."""


def e2e_settings(
    kafka_bootstrap: str, redis_url: str, name: str, **sections: Mapping[str, Any]
) -> Settings:
    """Settings whose topics, group and Redis prefix belong to this test only."""
    topics = TopicSettings(
        identify=f"{name}.identify",
        alias=f"{name}.alias",
        track=f"{name}.track",
        enriched=f"{name}.enriched",
        person_changes=f"{name}.person_changes",
        overrides=f"{name}.overrides",
        warnings=f"{name}.warnings",
        dead_letters=f"{name}.dead_letters",
        group_changes=f"{name}.group_changes",
        deletions=f"{name}.deletions",
        deletion_audit=f"{name}.deletion_audit",
        partitions=3,
    )
    base: dict[str, Any] = {
        "kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": name},
        "topics": topics.model_dump(),
        "redis": {
            "url": redis_url,
            "key_prefix": name,
            # IDENTITY_TEST_REDIS_RULES=script: the end-to-end tests with the rules in Redis's
            # script (unset: the setting's default)
            "rules": os.environ.get("IDENTITY_TEST_REDIS_RULES", DEFAULT_RULES),
        },
        "batch": {"max_wait_seconds": 0.05, "shutdown_timeout_seconds": 20},
        "observability": {"metrics_port": 0},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    settings = load_settings(**base)
    create_topics(settings.kafka.common(), topic_specs(settings))
    return settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as IDENTITY_WORKER_* variables, for a worker subprocess."""
    env: dict[str, str] = {}
    data = settings.model_dump(mode="json")
    data["redis"]["url"] = settings.redis.url.get_secret_value()
    for section, values in data.items():
        for key, value in values.items():
            if value is None:
                continue  # unset: the worker's default is None too
            name = f"IDENTITY_WORKER_{section.upper()}__{key.upper()}"
            env[name] = value if isinstance(value, str) else json.dumps(value)
    return env


@contextmanager
def running_worker(settings: Settings, clock: Clock | None = None) -> Iterator[Worker]:
    """The worker's loop in a thread; on exit: graceful shutdown, then close."""
    worker = build_worker(settings, clock)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.runner.run()
        except BaseException as exc:  # surfaced in the test
            errors.append(exc)

    thread = threading.Thread(target=target, name="worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.runner.request_shutdown()
        thread.join(30)
        worker.close()
    assert not thread.is_alive(), "worker did not stop within 30 s"
    if errors:
        raise errors[0]


@contextmanager
def worker_process(
    settings: Settings, *extra_env: Mapping[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        **settings_env(settings),
        "IDENTITY_WORKER_OBSERVABILITY__LOG_FORMAT": "json",
    }
    for more in extra_env:
        env.update(more)
    proc = subprocess.Popen([sys.executable, "-m", "worker", "run"], env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def produce(settings: Settings, records: Iterable[tuple[str, bytes | None, bytes | None]]) -> int:
    producer = Producer({**settings.kafka.common(), "enable.idempotence": True, "linger.ms": 1})
    count = 0
    for topic, key, value in records:
        producer.produce(topic, key=key, value=value)
        count += 1
    assert producer.flush(30) == 0
    return count


def json_event(tenant: str, **fields: Any) -> bytes:
    return json.dumps({"tenant": tenant, **fields}).encode()


@dataclass
class Collector:
    """Reads topics from the beginning, into lists of (key, decoded JSON or raw bytes)."""

    settings: Settings
    topics: list[str]
    messages: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._consumer = Consumer(
            {
                **self.settings.kafka.common(),
                "group.id": f"{self.settings.kafka.group_id}-collector-{time.monotonic_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._consumer.subscribe(self.topics)
        self.messages = {t: [] for t in self.topics}

    def poll(self, seconds: float = 0.5) -> None:
        for message in self._consumer.consume(num_messages=1000, timeout=seconds):
            topic = message.topic()
            if message.error() is None and topic is not None:
                self.messages[topic].append(message)

    def wait_for(self, topic: str, count: int, timeout: float = 60.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.messages[topic]) < count and time.monotonic() < deadline:
            self.poll()
        return self.messages[topic]

    def settle(self, seconds: float = 2.0) -> None:
        """Keep reading until nothing new arrived for ``seconds``."""
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < seconds:
            before = sum(map(len, self.messages.values()))
            self.poll(0.3)
            if sum(map(len, self.messages.values())) != before:
                quiet_since = time.monotonic()

    def json(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.value()) for m in self.messages[topic]]

    def close(self) -> None:
        self._consumer.close()


def limit_message_bytes(bootstrap: str, topic: str, max_bytes: int) -> None:
    """Set ``topic``'s ``max.message.bytes`` (so an output can be made too large for it)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    limit = ConfigEntry(
        "max.message.bytes", str(max_bytes), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource("topic", topic, incremental_configs=[limit])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
