"""What a fault run's summary must show; shared by ``make faults`` and the short test."""

from __future__ import annotations

from typing import Any

RSS_LIMIT_MIB = 512
"""The worker's memory limit in deploy/k8s (``resources.limits.memory``)."""


def core_failures(summary: dict[str, Any]) -> list[str]:
    """Every broken promise but the change feed's: events lost, identity state unlike the
    reference model's, a worker that died by itself, dead letters, memory beyond the limit."""
    failures = []
    if summary["lost"]:
        failures.append(f"{summary['lost']} events lost, e.g. {summary['lost_examples']}")
    if summary["reference_mismatches"]:
        failures.append(
            f"{summary['reference_mismatches']} persons unlike the reference model's, e.g. "
            f"{summary['reference_examples']}"
        )
    if summary["workers_crashed_by_themselves"]:
        failures.append(f"workers exited by themselves: {summary['workers_crashed_by_themselves']}")
    if summary["dead_letters"]:
        failures.append(f"dead letters: {summary['dead_letters']}")
    worst = max(summary["rss_max_mib_by_phase"].values(), default=0)
    if worst >= RSS_LIMIT_MIB:
        failures.append(f"worker RSS reached {worst} MiB (limit {RSS_LIMIT_MIB} MiB)")
    return failures


def change_feed_failures(summary: dict[str, Any]) -> list[str]:
    """The compacted override topic must map every id that moved to its final person, and the
    person-change topic must hold every final person's properties (highest version per key)."""
    failures = []
    if summary["change_feed_records_missing"]:
        failures.append(
            f"{summary['overrides_missing']} override records missing and "
            f"{summary['overrides_wrong']} naming another person, of {summary['ids_moved']} ids "
            f"that moved, e.g. {summary['override_examples']}"
        )
    if summary["person_changes_missing"] or summary["person_changes_stale"]:
        failures.append(
            f"{summary['person_changes_missing']} persons without a person-change record and "
            f"{summary['person_changes_stale']} whose highest version is not their final state, "
            f"e.g. {summary['person_change_examples']}"
        )
    return failures


def exactly_once_failures(summary: dict[str, Any]) -> list[str]:
    """In exactly-once mode a ``read_committed`` consumer must see every enriched event once."""
    if summary.get("mode") != "exactly-once" or not summary["duplicated"]:
        return []
    return [
        f"{summary['duplicated']} duplicated enriched records read with read_committed "
        "in exactly-once mode"
    ]
