"""The consumer side: a consumer-group member that hands out batches of ``RawMessage``.

Offsets are never committed automatically: the pipeline calls ``commit`` (synchronous) or
``commit_async`` with what it has safely written; the broker's answer to an asynchronous commit
comes back through the consumer's ``on_commit`` callback, served by a later ``poll_batch``, and
is handed to that commit's ``done``. Rebalancing is cooperative-sticky, so a rebalance moves only
the partitions that change owner. Rebalance callbacks run inside ``poll_batch``: ``on_revoke`` is
called before the revoked partitions leave ``assignment`` (so what is in flight can still be
committed for them), ``on_lost`` when they already belong to another member (nothing may be
committed for them; without an ``on_lost``, ``on_revoke`` is called).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from worker.errors import KafkaUnavailableError
from worker.kafka.records import Partition, RawMessage

CONSUMER_DEFAULTS: Mapping[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "enable.partition.eof": False,
    # the batch loop polls at least every batch.max_wait; five minutes covers a Redis outage
    # during which the worker backs off inside one batch
    "max.poll.interval.ms": 300_000,
    # fetches keep librdkafka's defaults: {"fetch.min.bytes": 65536, "fetch.wait.max.ms": 5}
    # (kafka.consumer) costs the broker less CPU per event under a steady partial load, but
    # half as much again while draining a backlog (docs/BENCHMARKS.md, sections 1 and 3)
}

PartitionsCallback = Callable[[list[Partition]], None]
CommitDone = Callable[[str | None], None]
"""Told the broker's answer to an asynchronous commit: ``None`` (committed) or the error."""

# errors a consumer reports that do not stop consumption (librdkafka recovers by itself)
_BENIGN = frozenset(
    {
        KafkaError._PARTITION_EOF,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
    }
)


def _headers(raw: object) -> tuple[tuple[str, bytes], ...]:
    if not isinstance(raw, list):
        return ()
    out: list[tuple[str, bytes]] = []
    for name, value in raw:
        data = value.encode() if isinstance(value, str) else (value or b"")
        out.append((str(name), data))
    return tuple(out)


