"""KafkaSource / KafkaSink against the real broker: delivery, size failures, commit, rewind."""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import Producer

from worker.kafka.admin import TopicSpec, create_topics
from worker.kafka.records import OutputRecord, RawMessage
from worker.kafka.sink import KafkaSink
from worker.kafka.source import CONSUMER_DEFAULTS, KafkaSource

pytestmark = pytest.mark.integration


def _topic(bootstrap: str, name: str, partitions: int = 2, **config: str) -> str:
    spec = TopicSpec(name, partitions, 1)
    if config:
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic

        admin = AdminClient({"bootstrap.servers": bootstrap})
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)]
        )
        futures[name].result(30)
    else:
        assert create_topics(bootstrap, [spec]) == {name: "created"}
    return name


def _fill(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        producer.produce(topic, key=f"k{i % 5}".encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0


def _drain(source: KafkaSource, want: int, timeout: float = 30.0) -> list[RawMessage]:
    got: list[RawMessage] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got.extend(source.poll_batch(100, 0.5))
    return got


def _source(bootstrap: str, topic: str, group: str) -> KafkaSource:
    return KafkaSource({"bootstrap.servers": bootstrap, "group.id": group}, [topic])


def test_a_poll_returns_the_fetched_messages_without_waiting_for_the_batch_to_fill(
    kafka_bootstrap: str, unique_name: str
) -> None:
    """Fewer messages than the batch holds: the poll returns them, not after its timeout (the
    Java client's ``poll``); with none fetched it waits for the first."""
    topic = _topic(kafka_bootstrap, unique_name, partitions=1)
    source = _source(kafka_bootstrap, topic, unique_name)
    try:
        _fill(kafka_bootstrap, topic, 1)
        assert len(_drain(source, 1)) == 1  # assigned, fetching
        _fill(kafka_bootstrap, topic, 3)
        started = time.monotonic()
        got = source.poll_batch(1_000, 60.0)  # waits for the first, takes what came with it
        while len(got) < 3 and time.monotonic() - started < 30:
            got += source.poll_batch(1_000, 60.0)
        assert [m.value for m in got] == [b"v0", b"v1", b"v2"]
        assert time.monotonic() - started < 50, "a poll waited for its batch to fill"
    finally:
        source.close()


def test_a_lone_message_comes_although_a_fetch_asks_for_more(
    kafka_bootstrap: str, unique_name: str
) -> None:
    """Fetches that ask for 64 KB (the ``kafka.consumer`` options the docs suggest for a
    steady partial load; our defaults keep librdkafka's): the broker answers with less once
    ``fetch.wait.max.ms`` is over, so a lone small message still comes."""
    assert "fetch.min.bytes" not in CONSUMER_DEFAULTS
    topic = _topic(kafka_bootstrap, unique_name, partitions=1)
    conf = {"bootstrap.servers": kafka_bootstrap, "group.id": unique_name}
    source = KafkaSource({**conf, "fetch.min.bytes": 65_536, "fetch.wait.max.ms": 5}, [topic])
    try:
        _fill(kafka_bootstrap, topic, 1)
        assert [m.value for m in _drain(source, 1)] == [b"v0"]  # assigned, fetching
        _fill(kafka_bootstrap, topic, 1)
        (again,) = _drain(source, 1)
        assert (again.offset, again.value) == (1, b"v0")
    finally:
        source.close()


def test_create_topics_is_idempotent(kafka_bootstrap: str, unique_name: str) -> None:
    spec = TopicSpec(unique_name, 3, 1, compacted=True)
    assert create_topics(kafka_bootstrap, [spec]) == {unique_name: "created"}
    assert create_topics(kafka_bootstrap, [spec]) == {unique_name: "exists"}


def test_sink_confirms_delivery_and_reports_too_large(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = _topic(kafka_bootstrap, unique_name, 1, **{"max.message.bytes": "2000"})
    sink = KafkaSink({"bootstrap.servers": kafka_bootstrap})
    ok = OutputRecord(topic, b"small", b"k", (("h", b"1"),))
    big = OutputRecord(topic, os.urandom(50_000), b"k")  # incompressible
    sink.produce(ok)
    sink.produce(big)
    failures = sink.flush(30)
    # the broker rejects the whole record batch, so the small neighbour may fail with it
    assert big in [f.record for f in failures]
    assert all(f.too_large for f in failures)
    assert sink.flush(5) == []  # failures are reported once
    if ok in [f.record for f in failures]:
        assert sink.produce_alone(ok, 30) is None
    alone = sink.produce_alone(big, 30)
    assert alone is not None
    assert alone.too_large
    assert alone.record == big
    source = _source(kafka_bootstrap, topic, unique_name)
    try:
        (message,) = _drain(source, 1)
        assert (message.key, message.value, message.headers) == (b"k", b"small", (("h", b"1"),))
    finally:
        source.close()


def test_commit_then_a_new_member_resumes_after_it(kafka_bootstrap: str, unique_name: str) -> None:
    topic = _topic(kafka_bootstrap, unique_name)
    _fill(kafka_bootstrap, topic, 20)
    source = _source(kafka_bootstrap, topic, unique_name)
    try:
        got = _drain(source, 20)
        assert len(got) == 20
        first_ten = sorted(got, key=lambda m: (m.partition, m.offset))
        # commit only part of what was read: the first message of each partition
        commit = {(m.topic, m.partition): m.offset + 1 for m in first_ten if m.offset == 0}
        source.commit(commit)
    finally:
        source.close()
    again = _source(kafka_bootstrap, topic, unique_name)
    try:
        redelivered = _drain(again, 18)
        assert len(redelivered) == 18
        assert all(m.offset >= 1 for m in redelivered)
    finally:
        again.close()


def test_an_async_commit_is_answered_by_a_later_poll(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = _topic(kafka_bootstrap, unique_name, 1)
    _fill(kafka_bootstrap, topic, 10)
    source = _source(kafka_bootstrap, topic, unique_name)
    answers: list[str | None] = []
    try:
        got = _drain(source, 10)
        source.commit_async({(topic, 0): got[5].offset + 1}, answers.append)
        source.commit_async({(topic, 0): got[-1].offset + 1}, answers.append)
        deadline = time.monotonic() + 30
        while len(answers) < 2 and time.monotonic() < deadline:
            assert source.poll_batch(100, 0.1) == []
        assert answers == [None, None]
    finally:
        source.close()
    again = _source(kafka_bootstrap, topic, unique_name)
    try:
        _fill(kafka_bootstrap, topic, 1)
        (after,) = _drain(again, 1)
        assert after.offset == 10  # resumed after both commits
    finally:
        again.close()


def test_revoke_is_told_while_the_partitions_are_still_assigned(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = _topic(kafka_bootstrap, unique_name, 2)
    _fill(kafka_bootstrap, topic, 4)
    still_assigned: list[bool] = []
    first: KafkaSource | None = None

    def revoked(partitions: list[tuple[str, int]]) -> None:
        assert first is not None
        still_assigned.append(bool(partitions) and set(partitions) <= first.assignment)

    first = KafkaSource(
        {"bootstrap.servers": kafka_bootstrap, "group.id": unique_name},
        [topic],
        on_revoke=revoked,
    )
    try:
        assert len(_drain(first, 4)) == 4
        second = _source(kafka_bootstrap, topic, unique_name)
        try:
            deadline = time.monotonic() + 60
            while not still_assigned and time.monotonic() < deadline:
                first.poll_batch(100, 0.1)
                second.poll_batch(100, 0.1)
            assert still_assigned == [True]
            assert len(first.assignment) == 1
        finally:
            second.close()
    finally:
        first.close()


def test_rewind_rereads_an_uncommitted_batch(kafka_bootstrap: str, unique_name: str) -> None:
    topic = _topic(kafka_bootstrap, unique_name, 1)
    _fill(kafka_bootstrap, topic, 10)
    source = _source(kafka_bootstrap, topic, unique_name)
    try:
        first = _drain(source, 10)
        source.rewind({(topic, 0): first[3].offset})
        again = _drain(source, 7)
        assert [m.offset for m in again] == [m.offset for m in first[3:]]
    finally:
        source.close()


def test_two_members_share_the_partitions(kafka_bootstrap: str, unique_name: str) -> None:
    topic = _topic(kafka_bootstrap, unique_name, 4)
    _fill(kafka_bootstrap, topic, 40)
    a = _source(kafka_bootstrap, topic, unique_name)
    b = _source(kafka_bootstrap, topic, unique_name)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            a.poll_batch(1, 0.2)
            b.poll_batch(1, 0.2)
            if len(a.assignment) + len(b.assignment) == 4 and a.assignment and b.assignment:
                break
        assert a.assignment
        assert b.assignment
        assert a.assignment.isdisjoint(b.assignment)
        assert len(a.assignment | b.assignment) == 4
    finally:
        a.close()
        b.close()


def _wait_for_lag(source: KafkaSource, want: dict[tuple[str, int], int]) -> None:
    """The lag comes from the watermarks the last fetch brought: wait for them to show."""
    deadline = time.monotonic() + 30
    while source.lag() != want and time.monotonic() < deadline:
        time.sleep(0.1)
    assert source.lag() == want


def test_lag_counts_unread_messages(kafka_bootstrap: str, unique_name: str) -> None:
    topic = _topic(kafka_bootstrap, unique_name, 1)
    _fill(kafka_bootstrap, topic, 12)
    source = _source(kafka_bootstrap, topic, unique_name)
    try:
        got: list[RawMessage] = []
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            got.extend(source.poll_batch(1, 0.5))  # one at a time: read 5 of the 12
        assert [m.offset for m in got] == [0, 1, 2, 3, 4]
        _wait_for_lag(source, {(topic, 0): 7})
        got.extend(_drain(source, 7))
        assert len(got) == 12
        _wait_for_lag(source, {(topic, 0): 0})
        _fill(kafka_bootstrap, topic, 4)  # new messages nobody has read yet
        _wait_for_lag(source, {(topic, 0): 4})
        got.extend(_drain(source, 4))
        source.commit({(topic, 0): got[-1].offset + 1})
        _wait_for_lag(source, {(topic, 0): 0})
    finally:
        source.close()
