"""The fault suite's verdict: what the outputs and Redis hold, against the reference model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from tests.faults.observe import Outputs
from tests.faults.stream import TENANTS, StreamEvent
from worker.identity.config import IdentityConfig
from worker.identity.ids import person_id_for
from worker.identity.model import Person, PropertyState
from worker.identity.reference import ReferenceStore
from worker.store.redis_store import RedisIdentityStore

_Block = tuple[bool, dict[str, PropertyState]]
"""What a person is, apart from its id (which depends on the order merges happened in)."""


@dataclass
class Verdict:
    events_in: int = 0
    lost: int = 0
    lost_examples: list[str] = field(default_factory=list)
    enriched_records: int = 0
    duplicated: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    warnings: int = 0
    persons: int = 0
    reference_mismatches: int = 0
    reference_examples: list[str] = field(default_factory=list)
    ids_moved: int = 0
    override_records: int = 0
    overrides_missing: int = 0
    overrides_wrong: int = 0
    override_examples: list[str] = field(default_factory=list)
    person_change_records: int = 0
    person_changes_missing: int = 0
    person_changes_stale: int = 0
    """Persons whose highest-version record does not hold their final visible properties."""
    person_changes_last_older: int = 0
    """Persons whose last record (offset order, what compaction keeps) has a lower version than
    an earlier one: an older state announced again after a newer one (not a failure: consumers
    keep the highest version, docs/FORMATS.md)."""
    person_change_examples: list[str] = field(default_factory=list)

    @property
    def change_feed_records_missing(self) -> int:
        return self.overrides_missing + self.overrides_wrong

    def as_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["change_feed_records_missing"] = self.change_feed_records_missing
        return out


def _blocks(persons: Sequence[Person]) -> dict[frozenset[str], _Block]:
    return {frozenset(p.distinct_ids): (p.is_identified, dict(p.properties)) for p in persons}


def verdict(
    sent: Sequence[StreamEvent],
    outputs: Outputs,
    client: redis.Redis,
    config: IdentityConfig,
    prefix: str,
) -> Verdict:
    """Everything the suite asserts, counted (call it once the workers stopped)."""
    seen = outputs.read()
    v = Verdict(events_in=len(sent), enriched_records=seen.enriched_records)
    uuids = {e.uuid for e in sent}
    lost = sorted(u for u in uuids if u not in seen.uuids)
    v.lost, v.lost_examples = len(lost), lost[:5]
    v.duplicated = sum(n - 1 for n in seen.uuids.values() if n > 1)
    v.dead_letters = dict(seen.dead_letters)
    v.warnings = seen.warnings
    v.override_records = seen.override_records
    v.person_change_records = seen.person_change_records

    reference = ReferenceStore(config)
    by_tenant: dict[str, list[StreamEvent]] = {}
    for event in sent:
        by_tenant.setdefault(event.identity.tenant, []).append(event)
    for tenant, events in by_tenant.items():
        for event in events:
            reference.resolve_batch(tenant, [event.identity], now_ms=event.identity.timestamp_ms)

    store = RedisIdentityStore(client, config, prefix=prefix)
    for tenant in TENANTS:
        actual = store.persons(tenant)
        v.persons += len(actual)
        want, got = _blocks(reference.persons(tenant)), _blocks(actual)
        for ids in want.keys() | got.keys():
            if want.get(ids) != got.get(ids):
                v.reference_mismatches += 1
                if len(v.reference_examples) < 5:
                    v.reference_examples.append(
                        f"{tenant} {sorted(ids)}: reference {want.get(ids)} redis {got.get(ids)}"
                    )
        for person in actual:
            _check_change_feed(v, seen.overrides, seen.person_changes, tenant, person)
            last = seen.person_changes_last.get((tenant, person.person_id))
            kept = seen.person_changes.get((tenant, person.person_id))
            if last is not None and kept is not None and last["version"] < kept["version"]:
                v.person_changes_last_older += 1
                if len(v.person_change_examples) < 10:
                    v.person_change_examples.append(
                        f"{tenant} {person.person_id}: last record version {last['version']} "
                        f"(event {last.get('event_uuid')}) after version {kept['version']} "
                        f"(event {kept.get('event_uuid')})"
                    )
    return v


def _check_change_feed(
    v: Verdict,
    overrides: dict[tuple[str, str], str],
    person_changes: dict[tuple[str, str], dict[str, Any]],
    tenant: str,
    person: Person,
) -> None:
    """Every id whose person is not the one named after it moved at least once: the compacted
    override topic must map it to its final person. The compacted person-change topic must
    hold the person's final visible properties."""
    for distinct_id in person.distinct_ids:
        if person_id_for(tenant, distinct_id) == person.person_id:
            continue
        v.ids_moved += 1
        found = overrides.get((tenant, distinct_id))
        if found is None:
            v.overrides_missing += 1
        elif found != person.person_id:
            v.overrides_wrong += 1
        else:
            continue
        if len(v.override_examples) < 5:
            v.override_examples.append(
                f"{tenant} {distinct_id}: topic {found} redis {person.person_id}"
            )
    change = person_changes.get((tenant, person.person_id))
    if change is None:
        v.person_changes_missing += 1
    elif change.get("properties") != person.visible_properties:
        v.person_changes_stale += 1
    else:
        return
    if len(v.person_change_examples) < 10:
        v.person_change_examples.append(
            f"{tenant} {person.person_id} (redis version {person.version}, ids "
            f"{sorted(person.distinct_ids)}): topic "
            + (
                "none"
                if change is None
                else f"version {change['version']} event {change.get('event_uuid')} "
                f"merged_into {change.get('merged_into')} properties {change.get('properties')}"
            )
            + f", redis properties {person.visible_properties}"
        )
