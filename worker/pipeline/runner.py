"""The main loop: poll a batch, start it, commit what Kafka acknowledged; back off without losing
anything.

Invariants:
- A batch is committed only after every output it covers was acknowledged by Kafka and every
  identity or buffer write is in Redis (``PendingBatch.finish`` returned), and batches are
  committed in the order they were read: the committed offsets are a watermark that never passes
  unwritten output.
- Up to ``max_in_flight`` batches wait for their acknowledgements while the next one is read,
  decoded and resolved (at-least-once outputs; ``1`` waits for each batch before the next poll).
  With more than one batch in flight, the newest batch's store round also runs in Redis while
  the previous batch's outputs are built and produced and the next batch is polled and decoded
  (``BatchProcessor.overlaps``); it is completed before anything else is finished, so batches
  still complete, produce and commit in order. With exactly-once outputs one batch is in
  flight (one transaction open at a time), committed in the turn that completes it, and its
  successor's store round runs during that commit; no transaction is open while the loop
  polls, so a revoke finishes the launched batch and commits it in a transaction of its own.
  Offsets are committed asynchronously (``Source.commit_async``); a batch is told ``committed``
  (its replay receipts dropped) only once the broker confirmed its commit.
- A transient error (Redis, Kafka or the registry down, a failed delivery or commit) fails every
  batch not committed yet: their partitions are rewound to the first offsets of the oldest one
  and paused while the worker backs off, then resumed; the batches are re-read and processed
  again (at least once; replays answer exactly as the first time).
- Rebalance callbacks run inside ``poll_batch``: before partitions are revoked, every batch in
  flight is finished and committed (synchronously), so the next owner starts after it; a lost
  partition (the member was fenced) drops the batches in flight uncommitted.
- Shutdown (``request_shutdown``): stop polling, finish and commit the batches in flight, close.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from worker.build import mypyc_attr
from worker.clock import Clock
from worker.errors import Component, KafkaUnavailableError, TransientError
from worker.kafka.records import Partition, RawMessage
from worker.observability.status import BatchStats, Health
from worker.pipeline.offsets import first_offsets
from worker.pipeline.ports import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    next_offsets: dict[Partition, int]
    """Per partition, the offset of the next message to read: what may be committed."""
    stats: BatchStats = field(default_factory=BatchStats)


class RunObserver(Protocol):
    """What the loop reports, for metrics (implemented in ``observability.recorder``)."""

    def batch_done(self, size: int, seconds: float, stats: BatchStats) -> None: ...

    def transient_error(self, component: Component, during_commit: bool) -> None: ...

    def tick(self, source: Source) -> None:
        """Called about once a second from the loop: sample lag and assignment."""
        ...


@mypyc_attr(allow_interpreted_subclasses=True)  # a port: tests and adapters subclass it
class PendingBatch:
    """A started batch whose outputs may not all be acknowledged yet (``BatchProcessor.start``).
    This base is a batch already finished."""

    __slots__ = ()

    def done(self) -> bool:
        """Every output was acknowledged or failed: ``finish`` will not wait."""
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Wait until ``done``; raise ``TransientError`` if it is not after ``timeout`` seconds
        (by default the delivery timeout)."""

    def finish(self) -> None:
        """Complete the batch once ``done`` (dead letters of outputs too large, counters,
        buffer acks); raise ``TransientError`` if an output could not be delivered."""


DONE = PendingBatch()
"""A batch finished by ``process``."""


@mypyc_attr(allow_interpreted_subclasses=True)  # a port: tests and adapters subclass it
class PlannedBatch:
    """A batch decoded and ready for its store round (``BatchProcessor.plan``)."""

    __slots__ = ("batch",)

    def __init__(self, batch: Sequence[RawMessage]) -> None:
        self.batch = batch


