"""Topic administration: create the worker's input and output topics when missing, and wait
until every partition of them has a leader.

A topic the controller just created has no leader for a moment: a client that asks for its
offsets then gets ``NOT_LEADER_FOR_PARTITION`` or ``LEADER_NOT_AVAILABLE``. ``create_topics``
therefore returns only once the metadata shows a leader for every partition (or raises
``KafkaUnavailableError`` at its deadline), so the first command after it never races the broker.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from worker.config import LIBRDKAFKA_LOGGER, Settings
from worker.errors import KafkaUnavailableError

LEADER_TIMEOUT_SECONDS = 60.0
"""How long ``create_topics`` and ``wait_for_leaders`` wait for every partition's leader."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    compacted: bool = False

    def config(self) -> dict[str, str]:
        return {"cleanup.policy": "compact"} if self.compacted else {}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the worker reads or writes, deduplicated, with its settings."""
    topics = settings.topics
    names = dict.fromkeys(
        (*topics.inputs, *topics.outputs, topics.deletions, topics.deletion_audit)
    )
    return [
        TopicSpec(
            name,
            topics.partitions,
            topics.replication_factor,
            compacted=name in topics.compacted,
        )
        for name in names
    ]


def _admin(bootstrap_servers: str | Mapping[str, Any]) -> AdminClient:
    conf: dict[str, Any] = (
        {"bootstrap.servers": bootstrap_servers}
        if isinstance(bootstrap_servers, str)
        else dict(bootstrap_servers)
    )
    conf.setdefault("logger", LIBRDKAFKA_LOGGER)
    return AdminClient(conf)


def missing_leaders(admin: AdminClient, names: Iterable[str], timeout: float = 5.0) -> list[str]:
    """``topic`` or ``topic[partition]`` for each topic that the metadata does not show, or shows
    with an error, and each partition without a leader. Empty: every partition has a leader."""
    metadata = admin.list_topics(timeout=timeout)
    missing: list[str] = []
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or not topic.partitions:
            missing.append(name)
            continue
        missing.extend(
            f"{name}[{p.id}]"
            for p in topic.partitions.values()
            if p.leader < 0 or p.error is not None
        )
    return missing


def wait_for_leaders(
    bootstrap_servers: str | Mapping[str, Any] | AdminClient,
    names: Iterable[str],
    timeout: float = LEADER_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once the metadata shows a leader for every partition of ``names``.

    Raises ``KafkaUnavailableError`` after ``timeout`` seconds, naming what still has none.
    """
    admin = (
        bootstrap_servers
        if isinstance(bootstrap_servers, AdminClient)
        else _admin(bootstrap_servers)
    )
    wanted = list(dict.fromkeys(names))
    deadline = clock() + timeout
    pause = 0.05
    while True:
        left = deadline - clock()
        try:
            missing = missing_leaders(admin, wanted, timeout=max(0.5, min(5.0, left)))
            problem = (
                "no leader yet for "
                + ", ".join(missing[:10])
                + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            )
        except KafkaException as exc:
            missing, problem = wanted, f"no metadata: {exc.args[0]}"
        if not missing:
            return
        if clock() >= deadline:
            raise KafkaUnavailableError(f"Kafka: topics not ready after {timeout:.0f} s: {problem}")
        time.sleep(min(pause, max(0.0, deadline - clock())))
        pause = min(pause * 2, 1.0)


def create_topics(
    bootstrap_servers: str | Mapping[str, Any],
    specs: Iterable[TopicSpec],
    timeout: float = 30.0,
    leader_timeout: float = LEADER_TIMEOUT_SECONDS,
) -> dict[str, str]:
    """Create the topics that do not exist yet and wait until every partition of every topic
    in ``specs`` has a leader. Returns ``{name: "created" | "exists"}``.

    Raises ``KafkaUnavailableError`` when the broker does not answer within ``timeout`` or the
    leaders are not there within ``leader_timeout``, and ``KafkaException`` for any other
    failure, naming the topic.
    """
    admin = _admin(bootstrap_servers)
    specs = list(specs)
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=s.replication_factor,
            config=s.config(),
        )
        for s in specs
    ]
    if not new:
        return {}
    result: dict[str, str] = {}
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout + 5)
            result[name] = "created"
        except concurrent.futures.TimeoutError:
            raise KafkaUnavailableError(
                f"Kafka: no answer within {timeout:.0f} s while creating topic {name!r} "
                f"(bootstrap.servers={_bootstrap(bootstrap_servers)})"
            ) from None
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            elif isinstance(error, KafkaError) and error.code() in _UNAVAILABLE:
                raise KafkaUnavailableError(
                    f"Kafka: creating topic {name!r} failed: {error.str()} "
                    f"(bootstrap.servers={_bootstrap(bootstrap_servers)})"
                ) from None
            else:
                raise KafkaException(f"creating topic {name!r} failed: {error}") from exc
    wait_for_leaders(admin, [s.name for s in specs], timeout=leader_timeout)
    return result


_UNAVAILABLE = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_CONTROLLER,
    }
)


def _bootstrap(conf: str | Mapping[str, Any]) -> str:
    return conf if isinstance(conf, str) else str(conf.get("bootstrap.servers", "?"))
