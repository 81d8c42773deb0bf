"""Batches in flight (at-least-once, ``batch.max_in_flight``): the runner with the real pipeline,
the pure reference store and the in-memory sink, over a scripted source whose asynchronous
commits are answered at its next poll, as a Kafka consumer's are.

Every commit is checked when it is made: each input below the committed offset has its enriched
event or its dead letter acknowledged already (offsets never pass unwritten output)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence

import pytest

from tests.unit.test_orchestrator import (
    T0,
    TOPICS,
    MemorySink,
    Unbuffered,
    _released,
    event,
    message,
)
from worker.app import build_pipeline
from worker.clock import ManualClock
from worker.codec.avro import AvroCodec
from worker.config import Settings
from worker.errors import TransientStoreError
from worker.identity.model import IdentityEvent
from worker.kafka.records import Partition, RawMessage
from worker.pipeline.deadletter import HEADER_OFFSET, HEADER_REASON
from worker.pipeline.orchestrator import BatchPipeline
from worker.pipeline.ports import OutputTransaction
from worker.pipeline.runner import Runner
from worker.store.base import BatchResult

PARTITION: Partition = (TOPICS.track, 0)
Hook = Callable[["Script"], None]


class Script:
    """A ``Source`` over ``count`` track events (distinct id ``u<offset>``), ``batch`` messages a
    poll. ``hooks[n]`` runs inside the n-th poll (where rebalance callbacks run), after the
    answers to the commits made since the last poll. Asks the runner to stop once everything
    was read and the last poll brought nothing."""

    def __init__(
        self, sink: MemorySink, count: int, batch: int, hooks: Mapping[int, Hook] | None = None
    ) -> None:
        self.sink = sink
        self.clock = ManualClock(T0)
        self.messages = [message(i, event("track", f"u{i}")) for i in range(count)]
        self.batch = batch
        self.hooks = hooks or {}
        self.position = 0
        self.polls = 0
        self.runner: Runner | None = None
        self.commits: list[tuple[str, int]] = []
        """("sync" | "async", committed offset), in order"""
        self.confirmed = 0
        self.rewinds: list[int] = []
        self.fail_commits = 0
        """the next asynchronous commits answered with an error"""
        self.pending_at_poll: list[int] = []
        """records the sink had not answered yet, at each poll"""
        self._answers: list[tuple[Callable[[str | None], None], str | None, int]] = []
        self.paused = False

    @property
    def assignment(self) -> frozenset[Partition]:
        return frozenset({PARTITION})

    def poll_batch(self, max_messages: int, timeout: float) -> list[RawMessage]:
        self.polls += 1
        self.pending_at_poll.append(self.sink.pending)
        answers, self._answers = self._answers, []
        for done, error, offset in answers:
            if error is None:
                self.confirmed = max(self.confirmed, offset)
            done(error)
        if self.polls in self.hooks:
            self.hooks[self.polls](self)
        if self.paused:
            self.clock.advance(timeout)
            return []
        batch = self.messages[self.position : self.position + self.batch]
        self.position += len(batch)
        if not batch:
            self.clock.advance(timeout)
            if self.runner is not None:
                self.runner.request_shutdown()
        return batch

    def _check(self, offsets: Mapping[Partition, int]) -> int:
        (offset,) = offsets.values()
        assert not self.commits or offset >= self.commits[-1][1], "commits go forward"
        written = {e["distinct_id"] for e in self.sink.json(TOPICS.enriched)}
        dead = {int(dict(r.headers)[HEADER_OFFSET]) for r in self.sink.on(TOPICS.dead_letters)}
        for i in range(offset):
            assert f"u{i}" in written or i in dead, f"offset {offset} passes unwritten input {i}"
        return offset

    def commit(self, next_offsets: Mapping[Partition, int]) -> None:
        offset = self._check(next_offsets)
        self.commits.append(("sync", offset))
        self.confirmed = max(self.confirmed, offset)

    def commit_async(
        self, next_offsets: Mapping[Partition, int], done: Callable[[str | None], None]
    ) -> None:
        offset = self._check(next_offsets)
        self.commits.append(("async", offset))
        error = None
        if self.fail_commits:
            self.fail_commits -= 1
            error = "REBALANCE_IN_PROGRESS"
        self._answers.append((done, error, offset))

    def rewind(self, first_offsets: Mapping[Partition, int]) -> None:
        self.rewinds.append(first_offsets[PARTITION])
        self.position = first_offsets[PARTITION]

    def pause(self, partitions: Iterable[Partition]) -> None:
        self.paused = True

    def resume(self, partitions: Iterable[Partition]) -> None:
        self.paused = False

    def lag(self) -> dict[Partition, int]:
        return {PARTITION: len(self.messages) - self.position}


def run(
    script: Script,
    max_in_flight: int,
    store: Unbuffered | None = None,
    *,
    overlap: bool | None = None,
    transaction: OutputTransaction | None = None,
    **settings: object,
) -> tuple[Runner, BatchPipeline]:
    """The runner over ``script`` until it asks to stop; ``overlap`` and ``transaction`` as
    ``worker.app.build_worker`` passes them (exactly-once outputs)."""
    conf = Settings(
        buffer={"enabled": False},  # type: ignore[arg-type]
        batch={"shutdown_timeout_seconds": 2, **settings},  # type: ignore[arg-type]
    )
    work = build_pipeline(
        conf, store or Unbuffered(), script.sink, AvroCodec(), script.clock, transaction
    )
    runner = Runner(
        script,
        work,
        script.clock,
        max_messages=script.batch,
        max_wait_seconds=0.1,
        backoff_initial_seconds=0.2,
        max_in_flight=max_in_flight,
        overlap=overlap,
    )
    script.runner = runner
    runner.run()
    return runner, work


def hold(script: Script) -> None:
    script.sink.hold = True


def release(script: Script) -> None:
    script.sink.hold = False


def delivered_inputs(sink: MemorySink) -> list[str]:
    return [e["distinct_id"] for e in sink.json(TOPICS.enriched)]


def test_batches_overlap_and_are_committed_in_order_once_acknowledged() -> None:
    sink = MemorySink()
    script = Script(sink, count=12, batch=2, hooks={1: hold, 3: release, 5: hold, 7: release})
    run(script, max_in_flight=3)

    # the loop polled again while outputs were still unacknowledged, never with more than
    # two batches' outputs waiting
    assert delivered_inputs(sink) == [f"u{i}" for i in range(12)]
    per_batch = len(sink.delivered) // 6
    assert max(script.pending_at_poll) == 2 * per_batch
    assert script.commits[-1][1] == 12
    assert script.rewinds == []
    # several batches acknowledged together are committed in one request
    assert len(script.commits) < 6


def test_one_in_flight_waits_for_each_batch_before_the_next_poll() -> None:
    sink = MemorySink()
    script = Script(sink, count=6, batch=2)
    run(script, max_in_flight=1)
    assert script.pending_at_poll == [0] * script.polls
    assert [offset for _, offset in script.commits] == [2, 4, 6]
    assert delivered_inputs(sink) == [f"u{i}" for i in range(6)]


def test_receipts_are_forgotten_in_order_and_only_after_a_confirmed_commit() -> None:
    sink, store = MemorySink(), Unbuffered()
    seen: list[tuple[int, int]] = []

    def forgotten_vs_confirmed(script: Script) -> None:
        seen.append((len(store.forgotten), script.confirmed))

    hooks = {n: forgotten_vs_confirmed for n in range(1, 10)}
    script = Script(sink, count=8, batch=2, hooks=hooks)
    run(script, max_in_flight=2, store=store)

    refs = [ref for _tenant, batch in store.forgotten for ref in batch]
    assert refs == [f"{TOPICS.track}/0/{i}" for i in range(8)]
    for forgotten, confirmed in seen:
        assert forgotten * 2 <= confirmed  # one tenant, two events a batch


def test_a_delivery_failure_rewinds_to_the_oldest_uncommitted_batch() -> None:
    sink = MemorySink()

    def break_then_release(script: Script) -> None:
        script.sink.broken = {TOPICS.enriched}
        script.sink.hold = False

    def repair(script: Script) -> None:
        script.sink.broken = set()

    hooks = {1: hold, 3: break_then_release, 4: repair}
    script = Script(sink, count=8, batch=2, hooks=hooks)
    run(script, max_in_flight=3)

    # batches 0-1 and 2-3 were in flight when their outputs failed: both are read again
    assert script.rewinds == [0]
    assert script.commits[0][1] >= 2
    assert sorted(set(delivered_inputs(sink))) == sorted(f"u{i}" for i in range(8))
    assert script.commits[-1][1] == 8


def test_an_output_too_large_in_flight_is_dead_lettered_before_its_offset_is_committed() -> None:
    sink = MemorySink(limits={TOPICS.enriched: 2000})
    script = Script(sink, count=6, batch=2, hooks={1: hold, 3: release})
    script.messages[3] = message(3, event("track", "u3", properties={"blob": "x" * 5000}))
    run(script, max_in_flight=3)

    (dead,) = sink.on(TOPICS.dead_letters)
    assert dict(dead.headers)[HEADER_REASON] == b"output_too_large"
    assert dict(dead.headers)[HEADER_OFFSET] == b"3"
    assert delivered_inputs(sink) == [f"u{i}" for i in (0, 1, 2, 4, 5)]
    assert script.commits[-1][1] == 6
    assert script.rewinds == []


def test_a_failed_commit_rewinds_its_batch_and_forgets_nothing_of_it() -> None:
    sink, store = MemorySink(), Unbuffered()

    def fail_next_commit(script: Script) -> None:
        script.fail_commits = 1

    # the second batch is completed (its store round read, outputs produced) and committed in
    # the turn of the third poll: that commit fails, which the fourth poll tells
    script = Script(sink, count=8, batch=2, hooks={3: fail_next_commit})
    run(script, max_in_flight=2, store=store)

    assert script.rewinds == [2]  # the batch whose commit failed, and what followed it
    refs = [ref for _tenant, batch in store.forgotten for ref in batch]
    assert refs == [f"{TOPICS.track}/0/{i}" for i in range(8)]  # each once, after its commit
    assert script.commits[-1][1] == 8


def test_a_revoke_finishes_and_commits_everything_in_flight_first() -> None:
    sink = MemorySink()
    at_revoke: list[tuple[int, int]] = []

    def revoke(script: Script) -> None:
        script.sink.hold = False
        assert script.runner is not None
        script.runner.partitions_revoked([PARTITION])
        at_revoke.append((script.confirmed, script.position))

    script = Script(sink, count=8, batch=2, hooks={1: hold, 3: revoke})
    run(script, max_in_flight=3)

    # two batches were in flight at the revoke: both committed, synchronously, inside it
    assert at_revoke == [(4, 4)]
    assert script.commits[0] == ("sync", 4)
    assert script.rewinds == []
    assert script.commits[-1][1] == 8


def test_a_lost_partition_drops_the_batches_in_flight_uncommitted() -> None:
    sink = MemorySink()
    at_loss: list[list[tuple[str, int]]] = []

    def lose(script: Script) -> None:
        assert script.runner is not None
        script.runner.partitions_lost([PARTITION])
        at_loss.append(list(script.commits))
        script.sink.hold = False

    script = Script(sink, count=6, batch=2, hooks={1: hold, 3: lose})
    run(script, max_in_flight=3)

    assert at_loss == [[]]  # nothing was committed for the lost batches
    assert script.rewinds == [0]
    assert script.commits[-1][1] == 6


def test_shutdown_finishes_and_commits_what_is_in_flight() -> None:
    sink = MemorySink()

    def stop_while_late(script: Script) -> None:
        script.sink.late = 5
        assert script.runner is not None
        script.runner.request_shutdown()

    script = Script(sink, count=10, batch=2, hooks={2: stop_while_late})
    run(script, max_in_flight=3)

    assert script.position == 4
    assert sink.late == 0  # the drain waited for the acknowledgements
    assert script.commits[-1] == ("sync", 4)
    assert delivered_inputs(sink) == [f"u{i}" for i in range(4)]


def test_released_entries_are_acknowledged_only_once_their_outputs_are() -> None:
    store, sink = Unbuffered(), MemorySink()
    settings = Settings(buffer={"enabled": False})  # type: ignore[arg-type]
    work = build_pipeline(settings, store, sink, AvroCodec(), ManualClock(T0))
    entry = _released("w", "merge", event("track", "w"))
    store.to_release = [entry]
    sink.hold = True
    _outcome, pending = work.start([message(0, event("identify", "w"))])
    work.poll()
    assert not pending.done()
    assert store.acked == []
    sink.hold = False
    pending.wait()
    pending.finish()
    assert store.acked == [entry.event_uuid]
    assert [json.loads(r.value or b"")["distinct_id"] for r in sink.on(TOPICS.enriched)] == [
        "w",
        "w",
    ]


@pytest.mark.parametrize("max_in_flight", [1, 3])
def test_a_failure_while_resolving_rewinds_without_losing_a_committed_batch(
    max_in_flight: int,
) -> None:
    class FlakyOnce(Unbuffered):
        def __init__(self) -> None:
            super().__init__()
            self.calls_left = 2

        def resolve_buffered(
            self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
        ) -> BatchResult:
            self.calls_left -= 1
            if self.calls_left == 0:
                raise TransientStoreError("Redis is away")
            return super().resolve_buffered(tenant, events, now_ms)

    sink = MemorySink()
    script = Script(sink, count=6, batch=2)
    run(script, max_in_flight=max_in_flight, store=FlakyOnce())
    assert script.rewinds == [2]
    assert script.commits[-1][1] == 6
    assert sorted(set(delivered_inputs(sink))) == [f"u{i}" for i in range(6)]
