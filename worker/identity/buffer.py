"""The 60-second buffer (docs/BUFFER.md, contract A8) as a pure model: no I/O, no clock.

This is the executable specification of section "the buffer" of ``store/lua/resolve_batch.lua``;
``worker.identity.reference`` uses it, and tests/integration/test_differential.py checks that the
two agree, release by release. Time is passed in (``now_ms``); the person rules are passed in too
(``PersonRules``), so this module only decides *when* an event waits and *when* it is applied.

The state of one tenant, as the Redis keys under ``<prefix>:{tenant}:buf:``. An entry is named by
its *entry id* (``entry_id``: the event's source, else its uuid and distinct id), so two events
sharing a uuid are two entries:

- ``queues``: distinct id -> the entry ids of its waiting entries, oldest first (``q:<id>``);
- ``entries``: entry id -> the entry (``e`` and ``p``): kept until acknowledged, also once
  released;
- ``releases``: entry id -> its first release (reason, time, resolution) (``r``);
- ``due``: distinct id -> when its queue is released (``due``): set when the queue is started,
  to the ingestion time of its first entry plus the delay;
- ``pending``: entry id -> lease deadline of a released, unacknowledged entry (``pending``);
- ``count``: entries queued and not released (``n``).

What happens, in the order the script does it:

1. ``resolve`` (for each op of a batch, in order): an op whose event has a ``buffer_payload``
   (when the delay is positive) is *bufferable*. It waits when its id already has a queue, or has
   no person. Waiting means: if the id's queue holds ``max_per_id`` entries or the tenant
   ``max_total``, the queue is released at once (reason ``overflow``) and the op applied after it,
   each with warning ``buffer_overflow``; otherwise the op is appended to the queue, unless an
   entry with its entry id is already kept (queued, or released and not yet acknowledged), and
   answers ``Outcome.BUFFER``. Any other op is applied; then, when the call has a buffer policy
   (delay > 0), if its distinct id (and, for a merge, the other id) has a person and a queue,
   that queue is released (reason ``merge``). A call without a buffer policy (``resolve_batch``)
   releases nothing: those queues wait for their due time.
2. ``release_due``: first the leases that expired (``deadline <= now``, at most ``limit``, by
   deadline then entry id): an entry still kept is handed out again (reason ``redelivery``) with
   its first release's resolution and time, nothing applied, and leased anew; a lease whose
   entry is gone is dropped. Then the ids whose due time passed (at most ``limit``, by due time
   then id): their queues are released (reason ``timeout``).
3. Releasing a queue: it is emptied (``count`` drops by its length), then each of its entries
   still kept is applied in order, leased until ``now + lease_ms``, its release kept, and
   returned as ``Released``. A released entry's resolution carries only the warnings of its
   application (its stateless warnings went out when it was buffered).
4. ``release_again`` (an op answered from its replay receipt): each entry that op released and
   that is still leased is returned again with its first release's reason, time and resolution,
   and leased anew.
5. ``ack`` (by entry id): the entries, their releases and leases are forgotten (``count`` is
   not touched).

An entry's ingestion time is the ``now_ms`` of the call that queued it; it keeps the op as
prepared then (timestamp, uuid, property operations), so a release applies exactly that op.
Ops applied by a release (any reason) release no other queue.

Where the script, and so this model, departs from docs/BUFFER.md today:

- the store buffers any op whose event has a payload: personless events and merging
  identifies/aliases too (only the pipeline keeps them out). A buffered merge released later
  does not release the other id's queue, which then waits for its own due time;
- acknowledging an entry still queued leaves its id in the queue and in ``count`` until the
  queue is released (then skipped); the script looks such an id up as the entries stood when
  its call began, so if it is queued again in the same call its answer depends on the store's
  chunk boundaries (not modelled: the pipeline acknowledges only released entries).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from worker.identity.model import (
    IdentityEvent,
    IdentityWarning,
    Outcome,
    PreparedOp,
    Resolution,
    WarningKind,
)


@dataclass(frozen=True, slots=True)
class BufferPolicy:
    """How the 60-second buffer behaves (docs/BUFFER.md). ``delay_ms = 0`` turns it off."""

    delay_ms: int = 0
    max_per_id: int = 100
    max_total: int = 1_000_000
    lease_ms: int = 30_000


NO_BUFFER = BufferPolicy()


@dataclass(frozen=True, slots=True)
class Released:
    """A buffered event handed back: applied in the store, to be emitted, then acknowledged."""

    event_uuid: str
    reason: str
    """merge (its id got a person), timeout, overflow, or redelivery (an expired lease)"""
    ingested_ms: int
    payload: bytes
    resolution: Resolution
    released_ms: int = 0
    """When the entry was first released (its wait is ``released_ms - ingested_ms``); a
    redelivery keeps the first release's time and resolution, so its outputs repeat."""
    entry_id: str = ""
    """The buffer entry (``entry_id``): what ``ack`` takes."""


