"""The suite really talks to a Kafka broker and a Redis server."""

from __future__ import annotations

import uuid

import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

pytestmark = pytest.mark.integration


def test_kafka_produce_consume_round_trip(kafka_bootstrap: str, unique_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    futures = admin.create_topics([NewTopic(unique_name, num_partitions=2, replication_factor=1)])
    futures[unique_name].result(timeout=30)

    payloads = [f"message-{i}".encode() for i in range(20)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i, payload in enumerate(payloads):
        producer.produce(unique_name, key=str(i % 3).encode(), value=payload)
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": unique_name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([unique_name])
    received: list[bytes] = []
    try:
        for _ in range(60):
            for message in consumer.consume(num_messages=100, timeout=1.0):
                assert message.error() is None
                value = message.value()
                assert value is not None
                received.append(value)
            if len(received) >= len(payloads):
                break
    finally:
        consumer.close()
    assert sorted(received) == sorted(payloads)


def test_redis_write_and_read(redis_url: str, unique_name: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"{unique_name}:{uuid.uuid4()}"
    try:
        client.hset(key, mapping={"a": "1", "b": "2"})
        assert client.hgetall(key) == {b"a": b"1", b"b": b"2"}
        assert client.eval("return redis.call('HLEN', KEYS[1])", 1, key) == 2
    finally:
        client.delete(key)
        client.close()
