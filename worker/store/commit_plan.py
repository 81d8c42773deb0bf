"""One call planned in the worker (``redis.rules = worker``): its data read, the engine run on
it, its commit encoded (docs/ARCHITECTURE.md, *Rules in the worker*, step 5).

``prefetched`` reads the data of a wave's calls, every tenant's at once (``prefetch.py``: one
pipeline, then one per level of parents; misses read on demand). ``plan_commit`` takes a call
(the resolve script's ARGV, parsed), lays the writes of the tenant's earlier calls of the round
over its tenant's state (``engine/overlay.py``: they are planned, not run yet), runs the engine
(``engine/``) on that, recording every read, and returns the ARGV of ``lua/commit_batch.lua``:
the reads as checks, the writes, the reply. It raises ``Unsupported`` (the call is for the
script), ``NeedsFreshReads`` (plan it again once the earlier calls answered), ``EngineError`` /
``RecordError`` (data the script refuses too) and what redis-py raises for a missed read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import redis

from worker.store import engine
from worker.store.engine.cache import DecodeCache
from worker.store.engine.call import Call
from worker.store.engine.commit import commit_args, reply_texts
from worker.store.engine.overlay import Overlay
from worker.store.engine.reads import Recording
from worker.store.engine.state import Writes
from worker.store.keys import TenantKeys
from worker.store.prefetch import PrefetchedState, prefetch_many

STALE: Final = "IWSTALE"
"""First word of ``commit_batch.lua``'s refusal of a commit whose reads changed."""


class RulesMode(StrEnum):
    """``redis.rules``: where the identity rules run."""

    SCRIPT = "script"
    """in Redis: the resolve script (``lua/resolve_batch.lua``)"""
    WORKER = "worker"
    """in the worker (``engine/``), their writes committed by ``lua/commit_batch.lua``"""


@dataclass(slots=True)
class RulesStats:
    """Counts of the rules in the worker, since the store started."""

    commits: int = 0
    """calls planned in the worker and sent as commits"""
    stale: int = 0
    """commits refused because something they read changed (planned again)"""
    deferred: int = 0
    """calls planned in a later wave of their round (``NeedsFreshReads``)"""
    script: int = 0
    """calls sent to the resolve script instead (``Unsupported``, or refused ``MAX_STALE``
    times)"""
    misses: int = 0
    """reads the prefetch did not answer (one round trip each)"""

    def counts(self) -> dict[str, int]:
        """By the label of ``identity_worker_worker_rules_total``."""
        return {
            "commit": self.commits,
            "stale": self.stale,
            "deferred": self.deferred,
            "script": self.script,
            "read_missed": self.misses,
        }


def is_stale(error: Exception) -> bool:
    """Whether ``error`` (a reply) is a commit's refusal for stale reads."""
    return str(error).startswith(STALE)


@dataclass(frozen=True, slots=True)
class PlannedCommit:
    """A call's commit: the ARGV of ``commit_batch.lua``, the writes it makes (for the later
    calls' overlay), and how many reads the prefetch missed (each one more round trip)."""

    args: list[bytes]
    writes: Writes
    misses: int
    entries: bytes = b"[]"
    """the reply entries (a JSON array text): the commit answers the next due time alone"""
    released: bytes = b"[]"
    """the released entries (a JSON array text)"""

    def reply(self, due: bytes) -> bytes:
        """The whole reply, as the resolve script's, from the commit's (the next due time)."""
        return b"[" + self.entries + b"," + self.released + b"," + due + b"]"


def prefetched(
    client: redis.Redis,
    requests: Sequence[tuple[TenantKeys, Sequence[Call]]],
    forgotten: Mapping[str, Iterable[tuple[bytes, bytes]]],
) -> list[PrefetchedState]:
    """Per request (a tenant's keys and the calls to plan), their data in one state, read for
    all requests together (``prefetch_many``); ``forgotten``: per tenant, the receipts (bucket,
    source) the round deletes before its calls (``forget``), read as gone."""
    states = prefetch_many(client, requests)
    for (keys, _), state in zip(requests, states, strict=True):
        state.forgotten(forgotten.get(keys.tenant, ()))
    return states


def plan_commit(
    state: PrefetchedState,
    call: Call,
    earlier: Overlay | None,
    limits: tuple[int, int],
    cache: DecodeCache | None = None,
) -> PlannedCommit:
    """The commit of ``call`` (the engine's call: ``codec.engine_call``) from ``state``,
    after ``earlier`` (``state`` with the writes of the tenant's calls planned before it in the
    round laid on; None: none); ``limits``: the reply and receipt TTLs (ms); ``cache``: the
    store's decoded records (``engine/cache.py``)."""
    misses = state.misses
    recording = Recording(state if earlier is None else earlier)
    outcome = engine.run(recording, call, cache)
    entries, released = reply_texts(outcome)
    return PlannedCommit(
        commit_args(recording.reads, outcome, limits, echo=False),
        outcome.writes,
        state.misses - misses,
        entries,
        released,
    )
