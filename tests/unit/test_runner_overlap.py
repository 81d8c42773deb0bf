"""The store round of a batch runs while the next batch is polled and planned (at-least-once,
more than one batch in flight): the runner with the real pipeline over the pure reference store
offered as a store of rounds (``plan_many``), whose rounds log when they are sent, read or
abandoned, and the scripted source of ``test_runner_in_flight``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from tests.unit.test_orchestrator import TOPICS, MemorySink, Report, Unbuffered
from tests.unit.test_runner_in_flight import PARTITION, Script, delivered_inputs, run
from worker.errors import TransientStoreError
from worker.identity.model import IdentityEvent
from worker.kafka.records import OutputRecord, Partition, RawMessage
from worker.store.base import BatchResult

Log = list[tuple[str, str]]


class Rounds(Unbuffered):
    """The reference store answering in rounds: a round resolves its requests when it is read;
    ``log`` gets ("send" | "read" | "abandon", first distinct id of the round) and the polls
    ("poll", number) that the script's hooks add. ``fail_reads``: the next reads raise."""

    def __init__(self) -> None:
        super().__init__()
        self.log: Log = []
        self.fail_reads = 0

    def plan_many(
        self, requests: Sequence[tuple[str, Sequence[IdentityEvent]]], now_ms: int
    ) -> Round:
        return Round(self, requests, now_ms)


class Round:
    def __init__(
        self, store: Rounds, requests: Sequence[tuple[str, Sequence[IdentityEvent]]], now_ms: int
    ) -> None:
        self.store = store
        self.requests = requests
        self.now_ms = now_ms
        self.name = requests[0][1][0].distinct_id

    def send(self) -> None:
        self.store.log.append(("send", self.name))

    def results(self) -> list[BatchResult | Exception]:
        self.store.log.append(("read", self.name))
        if self.store.fail_reads:
            self.store.fail_reads -= 1
            raise TransientStoreError("Redis is away")
        return [self.store.resolve_buffered(t, events, self.now_ms) for t, events in self.requests]

    def abandon(self) -> None:
        self.store.log.append(("abandon", self.name))


def logging_polls(store: Rounds, count: int) -> dict[int, object]:
    def hook(number: int) -> object:
        return lambda script: store.log.append(("poll", str(number)))

    return {n: hook(n) for n in range(1, count)}


def steps(log: Log, name: str) -> dict[str, int]:
    """Where each step of the round of ``name`` is in ``log`` (its last occurrence)."""
    return {step: i for i, (step, what) in enumerate(log) if what == name}


def test_a_batch_round_runs_while_the_next_batch_is_polled_and_planned() -> None:
    store, sink = Rounds(), MemorySink()
    script = Script(sink, count=8, batch=2, hooks=logging_polls(store, 20))  # type: ignore[arg-type]
    run(script, max_in_flight=3, store=store)

    assert delivered_inputs(sink) == [f"u{i}" for i in range(8)]
    assert script.commits[-1][1] == 8
    polls = [i for i, (step, _) in enumerate(store.log) if step == "poll"]
    for batch in range(4):
        round_ = steps(store.log, f"u{2 * batch}")
        # sent in the turn of poll `batch + 1`, read after the next poll
        assert polls[batch] < round_["send"] < polls[batch + 1] < round_["read"]
        if batch < 3:  # read before the next round goes: one round at a time on the store
            assert round_["read"] < steps(store.log, f"u{2 * batch + 2}")["send"]
    assert not any(step == "abandon" for step, _ in store.log)


def test_one_batch_in_flight_reads_each_round_before_the_next_poll() -> None:
    store, sink = Rounds(), MemorySink()
    script = Script(sink, count=6, batch=2, hooks=logging_polls(store, 20))  # type: ignore[arg-type]
    run(script, max_in_flight=1, store=store)

    assert delivered_inputs(sink) == [f"u{i}" for i in range(6)]
    for batch in range(3):
        round_ = steps(store.log, f"u{2 * batch}")
        assert round_["read"] == round_["send"] + 1  # nothing between sending and reading


def test_a_lost_partition_abandons_the_launched_round_and_replays_it() -> None:
    store, sink = Rounds(), MemorySink()

    def lose(script: Script) -> None:
        assert script.runner is not None
        script.runner.partitions_lost([PARTITION])

    script = Script(sink, count=6, batch=2, hooks={2: lose})
    run(script, max_in_flight=3, store=store)

    # the first batch's round was sent, then the partition was lost before it was read
    assert store.log[:2] == [("send", "u0"), ("abandon", "u0")]
    assert script.rewinds == [0]
    assert delivered_inputs(sink) == [f"u{i}" for i in range(6)]
    assert script.commits[-1][1] == 6


def test_a_failed_read_abandons_the_next_batch_planned_and_replays_both() -> None:
    store, sink = Rounds(), MemorySink()

    def fail_next_read(script: Script) -> None:
        store.fail_reads = 1

    script = Script(sink, count=8, batch=2, hooks={2: fail_next_read})
    run(script, max_in_flight=3, store=store)

    # poll 2 brought u2-u3, planned while the round of u0-u1 ran; reading that round failed,
    # so the round of u2-u3, planned but never sent, was dropped: both batches are read again
    assert store.log[:3] == [("send", "u0"), ("read", "u0"), ("abandon", "u2")]
    assert script.rewinds == [0]
    assert delivered_inputs(sink) == [f"u{i}" for i in range(8)]
    assert script.commits[-1][1] == 8