def entry_id(event: IdentityEvent) -> str:
    """The name of ``event``'s buffer entry: its source (unique per input message and element),
    else its uuid and distinct id (``<len(uuid)>:<uuid><distinct id>``, which no source can be:
    a Kafka topic holds no ``:``)."""
    if event.source:
        return event.source
    return f"{len(event.uuid)}:{event.uuid}{event.distinct_id}"


@dataclass(frozen=True, slots=True)
class BatchResult:
    resolutions: list[Resolution]
    """One per event, in order; ``Outcome.BUFFER`` for an event that now waits."""
    released: list[Released]
    """Buffered events the batch released (their ids got a person, or a cap overflowed)."""


@dataclass(frozen=True, slots=True)
class BufferStats:
    events: int
    """events waiting"""
    ids: int
    """distinct ids with events waiting"""
    leased: int
    """released to a worker, not yet acknowledged"""
    oldest_age_ms: int | None
    """how long the oldest waiting event has waited"""


MERGE = "merge"
TIMEOUT = "timeout"
OVERFLOW = "overflow"
REDELIVERY = "redelivery"

_OVERFLOW_WARNING = IdentityWarning(WarningKind.BUFFER_OVERFLOW)


class PersonRules(Protocol):
    """The stateful rules of one tenant, as the buffer needs them."""

    def apply(self, op: PreparedOp, warning: IdentityWarning | None) -> Resolution:
        """Apply ``op`` now; ``warning`` (if any) comes first among its store warnings."""
        ...

    def has_person(self, distinct_id: str) -> bool: ...

    def splits(self, op: PreparedOp) -> bool:
        """``op`` releases in arrival order: it processes its person, in ``arrival`` mode."""
        ...

    def structure(self, op: PreparedOp) -> object:
        """Apply ``op`` without its property operations; the version bump stays pending."""
        ...

    def settle(self, part: object) -> None:
        """Apply the pending version bump of ``part`` now (entries are released next)."""
        ...

    def finish(self, op: PreparedOp, part: object) -> Resolution:
        """Apply ``op``'s property operations (bumping on their own after ``settle``)."""
        ...


@dataclass(frozen=True, slots=True)
class _Entry:
    op: PreparedOp
    """the op as kept: without its stateless warnings"""
    ingested_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class _FirstRelease:
    reason: str
    released_ms: int
    resolution: Resolution


def is_bufferable(op: PreparedOp, policy: BufferPolicy) -> bool:
    """The store may hold ``op`` back: its event has a payload and the buffer is on."""
    return op.event.buffer_payload is not None and policy.delay_ms > 0


def _order(text: str) -> bytes:
    """Redis orders equal scores by the members' bytes."""
    return text.encode("utf-8", "surrogatepass")


def _first_due(scores: Mapping[str, int], now_ms: int, limit: int) -> list[str]:
    """``ZRANGEBYSCORE key -inf now LIMIT 0 limit``."""
    due = sorted(
        (member for member, score in scores.items() if score <= now_ms),
        key=lambda member: (scores[member], _order(member)),
    )
    return due if limit < 0 else due[:limit]