@mypyc_attr(allow_interpreted_subclasses=True)  # a port: tests and adapters subclass it
class BatchProcessor:
    """Port for one batch's work (decode, resolve, emit); see ``pipeline.orchestrator``."""

    def process(self, batch: Sequence[RawMessage]) -> BatchOutcome:
        raise NotImplementedError

    def start(self, batch: Sequence[RawMessage]) -> tuple[BatchOutcome, PendingBatch]:
        """``process`` without waiting for Kafka's acknowledgements: the returned
        ``PendingBatch`` finishes the batch. By default, ``process``."""
        return self.process(batch), DONE

    @property
    def overlaps(self) -> bool:
        """Whether the runner uses ``plan``, ``launch`` and ``complete`` instead of
        ``start``, so a batch's store round runs while the next batch is polled and planned."""
        return False

    def plan(self, batch: Sequence[RawMessage]) -> PlannedBatch:
        """Decode ``batch`` and prepare its store round, without sending it."""
        return PlannedBatch(batch)

    def launch(self, planned: PlannedBatch) -> None:
        """Send the planned batch's store round and return at once."""

    def receive(self, planned: PlannedBatch) -> None:
        """Read the launched round's answers: the batch's store work is over, the next
        batch's round may be launched. ``complete`` reads them if this was not called."""

    def complete(self, planned: PlannedBatch) -> tuple[BatchOutcome, PendingBatch]:
        """Read the round's answers (unless ``receive`` did) and produce the outputs:
        ``start`` from here."""
        return self.start(planned.batch)

    def drop(self, planned: PlannedBatch) -> None:
        """A planned (maybe launched) batch that will not be completed."""

    def poll(self) -> None:
        """Serve delivery reports without waiting (between batches)."""

    def committed(self) -> None:
        """The oldest batch processed and not yet told is committed (e.g. drop its replay
        receipts). Failures here must not raise: the batch stays committed."""

    def abandon(self, batches: int) -> None:
        """The newest ``batches`` batches processed and not yet told ``committed`` failed:
        they will not be told."""

    def housekeeping(self) -> BatchStats | None:
        """Periodic work between batches (buffer releases); may raise ``TransientError``.
        Returns what it did, if anything."""
        return None


@dataclass(eq=False, slots=True)
class _Flight:
    """One batch between its poll and the confirmation of its commit."""

    firsts: dict[Partition, int]
    """where to rewind to if it fails"""
    size: int
    started: float
    outcome: BatchOutcome | None = None
    pending: PendingBatch = DONE
    seconds: float = 0.0
    """from its start until its outputs were acknowledged"""
    finished: bool = False
    """its outputs are acknowledged (``PendingBatch.finish`` returned)"""
    committing: bool = False
    """its commit was sent"""
    committed: bool = False
    """the broker confirmed its commit"""