def test_a_revoke_reads_the_launched_round_and_commits_it_before_the_partitions_go() -> None:
    store, sink = Rounds(), MemorySink()
    at_revoke: list[tuple[int, Log]] = []

    def revoke(script: Script) -> None:
        assert script.runner is not None
        script.runner.partitions_revoked([PARTITION])
        at_revoke.append((script.confirmed, list(store.log)))

    script = Script(sink, count=6, batch=2, hooks={3: revoke})
    run(script, max_in_flight=3, store=store)

    ((confirmed, log),) = at_revoke
    assert confirmed == 4  # both batches polled so far, the launched one included
    assert log[-1] == ("read", "u2")
    assert script.rewinds == []
    assert delivered_inputs(sink) == [f"u{i}" for i in range(6)]


class LoggingSink(MemorySink):
    """Logs ("produce", distinct id) of each enriched event to a store's log."""

    def __init__(self, log: Log) -> None:
        super().__init__()
        self.log = log

    def produce(self, record: OutputRecord, tag: int = 0, report: Report | None = None) -> None:
        if record.topic == TOPICS.enriched:
            self.log.append(("produce", json.loads(record.value or b"")["distinct_id"]))
        super().produce(record, tag, report)


def test_a_batch_outputs_are_produced_while_the_next_batch_round_runs() -> None:
    store = Rounds()
    sink = LoggingSink(store.log)
    script = Script(sink, count=6, batch=2)
    run(script, max_in_flight=3, store=store)

    assert delivered_inputs(sink) == [f"u{i}" for i in range(6)]
    for batch in range(2):
        produced = store.log.index(("produce", f"u{2 * batch}"))
        mine, following = steps(store.log, f"u{2 * batch}"), steps(store.log, f"u{2 * batch + 2}")
        assert mine["read"] < following["send"] < produced < following["read"]


class TimedPauses(Script):
    """A ``Script`` that records how long each back-off paused the partitions."""

    def __init__(self, sink: MemorySink, count: int, batch: int, hooks: dict[int, object]) -> None:
        super().__init__(sink, count, batch, hooks)  # type: ignore[arg-type]
        self.pauses: list[float] = []
        self._paused_at = 0.0

    def pause(self, partitions: Iterable[Partition]) -> None:
        super().pause(partitions)
        self._paused_at = self.clock.monotonic()

    def resume(self, partitions: Iterable[Partition]) -> None:
        super().resume(partitions)
        self.pauses.append(round(self.clock.monotonic() - self._paused_at, 3))


def test_reads_failing_again_after_each_retry_back_off_longer_each_time() -> None:
    # a refusal that lasts (an ACL without the script's command) shows at each round's read,
    # one turn after the turn that sent it: that turn must not count as the failure's end
    store, sink = Rounds(), MemorySink()

    def fail_reads(script: Script) -> None:
        store.fail_reads = 3

    script = TimedPauses(sink, count=8, batch=2, hooks={2: fail_reads})
    run(script, max_in_flight=3, store=store)

    # 0.2, 0.4, 0.8 s (the script's polls advance its clock by 0.2 s at most)
    assert len(script.pauses) == 3
    assert script.pauses[0] == 0.2
    assert script.pauses[0] < script.pauses[1] < script.pauses[2]
    assert delivered_inputs(sink) == [f"u{i}" for i in range(8)]
    assert script.commits[-1][1] == 8


class ReadinessAtPolls(TimedPauses):
    """A ``TimedPauses`` that records, at each poll outside a back-off, whether the runner's
    health says Redis answers."""

    def __init__(self, sink: MemorySink, count: int, batch: int, hooks: dict[int, object]) -> None:
        super().__init__(sink, count, batch, hooks)
        self.redis_ok: list[bool] = []

    def poll_batch(self, max_messages: int, timeout: float) -> list[RawMessage]:
        if not self.paused and self.runner is not None:
            self.redis_ok.append(self.runner.health.redis_ok)
        return super().poll_batch(max_messages, timeout)


def test_a_turn_that_only_sent_a_round_does_not_report_redis_back() -> None:
    store, sink = Rounds(), MemorySink()

    def fail_reads(script: Script) -> None:
        store.fail_reads = 3

    script = ReadinessAtPolls(sink, count=8, batch=2, hooks={2: fail_reads})
    run(script, max_in_flight=3, store=store)

    # Redis reported down at the first refused read, and up again only once a batch completed:
    # no poll between two refusals sees it up (the turn that sent the next round is not proof)
    changes = [
        i for i in range(1, len(script.redis_ok)) if script.redis_ok[i] != script.redis_ok[i - 1]
    ]
    assert len(changes) == 2, script.redis_ok
    assert script.redis_ok[0]
    assert not script.redis_ok[changes[0]]
    assert script.redis_ok[-1]
    assert delivered_inputs(sink) == [f"u{i}" for i in range(8)]
