"""Exactly-once outputs (``delivery.exactly_once``): each batch's outputs and its input offsets
are committed in one Kafka transaction.

``TransactionalSource`` is the consumer as the runner sees it: its ``commit`` commits the
producer's open transaction with the batch's offsets in it (``send_offsets_to_transaction`` with
the consumer's group metadata, so a zombie of an older group generation is fenced), and its
``rewind`` (a failed batch) aborts that transaction before seeking back. ``ReleaseTransaction``
commits or aborts the outputs of a buffer sweep, which has no input offsets. Consumers reading
with ``isolation.level=read_committed`` then see every output once: a batch is either committed
whole with its offsets, or aborted and processed again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from worker.errors import KafkaUnavailableError
from worker.kafka.records import Partition, RawMessage
from worker.kafka.sink import KafkaSink
from worker.kafka.source import KafkaSource

log = logging.getLogger(__name__)


class TransactionalSource:
    """Implements ``worker.pipeline.ports.Source``: a ``KafkaSource`` whose offsets are
    committed in the sink's transaction."""

    def __init__(self, source: KafkaSource, sink: KafkaSink, timeout: float) -> None:
        self._source = source
        self._sink = sink
        self._timeout = timeout

    @property
    def assignment(self) -> frozenset[Partition]:
        return self._source.assignment

    def poll_batch(self, max_messages: int, timeout: float) -> list[RawMessage]:
        return self._source.poll_batch(max_messages, timeout)

    def commit(self, next_offsets: Mapping[Partition, int]) -> None:
        self._sink.commit_transaction(next_offsets, self._source.group_metadata(), self._timeout)

    def commit_async(
        self, next_offsets: Mapping[Partition, int], done: Callable[[str | None], None]
    ) -> None:
        """A transaction's commit is synchronous: ``done`` is told at once."""
        self.commit(next_offsets)
        done(None)

    def rewind(self, first_offsets: Mapping[Partition, int]) -> None:
        """Abort the failed batch's transaction and seek back. An abort that fails for now is
        logged: the producer tells again at the next transaction (a fenced producer raises
        ``InternalError`` and the worker exits)."""
        try:
            self._sink.abort_transaction(self._timeout)
        except KafkaUnavailableError as exc:
            log.warning("aborting the failed batch's transaction failed: %s", exc)
        finally:
            self._source.rewind(first_offsets)

    def pause(self, partitions: Iterable[Partition]) -> None:
        self._source.pause(partitions)

    def resume(self, partitions: Iterable[Partition]) -> None:
        self._source.resume(partitions)

    def lag(self) -> dict[Partition, int]:
        return self._source.lag()


class ReleaseTransaction:
    """Implements ``worker.pipeline.ports.OutputTransaction`` on a transactional sink."""

    def __init__(self, sink: KafkaSink, timeout: float) -> None:
        self._sink = sink
        self._timeout = timeout

    def commit(self) -> None:
        self._sink.commit_transaction(None, None, self._timeout)

    def abort(self) -> None:
        self._sink.abort_transaction(self._timeout)