@dataclass(slots=True)
class TenantBuffer:
    """The buffer of one tenant."""

    queues: dict[str, list[str]] = field(default_factory=dict)
    entries: dict[str, _Entry] = field(default_factory=dict)
    releases: dict[str, _FirstRelease] = field(default_factory=dict)
    due: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    count: int = 0

    def resolve(
        self,
        op: PreparedOp,
        rules: PersonRules,
        policy: BufferPolicy,
        now_ms: int,
        released: list[Released],
    ) -> Resolution:
        """Step 1 for one op: wait, or apply (releasing what its ids now let go)."""
        if is_bufferable(op, policy):
            waited = self._maybe_wait(op, rules, policy, now_ms, released)
            if waited is not None:
                return waited
        if policy.delay_ms <= 0 or not self.queues:
            return rules.apply(op, None)
        ids = [i for i in (op.event.distinct_id, op.merge_with) if i is not None]
        if not rules.splits(op):
            resolution = rules.apply(op, None)
            for distinct_id in ids:
                if self._waiting(distinct_id) and rules.has_person(distinct_id):
                    self._release(distinct_id, MERGE, rules, policy, now_ms, released)
            return resolution
        part = rules.structure(op)
        settled = False
        for distinct_id in ids:
            if self._waiting(distinct_id) and rules.has_person(distinct_id):
                if not settled:
                    rules.settle(part)
                    settled = True
                self._release(distinct_id, MERGE, rules, policy, now_ms, released)
        return rules.finish(op, part)

    def release_due(
        self, rules: PersonRules, policy: BufferPolicy, now_ms: int, limit: int
    ) -> list[Released]:
        """Step 2: expired leases again, then the queues whose due time passed."""
        released: list[Released] = []
        for name in _first_due(self.pending, now_ms, limit):
            entry = self.entries.get(name)
            if entry is None:
                del self.pending[name]
                continue
            first = self.releases[name]
            self._hand_out(name, entry, REDELIVERY, first, policy, now_ms, released)
        for distinct_id in _first_due(self.due, now_ms, limit):
            self._release(distinct_id, TIMEOUT, rules, policy, now_ms, released)
        return released

    def release_again(
        self, name: str, policy: BufferPolicy, now_ms: int, released: list[Released]
    ) -> None:
        """Step 4 for one entry id: handed out again if still leased."""
        entry = self.entries.get(name)
        first = self.releases.get(name)
        if name in self.pending and entry is not None and first is not None:
            self._hand_out(name, entry, first.reason, first, policy, now_ms, released)

    def ack(self, entry_ids: Iterable[str]) -> None:
        """Step 5: forget released entries (and any other entry named)."""
        for name in entry_ids:
            self.pending.pop(name, None)
            self.entries.pop(name, None)
            self.releases.pop(name, None)

    def drop(self, distinct_ids: frozenset[str]) -> int:
        """Contract A10: forget the waiting entries of ``distinct_ids`` and the leased entries
        whose op names one of them; how many entries went."""
        names = [name for i in distinct_ids for name in self.queues.pop(i, [])]
        for distinct_id in distinct_ids:
            self.due.pop(distinct_id, None)
        self.count -= len(names)
        for name in self.pending:
            entry = self.entries.get(name)
            if (
                entry is not None
                and {entry.op.event.distinct_id, entry.op.merge_with} & distinct_ids
            ):
                names.append(name)
        for name in names:
            self.pending.pop(name, None)
            self.entries.pop(name, None)
            self.releases.pop(name, None)
        return len(names)

    def next_due(self) -> int | None:
        """The earliest due time or lease deadline, or ``None`` (the due-tenants index)."""
        return min([*self.due.values(), *self.pending.values()], default=None)

    def stats(self, policy: BufferPolicy, now_ms: int) -> BufferStats:
        oldest = min(self.due.values(), default=None)
        return BufferStats(
            events=self.count,
            ids=len(self.due),
            leased=len(self.pending),
            oldest_age_ms=None if oldest is None else max(now_ms - (oldest - policy.delay_ms), 0),
        )

    # -- internals ---------------------------------------------------------------------------

    def _waiting(self, distinct_id: str) -> int:
        return len(self.queues.get(distinct_id, ()))

    def _maybe_wait(
        self,
        op: PreparedOp,
        rules: PersonRules,
        policy: BufferPolicy,
        now_ms: int,
        released: list[Released],
    ) -> Resolution | None:
        """The op's resolution if it waits (or overflowed), ``None`` if it is to be applied."""
        into = op.event.distinct_id
        waiting = self._waiting(into)
        if waiting == 0 and rules.has_person(into):
            return None
        if waiting >= policy.max_per_id or self.count >= policy.max_total:
            self._release(into, OVERFLOW, rules, policy, now_ms, released)
            return rules.apply(op, _OVERFLOW_WARNING)
        event = op.event
        name = entry_id(event)
        if name not in self.entries:
            queue = self.queues.setdefault(into, [])
            if not queue:
                self.due[into] = now_ms + policy.delay_ms
            queue.append(name)
            payload = event.buffer_payload if event.buffer_payload is not None else b""
            self.entries[name] = _Entry(replace(op, warnings=()), now_ms, payload)
            self.count += 1
        return Resolution(
            event_uuid=event.uuid,
            outcome=Outcome.BUFFER,
            person_id=None,
            person_mode=None,
            properties={},
            created_at_ms=None,
            is_identified=False,
            warnings=op.warnings,
        )

    def _release(
        self,
        distinct_id: str,
        reason: str,
        rules: PersonRules,
        policy: BufferPolicy,
        now_ms: int,
        released: list[Released],
    ) -> None:
        """Step 3: empty the id's queue, apply and lease its entries in order."""
        queue = self.queues.pop(distinct_id, [])
        self.due.pop(distinct_id, None)
        self.count -= len(queue)
        warning = _OVERFLOW_WARNING if reason == OVERFLOW else None
        for name in queue:
            entry = self.entries.get(name)
            if entry is None:  # acknowledged while it waited
                continue
            first = _FirstRelease(reason, now_ms, rules.apply(entry.op, warning))
            self.releases[name] = first
            self._hand_out(name, entry, reason, first, policy, now_ms, released)

    def _hand_out(
        self,
        name: str,
        entry: _Entry,
        reason: str,
        first: _FirstRelease,
        policy: BufferPolicy,
        now_ms: int,
        released: list[Released],
    ) -> None:
        """Return a released entry (its first release's resolution and time), leased anew."""
        released.append(
            Released(
                entry.op.event.uuid,
                reason,
                entry.ingested_ms,
                entry.payload,
                first.resolution,
                first.released_ms,
                name,
            )
        )
        self.pending[name] = now_ms + policy.lease_ms
