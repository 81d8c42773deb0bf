"""The fault suite's input: an endless, seeded stream of PostHog capture events.

Mixed kinds (tracks, ``$identify`` with ``$anon_distinct_id``, ``$create_alias``), users drawn
from a Zipf distribution, frontend and backend events (``properties.$lib`` = ``posthog-python``:
the worker buffers them while their id has no person), several tenants, ``$set`` / ``$set_once``
/ ``$unset`` on clashing keys.

The stream is built so that its final identity state does not depend on the order in which the
worker happens to apply events (partitions, retries, buffer releases, rebalances): every merge
names a user's own id (``user-<n>``) as the distinct id and one of that user's anonymous ids
(``anon-<n>-<k>``) as the other id, and an anonymous id is never the distinct id of an identify
or an alias. So no merge is ever refused, the final partition is "each user's id with every
anonymous id an identify or alias named", and in ``timestamp`` mode properties are per-key
last-writer-wins registers: the reference model fed the events in any order ends in the same
state. Every event of one user is keyed ``<tenant>:user-<n>``, so one partition keeps its order.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from worker.identity.model import EventKind, IdentityEvent, JsonValue, PropertyUpdates

TENANTS = ("acme", "globex", "initech")
ANON_IDS_PER_USER = 3
KEYS = ("plan", "country", "seats", "theme", "$initial_referrer")
VALUES: tuple[JsonValue, ...] = ("free", "pro", "team", 1, 2, 30, True, None, "fr", "de")


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One input message, and the identity event the worker must derive from it."""

    key: bytes
    value: bytes
    identity: IdentityEvent

    @property
    def uuid(self) -> str:
        return self.identity.uuid


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


class _Zipf:
    """Ranks 0..n-1 with probability proportional to 1 / (rank + 1) ** s."""

    def __init__(self, n: int, s: float) -> None:
        weights = [1 / (rank + 1) ** s for rank in range(n)]
        self._cumulative = list(itertools.accumulate(weights))

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self._cumulative, rng.random() * self._cumulative[-1])


def events(
    *, seed: int, users_per_tenant: int, start_ms: int, zipf_s: float = 1.1
) -> Iterator[StreamEvent]:
    """An endless stream; event ``i`` is stamped ``start_ms + 10 * i`` give or take 2 s, so a
    user's events are sometimes out of timestamp order (``timestamp`` ordering must cope)."""
    rng = random.Random(seed)
    zipf = _Zipf(users_per_tenant, zipf_s)
    for number in itertools.count():
        tenant = rng.choice(TENANTS)
        user = f"user-{zipf.draw(rng)}"
        anon = f"anon-{user.removeprefix('user-')}-{rng.randrange(ANON_IDS_PER_USER)}"
        ts = start_ms + 10 * number + rng.randint(-2_000, 2_000)
        roll = rng.random()
        if roll < 0.12:
            kind, name, distinct_id, other = EventKind.IDENTIFY, "$identify", user, anon
        elif roll < 0.18:
            kind, name, distinct_id, other = EventKind.ALIAS, "$create_alias", user, anon
        else:
            kind, name, other = EventKind.TRACK, "$pageview", None
            distinct_id = user if rng.random() < 0.4 else anon
        backend = kind is EventKind.TRACK and rng.random() < 0.3
        set_ = _updates(rng, 0.35)
        set_once = _updates(rng, 0.1)
        touched = {key for key, _ in set_ + set_once}
        spare = [key for key in KEYS if key not in touched]
        unset = (rng.choice(spare),) if rng.random() < 0.03 else ()
        event_uuid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        properties: dict[str, JsonValue] = {"$lib": "posthog-python" if backend else "web"}
        if set_:
            properties["$set"] = dict(set_)
        if set_once:
            properties["$set_once"] = dict(set_once)
        if unset:
            properties["$unset"] = list(unset)
        if kind is EventKind.IDENTIFY:
            properties["$anon_distinct_id"] = other
        elif kind is EventKind.ALIAS:
            properties["alias"] = other
        body = {
            "event": name,
            "distinct_id": distinct_id,
            "uuid": event_uuid,
            "timestamp": _iso(ts),
            "token": tenant,
            "properties": properties,
        }
        identity = IdentityEvent(
            tenant=tenant,
            kind=kind,
            distinct_id=distinct_id,
            uuid=event_uuid,
            timestamp_ms=ts,
            other_id=other,
            updates=PropertyUpdates(set=set_, set_once=set_once, unset=unset),
        )
        yield StreamEvent(
            key=f"{tenant}:{user}".encode(),
            value=json.dumps(body, separators=(",", ":")).encode(),
            identity=identity,
        )


def _updates(rng: random.Random, probability: float) -> tuple[tuple[str, JsonValue], ...]:
    if rng.random() >= probability:
        return ()
    keys = rng.sample(KEYS, rng.randint(1, 2))
    return tuple((key, rng.choice(VALUES)) for key in keys)
