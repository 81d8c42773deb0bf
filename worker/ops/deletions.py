"""The deletions input topic (contract A10): ``run`` reads ``topics.deletions`` in a consumer
group of its own, ``<kafka.group_id>.deletions``, on a thread of its own, so a deletion never
waits behind the event batches (and the event consumer group never rebalances for it).

Each message is a ``DeletionRequest`` (``worker.ops.deletion``); one that is not goes to the
dead-letter topic (reason ``bad_deletion_request``). A request is executed, its tombstones and
audit record acknowledged, and only then its offset committed: at least once. A request
delivered again after a crash is executed again: not found (an audit record says so) unless
the id has started a new person in between, which is then deleted too (docs/OPERATIONS.md).
While Kafka or Redis is unavailable the request is retried, never skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from worker.config import Settings
from worker.errors import TransientError
from worker.kafka.records import RawMessage
from worker.ops.deletion import BadDeletionRequest, DeletingStore, DeletionRequest, execute
from worker.pipeline.deadletter import dead_letter

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


def group_id(settings: Settings) -> str:
    """The consumer group of the deletions topic."""
    return f"{settings.kafka.group_id}.deletions"


class DeletionConsumer:
    """Reads ``topics.deletions`` until ``close``."""

    def __init__(self, settings: Settings, store: DeletingStore) -> None:
        self._settings = settings
        self._store = store
        self._consumer = Consumer(
            {
                **settings.kafka.consumer_conf(),
                "group.id": group_id(settings),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self._producer = Producer({**settings.kafka.producer_conf(), "enable.idempotence": True})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deletions", daemon=True)

    def start(self) -> None:
        self._consumer.subscribe([self._settings.topics.deletions])
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop after the request at hand, leave the group."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        try:
            self._consumer.close()
        finally:
            self._producer.flush(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._consumer.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("deletions topic: %s", error)
                    continue
                if self._handle(message):
                    self._consumer.commit(message=message, asynchronous=False)
            except Exception:
                log.exception("deletions consumer: unexpected error; retrying")
                self._stop.wait(RETRY_SECONDS)

    def _handle(self, message: Any) -> bool:
        """Execute one request (or dead-letter it); False when stopped before it was done."""
        topics = self._settings.topics
        try:
            request = DeletionRequest.parse(message.value())
        except BadDeletionRequest as exc:
            raw = RawMessage(
                message.topic(),
                message.partition(),
                message.offset(),
                message.key(),
                message.value(),
                tuple(message.headers() or ()),
                message.timestamp()[1] if message.timestamp()[0] else None,
            )
            letter = dead_letter(raw, topics.dead_letters, exc)
            self._producer.produce(
                letter.topic, letter.value, letter.key, headers=list(letter.headers)
            )
            self._producer.flush(30.0)
            log.warning("deletion request dead-lettered: %s", exc)
            return True
        while not self._stop.is_set():
            try:
                record = execute(
                    self._store, self._producer, topics, request, lambda: int(time.time() * 1000)
                )
            except TransientError as exc:
                log.warning("deletion of tenant %s waits: %s", request.tenant, exc)
                self._stop.wait(RETRY_SECONDS)
                continue
            log.info(
                "person deletion %s",
                record["status"],
                extra={"tenant": request.tenant, "person_id": record["person_id"]},
            )
            return True
        return False
