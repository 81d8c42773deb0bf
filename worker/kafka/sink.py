"""The producer side: enqueue records, then wait until Kafka acknowledged every one of them.

``KafkaSink.produce`` never blocks for long (librdkafka batches with ``linger.ms``);
``KafkaSink.flush`` waits for every delivery report and returns the failures, so the caller can
decide what may be committed. The producer is idempotent (``enable.idempotence``): librdkafka's own
retries never duplicate or reorder a partition's messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from worker.errors import InternalError, KafkaUnavailableError
from worker.kafka.records import DeliveryFailure, OutputRecord

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

_SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})


class KafkaSink:
    def __init__(self, conf: Mapping[str, Any]) -> None:
        self._producer = Producer({**PRODUCER_DEFAULTS, **conf})
        self._failures: list[DeliveryFailure] = []
        self._pending = 0

    def produce(self, record: OutputRecord, tag: int = 0) -> None:
        """Enqueue ``record``. A record over the client's size limit fails at once (reported by
        the next ``flush``); a full local queue is drained by polling, never dropped. A failure
        of the record carries ``tag``."""
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers) or None,
                    on_delivery=self._callback(record, tag),
                )
                self._pending += 1
                return
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                error = exc.args[0]
                code = error.code() if isinstance(error, KafkaError) else None
                if code == KafkaError.MSG_SIZE_TOO_LARGE:
                    self._failures.append(
                        DeliveryFailure(record, str(error), too_large=True, tag=tag)
                    )
                    return
                raise KafkaUnavailableError(f"producing to {record.topic} failed: {error}") from exc

    def _callback(self, record: OutputRecord, tag: int) -> Any:
        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            self._pending -= 1
            if error is not None:
                too_large = error.code() in _SIZE_ERRORS
                failure = DeliveryFailure(record, error.str(), too_large=too_large, tag=tag)
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

    def poll(self) -> None:
        """Serve delivery callbacks without waiting."""
        self._producer.poll(0)

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
