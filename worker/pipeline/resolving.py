"""The store calls of one batch: one call per tenant (one pipelined round for all tenants when
the store offers ``plan_many``; planned, sent and read in three steps so the pipeline can work
while Redis runs the round), narrowed down to the guilty events when the store
refuses a tenant's call for good.

A call that fails with a ``TransientError`` (Redis unavailable) fails the batch: the runner
retries it. Any other exception (a ``PermanentStoreError``, e.g. a Lua error caused by one
event's data, or an exception while the store prepared or encoded an event) is attributed to
its events by bisection: the tenant's event list is split in two halves, each resolved again
(the first half before the second, so the order of the batch holds), and so on until a failing
list holds one event. That event is rejected; the others are resolved normally, in order.

Why re-running is safe: the script writes nothing when it raises (all its writes are deferred to
its end), so a refused chunk left nothing behind; a chunk of the same call that had already been
applied is answered again from the store's replay receipt of each event
(``IdentityEvent.source``) instead of being applied twice. Released buffered events of a failed
call are not lost: they are leased, and come back as redeliveries.

With the pipelined round, the other tenants' calls ran in the same round before the refused
tenant is bisected: tenants share no state, so that order does not matter. Within a tenant the
round keeps the order: the Redis store chains a tenant's chunk calls, so the chunks after a
refused one are refused too and nothing after the guilty event is applied before the bisection
(``worker.store.redis_store``).

Cost: one call when nothing fails; for ``k`` guilty events among ``n``, at most about
``2 k log2(n)`` more calls, each on a smaller list.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, cast

from worker.errors import PermanentStoreError, TransientError
from worker.identity.model import IdentityEvent, Resolution
from worker.observability.status import BatchStats
from worker.pipeline.deadletter import INTERNAL_ERROR, STORE_REJECTED
from worker.pipeline.items import Decoded
from worker.store.base import BatchResult, BufferingStore, Released

log = logging.getLogger(__name__)


StoreFailure: TypeAlias = Exception
"""Why the store refused an event: any exception. (An alias for mypyc: a compiled dataclass
looks its fields' builtin classes up among the module's names, ``Exception`` is not one.)"""


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event the store could not resolve: the exception, and the dead-letter reason."""

    error: StoreFailure
    reason: str


def rejection(error: Exception) -> Rejected:
    """``store_rejected`` for a ``PermanentStoreError``, ``internal_error`` for anything else."""
    return Rejected(
        error, STORE_REJECTED if isinstance(error, PermanentStoreError) else INTERNAL_ERROR
    )


@dataclass(slots=True)
class Resolved:
    """The answers of a batch's store calls, in the batch's order."""

    answers: list[tuple[Decoded, Resolution | Rejected]] = field(default_factory=list)
    released: dict[str, list[Released]] = field(default_factory=dict)
    """buffered events the calls released, per tenant, in release order"""


class PlannedRound(Protocol):
    """A round of store calls prepared and encoded, not read yet (``ManyTenantStore``)."""

    def send(self) -> None:
        """Write the calls and return at once."""
        ...

    def results(self) -> list[BatchResult | Exception]:
        """Per request (tenant, events) its result or the exception that refused it for good;
        raises ``TransientError`` when the store is unavailable."""
        ...

    def abandon(self) -> None:
        """Nobody will read the results (the batch failed elsewhere)."""
        ...


class ManyTenantStore(Protocol):
    """A store that resolves several tenants' events in one round, which it can send ahead
    and read later (``RedisIdentityStore``)."""

    def plan_many(
        self, requests: Sequence[tuple[str, Sequence[IdentityEvent]]], now_ms: int
    ) -> PlannedRound:
        """The round of ``requests`` (tenant, events), prepared and encoded, not sent."""
        ...


