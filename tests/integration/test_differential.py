"""Differential test: the Redis store (Lua) against the reference model (pure Python).

One generator makes random event sequences, its choices drawn by Hypothesis (which shrinks a
failure) or by a seeded ``random.Random`` (cheaper: the bulk of the run): merges and chains,
refused merges, merge_dangerously, illegal ids (quoted forms included), personless events,
property operations with clashing keys and timestamps, replays and malformed duplicate uuids,
several tenants, small distinct-id caps and small size limits, ids differing only by case
(``distinct_id_case_collision``), groups (group property updates,
explicit groups, remembered memberships carried by merges, small group-type caps; docs/IDENTITY.md
"Groups"), in both ordering modes, with the 60-second buffer off and on; the Redis store calls
its script as a function library (``FCALL``, ``auto`` on Redis 7+) or with ``EVALSHA``, half
the sequences each. Backend events (with a ``buffer_payload``, of any kind) may wait;
batches are interleaved with ``release_due`` calls at advancing times (timeouts, expired
leases) and acknowledgements (of released entries, and now and then of an event still
waiting), under small per-id and per-tenant caps. Both stores get the same calls (the Redis
store with a random chunk size, so chunk boundaries fall anywhere) and must return identical
resolutions and released entries (uuid, entry id, reason, ingestion and release times, payload,
resolution, ``person_changed``, groups and group changes included), field by field; at the end
the buffer stats must agree, then everything still waiting or leased is released and compared
(twice: the second time every lease has expired), with the stats after each pass, and the
persons, group types, group records and memberships must be identical.

Most events carry a ``source`` (their input position), so replay receipts are exercised: exact
repeats of earlier events, and replayed runs of already-sent events of a tenant with other
batch and chunk boundaries, through either entry point. An event whose receipt is kept must get
its first answer again (its groups and group changes too), and a batch made only of such events
must leave the persons and the buffer unchanged; ``Forget`` steps drop receipts (a later replay
is applied again). Events sharing a uuid under two ids are two buffer entries. After every step
the Redis due-tenants index must list every tenant the model has something due for.

Each sequence draws where the Redis store runs the rules (``redis.rules``): the script, or the
worker, whose commits must then never be refused (one writer: a call's reads, with the writes
of its tenant's earlier calls of the round laid over them, hold when it commits).

Four cases: each ordering mode with the buffer off and on. Per case, ``IDENTITY_DIFF_EXAMPLES``
Hypothesis sequences (default 150) and ``IDENTITY_DIFF_SEQUENCES`` seeded ones (default 1,000,
from ``IDENTITY_DIFF_SEED``, random unless given), so 2,300 sequences per ordering mode in about
a minute on a 2-core machine; raise both for a longer run.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import hypothesis
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_redis_store import check_invariants
from worker.identity.buffer import NO_BUFFER, BufferPolicy, Released, entry_id
from worker.identity.config import IdentityConfig
from worker.identity.model import (
    EventKind,
    Group,
    GroupInput,
    IdentityEvent,
    JsonValue,
    OrderingMode,
    Outcome,
    Person,
    PropertyUpdates,
    Resolution,
)
from worker.identity.properties import canonical_json
from worker.identity.reference import ReferenceStore
from worker.store.base import BufferingStore
from worker.store.commit_plan import RulesMode
from worker.store.redis_store import RedisIdentityStore
from worker.store.script_call import ScriptCommand

pytestmark = pytest.mark.integration


T0 = 1_700_000_000_000
TENANTS = ("t1", "t:{2}")
LEGAL_IDS = ("a", "b", "c", "d", "e", "f", "user-1", "anon:é")
CASE_VARIANTS = ("A", "B", "User-1", "USER-1", "ANON:é", "anon:É")
"""Ids differing from a legal id (or each other) only by ASCII case, and one ("anon:É") that
differs by a non-ASCII letter only, which is no case collision."""
ILLEGAL_IDS = ("null", "'guest'", '"Anonymous"', "", "   ", "0", "NaN", "[object Object]")
KEYS = ("k1", "k2", "k3", "$initial_url", "k" * 12)
DAY = 86_400_000
EXAMPLES = int(os.environ.get("IDENTITY_DIFF_EXAMPLES", "150"))
"""Hypothesis sequences per case (ordering mode x buffer off/on); they shrink on failure."""
SEQUENCES = int(os.environ.get("IDENTITY_DIFF_SEQUENCES", "1000"))
"""Seeded sequences per case, cheaper to generate: the bulk of the run."""
SEED = int(os.environ.get("IDENTITY_DIFF_SEED", str(random.SystemRandom().randrange(2**32))))
"""First seed of the seeded sequences (printed by a failure, to replay it)."""


# -- the calls --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Resolve ``events`` (of one tenant): with the buffer (``resolve_buffered``) or without
    (``resolve_batch``, which releases no queue: they wait for their due time)."""

    tenant: str
    events: list[IdentityEvent]
    buffered: bool


