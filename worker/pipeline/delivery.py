"""Delivery: produce a batch's outputs and wait until Kafka acknowledged every one.

An output too large for its topic does not stop the partition: its input message becomes a dead
letter (``output_too_large``) instead of all that input's outputs. Any other failure raises
``KafkaUnavailableError`` (nothing may be committed). Outputs are produced with their position
as the tag, so each failure names its output exactly. With a transactional sink (exactly-once
outputs) a failed record dooms the transaction: it is aborted and the batch's outputs, less the
records too large and plus the dead letters, are produced again in a new one.

Without transactions a batch's delivery can also be split in three, so the worker goes on with
the next batches while Kafka acknowledges this one: ``send`` produces the outputs and returns a
``Shipment`` that counts their delivery reports (served by ``Sink.poll``), ``wait`` polls until
every report is in, and ``settle`` then cures the size failures exactly as ``deliver`` does (a
record too large turns its input into a dead letter, any other failure raises). ``deliver`` is
the three in a row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

from worker.codec.errors import EncodeError
from worker.errors import KafkaUnavailableError
from worker.kafka.records import DeliveryFailure, RawMessage
from worker.pipeline.deadletter import dead_letter
from worker.pipeline.items import Output, OutputKind
from worker.pipeline.ports import Sink

_ROUNDS: Final = 3
"""attempts of a transactional delivery that made no progress before it fails the batch"""


class Shipment:
    """The outputs of one ``Delivery.send`` and their delivery reports as they come in."""

    __slots__ = ("failures", "outs", "outstanding")

    def __init__(self, outs: Sequence[Output]) -> None:
        self.outs = outs
        self.outstanding = len(outs)
        """records whose delivery report has not come in yet"""
        self.failures: list[DeliveryFailure] = []

    def report(self, failure: DeliveryFailure | None) -> None:
        """One record's delivery report (``None``: acknowledged)."""
        self.outstanding -= 1
        if failure is not None:
            self.failures.append(failure)

    @property
    def done(self) -> bool:
        """Every record was acknowledged or failed."""
        return self.outstanding <= 0