class Resolver:
    def __init__(self, store: BufferingStore) -> None:
        self._store = store
        # what isinstance of a runtime-checkable protocol tests (mypyc compiles no such check)
        many = getattr(store, "plan_many", None) is not None
        self._many = cast(ManyTenantStore, store) if many else None

    def resolve(self, decoded: Sequence[Decoded], now_ms: int, stats: BatchStats) -> Resolved:
        """One store call per tenant (more when one fails for good); the answers keep the
        batch's order. Raises ``TransientError`` when the store is unavailable."""
        return self.plan(decoded, now_ms, stats).resolved()

    def plan(self, decoded: Sequence[Decoded], now_ms: int, stats: BatchStats) -> Planned:
        """``resolve`` in three steps: this one prepares and encodes the store's round (when
        the store offers one), ``Planned.send`` sends it, ``Planned.resolved`` reads it. May
        raise ``TransientError``."""
        by_tenant: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(decoded):
            by_tenant[item.identity.tenant].append(index)
        planned = Planned(self._store, decoded, now_ms, stats, dict(by_tenant))
        if self._many is not None and by_tenant:
            requests = [
                (tenant, [decoded[i].identity for i in indexes])
                for tenant, indexes in by_tenant.items()
            ]
            started = time.perf_counter()
            try:
                planned.round = self._many.plan_many(requests, now_ms)
            except TransientError:
                raise
            except Exception:  # not one tenant's: each tenant on its own, as without a round
                log.warning("the store round of %d tenants failed", len(requests), exc_info=True)
            planned.seconds = time.perf_counter() - started
        return planned


@dataclass(slots=True, eq=False)
class Planned:
    """A batch's store calls, planned (``Resolver.plan``)."""

    store: BufferingStore
    decoded: Sequence[Decoded]
    now_ms: int
    stats: BatchStats
    by_tenant: dict[str, list[int]]
    round: PlannedRound | None = None
    """the pipelined round of every tenant (none: one call per tenant, at ``resolved``)"""
    seconds: float = 0.0
    """time spent on the round so far (planning, sending)"""

    def send(self) -> None:
        """Write the round (if any) and return at once."""
        if self.round is not None:
            started = time.perf_counter()
            self.round.send()
            self.seconds += time.perf_counter() - started

    def abandon(self) -> None:
        """The batch failed elsewhere: nobody reads the answers."""
        if self.round is not None:
            self.round.abandon()

    def resolved(self) -> Resolved:
        """The answers, in the batch's order. Raises ``TransientError`` when the store is
        unavailable."""
        answers: dict[int, Resolution | Rejected] = {}
        result = Resolved()
        first: list[BatchResult | Exception] | None = None
        if self.round is not None:
            started = time.perf_counter()
            try:
                first = self.round.results()
            except TransientError:
                raise
            except Exception:  # not one tenant's: each tenant on its own, as without a round
                log.warning(
                    "the store round of %d tenants failed", len(self.by_tenant), exc_info=True
                )
            self.stats.store_seconds.append(self.seconds + time.perf_counter() - started)
        for number, (tenant, indexes) in enumerate(self.by_tenant.items()):
            released: list[Released] = []
            calls = _Tenant(
                self.store, tenant, self.decoded, self.now_ms, self.stats, answers, released
            )
            if first is None:
                calls.run(indexes)
            else:
                calls.settle(indexes, first[number])
            if released:
                result.released[tenant] = released
        result.answers = [(item, answers[i]) for i, item in enumerate(self.decoded)]
        return result


@dataclass(slots=True)
class _Tenant:
    """The calls of one tenant: the whole list first, then halves of what failed."""

    store: BufferingStore
    tenant: str
    decoded: Sequence[Decoded]
    now_ms: int
    stats: BatchStats
    answers: dict[int, Resolution | Rejected]
    released: list[Released]

    def run(self, indexes: list[int]) -> None:
        events = [self.decoded[i].identity for i in indexes]
        started = time.perf_counter()
        try:
            result: BatchResult | Exception = self.store.resolve_buffered(
                self.tenant, events, self.now_ms
            )
        except TransientError:
            raise
        except Exception as exc:  # narrowed down to the guilty events below
            result = exc
        self.stats.store_seconds.append(time.perf_counter() - started)
        self.settle(indexes, result)

    def settle(self, indexes: list[int], result: BatchResult | Exception) -> None:
        """Take the answers of the call of ``indexes``, or narrow its failure down."""
        if isinstance(result, TransientError):
            raise result
        if isinstance(result, Exception):
            self._narrow(indexes, result)
            return
        self.answers.update(zip(indexes, result.resolutions, strict=True))
        self.released.extend(result.released)

    def _narrow(self, indexes: list[int], exc: Exception) -> None:
        if len(indexes) == 1:
            self.answers[indexes[0]] = rejection(exc)
            log.warning("store refused one event of tenant %s: %s", self.tenant, type(exc).__name__)
            return
        log.info(
            "store call of %d events of tenant %s failed (%s): bisecting",
            len(indexes),
            self.tenant,
            type(exc).__name__,
        )
        middle = len(indexes) // 2
        self.run(indexes[:middle])
        self.run(indexes[middle:])