class Runner:
    def __init__(
        self,
        source: Source,
        processor: BatchProcessor,
        clock: Clock,
        *,
        max_messages: int,
        max_wait_seconds: float,
        health: Health | None = None,
        backoff_initial_seconds: float = 0.2,
        backoff_max_seconds: float = 10.0,
        observer: RunObserver | None = None,
        tick_seconds: float = 1.0,
        max_in_flight: int = 1,
        overlap: bool | None = None,
    ) -> None:
        self._source = source
        self._processor = processor
        self._clock = clock
        self._max_messages = max_messages
        self._max_wait = max_wait_seconds
        self.health = health or Health()
        self._backoff_initial = backoff_initial_seconds
        self._backoff_max = backoff_max_seconds
        self._observer = observer
        self._tick_seconds = tick_seconds
        self._next_tick = 0.0
        self._stop = threading.Event()
        self._max_in_flight = max(max_in_flight, 1)
        self._window: deque[_Flight] = deque()
        """batches read and not yet confirmed committed, oldest first"""
        self._failure: TransientError | None = None
        """a failure found inside ``poll_batch`` (a commit, a revoke), raised after it"""
        self._commit_failed = False
        self._lost = False
        self._launched: tuple[_Flight, PlannedBatch] | None = None
        """the newest batch, its store round sent and not read yet (``processor.overlaps``)"""
        self._completed = 0
        """batches whose outputs were produced so far: a turn that launched a round and
        completed nothing has not shown that the failure before it is over"""
        if overlap is None:
            overlap = self._max_in_flight > 1
        self._overlaps = processor.overlaps and overlap
        """store rounds run while the loop goes on; by default only with more than one batch
        in flight (exactly-once outputs pass ``overlap``: one transaction open at a time, and
        the next batch's round runs while it commits)"""

    def request_shutdown(self) -> None:
        """Finish the batches in flight, commit them, then leave the loop (safe from a
        signal)."""
        self.health.stopping = True
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        backoff = self._backoff_initial
        while not self._stop.is_set():
            now = self._clock.monotonic()
            self.health.last_loop_monotonic = now
            completed = self._completed
            try:
                self._turn(now)
                if self._completed != completed or self._launched is None:
                    # the loop went round: a batch completed, or nothing waits on a round (a
                    # turn that only sent a round has not shown a failure is over: a refusal
                    # shows when the round is read, a turn later)
                    self.health.last_error = None
                    self.health.mark_ok()
                    backoff = self._backoff_initial
            except TransientError as exc:
                during_commit, self._commit_failed = self._commit_failed, False
                self._record_failure(exc, during_commit)
                self._give_up(commits=during_commit)
                self._back_off(backoff)
                backoff = min(backoff * 2, self._backoff_max)
        self._drain()

    def _turn(self, now: float) -> None:
        """One turn of the loop: poll, start the batch, finish and commit what is
        acknowledged, housekeeping.

        With an overlapping processor, starting is split: the new batch is planned (decoded,
        its store round encoded) while the previous batch's round runs in Redis; then the
        previous batch's answers are read, the new batch's round is sent, and the previous
        batch is completed (outputs built and produced) while Redis runs the new round, which
        goes on while this turn settles (commits) and the next one polls and plans. A poll
        while a round runs does not wait for messages."""
        wait = 0.0 if self._launched is not None else self._max_wait
        batch = self._source.poll_batch(self._max_messages, wait)
        flight = None
        if batch:
            flight = _Flight(first_offsets(batch), len(batch), self._clock.monotonic())
            self._window.append(flight)  # from now on a failure rewinds it too
        self._after_poll()
        self.health.mark_ok(Component.KAFKA)
        self.health.assigned = self._source.assignment
        if flight is not None and flight in self._window:
            if self._overlaps:
                self._overlap(flight, batch)
            else:
                flight.outcome, flight.pending = self._processor.start(batch)
                self._completed += 1
        else:
            self._complete_launched()
        self._settle(self._max_in_flight - 1)
        self._confirm()
        chores = self._processor.housekeeping()
        if chores is not None and self._observer:
            self._observer.batch_done(0, 0.0, chores)
        if self._observer and now >= self._next_tick:
            self._next_tick = now + self._tick_seconds
            self._observer.tick(self._source)

    def _overlap(self, flight: _Flight, batch: Sequence[RawMessage]) -> None:
        """Plan ``batch``, read the launched batch's answers, launch ``batch``, then complete
        the previous one (its outputs are built and produced while Redis runs the new
        round)."""
        planned = self._processor.plan(batch)
        try:
            previous = self._take_launched()
            if previous is not None:
                self._processor.receive(previous[1])
            self._processor.launch(planned)
        except BaseException:
            self._processor.drop(planned)
            raise
        self._launched = (flight, planned)
        if previous is not None:
            before, done = previous
            before.outcome, before.pending = self._processor.complete(done)
            self._completed += 1

    def _complete_launched(self) -> None:
        """Read the launched batch's store answers and produce its outputs."""
        launched = self._take_launched()
        if launched is not None:
            flight, planned = launched
            flight.outcome, flight.pending = self._processor.complete(planned)
            self._completed += 1

    def _take_launched(self) -> tuple[_Flight, PlannedBatch] | None:
        """The launched batch, no longer launched; ``None`` if there is none or it was given
        up meanwhile (its round is then dropped)."""
        launched, self._launched = self._launched, None
        if launched is not None and launched[0] not in self._window:
            self._processor.drop(launched[1])
            return None
        return launched

    def _drop_launched(self) -> None:
        launched, self._launched = self._launched, None
        if launched is not None:
            self._processor.drop(launched[1])

    def _after_poll(self) -> None:
        """What the callbacks run inside ``poll_batch`` found: a lost assignment drops the
        batches in flight, a failure is raised, confirmed commits are told."""
        if self._lost:
            self._lost = False
            log.warning("partitions lost: %d batches in flight dropped", len(self._window))
            self._give_up()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        self._confirm()

    def _settle(self, keep: int, *, commit: bool = True) -> list[_Flight]:
        """Finish, in order, the batches whose outputs are all acknowledged, waiting for the
        oldest ones until at most ``keep`` batches still wait; with ``commit``, commit the
        finished ones (asynchronously; also when a later one fails). Returns them."""
        self._processor.poll()
        finished: list[_Flight] = []
        try:
            waiting = [f for f in self._window if not f.finished and f.outcome is not None]
            for position, flight in enumerate(waiting):
                if not flight.pending.done():
                    if len(waiting) - position <= keep:
                        break
                    flight.pending.wait()
                flight.pending.finish()
                flight.finished = True
                flight.seconds = self._clock.monotonic() - flight.started
                finished.append(flight)
        finally:
            if commit:
                self._commit(finished, asynchronous=True)
        return finished

    def _commit(self, flights: Sequence[_Flight], *, asynchronous: bool) -> None:
        """Commit the offsets past ``flights`` (one request); asynchronously, they are marked
        committed once the broker confirmed it."""
        if not flights:
            return
        offsets = _merged(f.outcome.next_offsets for f in flights if f.outcome is not None)
        self._commit_failed = True
        for flight in flights:
            flight.committing = True
        if asynchronous:
            self._source.commit_async(offsets, lambda error: self._commit_done(flights, error))
        else:
            self._source.commit(offsets)
            self._commit_done(flights, None)
        self._commit_failed = False

    def _commit_done(self, flights: Sequence[_Flight], error: str | None) -> None:
        """The broker's answer to a commit (inside ``poll_batch``, or at once)."""
        if not flights or flights[0] not in self._window:
            return  # given up meanwhile, or committed since by a synchronous commit
        if error is not None:
            if self._failure is None:
                self._failure = KafkaUnavailableError(f"offset commit failed: {error}")
                self._commit_failed = True
            return
        for flight in flights:
            flight.committed = True

    def _confirm(self) -> None:
        """Tell the processor, in order, about the batches whose commit is confirmed."""
        while self._window and self._window[0].committed:
            flight = self._window.popleft()
            self._processor.committed()
            if self._observer and flight.outcome is not None:
                self._observer.batch_done(flight.size, flight.seconds, flight.outcome.stats)

    def _finish_all(self) -> None:
        """Finish every batch in flight and commit them all synchronously (a revoke, the
        shutdown)."""
        self._complete_launched()
        self._settle(keep=0, commit=False)
        self._commit([f for f in self._window if not f.committed], asynchronous=False)
        self._confirm()

    def _give_up(self, *, commits: bool = True) -> None:
        """Drop the batches not committed and rewind to the oldest one's first offsets. With
        ``commits`` false (the failure was not a commit's), batches whose commit was sent stay:
        their outputs are acknowledged, only the broker's answer is awaited."""
        self._drop_launched()
        firsts: dict[Partition, int] = {}
        kept: deque[_Flight] = deque()
        dropped = 0
        for flight in self._window:
            if flight.committed or (flight.committing and not commits):
                kept.append(flight)
                continue
            dropped += flight.outcome is not None
            for partition, offset in flight.firsts.items():
                firsts[partition] = min(firsts.get(partition, offset), offset)
        self._window = kept if not commits else deque()
        self._processor.abandon(dropped if not commits else len(kept) + dropped)
        if firsts:
            self._source.rewind(firsts)

    def partitions_revoked(self, partitions: Sequence[Partition]) -> None:
        """Rebalance callback, before ``partitions`` go: finish and commit every batch in
        flight. A failure is raised after ``poll_batch`` (the next owner re-reads what was not
        committed)."""
        if not self._window or self._failure is not None:
            return
        try:
            self._finish_all()
        except TransientError as exc:
            self._failure = exc

    def partitions_lost(self, partitions: Sequence[Partition]) -> None:
        """Rebalance callback: ``partitions`` belong to another member already; the batches in
        flight are dropped uncommitted after ``poll_batch``."""
        if self._window:
            self._lost = True

    def _drain(self) -> None:
        """Shutdown: finish and commit the batches in flight (or leave them uncommitted)."""
        if not self._window:
            return
        try:
            self._finish_all()
        except TransientError as exc:
            log.warning("batches in flight not committed at shutdown: %s", exc)
            self._give_up()

    def _record_failure(self, exc: TransientError, during_commit: bool) -> None:
        self.health.last_error = f"{type(exc).__name__}: {exc}"
        if self._observer:
            self._observer.transient_error(exc.component, during_commit)
        self.health.mark_down(exc.component)
        log.warning("batch not committed, will retry: %s", self.health.last_error)

    def _back_off(self, seconds: float) -> None:
        """Pause every assigned partition and keep serving the group while waiting."""
        paused = self._source.assignment
        self._source.pause(paused)
        deadline = self._clock.monotonic() + seconds
        try:
            while not self._stop.is_set() and self._clock.monotonic() < deadline:
                self.health.last_loop_monotonic = self._clock.monotonic()
                # paused partitions return nothing; polling keeps the membership and runs
                # rebalance callbacks
                stray = self._source.poll_batch(self._max_messages, min(0.2, seconds))
                if stray:
                    self._source.rewind(first_offsets(stray))
        finally:
            self._source.resume(self._source.assignment & paused)


def _merged(offsets: Iterable[dict[Partition, int]]) -> dict[Partition, int]:
    """Per partition, the highest of ``offsets``: what covers them all."""
    merged: dict[Partition, int] = {}
    for each in offsets:
        for partition, offset in each.items():
            if offset > merged.get(partition, -1):
                merged[partition] = offset
    return merged
