"""The pipeline's ports: what it needs from the broker, as two small protocols.

``worker.kafka.source.KafkaSource`` and ``worker.kafka.sink.KafkaSink`` implement them against
Kafka; a test can implement them in memory. The pipeline never names a Kafka class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from worker.kafka.records import DeliveryFailure, OutputRecord, Partition, RawMessage


class Source(Protocol):
    """A consumer-group member handing out batches of messages.

    Offsets are committed only by ``commit``; rebalance callbacks run inside ``poll_batch``.
    Every method raises ``TransientError`` (``KafkaUnavailableError``) when the broker fails.
    """

    @property
    def assignment(self) -> frozenset[Partition]:
        """The partitions this member owns now."""
        ...

    def poll_batch(self, max_messages: int, timeout: float) -> list[RawMessage]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first."""
        ...

    def commit(self, next_offsets: Mapping[Partition, int]) -> None:
        """Commit, per partition, the offset of the next message to read (synchronously)."""
        ...

    def commit_async(
        self, next_offsets: Mapping[Partition, int], done: Callable[[str | None], None]
    ) -> None:
        """Start committing ``next_offsets``; ``done`` is told the broker's answer (``None``:
        committed, else the error) from a later ``poll_batch`` (or at once, when the commit
        needs no answer or is synchronous)."""
        ...

    def rewind(self, first_offsets: Mapping[Partition, int]) -> None:
        """Make the next polls re-read from ``first_offsets`` (a batch that failed)."""
        ...

    def pause(self, partitions: Iterable[Partition]) -> None: ...

    def resume(self, partitions: Iterable[Partition]) -> None: ...

    def lag(self) -> dict[Partition, int]:
        """Messages behind the high watermark, per assigned partition (best effort)."""
        ...


class Sink(Protocol):
    """A producer whose writes are confirmed in bulk.

    ``produce`` enqueues; ``flush`` waits until every enqueued record is acknowledged or failed
    and returns the failures (each carrying the ``tag`` its record was produced with), or raises
    ``TransientError`` when some records stay unacknowledged. A record produced with a
    ``report`` has its delivery report (``None``: acknowledged; else its failure) handed to that
    callable instead, from ``poll`` or ``flush``.
    """

    @property
    def transactional(self) -> bool:
        """Records are written in transactions (exactly-once outputs): a failed record dooms
        the open transaction, which must then be aborted (``abort_transaction``)."""
        ...

    def abort_transaction(self, timeout: float) -> None:
        """Drop the records of the open transaction (nothing if none is open)."""
        ...

    def produce(
        self,
        record: OutputRecord,
        tag: int = 0,
        report: Callable[[DeliveryFailure | None], None] | None = None,
    ) -> None: ...

    def flush(self, timeout: float) -> list[DeliveryFailure]: ...

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports, waiting at most ``timeout`` seconds for the first one."""
        ...

    def produce_alone(
        self, record: OutputRecord, timeout: float, tag: int = 0
    ) -> DeliveryFailure | None:
        """Produce ``record`` in a request of its own (the queue must be empty) and wait for
        it: tells whether this record itself is too large, not a neighbour in its batch."""
        ...


class OutputTransaction(Protocol):
    """Outputs produced outside a batch (a buffer sweep) made visible, or dropped, at once
    (``delivery.exactly_once``; ``worker.kafka.transactions.ReleaseTransaction``)."""

    def commit(self) -> None: ...

    def abort(self) -> None: ...