class Delivery:
    def __init__(self, sink: Sink, dead_letters: str, flush_timeout_seconds: float) -> None:
        self._sink = sink
        self._dead_letters = dead_letters
        self._timeout = flush_timeout_seconds

    def deliver(self, outs: Sequence[Output]) -> list[Output]:
        """Produce ``outs`` in order and wait for every acknowledgement; return what was
        delivered (``outs`` less the records too large, plus the dead letters of their inputs,
        last).

        A size failure is retried once in a request of its own (the broker rejects a whole
        batch when one record is too large); a record still too large alone turns its input
        message into a dead letter, once per input however many of its outputs failed. Such a
        retried record lands after the batch's other records.
        """
        if self._sink.transactional:
            for tag, out in enumerate(outs):
                self._sink.produce(out.record, tag)
            failures = self._sink.flush(self._timeout)
            return self._deliver_again(outs, failures) if failures else list(outs)
        shipment = self.send(outs)
        self.wait(shipment)
        return self.settle(shipment)

    def send(self, outs: Sequence[Output]) -> Shipment:
        """Produce ``outs`` in order without waiting (not on a transactional sink); their
        delivery reports come in with the sink's polls."""
        shipment = Shipment(outs)
        report = shipment.report
        produce = self._sink.produce
        for tag, out in enumerate(outs):
            produce(out.record, tag, report)
        return shipment

    def wait(self, shipment: Shipment, timeout: float | None = None) -> None:
        """Poll the sink until every report of ``shipment`` is in; raise
        ``KafkaUnavailableError`` if some are still missing after ``timeout`` seconds (by
        default the delivery timeout)."""
        if shipment.done:
            return
        limit = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while not shipment.done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaUnavailableError(
                    f"{shipment.outstanding} records not acknowledged after {limit:.0f}s"
                )
            self._sink.poll(min(left, 0.1))

    def settle(self, shipment: Shipment) -> list[Output]:
        """What a shipment whose reports are all in delivered: its outputs less the records
        too large, plus the dead letters of their inputs (last). Raises
        ``KafkaUnavailableError`` for any other failure."""
        outs, failures = shipment.outs, shipment.failures
        if not failures:
            return list(outs)
        # a record is retried alone in a request of its own: the queue must be empty first
        # (later shipments' reports go to them; a failure found here cannot be untracked)
        self._sink.flush(self._timeout)
        lost: set[int] = set()
        dead: dict[RawMessage, Output] = {}  # by input message
        for failure in failures:
            out = self._output_of(failure, outs)
            alone = self._sink.produce_alone(failure.record, self._timeout, failure.tag)
            if alone is None:
                continue
            if not alone.too_large or out.kind is OutputKind.DEAD_LETTER:
                raise KafkaUnavailableError(
                    f"delivery to {failure.record.topic} failed: {alone.reason} (a dead letter "
                    "too large for its topic needs a larger max.message.bytes there)"
                )
            lost.add(failure.tag)
            dead.setdefault(out.source, self._too_large(out, alone))
        for out in dead.values():
            undelivered = self._sink.produce_alone(out.record, self._timeout)
            if undelivered is not None:
                raise KafkaUnavailableError(f"dead-letter delivery failed: {undelivered.reason}")
        return [out for tag, out in enumerate(outs) if tag not in lost] + list(dead.values())

    def _deliver_again(
        self, outs: Sequence[Output], failures: Sequence[DeliveryFailure]
    ) -> list[Output]:
        """Transactional sink: a failed record dooms its transaction (librdkafka purges the
        rest of it), so it is aborted; each record that failed for its size is tried alone in
        a transaction of its own (aborted too), and every output but the records too large,
        plus the dead letters of their inputs, is produced again in a fresh transaction. A
        round may fail only because the producer purged records after an abort; it is tried
        again, a few times."""
        kept = list(outs)
        dead_inputs: set[RawMessage] = set()
        stalled = 0
        while True:
            self._sink.abort_transaction(self._timeout)
            lost: set[int] = set()
            dead: list[Output] = []
            for failure in failures:
                if not failure.too_large:
                    continue  # purged with the transaction, or failed for another reason
                out = self._output_of(failure, kept)
                alone = self._alone(failure)
                if alone is None:
                    continue
                if not alone.too_large or out.kind is OutputKind.DEAD_LETTER:
                    raise KafkaUnavailableError(
                        f"delivery to {failure.record.topic} failed: {alone.reason}"
                    )
                lost.add(failure.tag)
                if out.source not in dead_inputs:
                    dead_inputs.add(out.source)
                    dead.append(self._too_large(out, alone))
            stalled = 0 if lost else stalled + 1
            if stalled > _ROUNDS:
                first = failures[0]
                raise KafkaUnavailableError(
                    f"delivery to {first.record.topic} failed: {first.reason}"
                )
            kept = [out for tag, out in enumerate(kept) if tag not in lost] + dead
            for tag, out in enumerate(kept):
                self._sink.produce(out.record, tag)
            failures = self._sink.flush(self._timeout)
            if not failures:
                return kept

    def _alone(self, failure: DeliveryFailure) -> DeliveryFailure | None:
        """``failure``'s record alone, in a transaction aborted afterwards: tells whether it
        is too large itself. Tried again when it failed otherwise (the first record after an
        abort can be purged by the producer)."""
        alone: DeliveryFailure | None = None
        for _ in range(_ROUNDS):
            alone = self._sink.produce_alone(failure.record, self._timeout, failure.tag)
            self._sink.abort_transaction(self._timeout)
            if alone is None or alone.too_large:
                return alone
        return alone

    @staticmethod
    def _output_of(failure: DeliveryFailure, outs: Sequence[Output]) -> Output:
        """The output that failed, if the failure is one a dead letter can cure; else raise."""
        known = 0 <= failure.tag < len(outs) and outs[failure.tag].record == failure.record
        if not failure.too_large or not known:
            raise KafkaUnavailableError(
                f"delivery to {failure.record.topic} failed: {failure.reason}"
            )
        return outs[failure.tag]

    def _too_large(self, out: Output, failure: DeliveryFailure) -> Output:
        message = out.source
        error = EncodeError(f"output for {failure.record.topic} too large: {failure.reason}")
        record = dead_letter(message, self._dead_letters, error, reason="output_too_large")
        return Output(message, record, OutputKind.DEAD_LETTER, "output_too_large")
