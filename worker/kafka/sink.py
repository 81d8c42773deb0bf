"""The producer side: enqueue records, then wait until Kafka acknowledged every one of them.

``KafkaSink.produce`` never blocks for long (librdkafka batches with ``linger.ms``);
``KafkaSink.flush`` waits for every delivery report and returns the failures, so the caller can
decide what may be committed. A record produced with a ``report`` callable has its delivery
report handed to it instead (``None``: acknowledged; else its ``DeliveryFailure``), from the
next ``poll`` or ``flush``: the caller tracks its records without waiting for the whole queue
(at-least-once delivery with several batches in flight). The producer is idempotent
(``enable.idempotence``): librdkafka's own retries never duplicate or reorder a partition's
messages, so records of later batches land after those of earlier ones.

With a ``transactional.id`` (``delivery.exactly_once``) the sink is transactional: the first
``produce`` after a commit begins a transaction, ``commit_transaction`` makes its records visible
to ``read_committed`` consumers (with the input offsets, when given, in the same transaction),
``abort_transaction`` drops them. A fatal error (this producer was fenced by another one with the
same id) raises ``InternalError``: the worker exits and a restart resumes from the last commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from worker.errors import InternalError, KafkaUnavailableError
from worker.kafka.deadline import GRACE_SECONDS, call_within
from worker.kafka.records import DeliveryFailure, OutputRecord, Partition

PRODUCER_DEFAULTS: Mapping[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    # a few ms of batching: fewer, larger requests at a latency cost far below the batch time
    "linger.ms": 5,
    "compression.type": "lz4",
    "batch.num.messages": 10_000,
    # how long librdkafka keeps retrying one message before reporting it failed
    "delivery.timeout.ms": 120_000,
}

Report = Callable[[DeliveryFailure | None], None]
"""Told a record's delivery report: ``None`` once acknowledged, else its failure."""

_SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})


class KafkaSink:
    def __init__(self, conf: Mapping[str, Any], *, init_timeout: float = 30.0) -> None:
        merged = {**PRODUCER_DEFAULTS, **conf}
        self.transactional = "transactional.id" in conf
        if self.transactional:
            # librdkafka requires a record's delivery timeout within the transaction's
            merged.setdefault("transaction.timeout.ms", merged["delivery.timeout.ms"])
        self._producer = Producer(merged)
        self._failures: list[DeliveryFailure] = []
        self._pending = 0
        self._in_transaction = False
        if self.transactional:
            # fences an earlier producer with the same id and aborts what it left open
            self._transact(
                lambda: self._producer.init_transactions(init_timeout), "init", init_timeout
            )

    def produce(self, record: OutputRecord, tag: int = 0, report: Report | None = None) -> None:
        """Enqueue ``record``. A record over the client's size limit fails at once (reported by
        the next ``flush``, or to ``report`` at once); a full local queue is drained by polling,
        never dropped. A failure of the record carries ``tag``. With ``report``, the record's
        delivery report goes to it (from ``poll`` or ``flush``), not to ``flush``'s result."""
        if self.transactional and not self._in_transaction:
            self._transact(self._producer.begin_transaction, "begin")
            self._in_transaction = True
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers) or None,
                    on_delivery=self._callback(record, tag, report),
                )
                self._pending += 1
                return
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                error = exc.args[0]
                code = error.code() if isinstance(error, KafkaError) else None
                if code == KafkaError.MSG_SIZE_TOO_LARGE:
                    failure = DeliveryFailure(record, str(error), too_large=True, tag=tag)
                    if report is None:
                        self._failures.append(failure)
                    else:
                        report(failure)
                    return
                raise KafkaUnavailableError(f"producing to {record.topic} failed: {error}") from exc

    def _callback(self, record: OutputRecord, tag: int, report: Report | None) -> Any:
        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            self._pending -= 1
            failure = None
            if error is not None:
                too_large = error.code() in _SIZE_ERRORS
                failure = DeliveryFailure(record, error.str(), too_large=too_large, tag=tag)
            if report is not None:
                report(failure)
            elif failure is not None:
                self._failures.append(failure)

        return on_delivery

    def flush(self, timeout: float) -> list[DeliveryFailure]:
        """Wait until every enqueued record is acknowledged or failed; return the failures.

        Raises ``KafkaUnavailableError`` when some records are still unacknowledged after
        ``timeout`` seconds (nothing may be committed then).
        """
        remaining = self._producer.flush(timeout)
        if remaining or self._pending:
            raise KafkaUnavailableError(
                f"{max(remaining, self._pending)} records not acknowledged after {timeout:.0f}s"
            )
        failures, self._failures = self._failures, []
        return failures

    def produce_alone(
        self, record: OutputRecord, timeout: float, tag: int = 0
    ) -> DeliveryFailure | None:
        """Produce ``record`` in a request of its own and wait for it.

        The broker rejects a whole record batch that exceeds a topic's ``max.message.bytes``,
        so a size failure reported by ``flush`` may belong to a neighbour: retrying alone tells
        which record is really too large. Call it with an empty queue (after ``flush``).
        """
        if self._pending:
            raise InternalError("produce_alone needs an empty queue: call flush first")
        self.produce(record, tag)
        failures = self.flush(timeout)
        return failures[0] if failures else None

    def commit_transaction(
        self,
        next_offsets: Mapping[Partition, int] | None,
        group_metadata: object | None,
        timeout: float,
    ) -> None:
        """Commit the open transaction, with ``next_offsets`` committed for the consumer group
        of ``group_metadata`` in it (a transaction is begun for offsets alone if need be)."""
        if not self.transactional:
            raise InternalError("commit_transaction needs a transactional sink")
        if next_offsets:
            if not self._in_transaction:
                self._transact(self._producer.begin_transaction, "begin")
                self._in_transaction = True
            offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
            self._transact(
                lambda: self._producer.send_offsets_to_transaction(
                    offsets, group_metadata, timeout
                ),
                "send offsets",
                timeout,
            )
        if self._in_transaction:
            self._transact(lambda: self._producer.commit_transaction(timeout), "commit", timeout)
            self._in_transaction = False

    def abort_transaction(self, timeout: float = 30.0) -> None:
        """Drop the open transaction's records (nothing if none is open)."""
        if not (self.transactional and self._in_transaction):
            return
        self._transact(lambda: self._producer.abort_transaction(timeout), "abort", timeout)
        self._in_transaction = False
        # the records it purged report their failure on the next poll: serve them now, so they
        # are not taken for failures of the next transaction's records
        self._producer.flush(timeout)
        self._failures, self._pending = [], 0

    def _transact(self, action: Any, what: str, timeout: float = 30.0) -> None:
        """``action()`` (a transactional call given ``timeout``), its errors converted; a call
        still blocked ``GRACE_SECONDS`` past its timeout exits the process
        (``worker.kafka.deadline``)."""
        try:
            call_within(action, timeout + GRACE_SECONDS, f"transaction {what}")
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.fatal():
                raise InternalError(
                    f"transactional producer failed for good ({what}): {error}"
                ) from exc
            if isinstance(error, KafkaError) and error.txn_requires_abort() and what != "abort":
                with contextlib.suppress(KafkaException):  # the next begin or init tells
                    self._producer.abort_transaction(30.0)
                self._in_transaction = False
            raise KafkaUnavailableError(f"transaction {what} failed: {error}") from exc

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks, waiting at most ``timeout`` seconds for the first one."""
        self._producer.poll(timeout)

    @property
    def pending(self) -> int:
        """Records produced whose delivery report was not served yet."""
        return self._pending

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
