"""The short fault run, inside ``make test`` (``make faults`` runs the full one).

One run, on a Kafka broker and a Redis server of its own: a stream of PostHog events flows while
the worker is killed with SIGKILL and restarted, Redis and the broker restart, members join and
leave a group of three and Redis stalls. The tests below each read one verdict of that run.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.faults.scenario import SHORT, run
from tests.faults.services import private_services
from tests.faults.verdicts import RSS_LIMIT_MIB, change_feed_failures

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("faults")
    with private_services() as services:
        result = run(SHORT, services, work)
    (work / "summary.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "log"}, indent=2))
    return result


def test_the_faults_happened(summary: dict[str, Any]) -> None:
    assert summary["kills"] >= SHORT.static_kills
    assert summary["restarts"] >= SHORT.static_kills
    assert summary["rebalances"] >= 4
    assert summary["events_in"] >= SHORT.min_events
    assert len(summary["resume_after_kill_static"]["seconds"]) == SHORT.static_kills
    assert summary["rss_samples"] > 0


def test_no_event_is_lost(summary: dict[str, Any]) -> None:
    assert summary["lost"] == 0, summary["lost_examples"]
    assert summary["enriched_records"] == summary["events_in"] + summary["duplicated"]


def test_no_worker_died_by_itself_and_nothing_was_dead_lettered(summary: dict[str, Any]) -> None:
    assert summary["workers_crashed_by_themselves"] == []
    assert summary["liveness_restarts"] == []
    assert summary["exit_restarts"] == []
    assert summary["dead_letters"] == {}


def test_identity_state_equals_the_reference_model(summary: dict[str, Any]) -> None:
    assert summary["persons"] > 0
    assert summary["reference_mismatches"] == 0, summary["reference_examples"]


def test_memory_stays_under_the_pod_limit(summary: dict[str, Any]) -> None:
    assert 0 < max(summary["rss_max_mib_by_phase"].values()) < RSS_LIMIT_MIB


def test_the_compacted_override_topic_maps_every_moved_id_to_its_person(
    summary: dict[str, Any],
) -> None:
    assert summary["ids_moved"] > 0
    assert summary["person_change_records"] > 0
    assert change_feed_failures(summary) == []