@dataclass(frozen=True)
class ReleaseDue:
    tenant: str
    limit: int


@dataclass(frozen=True)
class Ack:
    """Acknowledge the ``count`` oldest released, unacknowledged entries of ``tenant``, and
    ``stray`` (the entry id of any event of the tenant) if given and not waiting in the buffer.

    Never an event still waiting: the pipeline acknowledges only released events, and the
    script looks a waiting uuid up as the entries stood when the call began, so acknowledging a
    waiting event, then sending its uuid again, gives results that depend on where the store's
    chunks begin (something the reference model does not know)."""

    tenant: str
    count: int
    stray: str | None


@dataclass(frozen=True)
class Forget:
    """Drop the replay receipts of ``sources`` (as the pipeline does once they are committed):
    a later replay of one of them is applied again."""

    tenant: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Delete:
    """Delete (contract A10) the person holding ``distinct_id``, or, with ``by_person``, the
    person id the model gives that person (a fresh uuid when it has none)."""

    tenant: str
    distinct_id: str
    by_person: bool


Action = Batch | ReleaseDue | Ack | Forget | Delete
Steps = list[tuple[int, Action]]
"""(milliseconds the clock advances before the action, the action)"""


@dataclass(frozen=True)
class Scenario:
    config: IdentityConfig
    buffer: BufferPolicy
    steps: Steps
    chunk: int
    """operations per script call of the Redis store"""
    script_command: ScriptCommand = ScriptCommand.AUTO
    """how the Redis store calls its script: ``auto`` (its function library on Redis 7+) or
    ``evalsha``"""
    rules: RulesMode = RulesMode.SCRIPT
    """where the Redis store runs the rules: the script, or the worker (its commits)"""


# -- generating scenarios ----------------------------------------------------------------------
#
# One generator, two sources of choices: Hypothesis (``DrawnChoices``: failures shrink to a
# small sequence) and a seeded ``random.Random`` (``SeededChoices``: cheap, for the bulk of the
# sequences; a failure names its seed).

T = TypeVar("T")


class Choices(Protocol):
    def pick(self, options: Sequence[T]) -> T: ...

    def number(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        ...


@dataclass(frozen=True)
class DrawnChoices:
    draw: st.DrawFn

    def pick(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))

    def number(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))


