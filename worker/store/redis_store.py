"""``RedisIdentityStore``: the identity store on Redis, one Lua call per chunk of a batch.

Layout of the data: ``keys.py``. Wire format: ``codec.py`` and ``protocol.py``. The rules:
``lua/resolve_batch.lua`` and its modules in ``lua/resolve/``, joined by ``lua_loader.py`` (an
executable port of the stateful part of ``worker.identity.reference``).

Retries and exactly-once
------------------------
A chunk is one call of the script (``EVALSHA``, or ``FCALL`` of the same code loaded as a function
library: ``script_call.py``), and the script applies it whole or not at all (Redis runs a script
atomically but does not roll it back on an error, so the script checks its input and reads
everything before its first write; see the top of ``resolve_batch.lua``). Connection drops,
timeouts, ``LOADING``, ``BUSY``, ``READONLY`` and the like are retried with exponential backoff
and jitter, and raise ``TransientStoreError`` after ``retry_attempts`` attempts; anything else (a
script error, ``OOM``, ``WRONGTYPE`` from a foreign writer, bad credentials) raises
``PermanentStoreError`` at once. redis-py exceptions never leave this module.

Replays: an event with a ``source`` (its input position) is answered once. The script keeps
its reply entry as a receipt (``keys.py``: one hash per tenant, input partition and offset
range, with a TTL of ``receipt_ttl_ms`` refreshed on write) in the same atomic step as its
writes, and answers a later event with the same source from the receipt without applying
anything, so a batch replayed after a crash or a rebalance gets the original resolutions
(``merged``, ``person_created``, ``person_changed``, overrides) and its released buffered
entries again. ``forget`` drops receipts once the pipeline committed their offsets.

Rounds: the chunk calls of a batch (of every tenant the pipeline hands over together,
``resolve_buffered_many``) are sent in one pipelined round on one connection
(``pipelined.py``), and each reply is decoded as it arrives, while Redis runs the next call.
Redis runs a connection's commands in order, so a tenant's chunks run in order. Each call but a
tenant's first of the round names its predecessor's reply key (``KEYS[10]``): the script
refuses it (``IWCHAIN``, nothing applied) when that reply does not exist, that is when the
predecessor was refused or did not run. So a tenant's chunks apply in order, each only after the
one before it, exactly as if each waited for the previous reply: a refused chunk ``k`` (a script
error, which ``pipeline.resolving`` narrows down by bisection) leaves chunks ``1..k-1`` applied
and ``k+1..`` not, and so does ``NOSCRIPT`` or ``Function not found`` (the script is loaded
and the calls from ``k`` on are sent again). A reply that cannot be decoded is the exception:
it ran, and so did the tenant's later chunks of the round (their receipts answer the
bisection's replays).

A lost reply: a connection that drops after the server ran the script but before the reply
arrived. Each call carries a fresh token and the script keeps its reply under
``reply:<token>`` (for ``reply_ttl_ms``); the calls of a round whose replies were not read are
sent again, with the same tokens, and a call that already ran gets its kept reply back (the
ones that did not run, run). Receipts cover this for events with a source, but not release
calls or events without one, so the token stays. A call deletes one reply of an earlier round
of its tenant (``KEYS[4]``), never one of its own round, whose replies may not have been read
yet: a busy worker keeps about one round of replies per tenant; the TTL removes the rest. With
``reply_ttl_ms=0`` nothing is kept to chain on: the calls go one at a time, as on a Redis
Cluster client (whose tenants live on different nodes).

Rules in the worker (``rules=worker``, ``redis.rules``; docs/ARCHITECTURE.md, *Rules in the
worker*): a call is planned when its round is sent (``commit_plan.py``: its data read, the
engine run on it over the writes of the tenant's calls planned before it in the round, the
commit encoded) and sent as a call of ``lua/commit_batch.lua`` with the resolve call's KEYS,
chained and kept the same way, so everything above holds for it. A commit whose reads changed
meanwhile (another worker on the tenant) is refused whole (``IWSTALE``): it and the tenant's
later calls (refused by the chain) are planned again from fresh reads and sent in a further
wave of the round, in order; after ``MAX_STALE`` refusals, and for a call the engine does not
cover (``Unsupported``: a format 6 record), the tenant's calls from there on go to the resolve
script. A call that needs the buffer as an earlier call of its round leaves it
(``NeedsFreshReads``) waits for the next wave.

The due-tenants index (``<prefix>:buffer-due``, docs/BUFFER.md) is updated after each round,
per tenant, from the next due time the tenant's last call that touched its buffer returned (a
refused tenant's too: its earlier calls ran).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from threading import Lock
from typing import TypeVar, cast

import redis

from worker.errors import (
    ConfigError,
    InternalError,
    NeedsFreshReads,
    PermanentStoreError,
    StoreAccessError,
    StoreError,
    TransientStoreError,
    Unsupported,
)
from worker.identity import rules
from worker.identity.config import IdentityConfig
from worker.identity.deletion import Deletion
from worker.identity.ids import PERSON_NAMESPACE
from worker.identity.model import (
    Group,
    IdentityEvent,
    Person,
    PreparedOp,
    PropertyState,
    Resolution,
)
from worker.store import (
    call_cost,
    codec,
    group_reads,
    person_reads,
    person_record,
    pipelined,
    protocol,
)
from worker.store.base import BatchResult, BufferStats, Released
from worker.store.commit_plan import (
    PlannedCommit,
    RulesMode,
    RulesStats,
    is_stale,
    plan_commit,
    prefetched,
)
from worker.store.engine.cache import DecodeCache
from worker.store.engine.call import Call as EngineCall
from worker.store.engine.overlay import Overlay
from worker.store.keys import TenantKeys, due_index, receipt_bucket
from worker.store.lua_loader import load_library, load_script
from worker.store.prefetch import PrefetchedState
from worker.store.script_call import ScriptCall, ScriptCommand

DEFAULT_MAX_OPS_PER_CALL = 64
"""Operations per script call. Measured with tests/bench/bench_store.py on the 2-vCPU
development VM (a slow machine: a bare ``EVALSHA "return 1"`` takes 2 µs of server time), the
typical mix (80% track, a quarter with a few ``$set``; 15% identify; 5% alias; Zipf ids) costs
about 23 µs of server time per operation (tests/bench/lua_profile.py), so 64 operations keep a
call at about 1.4 ms (1.8 at most), under the ~2 ms that keeps Redis responsive to other
clients. On faster hardware raise it (each call
also costs a fixed ~50 µs here)."""

DEFAULT_MAX_CALL_COST = 96
"""Cost of the ops of one script call, in plain-track units (``call_cost.op_cost``: a track of
a known id without property operations 1; property or group operations +2, a merge +1, +1 per
8 property operations). 64 plain tracks cost 64; the benchmark mixes cost 115-125 per 64 ops,
so their calls hold about 50 ops, and calls of identifies with ``$set`` 24: a call stays near
1.5 ms of server time on the development VM (96 plain tracks' worth, 15.7 µs each), where 64
ops of the heavy kinds took up to 2.9 ms (docs/BENCHMARKS.md section 5)."""

DEFAULT_REPLY_TTL_MS = 120_000
"""How long a call's reply is kept for a retry. Longer than the worst retry schedule (and than a
Redis restart) so a retry never misses it; the next call of the tenant deletes it sooner."""

DEFAULT_RECEIPT_TTL_MS = 3_600_000
"""How long a receipt hash lives after its last write when ``forget`` never comes (a crash after
the offsets were committed): ``redis.receipt_ttl_seconds``."""

T = TypeVar("T")

RedisClient = redis.Redis | redis.RedisCluster
"""A single Redis (or a primary behind Sentinel) or a Redis Cluster: every call of the store
touches keys of one tenant, which share one hash slot."""

_TRANSIENT_REPLIES = ("BUSY", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")


log = logging.getLogger(__name__)

MAX_STALE = 3
"""Refusals (``IWSTALE``) of one call's commit before the call goes to the resolve script,
which cannot be refused so (``rules=worker``)."""

_MAX_PENDING_FORGETS = 50_000
"""Receipts ``forget`` may hold back before it sends their ``HDEL``s on its own."""


def classify(exc: Exception) -> type[StoreError]:
    """The store error a redis-py (or socket) exception becomes: a refusal of the worker's user
    (``StoreAccessError``) is retried by the runner, never pinned on an event."""
    access = (
        redis.exceptions.AuthenticationError,
        redis.exceptions.AuthorizationError,
        redis.exceptions.NoPermissionError,
    )
    transient = (
        redis.exceptions.ConnectionError,  # includes BusyLoadingError (LOADING)
        redis.exceptions.TimeoutError,
        redis.exceptions.ReadOnlyError,
        redis.exceptions.MasterDownError,
        redis.exceptions.ClusterDownError,
        redis.exceptions.TryAgainError,
        OSError,
    )
    if isinstance(exc, access):
        return StoreAccessError
    if isinstance(exc, transient):
        return TransientStoreError
    if isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(_TRANSIENT_REPLIES):
        return TransientStoreError
    return PermanentStoreError


class RedisIdentityStore:
    """The ``IdentityStore`` on Redis. Thread-safe if the client is (redis-py's pool is).

    ``prefix`` starts every key (tests use a fresh one to isolate themselves);
    ``max_ops_per_call`` and ``max_call_cost`` bound the work of one script call (ops, and
    their cost in plain-track units: ``call_cost``); ``retry_attempts`` bounds the
    attempts per call (backoff ``retry_base_delay_s * 2**n``, capped at ``retry_max_delay_s``,
    with full jitter); ``script_command`` says how the resolve script is called
    (``script_call.py``: ``auto``, ``fcall`` or ``evalsha``); ``rules`` where the rules run
    (``script``: in Redis, the resolve script; ``worker``: here, their writes committed, above);
    ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        client: RedisClient,
        config: IdentityConfig,
        *,
        prefix: str = "iw",
        max_ops_per_call: int = DEFAULT_MAX_OPS_PER_CALL,
        max_call_cost: int = DEFAULT_MAX_CALL_COST,
        retry_attempts: int = 6,
        retry_base_delay_s: float = 0.05,
        retry_max_delay_s: float = 2.0,
        reply_ttl_ms: int = DEFAULT_REPLY_TTL_MS,
        receipt_ttl_ms: int = DEFAULT_RECEIPT_TTL_MS,
        buffer: codec.BufferPolicy = codec.NO_BUFFER,
        script_command: ScriptCommand = ScriptCommand.AUTO,
        rules: RulesMode = RulesMode.SCRIPT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_ops_per_call < 1:
            raise ConfigError("max_ops_per_call must be at least 1")
        if max_call_cost < 1:
            raise ConfigError("max_call_cost must be at least 1")
        if retry_attempts < 1:
            raise ConfigError("retry_attempts must be at least 1")
        if reply_ttl_ms < 0:
            raise ConfigError("reply_ttl_ms must not be negative")
        if receipt_ttl_ms < 1:
            raise ConfigError("receipt_ttl_ms must be positive")
        try:
            TenantKeys.of(prefix, "")  # validates the prefix
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self._client = client
        self._config = config
        self._prefix = prefix
        self._max_ops = max_ops_per_call
        self._max_cost = max_call_cost
        self._attempts = retry_attempts
        self._base_delay = retry_base_delay_s
        self._max_delay = retry_max_delay_s
        self._limits = codec.CallLimits.of(config, reply_ttl_ms, receipt_ttl_ms)
        self._sleep = sleep
        self._script_command = ScriptCommand(script_command)
        self._script: ScriptCall | None = None
        """how the resolve script is called: chosen on first use (``script_call``)"""
        self._read = client.register_script(load_script("read_person.lua"))
        self._due_update = client.register_script(load_script("due_index.lua"))
        self._delete = client.register_script(load_script("delete_person.lua"))
        self._due_index = due_index(prefix)
        self._previous_reply: dict[str, list[str]] = {}
        """per tenant, tokens of replies already read (of earlier rounds): each call deletes one"""
        self._chained = reply_ttl_ms > 0
        """calls chain on their predecessor's kept reply; without one, one call at a time"""
        self._forgotten: list[list[bytes]] = []
        """``HDEL``s of ``forget`` not sent yet: they lead the next round"""
        self._forgotten_fields = 0
        self._forgotten_receipts: dict[str, list[tuple[bytes, bytes]]] = {}
        """per tenant, the receipts (bucket, source) of ``_forgotten`` (``rules=worker``)"""
        self._lock = Lock()
        self._buffer = buffer
        self._tenant_index = f"{prefix}:buffered-tenants"
        self._indexed: set[str] = set()
        self._rules = RulesMode(rules)
        self._commit = ScriptCall.evalsha(load_script("commit_batch.lua"))
        self._ttls = (reply_ttl_ms, receipt_ttl_ms)
        self._decoded = DecodeCache()
        """records and property states the engine decoded or encoded, by their bytes"""
        self.rules_stats = RulesStats()
        """what the rules in the worker did so far (``rules=worker``)"""

    @property
    def config(self) -> IdentityConfig:
        return self._config

    def script_call(self) -> ScriptCall:
        """How the resolve script is called, chosen (and a library loaded) on first use:
        ``FCALL`` of the function library where ``script_command`` allows and Redis takes it,
        else ``EVALSHA``. Raises ``TransientStoreError`` when Redis cannot be reached and
        ``PermanentStoreError`` when it is over ``maxmemory`` (the choice is made again on the
        next call), ``PermanentStoreError`` when ``fcall`` was asked for and Redis refuses
        ``FUNCTION LOAD``."""
        chosen = self._script
        if chosen is None:
            chosen = self._script = self._choose_script_call()
        return chosen

    def _choose_script_call(self) -> ScriptCall:
        mode = self._script_command
        script = ScriptCall.evalsha(load_script("resolve_batch.lua"))
        cluster = isinstance(self._client, redis.RedisCluster)
        if mode is ScriptCommand.EVALSHA or (mode is ScriptCommand.AUTO and cluster):
            return script  # loaded by the first NOSCRIPT
        library = ScriptCall.fcall(load_library("resolve_batch.lua"))
        try:
            self._call(lambda: library.load(self._client))
        except (PermanentStoreError, StoreAccessError) as exc:
            if isinstance(exc.__cause__, redis.exceptions.OutOfMemoryError):
                raise  # a full Redis refuses every write: choose once it takes them again
            if mode is ScriptCommand.FCALL:
                raise PermanentStoreError(
                    f"redis.script_command is fcall, but Redis refused FUNCTION LOAD: {exc}"
                ) from exc
            log.warning(
                "Redis refused FUNCTION LOAD (%s): the resolve script is called with EVALSHA "
                "(redis.script_command=auto)",
                exc,
            )
            return script
        log.info("the resolve script is called as function %s", library.target.decode())
        return library

    def keys(self, tenant: str) -> TenantKeys:
        """The key schema of ``tenant`` under this store's prefix."""
        return TenantKeys(self._prefix, tenant)

    # -- IdentityStore ---------------------------------------------------------------------

    def resolve_batch(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
    ) -> list[Resolution]:
        """Resolve ``events`` (all of ``tenant``) in order, each applied at once (no event
        waits in the buffer here: see ``resolve_buffered``)."""
        return self._resolve_events(tenant, events, now_ms, codec.NO_BUFFER).resolutions

    def resolve_buffered(
        self, tenant: str, events: Sequence[IdentityEvent], now_ms: int
    ) -> BatchResult:
        """Like ``resolve_batch``, but an event with a ``buffer_payload`` may wait in the
        buffer (``Outcome.BUFFER``), and events whose ids got a person come back released."""
        return self._resolve_events(tenant, events, now_ms, self._buffer)

    def _resolve_events(
        self,
        tenant: str,
        events: Sequence[IdentityEvent],
        now_ms: int,
        buffer: codec.BufferPolicy,
    ) -> BatchResult:
        prepared = self._prepare(tenant, events)
        return self.resolve_prepared(tenant, prepared, now_ms=now_ms, buffer=buffer)

    def resolve_prepared(
        self,
        tenant: str,
        prepared: Sequence[PreparedOp | Resolution],
        *,
        now_ms: int = 0,
        buffer: codec.BufferPolicy = codec.NO_BUFFER,
    ) -> BatchResult:
        """The stateful half of ``resolve_batch``: ``PreparedOp``s go to Redis in order, in
        chunks of at most ``max_ops_per_call`` ops and ``max_call_cost`` units
        (``call_cost.split``), all sent in one pipelined round;
        ``Resolution``s (decided by the stateless rules) are passed through in place."""
        (result,) = self._resolve_round([(tenant, prepared, buffer)], now_ms)
        if isinstance(result, Exception):
            raise result
        return result

    def resolve_buffered_many(
        self, requests: Sequence[tuple[str, Sequence[IdentityEvent]]], now_ms: int
    ) -> list[BatchResult | Exception]:
        """``resolve_buffered`` of several tenants in one pipelined round: per request, its
        result, or the exception that refused it for good (a ``PermanentStoreError``, or what
        preparing an event raised). Raises ``TransientStoreError`` when Redis is unavailable."""
        return self.plan_many(requests, now_ms).results()

    def plan_many(
        self, requests: Sequence[tuple[str, Sequence[IdentityEvent]]], now_ms: int
    ) -> PlannedRound:
        """``resolve_buffered_many`` in three steps: this one prepares and encodes the round's
        calls (no Redis call but, once per tenant, its entry in the buffered-tenants index);
        ``PlannedRound.send`` writes them and returns at once; ``PlannedRound.results`` reads
        the replies (sending first if needed). Between ``send`` and ``results`` the caller may
        work while Redis runs the round, but must not start another round of the same store
        (a round sent later could run before this one's retries)."""
        work: list[tuple[str, Sequence[PreparedOp | Resolution], codec.BufferPolicy]] = []
        refused: dict[int, Exception] = {}
        for index, (tenant, events) in enumerate(requests):
            try:
                work.append((tenant, self._prepare(tenant, events), self._buffer))
            except Exception as exc:  # this tenant only
                refused[index] = exc
        return PlannedRound(self, self._plan_round(work, now_ms), len(requests), refused)

    def _prepare(
        self, tenant: str, events: Sequence[IdentityEvent]
    ) -> list[PreparedOp | Resolution]:
        prepared: list[PreparedOp | Resolution] = []
        for event in events:
            if event.tenant != tenant:
                raise InternalError(
                    f"event {event.uuid} is of tenant {event.tenant!r}, not {tenant!r}"
                )
            prepared.append(rules.prepare(event, self._config))
        return prepared

    def _resolve_round(
        self,
        work: Sequence[tuple[str, Sequence[PreparedOp | Resolution], codec.BufferPolicy]],
        now_ms: int,
    ) -> list[BatchResult | Exception]:
        """Every chunk call of ``work`` (tenant, prepared ops, buffer policy) in one round;
        per item its result or the error that refused it for good."""
        return self._finish_round(self._plan_round(work, now_ms), None)

    def _plan_round(
        self,
        work: Sequence[tuple[str, Sequence[PreparedOp | Resolution], codec.BufferPolicy]],
        now_ms: int,
    ) -> _Round:
        """The chunk calls of ``work``, encoded, not sent."""
        calls: list[_Call] = []
        outcomes: list[BatchResult | Exception] = []
        spans: list[tuple[int, int]] = []
        chains: dict[str, str] = {}  # tenant -> token of its last call so far in the round
        for tenant, prepared, buffer in work:
            first = len(calls)
            chained = chains.get(tenant)
            try:
                pending = [op for op in prepared if isinstance(op, PreparedOp)]
                if buffer.delay_ms > 0 and any(
                    op.event.buffer_payload is not None for op in pending
                ):
                    self._index_buffered_tenant(tenant)
                calls += self._chunk_calls(tenant, pending, now_ms, buffer, chains=chains)
            except TransientStoreError:
                raise
            except Exception as exc:  # preparing or encoding: this tenant only
                del calls[first:]
                if chained is not None:
                    chains[tenant] = chained
                else:
                    chains.pop(tenant, None)
                outcomes.append(exc)
                spans.append((first, first))
                continue
            outcomes.append(BatchResult([], []))
            spans.append((first, len(calls)))
        return _Round(work, calls, outcomes, spans, now_ms)

    def _start_round(self, calls: Sequence[_Call]) -> _Sending:
        """The round of ``calls`` (not sent yet), led by the pending ``forget``s; with the
        rules in the worker, of those of them that can be planned now (``_plan_wave``)."""
        failed: dict[str, Exception] = {}
        sent, deferred = list(calls), list[_Call]()
        forgets: list[list[bytes]] = []
        receipts: dict[str, list[tuple[bytes, bytes]]] = {}
        if self._chained and calls:
            forgets, receipts = self._take_forgotten_receipts()
        if self._rules is RulesMode.WORKER:
            try:
                sent, deferred = self._plan_wave(calls, failed, receipts)
            except BaseException:
                with self._lock:  # not sent: they lead a later round
                    self._forgotten[:0] = forgets
                    for tenant, pairs in receipts.items():
                        self._forgotten_receipts.setdefault(tenant, [])[:0] = pairs
                raise
            if deferred and not sent:
                raise InternalError("a wave of the round planned no call")
        commands = [
            (c.tenant, c.keys, c.argv() if c.commit is None else c.commit.args) for c in sent
        ]
        scripts = [None if c.commit is None else self._commit for c in sent]
        started = pipelined.Round(
            self._client,
            self.script_call(),
            commands,
            one_at_a_time=not self._chained,
            preamble=forgets,
            scripts=scripts,
        )
        return _Sending(started, sent, deferred, failed)

    def _plan_wave(
        self,
        calls: Sequence[_Call],
        failed: dict[str, Exception],
        forgotten: dict[str, list[tuple[bytes, bytes]]],
    ) -> tuple[list[_Call], list[_Call]]:
        """Plan in the worker what of ``calls`` can be planned now: ``(sent, deferred)``. A call
        already planned is sent as planned (a retry: it may have run) unless an earlier call of
        its tenant is planned anew; a tenant's first call that must wait for the earlier ones'
        replies (``NeedsFreshReads``) defers it and its later calls; ``Unsupported`` or
        ``MAX_STALE`` refusals send the tenant's calls from there on to the script; data the
        script refuses too fails the tenant (into ``failed``). Raises ``TransientStoreError``
        when the reads fail."""
        stats = self.rules_stats
        parsed, states = self._read_wave(calls, failed, forgotten)
        sent: list[_Call] = []
        deferred: list[_Call] = []
        earlier: dict[str, Overlay] = {}  # a tenant's data after its calls planned in this wave
        fresh: set[str] = set()  # tenants with a call planned anew: their later calls too
        resent: set[str] = set()  # tenants with a call sent again: did it run? (its reply says)
        waiting: set[str] = set()
        for call in calls:
            tenant = call.tenant
            if tenant in failed:
                continue
            if tenant in waiting:
                call.commit = None
                deferred.append(call)
                continue
            if call.script:
                sent.append(call)
                continue
            if call.commit is not None and tenant not in fresh:
                resent.add(tenant)  # as planned: its later calls planned with it still hold
                sent.append(call)
                continue
            if tenant in resent:  # reads now might or might not see the resent call's writes
                waiting.add(tenant)
                deferred.append(call)
                continue
            fresh.add(tenant)
            call.commit = None
            if call.stale >= MAX_STALE:
                self._to_script(calls, call)
                sent.append(call)
                continue
            found = parsed[id(call)]
            if isinstance(found, PermanentStoreError):  # its earlier calls go, as the script's
                failed[tenant] = found
                continue
            try:
                planned = self._call(
                    partial(
                        plan_commit,
                        states[tenant],
                        found,
                        earlier.get(tenant),
                        self._ttls,
                        self._decoded,
                    )
                )
            except NeedsFreshReads:
                stats.deferred += 1
                waiting.add(tenant)
                deferred.append(call)
                continue
            except Unsupported as exc:
                log.info("tenant %s: a call goes to the resolve script (%s)", tenant, exc)
                self._to_script(calls, call)
                sent.append(call)
                continue
            except PermanentStoreError as exc:
                failed[tenant] = exc
                continue
            call.commit = planned
            stats.commits += 1
            stats.misses += planned.misses
            view = earlier.get(tenant)
            if view is None:
                view = earlier[tenant] = Overlay(states[tenant])
            view.add(planned.writes)
            sent.append(call)
        return sent, deferred

    def _read_wave(
        self,
        calls: Sequence[_Call],
        failed: dict[str, Exception],
        forgotten: dict[str, list[tuple[bytes, bytes]]],
    ) -> tuple[dict[int, EngineCall | PermanentStoreError], dict[str, PrefetchedState]]:
        """The engine's calls (by ``id`` of the store's) of ``calls`` that may be planned anew
        in this wave (or why the engine refuses a call's ARGV), and per tenant their data, read
        for all at once. A tenant whose data cannot be read fails (into ``failed``)."""
        parsed: dict[int, EngineCall | PermanentStoreError] = {}
        by_tenant: dict[str, list[EngineCall]] = {}
        for call in calls:
            if call.script or call.tenant in failed:
                continue
            found, call.engine = call.engine, None  # its ops change as the engine runs them
            try:
                found = found or call.engine_call()  # planned again: built again
            except PermanentStoreError as exc:  # the tenant fails at this call (planning)
                parsed[id(call)] = exc
                continue
            parsed[id(call)] = found
            by_tenant.setdefault(call.tenant, []).append(found)
        requests = [(self.keys(tenant), found) for tenant, found in by_tenant.items()]
        client = cast(redis.Redis, self._client)
        try:
            read = self._call(partial(prefetched, client, requests, forgotten)) if requests else []
        except PermanentStoreError as exc:
            if len(requests) == 1:
                failed[requests[0][0].tenant] = exc
                return parsed, {}
            read = []  # one tenant's keys (a foreign writer's): each tenant read on its own
            for request in list(requests):
                try:
                    read += self._call(partial(prefetched, client, [request], forgotten))
                except PermanentStoreError as exc:
                    failed[request[0].tenant] = exc
                    requests.remove(request)
        return parsed, {keys.tenant: state for (keys, _), state in zip(requests, read, strict=True)}

    def _to_script(self, calls: Sequence[_Call], first: _Call) -> None:
        """``first`` and the later calls of its tenant go to the resolve script."""
        found = False
        for call in calls:
            found = found or call is first
            if found and call.tenant == first.tenant and not call.script:
                call.script = True
                call.commit = None
                self.rules_stats.script += 1

    def _finish_round(
        self, planned: _Round, started: _Sending | None
    ) -> list[BatchResult | Exception]:
        """Read (send first when ``started`` is None) the replies of ``planned``, retrying what
        did not run; its results."""
        calls, outcomes = planned.calls, planned.outcomes
        failed, released = self._run_round(calls, planned.now_ms, started)
        for index, (tenant, prepared, _) in enumerate(planned.work):
            if isinstance(outcomes[index], Exception):
                continue
            if tenant in failed:
                outcomes[index] = failed[tenant]
                continue
            begin, end = planned.spans[index]
            freed = released.pop(tenant, [])  # a tenant's releases go to its first request
            outcomes[index] = self._assemble(prepared, calls[begin:end], freed)
        return outcomes

    def _abandon_round(self, planned: _Round, started: _Sending | None) -> None:
        """A round whose results nobody will read (the batch failed elsewhere): if it was
        sent, wait until Redis ran it (its replies are read and dropped), so nothing of it runs
        after a replay of its events; its reply keys are deleted by later calls."""
        if started is not None and started.round.sent:
            with contextlib.suppress(Exception):
                for _ in started.round.replies():
                    pass
            started.round.close()
        with self._lock:
            for call in planned.calls:
                kept = self._previous_reply.setdefault(call.tenant, [])
                kept.append(call.token)
                if call.delete is not None:
                    kept.append(call.delete)

    def _chunk_calls(
        self,
        tenant: str,
        ops: Sequence[PreparedOp],
        now_ms: int,
        buffer: codec.BufferPolicy,
        *,
        command: str = protocol.COMMAND_RESOLVE,
        limit: int = 0,
        chains: dict[str, str] | None = None,
    ) -> list[_Call]:
        """The calls of one tenant's ops (one release call when ``command`` is release), each
        with a fresh token, chained to its predecessor (``chains``: the tenant's last call in
        the round so far), and deleting one reply of an earlier round when one is left."""
        keys = self.keys(tenant)
        chunks: list[Sequence[PreparedOp]] = [ops]
        if command == protocol.COMMAND_RESOLVE:
            chunks = call_cost.split(ops, self._max_ops, self._max_cost)
        calls: list[_Call] = []
        with self._lock:
            earlier = self._previous_reply.get(tenant, [])
            doomed, self._previous_reply[tenant] = earlier[: len(chunks)], earlier[len(chunks) :]
        chains = {} if chains is None else chains
        predecessor = chains.get(tenant)
        for index, chunk in enumerate(chunks):
            token = uuid.uuid4().hex
            delete = doomed[index] if index < len(doomed) else None
            names = keys.script_keys(token, delete)
            if predecessor is not None and self._chained:
                names.append(keys.reply(predecessor))
            script_keys = [name.encode() for name in names]
            encode = partial(
                codec.encode_args,
                chunk,
                self._limits,
                now_ms=now_ms,
                buffer=buffer,
                command=command,
                release_limit=limit,
            )
            call = _Call(tenant, chunk, token, delete, script_keys, encode)
            if self._rules is RulesMode.WORKER:  # ARGV only if it goes to the script
                with contextlib.suppress(PermanentStoreError):  # refused again when planned:
                    call.engine = call.engine_call()  # its tenant fails at that call
            else:
                call.argv()
            calls.append(call)
            predecessor = chains[tenant] = token
        return calls

    def _run_round(
        self, calls: list[_Call], now_ms: int, started: _Sending | None = None
    ) -> tuple[dict[str, Exception], dict[str, list[Released]]]:
        """Send ``calls`` pipelined, decode each reply as it arrives (``_Call.reply``), retry
        what did not run; then the due-tenants index and the released payloads. Returns the
        tenants refused for good (their calls after the refused one did not run). Raises
        ``TransientStoreError`` after ``retry_attempts`` attempts. ``started``: the round of
        ``calls`` (maybe sent already); none: one is started here."""
        failed: dict[str, Exception] = {}
        try:
            self._send_round(calls, failed, started)
        except Exception:
            with contextlib.suppress(StoreError):  # the calls that ran still count
                self._update_due_index(calls, now_ms)
            raise
        finally:
            with self._lock:  # read replies may go; a call that did not run deletes nothing
                for call in calls:
                    kept = self._previous_reply.setdefault(call.tenant, [])
                    if call.reply is not None:
                        kept.append(call.token)
                    elif call.delete is not None:
                        kept.append(call.delete)
        self._update_due_index(calls, now_ms)
        return failed, self._released(calls, failed)

    def _send_round(
        self, calls: list[_Call], failed: dict[str, Exception], started: _Sending | None
    ) -> None:
        script = self.script_call()
        pending = calls
        attempt = loads = 0
        while pending:
            retry: list[_Call] = []
            blocked: set[str] = set()  # tenants with an earlier call to send again
            problem: Exception | None = None
            reload: set[ScriptCall] = set()
            # the pending forgets lead the first attempt; lost if it fails (they expire)
            if started is None:  # (the reads of the rules in the worker retry on their own)
                started = self._start_round(pending)
            sending, started = started, None
            sent = sending.calls
            stream = sending.round.replies()
            read = 0
            try:
                for raw in stream:
                    call = sent[read]
                    read += 1
                    tenant = call.tenant
                    if tenant in failed:
                        continue  # refused by the chain check: it did not run
                    if tenant in blocked:
                        retry.append(call)
                        continue
                    if isinstance(raw, redis.exceptions.ResponseError):
                        called = script if call.commit is None else self._commit
                        if called.missing(raw):
                            reload.add(called)
                        elif call.commit is not None and is_stale(raw):
                            call.stale += 1  # planned again from fresh reads: no backoff
                            self.rules_stats.stale += 1
                            call.commit = None
                        elif not pipelined.is_chain_refusal(raw):
                            kind = classify(raw)
                            if kind is StoreAccessError:  # the user's: every call would be
                                raise kind(f"Redis refused the call: {raw}")
                            if kind is not TransientStoreError:
                                failed[tenant] = PermanentStoreError(
                                    f"Redis refused the call: {raw}"
                                )
                                continue
                            problem = raw
                        else:
                            problem = raw  # the predecessor's reply is gone (evicted?)
                        blocked.add(tenant)
                        retry.append(call)
                        continue
                    if call.commit is not None:  # the commit answers the next due time alone
                        raw = call.commit.reply(_bytes(cast(bytes | str, raw)))
                    try:
                        call.reply = codec.decode_reply(cast(bytes | str, raw), call.ops)
                    except (ValueError, KeyError, TypeError) as exc:
                        failed[tenant] = PermanentStoreError(f"unreadable data from Redis: {exc!r}")
            except (redis.exceptions.RedisError, OSError) as exc:
                kind = classify(exc)
                if kind is not TransientStoreError:
                    raise kind(f"Redis refused the call: {exc}") from exc
                problem = exc
                retry += [
                    c for c in sent[read:] if c.tenant not in failed
                ]  # unknown: sent again, with the same tokens
            finally:
                stream.close()
                sending.round.close()
            failed.update(sending.failed)  # planning refused them: their earlier calls ran
            retry += [c for c in sending.deferred if c.tenant not in failed]
            for missing in reload:
                loads += 1
                if loads > self._attempts:
                    raise PermanentStoreError("Redis keeps forgetting the script")
                self._call(partial(missing.load, self._client))
            if problem is not None and retry:
                attempt += 1
                if attempt >= self._attempts:
                    raise TransientStoreError(
                        f"Redis unavailable after {attempt} attempts: {problem}"
                    ) from problem
                self._backoff(attempt)
            pending = retry

    def _update_due_index(self, calls: Sequence[_Call], now_ms: int) -> None:
        """The due-tenants index from the last answered call of each tenant that touched its
        buffer (a refused tenant's too: its earlier calls ran)."""
        due: dict[str, int | bool | None] = {}
        for call in calls:
            if call.reply is not None and call.reply.next_due is not codec.KEEP_DUE:
                due[call.tenant] = call.reply.next_due
        for tenant, next_due in due.items():
            text = "" if next_due is None else str(next_due)
            update = [_b(tenant), text.encode(), str(now_ms).encode()]
            self._call(partial(self._update_due, update))

    def _released(
        self, calls: Sequence[_Call], failed: dict[str, Exception]
    ) -> dict[str, list[Released]]:
        """The entries the answered calls released with their payloads, per tenant (refused
        ones aside) in release order: one ``HMGET`` per tenant."""
        entries: dict[str, list[codec.ReleasedEntry]] = {}
        for call in calls:
            if call.reply is not None and call.reply.released and call.tenant not in failed:
                entries.setdefault(call.tenant, []).extend(call.reply.released)
        released: dict[str, list[Released]] = {}
        for tenant, found in entries.items():
            key = self.keys(tenant).buffer_payloads
            names = [_b(e.entry_id) for e in found]
            payloads = self._call(partial(self._client.hmget, key, names))
            released[tenant] = [
                Released(
                    e.event_uuid,
                    e.reason,
                    e.ingested_ms,
                    _bytes(payload),
                    e.resolution,
                    e.released_ms,
                    e.entry_id,
                )
                for e, payload in zip(found, payloads, strict=True)
                if payload is not None  # acknowledged meanwhile by another worker
            ]
        return released

    def _update_due(self, args: list[bytes]) -> object:
        return self._due_update(keys=[self._due_index], args=args, client=self._client)

    @staticmethod
    def _assemble(
        prepared: Sequence[PreparedOp | Resolution],
        calls: Sequence[_Call],
        released: list[Released],
    ) -> BatchResult:
        answers = iter([r for call in calls for r in cast(codec.Reply, call.reply).resolutions])
        results = [item if isinstance(item, Resolution) else next(answers) for item in prepared]
        return BatchResult(results, released)

    # -- the buffer --------------------------------------------------------------------------

    def release_due(self, tenant: str, now_ms: int, limit: int) -> list[Released]:
        """Apply and lease what waited ``delay`` (reason timeout) and what an expired lease
        holds (reason redelivery), at most ``limit`` ids and ``limit`` leases per call."""
        calls = self._chunk_calls(
            tenant, [], now_ms, self._buffer, command=protocol.COMMAND_RELEASE, limit=limit
        )
        failed, released = self._run_round(calls, now_ms)
        if tenant in failed:
            raise failed[tenant]
        return released.get(tenant, [])

    def forget(self, tenant: str, sources: Sequence[str]) -> None:
        """Drop the receipts of ``sources`` (their input offsets are committed): one ``HDEL``
        per receipt hash. Idempotent.

        With pipelined rounds the ``HDEL``s are not sent now but at the head of the next round
        (``flush_forgotten`` sends them at once): no round trip of their own, and Redis runs
        them before any later call, so a later message at a forgotten position is applied
        again, as it would be at once. Forgets still pending when the worker stops, or sent
        with a round whose connection failed, are lost: their receipts expire
        (``redis.receipt_ttl_seconds``)."""
        if not sources:
            return
        keys = self.keys(tenant)
        by_hash: dict[str, list[bytes]] = {}
        for source in sources:
            by_hash.setdefault(keys.receipts(source), []).append(_b(source))
        commands = [[b"HDEL", _b(key), *fields] for key, fields in by_hash.items()]
        if not self._chained:
            self._send_forgets(commands)
            return
        with self._lock:
            if self._rules is RulesMode.WORKER:  # the round's planning reads them as gone
                pairs = self._forgotten_receipts.setdefault(tenant, [])
                pairs += [(_b(receipt_bucket(source)), _b(source)) for source in sources]
            self._forgotten += commands
            self._forgotten_fields += len(sources)
            full = self._forgotten_fields >= _MAX_PENDING_FORGETS
        if full:
            self.flush_forgotten()

    def flush_forgotten(self) -> None:
        """Send the pending ``HDEL``s of ``forget`` now (one pipeline)."""
        commands = self._take_forgotten()
        if commands:
            self._send_forgets(commands)

    def _take_forgotten(self) -> list[list[bytes]]:
        return self._take_forgotten_receipts()[0]

    def _take_forgotten_receipts(
        self,
    ) -> tuple[list[list[bytes]], dict[str, list[tuple[bytes, bytes]]]]:
        """The pending ``HDEL``s, and per tenant the receipts (bucket, source) they delete."""
        with self._lock:
            commands, self._forgotten, self._forgotten_fields = self._forgotten, [], 0
            receipts, self._forgotten_receipts = self._forgotten_receipts, {}
        return commands, receipts

    def _send_forgets(self, commands: Sequence[list[bytes]]) -> None:
        def action() -> None:
            pipe = self._client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            pipe.execute()

        self._call(action)

    def ack(self, tenant: str, entry_ids: Sequence[str]) -> None:
        """Forget released entries (``Released.entry_id``): their outputs are written.
        Idempotent. The due-tenants index is left as it is (a later release call of the tenant
        corrects it)."""
        if not entry_ids:
            return
        keys = self.keys(tenant)
        names = [_b(u) for u in entry_ids]

        def action() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.zrem(keys.buffer_pending, *names)
            pipe.hdel(keys.buffer_entries, *names)
            pipe.hdel(keys.buffer_payloads, *names)
            pipe.hdel(keys.buffer_releases, *names)
            pipe.execute()

        self._call(action)

    def due_tenants(self, now_ms: int) -> list[str]:
        """Tenants whose buffer may have something due at ``now_ms`` (a waiting queue or an
        expired lease): the due-tenants index (``keys.due_index``), kept from what each call
        returns. Never misses a tenant with something due; may list one that has nothing left
        (its next release call removes it)."""
        members = self._call(lambda: self._client.zrangebyscore(self._due_index, "-inf", now_ms))
        return sorted(codec.as_text(cast(bytes, m)) for m in members)

    def buffered_tenants(self) -> list[str]:
        """Tenants that ever buffered an event (the index never shrinks on its own; for
        ``buffer stats``: the releaser uses ``due_tenants``)."""
        members = self._call(lambda: self._client.smembers(self._tenant_index))
        return sorted(codec.as_text(m) for m in members)

    def buffer_stats(self, tenant: str, now_ms: int) -> BufferStats:
        keys = self.keys(tenant)

        def action() -> list[object]:
            pipe = self._client.pipeline(transaction=True)
            pipe.get(keys.buffer_count)
            pipe.zcard(keys.buffer_due)
            pipe.zcard(keys.buffer_pending)
            pipe.zrange(keys.buffer_due, 0, 0, withscores=True)
            return cast(list[object], pipe.execute())

        count, ids, leased, oldest = self._call(action)
        age = None
        if isinstance(oldest, list) and oldest:
            due = int(oldest[0][1])
            age = max(now_ms - (due - self._buffer.delay_ms), 0)
        return BufferStats(
            events=int(cast(bytes, count) or 0),
            ids=int(cast(int, ids)),
            leased=int(cast(int, leased)),
            oldest_age_ms=age,
        )

    def _index_buffered_tenant(self, tenant: str) -> None:
        if tenant in self._indexed:
            return
        self._call(lambda: self._client.sadd(self._tenant_index, _b(tenant)))
        self._indexed.add(tenant)

    # -- reading -------------------------------------------------------------------------------

    def person_for(self, tenant: str, distinct_id: str) -> Person | None:
        reply = self._call(lambda: self._read_person(tenant, [b"id", _b(distinct_id)]))
        if not reply:
            return None
        view = cast(bytes | str, reply)
        return self._decode(lambda: person_record.person_of(view))

    def persons(self, tenant: str) -> list[Person]:
        """Every person of the tenant, by ``HSCAN`` of its union-find (not atomic: call it on
        a quiet tenant)."""
        views = self._call(lambda: list(person_reads.views(self._reader(tenant))))

        def decode() -> list[Person]:
            found = {p.person_id: p for p in map(person_record.person_of, views)}
            return list(found.values())

        return self._decode(decode)

    def _reader(self, tenant: str) -> person_reads.Read:
        return lambda args: self._read_person(tenant, args)

    def _read_person(self, tenant: str, args: list[bytes]) -> object:
        keys = self.keys(tenant)
        return self._read(keys=[keys.ids, keys.members_prefix], args=args, client=self._client)

    def group_types(self, tenant: str) -> list[str]:
        """The tenant's group types, sorted (``group_reads.py``)."""
        return self._call(lambda: group_reads.group_types(self._client, self.keys(tenant)))

    def groups(self, tenant: str) -> list[Group]:
        """The tenant's group records, sorted by (type, key)."""
        return self._call(lambda: group_reads.groups(self._client, self.keys(tenant)))

    def memberships(self, tenant: str) -> dict[str, dict[str, PropertyState]]:
        """person id -> its remembered memberships."""
        return self._call(lambda: group_reads.memberships(self._client, self.keys(tenant)))

    # -- internals -------------------------------------------------------------------------

    def delete_person(
        self, tenant: str, *, distinct_id: str | None = None, person_id: str | None = None
    ) -> Deletion | None:
        """Contract A10: delete the person holding ``distinct_id``, or the person ``person_id``,
        atomically (``lua/delete_person.lua``); ``None`` when there is none. A person id is
        found by one ``HSCAN`` of the tenant's ids (deletion is rare), then checked again by
        the script."""
        if (distinct_id is None) == (person_id is None):
            raise ValueError("give exactly one of distinct_id and person_id")
        keys = self.keys(tenant)
        start = distinct_id
        if start is None:
            start = self._root_of_person(keys, str(person_id))
            if start is None:
                return None
        args = [
            _b(protocol.FORMAT_VERSION),
            _b(tenant),
            PERSON_NAMESPACE.bytes,
            _b(start),
            _b(person_id or ""),
        ]
        key_names = keys.delete_keys()
        raw = self._call(lambda: self._delete(keys=key_names, args=args, client=self._client))
        if raw is None:
            return None

        def decode() -> Deletion:
            reply = json.loads(raw)
            return Deletion(
                tenant,
                str(reply["person_id"]),
                tuple(sorted(str(i) for i in reply["distinct_ids"])),
                int(reply["buffered"]),
            )

        return self._decode(decode)

    def _root_of_person(self, keys: TenantKeys, person_id: str) -> str | None:
        def scan() -> str | None:
            for view in person_reads.views(self._reader(keys.tenant)):
                root, person = person_record.root_and_person(view)
                if person.person_id == person_id:
                    return root
            return None

        return self._call(scan)

    def _call(self, action: Callable[[], T]) -> T:
        """Run ``action`` (one Redis call, safe to repeat), retrying transient errors."""
        attempt = 0
        while True:
            try:
                return action()
            except (redis.exceptions.RedisError, OSError) as exc:
                kind = classify(exc)
                attempt += 1
                if kind is not TransientStoreError:
                    raise kind(f"Redis refused the call: {exc}") from exc
                if attempt >= self._attempts:
                    raise TransientStoreError(
                        f"Redis unavailable after {attempt} attempts: {exc}"
                    ) from exc
                self._backoff(attempt)

    def _backoff(self, attempt: int) -> None:
        """Sleep before attempt ``attempt + 1``: exponential, with full jitter."""
        delay = min(self._max_delay, self._base_delay * 2 ** (attempt - 1))
        self._sleep(random.uniform(delay / 2, delay))  # noqa: S311 (jitter, not crypto)

    @staticmethod
    def _decode(action: Callable[[], T]) -> T:
        try:
            return action()
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentStoreError(f"unreadable data from Redis: {exc!r}") from exc


@dataclass(slots=True)
class _Call:
    """One script call of a round: a tenant's chunk, its token, the earlier reply it deletes,
    its KEYS and ARGV; ``reply`` once answered."""

    tenant: str
    ops: Sequence[PreparedOp]
    token: str
    delete: str | None
    keys: list[bytes]
    encode: partial[list[bytes]]
    """``codec.encode_args`` with the call's arguments: its ARGV, written at most once
    (``argv``), or from the same arguments the engine's call (``engine_call``)"""
    args: list[bytes] | None = None
    engine: EngineCall | None = None
    """with the rules in the worker, the engine's call for its next planning (the ARGV as the
    engine reads it, never written unless the call goes to the script)"""
    reply: codec.Reply | None = None
    commit: PlannedCommit | None = None
    """the commit planned in the worker (``rules=worker``), sent instead of ``args``"""
    script: bool = False
    """sent to the resolve script although the rules run in the worker"""
    stale: int = 0
    """refusals of its commit for stale reads"""

    def argv(self) -> list[bytes]:
        if self.args is None:
            self.args = self.encode()
        return self.args

    def engine_call(self) -> EngineCall:
        """A fresh engine's call of the call's ops (``codec.engine_call``; ``EngineError`` where
        the engine would refuse their ARGV)."""
        return codec.engine_call(*self.encode.args, **self.encode.keywords)


@dataclass(slots=True)
class _Sending:
    """A wave of a round: the pipelined round, the calls in it, those planned later."""

    round: pipelined.Round
    calls: list[_Call]
    deferred: list[_Call]
    failed: dict[str, Exception]


@dataclass(slots=True)
class _Round:
    """The calls of a planned round and how their results map back to its requests."""

    work: Sequence[tuple[str, Sequence[PreparedOp | Resolution], codec.BufferPolicy]]
    calls: list[_Call]
    outcomes: list[BatchResult | Exception]
    spans: list[tuple[int, int]]
    now_ms: int


class PlannedRound:
    """A round of ``plan_many``: ``send`` it, work, then read its ``results`` (or ``abandon``
    it). Each step once, in that order."""

    __slots__ = ("_done", "_planned", "_refused", "_requests", "_started", "_store")

    def __init__(
        self,
        store: RedisIdentityStore,
        planned: _Round,
        requests: int,
        refused: dict[int, Exception],
    ) -> None:
        self._store = store
        self._planned = planned
        self._requests = requests
        self._refused = refused
        self._started: _Sending | None = None
        self._done = False

    @property
    def calls(self) -> int:
        """The round's script calls (each a chunk of one tenant's ops: ``call_cost.split``)."""
        return len(self._planned.calls)

    def send(self) -> None:
        """Write the round and return at once (on a cluster client nothing goes before
        ``results``). A failure to write is raised by ``results``."""
        if self._started is None and not self._done:
            try:
                self._store.script_call()  # chosen (a library loaded) by the first round
            except StoreError:
                return  # nothing sent: ``results`` tries again, and raises what it meets
            try:
                self._started = self._store._start_round(self._planned.calls)
            except StoreError:
                return  # the reads of the rules in the worker: ``results`` tries again
            self._started.round.send()

    def results(self) -> list[BatchResult | Exception]:
        """Per request, its result or the exception that refused it for good (see
        ``RedisIdentityStore.resolve_buffered_many``)."""
        if self._done:
            raise InternalError("the results of a round are read once")
        self._done = True
        results = iter(self._store._finish_round(self._planned, self._started))
        return [
            self._refused[i] if i in self._refused else next(results) for i in range(self._requests)
        ]

    def abandon(self) -> None:
        """Nobody will read the results: wait for Redis to run what was sent, drop the rest."""
        if not self._done:
            self._done = True
            self._store._abandon_round(self._planned, self._started)


def _bytes(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else _b(raw)


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
