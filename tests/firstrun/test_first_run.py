"""The first command a newcomer types: ``make run``'s demo against a broker started seconds
before, on an empty data directory, with no warm-up in between.

The broker is the project's own (``deploy/local/kafka.sh``) on free ports with its data in a
temporary directory; the demo then creates its topics on it and must not race the leader
election (``NOT_LEADER_FOR_PARTITION`` from the watermark offsets, once a traceback).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.services import free_ports
from tests.support.services import LOCAL, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def _script(action: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        ["bash", str(LOCAL / "kafka.sh"), action],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"kafka.sh {action} failed:\n{result.stderr}"


@pytest.fixture
def fresh_broker_env() -> Iterator[dict[str, str]]:
    """Env naming a broker that ``kafka.sh start`` has just started on an empty data dir."""
    jars = Path(os.environ.get("IDENTITY_WORKER_LOCAL_DIR", ROOT / ".local")) / "kafka" / "libs"
    _script("jars", {})
    local_dir = Path(tempfile.mkdtemp(prefix="iw-first-run-"))
    (local_dir / "kafka").mkdir()
    (local_dir / "kafka" / "libs").symlink_to(jars, target_is_directory=True)
    kafka_port, controller_port = free_ports(2)
    env = {
        "KAFKA_PORT": str(kafka_port),
        "KAFKA_CONTROLLER_PORT": str(controller_port),
        "IDENTITY_WORKER_LOCAL_DIR": str(local_dir),
    }
    try:
        _script("start", env)
        yield env
    finally:
        try:
            _script("stop", env)
        finally:
            shutil.rmtree(local_dir, ignore_errors=True)


def test_demo_succeeds_on_a_broker_started_seconds_before(
    fresh_broker_env: dict[str, str], redis_url: str
) -> None:
    settings_env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_WORKER_")} | {
        "IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{fresh_broker_env['KAFKA_PORT']}",
        "IDENTITY_WORKER_REDIS__URL": redis_url,
        "IDENTITY_WORKER_OBSERVABILITY__METRICS_PORT": "0",
        "IDENTITY_WORKER_TOPICS__PARTITIONS": "3",
    }
    demo = subprocess.run(
        [sys.executable, "-m", "worker", "demo"],
        env=settings_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output
    assert "Traceback" not in output
    assert "NOT_LEADER" not in output
    # librdkafka's own lines go through Python logging, never raw ("%4|...|GETPID|...")
    assert not [line for line in output.splitlines() if line.startswith("%")], output
    assert "== worker exited with code 0 after SIGTERM" in demo.stdout
    assert "$identify" in demo.stdout
