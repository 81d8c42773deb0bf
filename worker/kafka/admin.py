"""Topic administration: create the worker's input and output topics when missing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from worker.config import Settings


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
    names = dict.fromkeys((*topics.inputs, *topics.outputs))
    return [
        TopicSpec(
            name,
            topics.partitions,
            topics.replication_factor,
            compacted=name in topics.compacted,
        )
        for name in names
    ]


def create_topics(
    bootstrap_servers: str | dict[str, str | int | float | bool],
    specs: Iterable[TopicSpec],
    timeout: float = 30.0,
) -> dict[str, str]:
    """Create the topics that do not exist yet. Returns ``{name: "created" | "exists"}``.

    Raises ``KafkaException`` for any other failure, naming the topic.
    """
    conf: dict[str, str | int | float | bool] = (
        {"bootstrap.servers": bootstrap_servers}
        if isinstance(bootstrap_servers, str)
        else dict(bootstrap_servers)
    )
    admin = AdminClient(conf)
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
    for name, future in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            result[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            else:
                raise KafkaException(f"creating topic {name!r} failed: {error}") from exc
    return result
