"""Exactly-once outputs in the loop: one transaction open at a time, committed in the turn that
completes its batch, while the next batch's store round runs in Redis. The runner with the real
pipeline over the round-logging reference store of ``test_runner_overlap``, a sink that keeps
transactions as a broker does (``test_pipeline_exactly_once.TransactionalSink``) and a scripted
source whose commit is the transaction's commit, as ``worker.kafka.transactions`` makes it."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tests.unit.test_orchestrator import TOPICS
from tests.unit.test_pipeline_exactly_once import Transaction, TransactionalSink
from tests.unit.test_runner_in_flight import PARTITION, Hook, Script, delivered_inputs, run
from tests.unit.test_runner_overlap import Rounds, steps
from worker.errors import KafkaUnavailableError
from worker.kafka.records import Partition, RawMessage


class TransactionalScript(Script):
    """``Script`` whose commit commits the sink's open transaction with the offsets (logged to
    the store's log as ("commit", offset)) and whose rewind aborts it. ``open_at_poll``: the
    records produced and not committed at each poll."""

    def __init__(
        self,
        sink: TransactionalSink,
        store: Rounds,
        count: int,
        batch: int,
        hooks: Mapping[int, Hook] | None = None,
    ) -> None:
        super().__init__(sink, count, batch, hooks)
        self.transactions = sink
        self.store = store
        self.open_at_poll: list[int] = []
        self.fail_transaction_commits = 0

    def poll_batch(self, max_messages: int, timeout: float) -> list[RawMessage]:
        self.open_at_poll.append(len(self.transactions.open) + self.transactions.pending)
        return super().poll_batch(max_messages, timeout)

    def commit(self, next_offsets: Mapping[Partition, int]) -> None:
        if self.fail_transaction_commits:
            self.fail_transaction_commits -= 1
            raise KafkaUnavailableError("transaction commit failed")
        self.transactions.commit()
        super().commit(next_offsets)
        self.store.log.append(("commit", str(next_offsets[PARTITION])))

    def commit_async(
        self, next_offsets: Mapping[Partition, int], done: Callable[[str | None], None]
    ) -> None:
        self.commit(next_offsets)
        done(None)

    def rewind(self, first_offsets: Mapping[Partition, int]) -> None:
        self.transactions.abort_transaction(0)
        super().rewind(first_offsets)


def run_exactly_once(
    count: int, hooks: Mapping[int, Hook] | None = None, *, overlap: bool = True
) -> tuple[TransactionalScript, Rounds]:
    store, sink = Rounds(), TransactionalSink(limits={})
    script = TransactionalScript(sink, store, count=count, batch=2, hooks=hooks)
    run(script, max_in_flight=1, store=store, overlap=overlap, transaction=Transaction())
    return script, store


def test_the_next_round_runs_while_a_transaction_commits_and_none_is_open_at_a_poll() -> None:
    script, store = run_exactly_once(8)

    assert delivered_inputs(script.sink) == [f"u{i}" for i in range(8)]
    assert [offset for _, offset in script.commits] == [2, 4, 6, 8]
    assert script.open_at_poll == [0] * script.polls
    for batch in range(1, 4):
        this = steps(store.log, f"u{2 * batch}")
        before = store.log.index(("commit", str(2 * batch)))
        # the batch's round was sent before the previous batch's transaction committed, and
        # read after it
        assert this["send"] < before < this["read"]
        assert steps(store.log, f"u{2 * batch - 2}")["read"] < this["send"]
    assert not any(step == "abandon" for step, _ in store.log)


def test_a_revoke_completes_the_launched_batch_and_commits_its_transaction() -> None:
    at_revoke: list[tuple[list[tuple[str, str]], int]] = []

    def revoke(script: Script) -> None:
        assert script.runner is not None
        assert isinstance(script, TransactionalScript)
        before = len(script.store.log)
        script.runner.partitions_revoked([PARTITION])
        at_revoke.append((script.store.log[before:], len(script.transactions.open)))

    script, _store = run_exactly_once(6, hooks={3: revoke})

    ((inside, still_open),) = at_revoke
    # at the third poll the second batch (u2, u3) was launched: read, delivered and committed
    # inside the callback, nothing left open for the next owner to miss
    assert inside == [("read", "u2"), ("commit", "4")]
    assert still_open == 0
    assert script.rewinds == []
    assert delivered_inputs(script.sink) == [f"u{i}" for i in range(6)]


def test_a_failed_transaction_commit_abandons_the_launched_round_and_replays_once() -> None:
    def fail_next_commit(script: Script) -> None:
        assert isinstance(script, TransactionalScript)
        script.fail_transaction_commits = 1

    script, store = run_exactly_once(8, hooks={2: fail_next_commit})

    # the first batch's commit failed while the second batch's round was out: that round was
    # read to the end and dropped, the transaction aborted, both batches read again
    assert ("abandon", "u2") in store.log
    assert script.rewinds == [0]
    assert script.transactions.aborts >= 1
    assert delivered_inputs(script.sink) == [f"u{i}" for i in range(8)]  # each exactly once
    assert script.commits[-1][1] == 8


def test_without_overlap_each_batch_is_read_delivered_and_committed_before_the_next_poll() -> None:
    script, store = run_exactly_once(6, overlap=False)  # batch.max_in_flight = 1

    assert delivered_inputs(script.sink) == [f"u{i}" for i in range(6)]
    assert [offset for _, offset in script.commits] == [2, 4, 6]
    assert script.open_at_poll == [0] * script.polls
    for batch in range(3):
        this = steps(store.log, f"u{2 * batch}")
        assert this["read"] == this["send"] + 1  # nothing between sending and reading
        assert this["read"] < store.log.index(("commit", str(2 * batch + 2)))


def test_a_failed_delivery_replays_and_each_batch_forgets_its_receipts_once_committed() -> None:
    def break_enriched(script: Script) -> None:
        script.sink.broken = {TOPICS.enriched}

    def repair(script: Script) -> None:
        script.sink.broken = set()

    script, store = run_exactly_once(8, hooks={2: break_enriched, 3: repair})

    assert script.rewinds  # the delivery of the first batch failed and it was read again
    assert delivered_inputs(script.sink) == [f"u{i}" for i in range(8)]
    # the failed attempt left nothing to forget: each batch's receipts go once, in order, when
    # its own commit is confirmed (the last one too)
    refs = [ref for _tenant, batch in store.forgotten for ref in batch]
    assert refs == [f"{TOPICS.track}/0/{i}" for i in range(8)]
