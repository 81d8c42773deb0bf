"""Which way imports run: the pipeline sees ports, not Kafka or Redis clients; observability
does not import the pipeline. Checked in a fresh interpreter, where nothing is loaded yet."""

from __future__ import annotations

import json
import subprocess
import sys

PIPELINE = [
    "worker.pipeline.orchestrator",
    "worker.pipeline.runner",
    "worker.pipeline.delivery",
    "worker.pipeline.releaser",
]
OBSERVABILITY = [
    "worker.observability.recorder",
    "worker.observability.http",
    "worker.observability.metrics",
    "worker.observability.status",
]


def _loaded_after_importing(modules: list[str]) -> set[str]:
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


def test_the_pipeline_loads_no_kafka_or_redis_client() -> None:
    loaded = _loaded_after_importing(PIPELINE)
    assert not {"confluent_kafka", "redis", "worker.kafka.sink", "worker.kafka.source"} & loaded
    assert "worker.store.redis_store" not in loaded


def test_observability_does_not_import_the_pipeline() -> None:
    loaded = _loaded_after_importing(OBSERVABILITY)
    assert not {m for m in loaded if m.startswith("worker.pipeline")}