@dataclass(frozen=True)
class SeededChoices:
    rng: random.Random

    def pick(self, options: Sequence[T]) -> T:
        return self.rng.choice(options)

    def number(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


def weighted(c: Choices, *options: tuple[int, T]) -> T:
    """One of ``options`` (weight, value), so rare cases stay rare."""
    roll = c.number(0, sum(weight for weight, _ in options) - 1)
    for weight, value in options:
        if roll < weight:
            return value
        roll -= weight
    raise AssertionError(roll)


CHARACTERS = "ab xyz0é€😀\"\\\n\x00'"
FLOATS = (0.0, -0.0, 0.1, 1.5, -2.5e-300, 1e300, 1e16, 123456789.125, 5e-324)


def text(c: Choices, longest: int) -> str:
    return "".join(c.pick(CHARACTERS) for _ in range(c.number(0, longest)))


def json_value(c: Choices, depth: int = 0) -> JsonValue:
    kind = c.pick("nbiiftt" if depth >= 2 else "nbiifttLD")
    if kind == "n":
        return None
    if kind == "b":
        return c.pick((False, True))
    if kind == "i":
        return weighted(c, (3, c.number(-3, 3)), (1, c.number(-(2**70), 2**70)))
    if kind == "f":
        return c.pick(FLOATS)
    if kind == "t":
        return text(c, 12)
    if kind == "L":
        return [json_value(c, depth + 1) for _ in range(c.number(0, 3))]
    return {text(c, 4): json_value(c, depth + 1) for _ in range(c.number(0, 3))}


def small_value(c: Choices) -> JsonValue:
    return weighted(
        c, (1, c.number(0, 3)), (1, c.pick(["x", "y", "xyzxyzxyzxyz"])), (2, json_value(c))
    )


def distinct_id(c: Choices) -> str:
    roll = c.number(0, 99)
    if roll < 75:
        return c.pick(LEGAL_IDS)
    return c.pick(CASE_VARIANTS) if roll < 87 else c.pick(ILLEGAL_IDS)


def property_updates(c: Choices) -> PropertyUpdates:
    if c.number(0, 9) < 4:
        return PropertyUpdates()
    return PropertyUpdates(
        set=tuple((c.pick(KEYS), small_value(c)) for _ in range(c.number(0, 3))),
        set_once=tuple((c.pick(KEYS), small_value(c)) for _ in range(c.number(0, 2))),
        unset=tuple(c.pick(KEYS) for _ in range(c.number(0, 2))),
    )


GROUP_TYPES = ("company", "team", "project", "", "org")
GROUP_KEYS = ("acme", "beta", "é/1", "k\x00", "")


def group_inputs(c: Choices) -> tuple[GroupInput, ...]:
    """Mostly none; else up to three groups (a repeated type, an unusable type or key now and
    then), attached or not, remembered or not, with or without property operations."""
    if c.number(0, 9) < 5:
        return ()
    return tuple(
        GroupInput(
            group_type=weighted(c, (6, c.pick(GROUP_TYPES[:3])), (1, c.pick(GROUP_TYPES))),
            key=weighted(c, (6, c.pick(GROUP_KEYS[:3])), (1, c.pick(GROUP_KEYS))),
            attach=c.number(0, 3) > 0,
            remember=c.number(0, 2) == 0,
            updates=property_updates(c),
        )
        for _ in range(c.number(1, 3))
    )


def identity_config(c: Choices, ordering: OrderingMode) -> IdentityConfig:
    return IdentityConfig(
        ordering=ordering,
        max_distinct_ids_per_person=c.pick([10_000, 2, 3, 4]),
        max_properties_bytes=c.pick([512 * 1024, 200, 60, 24]),
        max_property_key_length=c.pick([1024, 1024, 6]),
        max_property_value_length=c.pick([1024, 1024, 8]),
        max_group_types=c.pick([5, 5, 2, 1]),
    )


def buffer_policy(c: Choices) -> BufferPolicy:
    return BufferPolicy(
        delay_ms=c.pick([60_000, 60_000, 1_000]),
        max_per_id=c.pick([100, 100, 1, 2, 3]),
        max_total=c.pick([1_000_000, 1_000_000, 3, 5]),
        lease_ms=c.pick([30_000, 5_000]),
    )


def _payload(event_uuid: str, distinct: str, n: int) -> bytes:
    return f"{event_uuid}|{distinct}|{n}".encode("utf-8", "surrogatepass")


def identity_events(c: Choices) -> list[IdentityEvent]:
    """Tracks, identifies and aliases (merging, refused, dangerous, with illegal ids),
    personless events, backend events (with a ``buffer_payload``) of any kind, replays and
    malformed duplicates (an earlier uuid and timestamp for another event)."""
    events: list[IdentityEvent] = []
    for n in range(c.number(1, 24)):
        roll = c.number(0, 9)
        if events and roll == 0:  # an exact replay of an earlier event (same source)
            events.append(c.pick(events))
            continue
        kind = weighted(c, (2, EventKind.TRACK), (1, EventKind.IDENTIFY), (1, EventKind.ALIAS))
        own = distinct_id(c)
        other = None if c.number(0, 99) < 15 else distinct_id(c)
        tenant = weighted(c, (4, TENANTS[0]), (1, TENANTS[1]))
        event_uuid = f"00000000-0000-0000-0000-{n:012d}"
        ts = T0 + c.pick([0, 1, 2, 59_999, 60_000, 60_001, 120_000, -5]) + c.number(0, 3)
        if events and roll == 1:  # a malformed duplicate: same uuid and timestamp
            twin = c.pick(events)
            tenant, event_uuid, ts = twin.tenant, twin.uuid, twin.timestamp_ms
        events.append(
            IdentityEvent(
                tenant=tenant,
                kind=kind,
                distinct_id=own,
                uuid=event_uuid,
                timestamp_ms=ts,
                other_id=None if kind is EventKind.TRACK else other,
                merge_dangerously=c.number(0, 4) < 2,
                process_person=c.number(0, 24) > 1,
                updates=property_updates(c),
                buffer_payload=_payload(event_uuid, own, n) if c.number(0, 4) < 2 else None,
                groups=group_inputs(c),
                source=f"in/{c.number(0, 1)}/{n}" + ("#1" if n % 3 == 0 else "")
                if c.number(0, 9) < 7
                else None,
            )
        )
    return events


def _same_tenant_prefix(events: list[IdentityEvent]) -> list[IdentityEvent]:
    return list(itertools.takewhile(lambda e: e.tenant == events[0].tenant, events))


ADVANCES = (0, 0, 1, 700, 5_000, 29_999, 30_000, 59_999, 60_000, 61_000)
"""How far the clock moves before a step (ms)."""


def scenario(c: Choices, ordering: OrderingMode, buffered: bool) -> Scenario:
    """A config, a buffer policy (off: ``NO_BUFFER``) and steps: the events in batches of one
    tenant, mostly through ``resolve_buffered`` (else ``resolve_batch``), each followed by up
    to two ``release_due`` or ``ack`` calls."""
    config = identity_config(c, ordering)
    buffer = buffer_policy(c) if buffered else NO_BUFFER
    events = identity_events(c)
    steps: Steps = []
    rest = list(events)
    while rest:
        batch = _same_tenant_prefix(rest)[: c.number(1, 6)]
        rest = rest[len(batch) :]
        through_buffer = c.number(0, 9) > 0
        steps.append((c.pick(ADVANCES), Batch(batch[0].tenant, batch, through_buffer)))
        sent = [e for e in events[: len(events) - len(rest)] if e.source is not None]
        if sent and c.number(0, 4) == 0:  # a replay: a run of sent events, other boundaries
            tenant = c.pick(sent).tenant
            mine = [e for e in sent if e.tenant == tenant]
            start = c.number(0, len(mine) - 1)
            again = mine[start : start + c.number(1, 8)]
            steps.append((c.pick(ADVANCES), Batch(tenant, again, c.number(0, 9) > 0)))
        if sent and c.number(0, 9) == 0:  # the input is committed: forget some receipts
            tenant = c.pick(sent).tenant
            sources = [e.source for e in sent if e.tenant == tenant and e.source is not None]
            steps.append((0, Forget(tenant, tuple(sources[: c.number(1, len(sources))]))))
        if c.number(0, 7) == 0:  # a deletion of a person the sequence may have made
            chosen = c.pick(events[: len(events) - len(rest)])
            steps.append((0, Delete(chosen.tenant, chosen.distinct_id, c.number(0, 3) == 0)))
        for _ in range(weighted(c, (10, 0), (7, 1), (3, 2))):
            tenant = weighted(c, (4, TENANTS[0]), (1, TENANTS[1]))
            if c.pick((False, True)):
                steps.append((c.pick(ADVANCES), ReleaseDue(tenant, c.pick([100, 1, 2]))))
            else:
                seen = [entry_id(e) for e in events if e.tenant == tenant] or [""]
                stray = c.pick(seen) if c.number(0, 99) < 15 else None
                steps.append((c.pick(ADVANCES), Ack(tenant, c.number(0, 4), stray)))
    command = c.pick((ScriptCommand.AUTO, ScriptCommand.EVALSHA))
    chunk = c.number(1, 5)
    rules = c.pick((RulesMode.SCRIPT, RulesMode.WORKER))
    return Scenario(config, buffer, steps, chunk, command, rules)


@st.composite
def scenarios(draw: st.DrawFn, ordering: OrderingMode, buffered: bool) -> Scenario:
    return scenario(DrawnChoices(draw), ordering, buffered)


# -- the test ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


_examples = itertools.count()


def _by_id(persons: list[Person]) -> list[Person]:
    return sorted(persons, key=lambda p: p.person_id)


def _normalised(person: Person) -> Person:
    """Plain dicts, so Mapping types of the two stores compare equal."""
    return Person(
        person_id=person.person_id,
        created_at_ms=person.created_at_ms,
        last_seen_ms=person.last_seen_ms,
        is_identified=person.is_identified,
        version=person.version,
        distinct_ids=frozenset(person.distinct_ids),
        properties=dict(person.properties),
    )


def _groups(groups: list[Group]) -> list[Group]:
    """Plain dicts, so Mapping types of the two stores compare equal."""
    return [Group(g.group_type, g.key, g.version, dict(g.properties)) for g in groups]


def event(label: str) -> None:
    """A coverage label (``pytest --hypothesis-show-statistics``), inside Hypothesis only."""
    if hypothesis.currently_in_test_context():
        hypothesis.event(label)


def note(text: str) -> None:
    """Printed with a failing Hypothesis example."""
    if hypothesis.currently_in_test_context():
        hypothesis.note(text)


def _label(resolution: Resolution) -> None:
    """Coverage labels (``pytest --hypothesis-show-statistics``)."""
    if resolution.merged:
        event("merged")
        if len(resolution.overrides) > 1:
            event("merged, several ids moved")
        if resolution.properties:
            event("merged, with properties")
    for warning in resolution.warnings:
        event(f"warning {warning.kind.value}")
    if resolution.person_mode is not None:
        event(f"mode {resolution.person_mode.value}")
    if resolution.outcome is Outcome.BUFFER:
        event("buffered")
    if resolution.groups:
        event("with groups")
    if resolution.group_changes:
        event("group changed")


def _label_released(released: list[Released]) -> None:
    for item in released:
        event(f"released: {item.reason}")
        _label(item.resolution)


def _json_of(resolution: Resolution) -> str:
    """The property values a resolution carries (person, groups, group changes), as JSON."""
    return canonical_json(
        [
            dict(resolution.properties),
            {t: [v.key, dict(v.properties)] for t, v in resolution.groups.items()},
            [
                [c.group_type, c.key, c.version, dict(c.properties)]
                for c in resolution.group_changes
            ],
        ]
    )


class _Pair:
    """Both stores, driven alike, compared at every step."""

    def __init__(self, client: redis.Redis, scenario: Scenario, prefix: str) -> None:
        self.expected = ReferenceStore(scenario.config, buffer=scenario.buffer)
        self.actual = RedisIdentityStore(
            client,
            scenario.config,
            prefix=prefix,
            max_ops_per_call=scenario.chunk,
            buffer=scenario.buffer,
            script_command=scenario.script_command,
            rules=scenario.rules,
        )
        self.unacknowledged: dict[str, list[str]] = {tenant: [] for tenant in TENANTS}
        self.waiting: dict[str, set[str]] = {tenant: set() for tenant in TENANTS}
        """entry ids answered ``Outcome.BUFFER`` and not released since"""
        self.answers: dict[tuple[str, str], Resolution] = {}
        """(tenant, source) -> the first answer, while its receipt is kept"""

    def stores(self) -> tuple[BufferingStore, BufferingStore]:
        return self.expected, self.actual

    def compare_released(self, tenant: str, want: list[Released], got: list[Released]) -> None:
        assert got == want
        _label_released(want)
        self.unacknowledged[tenant] += [item.entry_id for item in want]
        self.waiting[tenant] -= {item.entry_id for item in want}

    def run(self, now: int, action: Action) -> None:
        if isinstance(action, Batch):
            tenant, events = action.tenant, action.events
            replay = all(
                e.source is not None and (tenant, e.source) in self.answers for e in events
            )
            before = (
                (self.expected.persons(tenant), self.expected.buffer_stats(tenant, now))
                if replay
                else None
            )
            released: tuple[list[Released], list[Released]] = ([], [])
            if action.buffered:
                want, got = (store.resolve_buffered(tenant, events, now) for store in self.stores())
                pairs = zip(want.resolutions, got.resolutions, strict=True)
                released = (want.released, got.released)
            else:
                pairs = zip(
                    *(store.resolve_batch(tenant, events, now) for store in self.stores()),
                    strict=True,
                )
            for item, (wanted, gotten) in zip(events, pairs, strict=True):
                assert gotten == wanted, f"event {item}"
                # Python's == takes False for 0: the values' JSON must agree too
                assert _json_of(gotten) == _json_of(wanted), f"event {item}"
                _label(wanted)
                if item.source is not None:
                    first = self.answers.setdefault((tenant, item.source), wanted)
                    if first is not wanted:
                        event("answered from a receipt")
                    assert wanted == first, f"a replay of {item.source} answered otherwise"
                if wanted.outcome is Outcome.BUFFER:
                    self.waiting[tenant].add(entry_id(item))
            self.compare_released(tenant, *released)
            if replay:  # answered from receipts: nothing changed
                event("a whole batch replayed")
                after = (self.expected.persons(tenant), self.expected.buffer_stats(tenant, now))
                assert after == before, "a replayed batch changed the state"
        elif isinstance(action, Forget):
            for store in self.stores():
                store.forget(action.tenant, action.sources)
            for source in action.sources:
                self.answers.pop((action.tenant, source), None)
        elif isinstance(action, Delete):
            tenant = action.tenant
            if action.by_person:
                person = self.expected.person_for(tenant, action.distinct_id)
                target = person.person_id if person else f"no person {action.distinct_id}"
                expected = self.expected.delete_person(tenant, person_id=target)
                actual = self.actual.delete_person(tenant, person_id=target)
            else:
                expected = self.expected.delete_person(tenant, distinct_id=action.distinct_id)
                actual = self.actual.delete_person(tenant, distinct_id=action.distinct_id)
            assert actual == expected
            event("deleted" if expected else "deleted nothing")
        elif isinstance(action, ReleaseDue):
            want_released = self.expected.release_due(action.tenant, now, action.limit)
            got_released = self.actual.release_due(action.tenant, now, action.limit)
            self.compare_released(action.tenant, want_released, got_released)
        else:
            queue = self.unacknowledged[action.tenant]
            uuids, queue[:] = queue[: action.count], queue[action.count :]
            if action.stray is not None and action.stray not in self.waiting[action.tenant]:
                uuids.append(action.stray)
            for store in self.stores():
                store.ack(action.tenant, uuids)

    def drain(self, now: int) -> None:
        """Compare the buffer stats; release everything still waiting or leased, twice (the
        second time every lease has expired), comparing what comes out and the stats after."""
        self.compare_stats(now)
        for later in (now + 10 * DAY, now + 20 * DAY):
            for tenant in TENANTS:
                self.run(later, ReleaseDue(tenant, -1))
            self.compare_stats(later)
        assert self.actual.buffered_tenants() == self.expected.buffered_tenants()

    def compare_due(self, now: int) -> None:
        """The Redis due-tenants index never misses a tenant the model has something due for;
        it may keep one whose due entries were acknowledged since (until its next release)."""
        assert set(self.expected.due_tenants(now)) <= set(self.actual.due_tenants(now))

    def compare_stats(self, now: int) -> None:
        for tenant in TENANTS:
            want = self.expected.buffer_stats(tenant, now)
            assert self.actual.buffer_stats(tenant, now) == want, f"buffer stats of {tenant}"

    def compare_persons(self, client: redis.Redis) -> None:
        for tenant in TENANTS:
            want_persons = [_normalised(p) for p in _by_id(self.expected.persons(tenant))]
            got_persons = [_normalised(p) for p in _by_id(self.actual.persons(tenant))]
            assert got_persons == want_persons, tenant
            assert self.actual.group_types(tenant) == self.expected.group_types(tenant)
            assert _groups(self.actual.groups(tenant)) == _groups(self.expected.groups(tenant))
            assert self.actual.memberships(tenant) == self.expected.memberships(tenant), tenant
            check_invariants(client, self.actual.keys(tenant))
            for person in want_persons:
                for distinct_id in person.distinct_ids:
                    found = self.actual.person_for(tenant, distinct_id)
                    assert found is not None
                    assert _normalised(found) == person


_RULES_STATS: dict[RulesMode, list[int]] = {mode: [0, 0] for mode in RulesMode}
"""per mode: the sequences run, and the calls the rules in the worker committed"""


def _check(client: redis.Redis, scenario: Scenario, prefix: str) -> None:
    note(
        f"config={scenario.config} buffer={scenario.buffer} chunk={scenario.chunk} "
        f"script_command={scenario.script_command} rules={scenario.rules}"
    )
    pair = _Pair(client, scenario, prefix)
    now = T0
    try:
        for number, (advance, action) in enumerate(scenario.steps):
            now += advance
            note(f"step {number} at T0+{now - T0}: {action}")
            pair.run(now, action)
            pair.compare_due(now)
        pair.drain(now)
        pair.compare_persons(client)
        counts = _RULES_STATS[scenario.rules]
        counts[0] += 1
        counts[1] += pair.actual.rules_stats.commits
        # one writer: every commit's reads hold (the round's earlier calls laid over them)
        assert pair.actual.rules_stats.stale == 0
    finally:
        for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
            client.unlink(key)


CASES = pytest.mark.parametrize(
    ("ordering", "buffered"),
    [(ordering, buffered) for ordering in OrderingMode for buffered in (False, True)],
    ids=lambda value: value if isinstance(value, str) else ("buffer-on" if value else "buffer-off"),
)


@CASES
def test_redis_store_agrees_with_the_reference_model_on_seeded_sequences(
    redis_client: redis.Redis, unique_name: str, ordering: OrderingMode, buffered: bool
) -> None:
    before = _RULES_STATS[RulesMode.WORKER][1]
    for seed in range(SEED, SEED + SEQUENCES):
        generated = scenario(SeededChoices(random.Random(seed)), ordering, buffered)
        try:
            _check(redis_client, generated, f"{unique_name}-{seed}")
        except AssertionError as exc:
            raise AssertionError(
                f"seed {seed} (replay: IDENTITY_DIFF_SEED={seed} IDENTITY_DIFF_SEQUENCES=1): "
                f"{generated}"
            ) from exc
    if SEQUENCES >= 20:  # about half the sequences run the rules in the worker
        assert _RULES_STATS[RulesMode.WORKER][1] > before


@CASES
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(data=st.data())
def test_redis_store_agrees_with_the_reference_model(
    redis_client: redis.Redis,
    unique_name: str,
    ordering: OrderingMode,
    buffered: bool,
    data: st.DataObject,
) -> None:
    drawn = data.draw(scenarios(ordering, buffered), label="scenario")
    _check(redis_client, drawn, f"{unique_name}-{next(_examples)}")