class KafkaSource:
    def __init__(
        self,
        conf: Mapping[str, Any],
        topics: Sequence[str],
        *,
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        on_lost: PartitionsCallback | None = None,
    ) -> None:
        self._consumer = Consumer({**CONSUMER_DEFAULTS, **conf, "on_commit": self._commit_cb})
        self._assigned: set[Partition] = set()
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_lost = on_lost
        self._commits: list[tuple[frozenset[tuple[str, int, int]], CommitDone]] = []
        """asynchronous commits the broker has not answered yet, oldest first"""
        self.last_error: str | None = None
        self._consumer.subscribe(
            list(topics),
            on_assign=self._assigned_cb,
            on_revoke=self._revoked_cb,
            on_lost=self._lost_cb,
        )

    def listen(
        self,
        *,
        on_revoke: PartitionsCallback | None = None,
        on_lost: PartitionsCallback | None = None,
    ) -> None:
        """Set the rebalance callbacks after construction (the runner is built later)."""
        self._on_revoke = on_revoke
        self._on_lost = on_lost

    def _assigned_cb(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        added = [(tp.topic, tp.partition) for tp in partitions]
        self._assigned.update(added)
        if self._on_assign:
            self._on_assign(added)

    def _revoked_cb(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        removed = [(tp.topic, tp.partition) for tp in partitions]
        try:
            if self._on_revoke:
                self._on_revoke(removed)  # still assigned: may commit for them
        finally:
            self._assigned.difference_update(removed)

    def _lost_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._on_lost is None:
            self._revoked_cb(consumer, partitions)
            return
        removed = [(tp.topic, tp.partition) for tp in partitions]
        self._assigned.difference_update(removed)  # before: nothing is committed for them
        self._on_lost(removed)

    def _commit_cb(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The broker's answer to a commit: handed to the asynchronous commit of the same
        offsets, if any (a synchronous commit's answer is dropped)."""
        key = frozenset((tp.topic, tp.partition, tp.offset) for tp in partitions)
        for position, (offsets, done) in enumerate(self._commits):
            if offsets == key:
                del self._commits[position]
                failed = error or next((tp.error for tp in partitions if tp.error), None)
                done(None if failed is None else str(failed))
                return

    @property
    def assignment(self) -> frozenset[Partition]:
        return frozenset(self._assigned)

    def group_metadata(self) -> object:
        """The consumer group's metadata, for offsets committed in a producer's transaction."""
        return self._consumer.consumer_group_metadata()

    def poll_batch(self, max_messages: int, timeout: float) -> list[RawMessage]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first.

        The messages already fetched are returned at once; only when there are none does it
        wait, and then for one message (with those fetched along with it), as the Java
        client's ``poll`` does. librdkafka's batch consume alone would wait the whole
        ``timeout`` for ``max_messages`` to arrive: under a moderate load every batch would
        then wait up to ``timeout`` to fill, and its first event that long before it is even
        decoded."""
        try:
            messages = self._consumer.consume(num_messages=max_messages, timeout=0)
            if not messages and timeout > 0:
                messages = self._consumer.consume(num_messages=1, timeout=timeout)
                if messages and max_messages > 1:
                    messages += self._consumer.consume(num_messages=max_messages - 1, timeout=0)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"consume failed: {exc.args[0]}") from exc
        batch: list[RawMessage] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal() or error.code() not in _BENIGN:
                    raise KafkaUnavailableError(f"consumer error: {error.str()}")
                self.last_error = error.str()
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue
            _kind, timestamp = message.timestamp()
            batch.append(
                RawMessage(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=message.key(),
                    value=message.value(),
                    headers=_headers(message.headers()),
                    timestamp_ms=timestamp if timestamp > 0 else None,
                )
            )
        if batch:
            self.last_error = None
        return batch

    def commit(self, next_offsets: Mapping[Partition, int]) -> None:
        """Commit, synchronously, the offset of the next message to read per partition.

        Partitions no longer assigned are skipped: their new owner re-reads from the last
        commit, which is safe (at least once) and the only correct choice after a revoke.
        """
        offsets = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in next_offsets.items()
            if (topic, partition) in self._assigned
        ]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"offset commit failed: {exc.args[0]}") from exc

    def commit_async(self, next_offsets: Mapping[Partition, int], done: CommitDone) -> None:
        """Start committing the offset of the next message to read per assigned partition;
        ``done`` is told the broker's answer from a later ``poll_batch`` (at once when no
        partition is left to commit)."""
        offsets = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in next_offsets.items()
            if (topic, partition) in self._assigned
        ]
        if not offsets:
            done(None)
            return
        request = (frozenset((tp.topic, tp.partition, tp.offset) for tp in offsets), done)
        self._commits.append(request)
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            self._commits.remove(request)
            raise KafkaUnavailableError(f"offset commit failed: {exc.args[0]}") from exc

    def rewind(self, first_offsets: Mapping[Partition, int]) -> None:
        """Seek back so the next poll re-reads from ``first_offsets`` (a failed batch)."""
        for (topic, partition), offset in first_offsets.items():
            if (topic, partition) not in self._assigned:
                continue
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                raise KafkaUnavailableError(f"seek {topic}/{partition} failed: {exc}") from exc

    def pause(self, partitions: Iterable[Partition]) -> None:
        self._consumer.pause([TopicPartition(t, p) for t, p in partitions])

    def resume(self, partitions: Iterable[Partition]) -> None:
        self._consumer.resume([TopicPartition(t, p) for t, p in partitions])

    def lag(self) -> dict[Partition, int]:
        """Messages between the consumer's position and the high watermark, per assigned
        partition with a known position. Never blocks: watermarks are the ones the last fetch
        brought (``cached``), so the value is as fresh as the last fetch."""
        assigned = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
        if not assigned:
            return {}
        lags: dict[Partition, int] = {}
        try:
            for tp in self._consumer.position(assigned):
                if tp.offset < 0:
                    continue  # nothing fetched yet: no position to measure from
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0:
                    lags[(tp.topic, tp.partition)] = max(high - tp.offset, 0)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"lag lookup failed: {exc}") from exc
        return lags

    def close(self) -> None:
        """Leave the group (its partitions move to the other members at once)."""
        self._consumer.close()
