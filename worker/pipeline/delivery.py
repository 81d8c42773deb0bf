"""Delivery: produce a batch's outputs and wait until Kafka acknowledged every one.

An output too large for its topic does not stop the partition: its input message becomes a dead
letter (``output_too_large``) instead of all that input's outputs. Any other failure raises
``KafkaUnavailableError`` (nothing may be committed). Outputs are produced with their position
as the tag, so each failure names its output exactly. With a transactional sink (exactly-once
outputs) a failed record dooms the transaction: it is aborted and the batch's outputs, less the
records too large and plus the dead letters, are produced again in a new one.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.codec.errors import EncodeError
from worker.errors import KafkaUnavailableError
from worker.kafka.records import DeliveryFailure, RawMessage
from worker.pipeline.deadletter import dead_letter
from worker.pipeline.items import Output, OutputKind
from worker.pipeline.ports import Sink

_ROUNDS = 3
"""attempts of a transactional delivery that made no progress before it fails the batch"""


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
        for tag, out in enumerate(outs):
            self._sink.produce(out.record, tag)
        failures = self._sink.flush(self._timeout)
        if not failures:
            return list(outs)
        if self._sink.transactional:
            return self._deliver_again(outs, failures)
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
