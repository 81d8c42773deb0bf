"""Exactly-once outputs, the pipeline's half: released buffered entries are acknowledged only once
the transaction holding their outputs is committed; a buffer sweep commits its own transaction,
or aborts it and keeps its entries."""

from __future__ import annotations

import pytest

from tests.unit.test_orchestrator import (
    T0,
    TOPICS,
    MemorySink,
    Report,
    Unbuffered,
    _released,
    event,
)
from tests.unit.test_pipeline_time import at
from worker.app import build_pipeline
from worker.clock import ManualClock
from worker.codec.avro import AvroCodec
from worker.config import Settings
from worker.errors import KafkaUnavailableError
from worker.identity.buffer import BufferPolicy
from worker.identity.reference import ReferenceStore
from worker.kafka.records import DeliveryFailure, OutputRecord
from worker.pipeline.orchestrator import BatchPipeline


class Transaction:
    """Counts what the pipeline asks of the transaction it writes in."""

    def __init__(self) -> None:
        self.commits = 0
        self.aborts = 0

    def commit(self) -> None:
        self.commits += 1

    def abort(self) -> None:
        self.aborts += 1


def test_released_entries_are_acknowledged_after_the_commit_only() -> None:
    store, sink = Unbuffered(), MemorySink()
    settings = Settings(buffer={"enabled": False})  # type: ignore[arg-type]
    work = build_pipeline(settings, store, sink, AvroCodec(), ManualClock(T0), Transaction())
    entry = _released("w", "merge", event("track", "w"))
    store.to_release = [entry]
    work.process([at(0, event("track", "other"))])
    assert store.acked == []  # delivered, but not committed yet
    work.committed()
    assert store.acked == [entry.event_uuid]


def test_entries_of_an_aborted_batch_are_not_acknowledged() -> None:
    store, sink = Unbuffered(), MemorySink()
    settings = Settings(buffer={"enabled": False})  # type: ignore[arg-type]
    work = build_pipeline(settings, store, sink, AvroCodec(), ManualClock(T0), Transaction())
    store.to_release = [_released("w", "merge", event("track", "w"))]
    work.process([at(0, event("track", "other"))])
    # the commit failed: the runner aborts and processes the batch again
    work.process([at(0, event("track", "other"))])
    work.committed()
    assert store.acked == []  # its lease expires and it is released again


def buffered(sink: MemorySink) -> tuple[BatchPipeline, ManualClock, ReferenceStore, Transaction]:
    clock = ManualClock(T0)
    store = ReferenceStore(buffer=BufferPolicy(delay_ms=60_000))
    transaction = Transaction()
    work = build_pipeline(Settings(), store, sink, AvroCodec(), clock, transaction)
    work.process([at(0, event("track", "w", source="backend"), stamp=T0)])
    assert sink.on(TOPICS.enriched) == []  # waits
    clock.advance(61)
    return work, clock, store, transaction


def test_a_buffer_sweep_commits_its_transaction_then_acknowledges() -> None:
    sink = MemorySink()
    work, _clock, store, transaction = buffered(sink)
    stats = work.housekeeping()
    assert stats is not None
    assert [e["distinct_id"] for e in sink.json(TOPICS.enriched)] == ["w"]
    assert transaction.commits == 1
    assert store.buffer_stats("t", T0 + 61_000).leased == 0  # acknowledged


def test_a_failed_buffer_sweep_aborts_and_keeps_its_entries() -> None:
    sink = MemorySink(broken=[TOPICS.enriched])
    work, _clock, store, transaction = buffered(sink)
    with pytest.raises(KafkaUnavailableError):
        work.housekeeping()
    assert transaction.aborts == 1
    assert transaction.commits == 0
    assert store.buffer_stats("t", T0 + 61_000).leased == 1  # released again after its lease
    assert sink.on(TOPICS.enriched) == []


class TransactionalSink(MemorySink):
    """``MemorySink`` with transactions as a broker keeps them: acknowledged records stay in
    the open transaction until ``commit``; a failed record dooms it (produce fails until it is
    aborted)."""

    transactional = True

    def __init__(self, limits: dict[str, int]) -> None:
        super().__init__(limits)
        self.open: list[OutputRecord] = []
        self.doomed = False
        self.aborts = 0

    def produce(self, record: OutputRecord, tag: int = 0, report: Report | None = None) -> None:
        if self.doomed:
            raise KafkaUnavailableError("the transaction must be aborted")
        assert report is None, "a transaction's records are confirmed by flush"
        super().produce(record, tag)

    def flush(self, timeout: float) -> list[DeliveryFailure]:
        before = len(self.delivered)
        failures = super().flush(timeout)
        self.open += self.delivered[before:]
        del self.delivered[before:]
        self.doomed = self.doomed or bool(failures)
        return failures

    def abort_transaction(self, timeout: float) -> None:
        self.open, self.doomed = [], False
        self.aborts += 1

    def commit(self) -> None:
        assert not self.doomed
        self.delivered += self.open
        self.open = []


def test_an_output_too_large_in_a_transaction_is_dead_lettered_once() -> None:
    sink = TransactionalSink(limits={TOPICS.enriched: 2000})
    settings = Settings(buffer={"enabled": False})  # type: ignore[arg-type]
    work = build_pipeline(settings, Unbuffered(), sink, AvroCodec(), ManualClock(T0), Transaction())
    large = event("track", "large", properties={"blob": "x" * 5000})
    batch = [at(0, event("track", "a")), at(1, large), at(2, event("track", "b"))]
    outcome = work.process(batch)
    sink.commit()  # what the runner's commit does, with the offsets

    assert sink.aborts >= 1
    assert [e["distinct_id"] for e in sink.json(TOPICS.enriched)] == ["a", "b"]
    (dead,) = sink.on(TOPICS.dead_letters)
    assert dead.value == large
    assert len(sink.on(TOPICS.person_changes)) == 3  # each once, the large input's too
    assert outcome.stats.dead_letters == {"output_too_large": 1}


def test_a_sweep_after_an_aborted_batch_does_not_acknowledge_its_entries() -> None:
    store, sink = Unbuffered(), MemorySink()
    work = build_pipeline(Settings(), store, sink, AvroCodec(), ManualClock(T0), Transaction())
    store.to_release = [_released("w", "merge", event("track", "w"))]
    work.process([at(0, event("track", "other"))])
    # the batch's commit failed (aborted); the loop's housekeeping runs before the retry
    work.housekeeping()
    assert store.acked == []
